"""Certified measurements of coupled ideal-diode networks with the fewest Python-level steps.

With hidden↔hidden conductances every sample is a linear complementarity problem on the
sparse nodal matrix K, solved by the compiled PDAS–CG kernel of
:mod:`hil.circuit.coupled_kernels`.  :class:`CoupledIdealSolves` is what a simulated board
calls for such a network instead of the general
:meth:`~hil.circuit.solve.EquilibriumSolver.solve` (whose input checks, tiled warm starts and
scale reductions cost more than the kernel itself on small batches):

* an operating point forms the nodal source currents b = G_in u once (a (B × p)(p × n)
  product), solves them from the uncoupled closed form (or from the operating point the
  same inputs had before the last programming step) and keeps them with the state, with
  K e of the answer (the kernel's last certificate pass writes it out);
* the perturbation phases of a held operating point (the same inputs, repeated k times, or
  some of its samples again, with new port voltages) go to one compiled call,
  :func:`~hil.circuit.coupled_kernels.held_phases_certified` (the port voltages' check, the
  solve of :func:`~hil.circuit.coupled_kernels.held_phases_kernel` and the certificate's
  scaling): row r solves
  b_src[r mod B] + (w G_out)[r] starting from the held sample's active set and voltages,
  gathered in the kernel, so the held point is never tiled (and, with clamp levels 0, the held
  K e spares each row's first residual pass); the small drives of a gradient
  rarely move a diode, and then one active-set step settles the row (and the − phase
  starts from the + phase's answer reflected about the held point).

Both certify the batch exactly as :func:`hil.circuit.coupled.solve_ideal_coupled` does
(the kernel's KKT reductions scaled as :func:`hil.circuit.ideal.scaled_certificate` scales them; rows the
kernel cannot settle, and a batch whose certificate fails, go to the general active-set
solver, which certifies or raises :class:`~hil.circuit.report.SolveError`).  The phases accept
a batch at once when the kernel settled every row and the scaled certificate meets the
tolerance, and form its report only when it is read; any other batch goes through
:func:`~hil.circuit.coupled.conclude_coupled` like an operating point.  The kernel
runs on the same right-hand sides and starts as the general path's, so the answers are the
same bit for bit (re-measured subsets of the held samples start from their held points,
where the general path starts cold: the same certified answer to within the CG tolerance,
about 1e-13 relative in an ``hl`` gradient).  States leave ``i_src`` and ``diode_current`` None (a board forms the
source currents when read); the port currents and the (stacked) source voltages of phases
are formed when read.
"""

from __future__ import annotations

import time

import numpy as np

from hil.circuit.coupled import CG_RTOL, MAX_PDAS, conclude_coupled, max_cg_iterations
from hil.circuit.coupled_kernels import (STAT_CG, STAT_COMP_REL, STAT_DUAL, STAT_FINITE, STAT_KCL, STAT_KCL_REL,
                                          STAT_LO_Z, STAT_N_ON, STAT_PRIMAL, STAT_SCALE_I, STAT_SCALE_V,
                                          STAT_STEPS, STAT_UNSETTLED, STAT_W_FINITE, STAT_WORST,
                                          held_phases_certified, pdas_cg_recorded)
from hil.circuit.ideal import _MarginsOnRead
from hil.circuit.nodal import port_currents
from hil.circuit.solve import CircuitState, EquilibriumSolver
from hil.circuit.uncoupled import InputSourceMap, PortVoltages, _abs_max, _PortCurrentsOnRead

_ALL_ROWS = np.empty(0, dtype=np.int64)  # held_phases_kernel: row r is held sample r mod B
_NO_KE = np.empty((0, 0))  # held_phases_kernel: K e of the held voltages not known


class CoupledIdealSolves:
    """Operating points and held-source phases of a coupled ideal-diode network (see module doc).

    Reads K, the conductances and the general solver from ``solver`` at every call, so it
    follows programming.
    """

    def __init__(self, solver: EquilibriumSolver, source_matrix: np.ndarray | None = None,
                 source_offset: np.ndarray | None = None):
        """``source_matrix`` (p, n_inputs) and ``source_offset`` (p,) V map inputs to source
        voltages (u = x Mᵀ + offset) for :meth:`measure_inputs`."""
        d = solver.circuit.diodes
        if not d.is_ideal or d.element is not None or not solver.nodal.coupled:
            raise ValueError("CoupledIdealSolves needs ideal diodes with hidden↔hidden conductances")
        self._solver = solver
        self._ports = PortVoltages(solver.circuit.output_voltage)
        self._max_cg = max_cg_iterations(solver.nodal.n)
        self._fallback = solver._pr_fallback_for(d.v_ref)  # reads the circuit as programmed when called
        self._u_scale: tuple[CircuitState | None, float] = (None, 0.0)  # (held state, max |u|)
        self._sources = None if source_matrix is None else InputSourceMap(source_matrix, source_offset)

    def measure_inputs(self, x: np.ndarray, w: np.ndarray | None = None,
                       warm: CircuitState | None = None) -> CircuitState:
        """Equilibrium for logical inputs ``x`` (B, n_inputs) through the source map, volts; ValueError
        for a non-finite input.  ``warm``: a state of the same inputs (e.g. before the last
        programming step) whose active set and voltages start the solve."""
        u, top = self._sources.voltages(x)
        return self.operating_point(u, w, u_scale=top, warm=warm)

    def operating_point(self, u: np.ndarray, w: np.ndarray | None = None, u_scale: float | None = None,
                        warm: CircuitState | None = None) -> CircuitState:
        """Equilibrium for finite source voltages ``u`` (B, p) and port voltages ``w`` (B, q; default
        the configured ones), volts; ``u_scale`` is max |u| when the caller knows it; ``warm``
        (a state of B samples) seeds the active set and voltages, else the uncoupled closed form."""
        t0 = time.perf_counter()
        sv = self._solver
        nd = sv.nodal
        B, n = u.shape[0], nd.n
        b_src = u @ nd.g_in.T
        if w is None:
            w, w_scale, ports_at_zero = self._ports.default(B)
        else:
            w, w_scale = self._ports.checked(w, B)
            ports_at_zero = w_scale == 0.0
        b = b_src if ports_at_zero else b_src + w @ nd.g_out
        if u_scale is None:
            u_scale = _abs_max(u)
        cold = warm is None or warm.on.shape != (B, n)
        if cold:
            on, e = np.empty((B, n), dtype=np.bool_), np.empty((B, n))
            restart = _no_start
        else:
            on, e = np.array(warm.on, dtype=np.bool_, order="C"), np.array(warm.e, dtype=np.float64, order="C")
            restart = lambda: warm.on  # noqa: E731 - the general solver's start, only on a fallback
        status, z, mu, ke = np.empty(B, dtype=np.int64), np.empty((B, n)), np.empty((B, n)), np.empty((B, n))
        k = nd.k_csr
        scale_v = max(u_scale, w_scale, sv._vref_max, 1e-300)
        reductions, counts = pdas_cg_recorded(k.indptr, k.indices, k.data, nd.diag, b, sv._s_float, sv._h_float, on,
                                              e, cold, False, CG_RTOL, self._max_cg, MAX_PDAS, status, z, mu,
                                              _NO_KE, ke)
        sol = conclude_coupled(k, nd.diag, b, sv._s_float, sv._h_float, scale_v, sv.kkt_tol, on, e, z, mu, status,
                               reductions, counts, False, restart, self._general, self._fallback, t0)
        y = port_currents(sol.e, nd.g_out, nd.out_row_sum, None if ports_at_zero else w)
        st = CircuitState(u, w, sol.e, None, sol.on, None, y, None, sol.report, b_src)
        if sol.e is e and not counts[2]:  # every row is the kernel's answer: keep K e of it for the phases
            st.__dict__["_ke"] = ke
        self._u_scale = (st, u_scale)
        return st

    def phases(self, held: CircuitState, k: int, w: np.ndarray, rows: np.ndarray | None = None) -> CircuitState:
        """The held operating point's sources repeated ``k`` times with port voltages ``w`` (k·B, q), V.

        Row r is sample r mod B of the held batch (of its samples ``rows``, when given: a
        re-measurement of some of them), started from that sample's active set and voltages,
        its nodal currents the held source currents plus ``w[r] G_out``; solved, checked and
        certified as one batch in one compiled call
        (:func:`~hil.circuit.coupled_kernels.held_phases_certified`).  A batch every row of which
        the kernel settled and whose certificate meets the tolerance is accepted at once (its
        report formed when first read); any other goes through :func:`conclude_coupled` as
        before (the general solver for unsettled rows or the whole batch, SolveError when
        nothing certifies).  The port currents ``y`` and the stacked source voltages ``u`` are
        formed when first read.
        """
        t0 = time.perf_counter()
        sv = self._solver
        nd = sv.nodal
        if rows is None:
            held_u, take = held.u, _ALL_ROWS
        else:
            held_u, take = held.u.take(rows, axis=0), np.ascontiguousarray(rows, dtype=np.int64)
        B = held_u.shape[0]
        R = k * B
        if not (type(w) is np.ndarray and w.dtype == np.float64 and w.flags.c_contiguous
                and w.shape == (R, self._ports.q)):
            w = self._ports.checked(w, R)[0]
        ref, u_scale = self._u_scale
        if ref is not held or rows is not None:
            u_scale = _abs_max(held_u)
        kk = nd.k_csr
        n = nd.n
        b, on, e = np.empty((R, n)), np.empty((R, n), dtype=np.bool_), np.empty((R, n))  # b, on, e: by the kernel
        status, z, mu, stats = np.empty(R, dtype=np.int64), np.empty((R, n)), np.empty((R, n)), np.empty(20)
        held_phases_certified(kk.indptr, kk.indices, kk.data, nd.diag, held.b_src, held.e, held.on,
                              held.__dict__.get("_ke", _NO_KE), take, w, w @ nd.g_out, sv._s_float, sv._h_float,
                              CG_RTOL, self._max_cg, MAX_PDAS, u_scale, sv._vref_max, b, on, e, status, z, mu, stats)
        stats = stats.tolist()
        if not stats[STAT_W_FINITE]:
            raise ValueError("source and port voltages must be finite")
        if stats[STAT_UNSETTLED] or not stats[STAT_WORST] <= sv.kkt_tol:
            # rows the kernel did not settle, or a certificate above tolerance: the general conclusion

            def restart() -> np.ndarray:  # the held active set of every row, for the general solver's start
                j = np.arange(R) % B
                return held.on[j if rows is None else take[j]]

            reductions = (*stats[STAT_LO_Z:STAT_N_ON], int(stats[STAT_N_ON]), bool(stats[STAT_FINITE]))
            counts = (int(stats[STAT_STEPS]), int(stats[STAT_CG]), int(stats[STAT_UNSETTLED]))
            sol = conclude_coupled(kk, nd.diag, b, sv._s_float, sv._h_float, stats[STAT_SCALE_V], sv.kkt_tol, on,
                                   e, z, mu, status, reductions, counts, True, restart, self._general,
                                   self._fallback, t0)
            e, on, report, certificate = sol.e, sol.on, sol.report, None
        else:
            report, certificate = None, (stats, z, mu, t0, time.perf_counter())
        # the held source voltages, once per phase: stacked when first read (``held_sources``); the
        # output conductances and their row sums of this moment: the snapshot makes the next
        # programming step write fresh arrays instead of these (copy on write)
        nd.input_snapshot()
        st = _HeldPhasesState.__new__(_HeldPhasesState)  # every field set here (cheaper than __init__)
        st.__dict__.update(_u=held_u if k == 1 else None, w=w, e=e, diode_current=None, on=on, g_d=None, _y=None,
                           i_src=None, _report=report, b_src=None, region=None, held_sources=(held_u, k),
                           _ports=(nd.g_out, nd.out_row_sum), _certificate=certificate)
        return st

    def _general(self):
        """The general masked solver of K as programmed now (for rows the kernel cannot finish)."""
        return self._solver.masked


class _HeldPhasesState(_PortCurrentsOnRead):
    """Phases of a held operating point whose solve report is formed when first read.

    The batch was certified when solved (every row settled by the kernel, the scaled KKT
    residuals within tolerance); the report only presents the numbers the kernel returned
    (``_certificate`` = (statistics, z, mu, start and end of the solve))."""

    @property
    def report(self) -> _MarginsOnRead:
        d = self.__dict__
        if d.get("_report") is None and d.get("_certificate") is not None:
            stats, z, mu, t0, t1 = d.pop("_certificate")  # stats: a list, indexed by the STAT_* constants
            steps = int(stats[STAT_STEPS])
            batch = z.shape[0]
            report = _MarginsOnRead.__new__(_MarginsOnRead)  # every field set here (cheaper than __init__)
            report.__dict__.update(
                converged=True, method="held-set→pdas" if steps > 1 else "held-set",
                iterations={"pdas": steps, "cg": int(stats[STAT_CG])}, batch=batch, max_step_v=0.0,
                kcl_residual_a=stats[STAT_KCL], kcl_residual_rel=stats[STAT_KCL_REL], kkt_primal=stats[STAT_PRIMAL],
                kkt_dual=stats[STAT_DUAL], kkt_complementarity=stats[STAT_COMP_REL],
                n_on_mean=int(stats[STAT_N_ON]) / (batch or 1), error_bound_v=None, wall_time_s=t1 - t0,
                failed_samples=[], note="", _margin_source=(z, mu, stats[STAT_SCALE_V], stats[STAT_SCALE_I]))
            d["_report"] = report
        return d.get("_report")

    @report.setter
    def report(self, value) -> None:
        self.__dict__["_report"] = value


def _no_start() -> None:
    """No warm active set: the general solver starts from its own unconstrained solve."""
    return None
