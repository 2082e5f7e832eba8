"""Certified measurements of uncoupled ideal-diode networks with the fewest Python-level steps.

Without hidden↔hidden conductances K is diagonal and every hidden node is a one-variable
complementarity problem, solved in closed form and certified by
:func:`hil.circuit.ideal.solve_ideal_diagonal` (one compiled pass: e = clamp(b/K_kk) and the
primal, dual, complementarity and KCL residuals of the KKT certificate for every node of
every sample).  :class:`UncoupledIdealSolves` is what a simulated board calls for such a
network instead of the general :meth:`~hil.circuit.solve.EquilibriumSolver.solve`:

* an operating point forms the nodal source currents b = G_in u once (a (B × p)(p × n)
  product) and keeps them with the state;
* the perturbation phases of a held operating point (the same inputs, repeated k times,
  with new port voltages) reuse those currents: row r solves b[r mod B] + (w G_out)[r],
  so the phases need no product with the sources and no tiled copy of b; for every held
  sample (the ± phases of a gradient) the port check, w G_out, the closed form and the scaled
  certificate are one compiled call (:func:`hil.kernels.diagonal_phases_kernel`), and the
  solve report is formed when first read.

Both return the same :class:`~hil.circuit.solve.CircuitState` as the general solve, with
source currents and diode currents left to be formed when read (``i_src`` and
``diode_current`` None; a board forms ``i_src`` from ``u``, ``e`` and its input snapshot).
Every solve is certified and raises :class:`~hil.circuit.report.SolveError` when the
certificate fails, exactly as the general path does.
"""

from __future__ import annotations

import time

import numpy as np

from hil.circuit.ideal import _NO_ROWS, _diagonal_solution, _MarginsOnRead, solve_ideal_diagonal
from hil.circuit.nodal import port_currents
from hil.circuit.report import SolveError, certificate_note
from hil.circuit.solve import CircuitState, EquilibriumSolver
from hil.kernels import diagonal_phases_kernel, finite_abs_max, source_voltages_kernel


def source_gather(source_matrix: np.ndarray, offset: np.ndarray):
    """(input index, sign ±1/0, offset) per source when every source follows one input with
    sign ±1 (plus a fixed offset) or is a rail (sign 0, the offset), else None."""
    m = np.asarray(source_matrix, dtype=float)
    if m.ndim != 2 or not np.all(np.count_nonzero(m, axis=1) <= 1):
        return None
    sign = m.sum(axis=1)
    if not np.all(np.isin(sign, (-1.0, 0.0, 1.0))):
        return None
    idx = np.argmax(np.abs(m), axis=1).astype(np.int64)
    return idx, np.ascontiguousarray(sign), np.ascontiguousarray(np.asarray(offset, dtype=float))


class InputSourceMap:
    """Logical inputs x (B, n_inputs) to source voltages u = x Mᵀ + offset (B, p), volts, with max |u|
    and the finiteness check in the same compiled pass when every source follows one input or is
    a rail (the lean measurement paths of both uncoupled and coupled networks use it)."""

    def __init__(self, source_matrix: np.ndarray, source_offset: np.ndarray):
        """``source_matrix`` (p, n_inputs), ``source_offset`` (p,) V."""
        self.matrix = np.asarray(source_matrix, dtype=float)
        self.offset = np.asarray(source_offset, dtype=float)
        self._gather = source_gather(self.matrix, self.offset)

    def voltages(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(u (B, p) V, max |u| V) for inputs ``x``; ValueError for a non-finite input."""
        if self._gather is not None:
            idx, sign, offset = self._gather
            u = np.empty((x.shape[0], sign.shape[0]))
            top, finite = source_voltages_kernel(x, idx, sign, offset, u)
        else:
            u = x @ self.matrix.T + self.offset
            finite = bool(np.isfinite(x).all())
            top = _abs_max(u)
        if not finite:
            raise ValueError("source and port voltages must be finite")
        return u, top


class PortVoltages:
    """The output-port voltages of a lean measurement: the configured ones (V) when none are
    given, or given ones checked (float, C-contiguous, shape (rows, q), finite) with max |w|."""

    def __init__(self, output_voltage: np.ndarray):
        """``output_voltage`` (q,) V: the configured port voltages."""
        self.configured = np.asarray(output_voltage, dtype=float)
        self.at_zero = not np.any(self.configured)
        self.q = self.configured.shape[0]
        self._scale = _abs_max(self.configured)

    def default(self, rows: int) -> tuple[np.ndarray, float, bool]:
        """(w (rows, q) at the configured voltages, max |w| V, whether every port is at 0 V)."""
        if self.at_zero:
            return np.zeros((rows, self.q)), 0.0, True
        w = np.empty((rows, self.q))
        w[:] = self.configured
        return w, self._scale, False

    def checked(self, w, rows: int) -> tuple[np.ndarray, float]:
        """``w`` as a float (rows, q) array of finite port voltages (V) and max |w|, or ValueError."""
        if not (type(w) is np.ndarray and w.dtype == np.float64 and w.ndim == 2 and w.flags.c_contiguous):
            w = np.ascontiguousarray(np.atleast_2d(np.asarray(w, dtype=float)))
        if w.shape != (rows, self.q):
            raise ValueError(f"expected output-port voltages of shape {(rows, self.q)}, got {w.shape}")
        top, finite = finite_abs_max(w)
        if not finite:
            raise ValueError("source and port voltages must be finite")
        return w, top


def _abs_max(a: np.ndarray) -> float:
    """max |a| (0 for an empty array)."""
    return max(float(a.max()), -float(a.min())) if a.size else 0.0


class UncoupledIdealSolves:
    """Operating points and held-source phases of an uncoupled ideal-diode network (see module doc).

    Reads the conductances from ``solver.nodal`` at every call, so it follows programming.
    """

    def __init__(self, solver: EquilibriumSolver, source_matrix: np.ndarray | None = None,
                 source_offset: np.ndarray | None = None):
        """``source_matrix`` (p, n_inputs) and ``source_offset`` (p,) V map inputs to source
        voltages (u = x Mᵀ + offset) for :meth:`measure_inputs`."""
        d = solver.circuit.diodes
        if not d.is_ideal or d.element is not None or solver.nodal.coupled:
            raise ValueError("UncoupledIdealSolves needs ideal diodes without hidden↔hidden conductances")
        self._solver = solver
        self._ports = PortVoltages(solver.circuit.output_voltage)
        self._u_scale: tuple[CircuitState | None, float] = (None, 0.0)  # (held state, max |u|)
        self._sources = None if source_matrix is None else InputSourceMap(source_matrix, source_offset)

    def measure_inputs(self, x: np.ndarray, w: np.ndarray | None = None) -> CircuitState:
        """Equilibrium for logical inputs ``x`` (B, n_inputs) through the source map, volts; ValueError
        for a non-finite input.  The source voltages, their scale and the finiteness check are one
        compiled pass when every source follows one input or is a rail."""
        u, top = self._sources.voltages(x)
        return self.operating_point(u, w, u_scale=top)

    def _certified(self, b: np.ndarray, scale_v: float, delta: np.ndarray | None = None):
        """The certified closed-form solve of ``b`` (or of b[r mod B] + delta[r]), scale ``scale_v`` V."""
        sv = self._solver
        if not b.size or (delta is not None and not delta.size):  # an empty batch: the general entry point
            return solve_ideal_diagonal(sv.nodal.diag, b, sv._s_float, sv._h_float, max(scale_v, sv._vref_max, 1e-300),
                                        tol=sv.kkt_tol, sign=sv._sign, h_zero=sv._vref_zero, delta=delta)
        return _diagonal_solution(sv.nodal.diag, b, sv._s_float, sv._h_float, max(scale_v, sv._vref_max, 1e-300),
                                 sv.kkt_tol, sv._sign == 1 and sv._vref_zero, _NO_ROWS if delta is None else delta)

    def operating_point(self, u: np.ndarray, w: np.ndarray | None = None, u_scale: float | None = None) -> CircuitState:
        """Equilibrium for finite source voltages ``u`` (B, p) and port voltages ``w`` (B, q; default
        the configured ones), volts; ``u_scale`` is max |u| when the caller knows it."""
        nd = self._solver.nodal
        B = u.shape[0]
        b_src = u @ nd.g_in.T
        if w is None:
            w, w_scale, ports_at_zero = self._ports.default(B)
        else:
            w, w_scale = self._ports.checked(w, B)
            ports_at_zero = w_scale == 0.0
        b = b_src if ports_at_zero else b_src + w @ nd.g_out
        if u_scale is None:
            u_scale = _abs_max(u)
        sol = self._certified(b, u_scale if ports_at_zero else max(u_scale, w_scale))
        y = port_currents(sol.e, nd.g_out, nd.out_row_sum, None if ports_at_zero else w)
        st = CircuitState(u, w, sol.e, None, sol.on, None, y, None, sol.report, b_src)
        self._u_scale = (st, u_scale)
        return st

    def phases(self, held: CircuitState, k: int, w: np.ndarray, rows: np.ndarray | None = None) -> CircuitState:
        """The held operating point's sources repeated ``k`` times with port voltages ``w`` (k·B, q), V.

        Row r is sample r mod B of the held batch (of its samples ``rows``, when given: a
        re-measurement of some of them): its nodal currents are the held source currents plus
        ``w[r] G_out``, solved and certified as one batch.  The port currents
        ``y`` are formed when first read (an ``hl`` gradient reads only the node voltages).
        """
        nd = self._solver.nodal
        if held.b_src.size and isinstance(w, np.ndarray) and w.dtype == np.float64 and w.flags.c_contiguous:
            if rows is None and w.shape == (k * held.b_src.shape[0], self._ports.q):
                return self._held_phases(held, k, w)
            if rows is not None and rows.size and w.shape == (k * rows.size, self._ports.q):  # some held samples
                held_u = held.u.take(rows, axis=0)  # (``take``: a quarter of the cost of fancy indexing)
                return self._held_phases(held, k, w, (held.b_src.take(rows, axis=0), held_u, finite_abs_max(held_u)[0]))
        held_u, b_src = (held.u, held.b_src) if rows is None else (held.u[rows], held.b_src[rows])
        B = held_u.shape[0]
        w, w_scale = self._ports.checked(w, k * B)
        ref, u_scale = self._u_scale
        if ref is not held or rows is not None:
            u_scale = _abs_max(held_u)
        sol = self._certified(b_src, max(u_scale, w_scale), delta=w @ nd.g_out)
        # the held source voltages, once per phase: stacked when first read (``held_sources``)
        st = _PortCurrentsOnRead(held_u if k == 1 else None, w, sol.e, None, sol.on, None, None, None, sol.report,
                                 None)
        st.__dict__["held_sources"] = (held_u, k)
        # the output conductances and their row sums of this moment: the snapshot makes the next
        # programming step write fresh arrays instead of these (copy on write)
        nd.input_snapshot()
        st.__dict__["_ports"] = (nd.g_out, nd.out_row_sum)
        return st

    def _held_phases(self, held: CircuitState, k: int, w: np.ndarray, some=None) -> CircuitState:
        """:meth:`phases` of every held sample (or, with ``some`` = (their source currents b_src (K, n)
        A, source voltages u (K, p) V, max |u| V), of K held samples), ``w`` a C-contiguous float
        (k·B, q) (or (k·K, q)) array: the port check, w G_out, the closed-form solve and its scaled
        KKT certificate in one compiled call (:func:`hil.kernels.diagonal_phases_kernel`); raises
        ValueError for non-finite port voltages and :class:`~hil.circuit.report.SolveError` when the
        certificate fails, as :meth:`phases` does.  The solve report is formed when first read."""
        t0 = time.perf_counter()
        sv = self._solver
        nd = sv.nodal
        if some is None:
            b_src, held_u = held.b_src, held.u
            ref, u_scale = self._u_scale
            if ref is not held:
                u_scale = _abs_max(held_u)
        else:
            b_src, held_u, u_scale = some
        R, n = w.shape[0], nd.diag.shape[0]
        e, mu, on = np.empty((R, n)), np.empty((R, n)), np.empty((R, n), dtype=np.bool_)
        relu = sv._sign == 1 and sv._vref_zero
        z = e if relu else np.empty((R, n))
        cert = diagonal_phases_kernel(b_src, w, nd.g_out, nd.diag, sv._s_float, sv._h_float,
                                      max(u_scale, sv._vref_max, 1e-300), e, _NO_ROWS if relu else z, mu, on)
        if not cert[0]:
            raise ValueError("source and port voltages must be finite")
        st = _HeldPhaseState.__new__(_HeldPhaseState)  # (cheaper than __init__; the fields without a
        # value here are the class's None, u, y and the report are formed when first read)
        d = st.__dict__
        d.update(w=w, e=e, on=on, _certificate=(cert, R, z, mu, time.perf_counter() - t0, sv.kkt_tol))
        if not cert[7] <= sv.kkt_tol:
            report = st.report
            report.note = certificate_note(cert[7], sv.kkt_tol)
            raise SolveError("ideal-diode equilibrium not certified: " + report.note, report)
        d["held_sources"] = (held_u, k)
        nd.input_snapshot()  # (see :meth:`phases`)
        d["_ports"] = (nd.g_out, nd.out_row_sum)
        return st


class _PortCurrentsOnRead(CircuitState):
    """A state whose port currents y = e G_outᵀ − (Σ G_out) w are formed when first read, from the
    output conductances of the moment of the solve (a later programming step writes into
    fresh arrays or leaves these unchanged until the board forgets the state).

    Its source voltages are the held ones repeated: ``held_sources`` = (held u (B, p), k),
    and ``u`` is stacked from them when first read (an ``hl`` gradient never reads it)."""

    @property
    def u(self) -> np.ndarray:
        d = self.__dict__
        if d.get("_u") is None and "held_sources" in d:
            held_u, k = d["held_sources"]
            d["_u"] = held_u if k == 1 else np.concatenate((held_u,) * k)
        return d.get("_u")

    @u.setter
    def u(self, value) -> None:
        self.__dict__["_u"] = value

    @property
    def y(self) -> np.ndarray:
        d = self.__dict__
        if d.get("_y") is None and "_ports" in d:
            g_out, row_sum = d.pop("_ports")
            d["_y"] = port_currents(self.e, g_out, row_sum, self.w)
        return d.get("_y")

    @y.setter
    def y(self, value) -> None:
        self.__dict__["_y"] = value


class _HeldPhaseState(_PortCurrentsOnRead):
    """A :class:`_PortCurrentsOnRead` of :meth:`UncoupledIdealSolves._held_phases` whose solve report
    is formed when first read, from the certificate the kernel computed (which was checked at once)."""

    diode_current = g_d = i_src = b_src = region = None  # (ideal diodes, held sources: never set per instance)

    @property
    def report(self):
        d = self.__dict__
        if d.get("_report") is None and "_certificate" in d:
            cert, rows, z, mu, seconds, tol = d.pop("_certificate")
            _, scale_v, scale_i, primal, dual, kcl_rel, complementarity, worst, kcl_abs, n_on = cert
            report = _MarginsOnRead(
                converged=bool(worst <= tol), method="pdas", iterations={"pdas": 1}, batch=rows,
                kcl_residual_a=kcl_abs, kcl_residual_rel=kcl_rel, kkt_primal=primal, kkt_dual=dual,
                kkt_complementarity=complementarity, n_on_mean=n_on / rows, wall_time_s=seconds)
            report.__dict__["_margin_source"] = (z, mu, scale_v, scale_i)
            d["_report"] = report
        return d.get("_report")

    @report.setter
    def report(self, value) -> None:
        self.__dict__["_report"] = value
