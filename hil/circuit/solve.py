"""Equilibrium of a circuit for a batch of source and port voltages.

    state = EquilibriumSolver(circuit).solve(u, w)

returns a :class:`CircuitState` (node voltages, diode states or incremental
conductances, port and source currents, and the solve report) or raises
:class:`~hil.circuit.report.SolveError`.  The solver keeps its factorizations, so
repeated solves on the same conductances (batches, perturbation phases) reuse them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hil.circuit.ideal import _residual, orientation_sign, solve_ideal, solve_ideal_diagonal
from hil.circuit.linsolve import MaskedSolver, solve_diagonal_shift, use_dense
from hil.circuit.model import Circuit
from hil.circuit.nodal import NodalSystem, port_currents
from hil.circuit.report import SolveError, SolveReport, certificate_note
from hil.circuit.shockley import NewtonTolerances, solve_shockley
from hil.circuit.held_set import solve_held_set
from hil.circuit.coupled import solve_ideal_coupled


@dataclass
class CircuitState:
    """Operating points of a batch (B samples).  Voltages in V, currents in A, conductances in S.

    Attributes:
        u: (B, p) source voltages.  w: (B, q) output-port voltages.
        e: (B, n) hidden-node voltages w.r.t. ground.
        diode_current: (B, n) current each diode draws out of its node.
        on: (B, n) bool, diode conducting (ideal: clamped; Shockley: forward current
            above 1000 I_s).
        g_d: (B, n) incremental diode conductance (Shockley) or None (ideal).
        y: (B, q) currents flowing from the network into the output ports.
        i_src: (B, p) currents delivered by the sources into the network.
        report: the solve report.
    """

    u: np.ndarray
    w: np.ndarray
    e: np.ndarray
    diode_current: np.ndarray
    on: np.ndarray
    g_d: np.ndarray | None
    y: np.ndarray
    i_src: np.ndarray
    report: SolveReport
    b_src: np.ndarray | None = None  # (B, n) G_in u, reused by later phases of the same inputs
    #: (B, n) region of each node for piecewise-linear registry elements (−1/−2 clamped low/high,
    #: ≥ 0 the linear segment); None otherwise.  Clamped nodes are shorted in the adjoint phase.
    region: np.ndarray | None = None

    @property
    def clamped(self) -> np.ndarray | None:
        """(B, n) nodes held at an element's clamp (ideal: diode conducting), or None when smooth."""
        if self.region is not None:
            return self.region < 0
        return self.on if self.g_d is None else None

    def node_voltages(self) -> np.ndarray:
        """All node voltages (B, p + n + q + 1) in topology order (ground last, 0 V)."""
        B = self.e.shape[0]
        return np.concatenate([self.u, self.e, self.w, np.zeros((B, 1))], axis=1)

    def branch_voltages(self, edges: np.ndarray) -> np.ndarray:
        """Voltage across each conductance (B, m) given topology edges (m, 2)."""
        v = self.node_voltages()
        return v[:, edges[:, 0]] - v[:, edges[:, 1]]


def source_currents_of(u: np.ndarray, e: np.ndarray, g_in: np.ndarray, g_in_col: np.ndarray) -> np.ndarray:
    """Currents (B, p) the sources deliver into the network, A: KCL at each source node.

    u (B, p) source voltages and e (B, n) hidden-node voltages in V; g_in (n, p) and its
    column sums g_in_col (p,) in S.
    """
    return u * g_in_col - e @ g_in


class EquilibriumSolver:
    """Solves one circuit (fixed conductances) for many input batches, reusing factorizations."""

    def __init__(self, circuit: Circuit, tolerances: NewtonTolerances | None = None, kkt_tol: float = 1e-12):
        self._template = circuit
        self._circuit: Circuit | None = circuit
        self.tol = tolerances or NewtonTolerances()
        self.kkt_tol = kkt_tol
        self.nodal = NodalSystem(circuit)
        d = circuit.diodes
        self._sign = orientation_sign(d.orientation)  # common diode orientation (0: mixed)
        n = circuit.n_hidden
        self._s_float = np.ascontiguousarray(np.broadcast_to(np.asarray(d.orientation, dtype=float), (n,)))
        self._h_float = np.ascontiguousarray(np.broadcast_to(np.asarray(d.v_ref, dtype=float), (n,)))
        self._vref_max = float(np.max(np.abs(d.v_ref), initial=0.0))
        self._vref_zero = self._vref_max == 0.0
        self._ports_at_zero = not np.any(circuit.output_voltage)  # normal operation drives no port current
        #: whether a warm start (a previous state) can speed a solve up; uncoupled ideal diodes
        #: are solved in closed form and linear networks directly, so they never use one
        self.warm_starts = d.element is not None or not (d.is_linear or (d.is_ideal and not self.nodal.coupled))
        #: coupled ideal diodes: solve with the compiled PDAS–CG kernel first (False: the general
        #: active-set solver only, e.g. to compare the two)
        self.compiled_coupled = True
        self._matrices()

    def _matrices(self) -> None:
        """(Re)derive the solver's matrices from the nodal system (values only, same structure)."""
        nd = self.nodal
        self.k_sparse = nd.k_csc
        self.k_dense = nd.k_dense() if nd.coupled and use_dense(nd.n) else None
        self._masked: MaskedSolver | None = None  # built on first use (uncoupled training never solves through it)
        self._lambda_min: float | None = None
        self._g_in_col = nd.in_col_sum  # (p,) total conductance at each source, S
        self._g_out_row = nd.out_row_sum  # (q,) total conductance at each port, S

    @property
    def masked(self) -> MaskedSolver:
        """The masked linear solver of K as currently programmed (built on first use after programming)."""
        if self._masked is None:
            nd = self.nodal
            self._masked = MaskedSolver(self.k_dense, self.k_sparse, diagonal=None if nd.coupled else nd.diag)
        return self._masked

    @property
    def circuit(self) -> Circuit:
        """The circuit with the conductances currently programmed (built on first access)."""
        if self._circuit is None:
            self._circuit = self.nodal.circuit(self._template)
        return self._circuit

    def program(self, g: np.ndarray) -> int:
        """Set the conductances (m,) in siemens without rebuilding the structure; returns how many changed.

        Factorizations and cached sets are dropped only when something changed.
        """
        changed = self.nodal.program(g)
        if changed:
            self._circuit = None
            self._matrices()
        return changed

    # ---- inputs --------------------------------------------------------------
    def _prepare(self, u, w, warm=None):
        c, nd = self._template, self.nodal
        if warm is not None and warm.u is u and warm.b_src is not None:
            b_src = warm.b_src  # same source voltages as the held operating point (already checked)
        else:
            b_src = None
        if not (isinstance(u, np.ndarray) and u.ndim == 2 and u.dtype == np.float64):
            u = np.atleast_2d(np.asarray(u, dtype=float))
        if u.shape[1] != c.n_sources:
            raise ValueError(f"expected {c.n_sources} source voltages per sample, got {u.shape[1]}")
        B = u.shape[0]
        if w is None:  # the configured port voltages (validated finite with the circuit)
            w = np.repeat(c.output_voltage[None, :], B, axis=0)
            ports_at_zero = self._ports_at_zero
        else:
            w = np.atleast_2d(np.asarray(w, dtype=float))
            if w.shape != (B, c.n_outputs):
                raise ValueError(f"expected output-port voltages of shape {(B, c.n_outputs)}, got {w.shape}")
            if not np.isfinite(w).all():
                raise ValueError("source and port voltages must be finite")
            ports_at_zero = not w.any()
        if b_src is None:
            if not np.isfinite(u).all():
                raise ValueError("source and port voltages must be finite")
            b_src = u @ nd.g_in.T
        b = b_src if ports_at_zero else b_src + w @ nd.g_out
        return u, w, b, b_src

    def _voltage_scale(self, u, w, ports_at_zero: bool = False) -> float:
        """The voltage scale of a batch (V): the largest source, port or reference voltage."""
        u_max = max(float(u.max()), -float(u.min())) if u.size else 0.0
        w_max = 0.0 if ports_at_zero or not w.size else max(float(w.max()), -float(w.min()))
        return max(u_max, w_max, self._vref_max, 1e-300)

    # ---- solves ------------------------------------------------------------------
    def ideal_voltages(self, b: np.ndarray, h: np.ndarray, warm_on=None) -> np.ndarray:
        """Ideal-diode node voltages for nodal currents ``b`` and clamp levels ``h`` (V)."""
        d = self._template.diodes
        scale = max(float(np.max(np.abs(h), initial=0.0)), float(np.max(np.abs(b), initial=0.0) / self.nodal.diag.max()), 1e-300)
        if not self.nodal.coupled:
            return solve_ideal_diagonal(self.nodal.diag, b, d.orientation, h, scale, tol=1e-9).e
        return solve_ideal(self.masked, b, d.orientation, h, warm_on, scale, tol=1e-9, fallback=self._pr_fallback_for(h)).e

    def _laplacian_lower_bound(self) -> float:
        """A lower bound on λ_min(K) (S) for the a-posteriori error bound.

        Exact for uncoupled (diagonal K) and small dense networks; otherwise Gershgorin's
        bound min_k (K_kk − Σ_l |K_kl|) = the smallest conductance from a node to fixed
        potentials (cheap, valid, looser), and only when that is 0 an eigen-solve.
        """
        nd = self.nodal
        if not nd.coupled:
            return float(nd.diag.min())
        if self.k_dense is not None:
            return float(np.linalg.eigvalsh(self.k_dense)[0])
        grounded = float((nd.diag - nd.hh_row_sum).min())
        if grounded > 0:
            return grounded
        from hil.circuit.shockley import _lambda_min

        return _lambda_min(None, self.k_sparse)

    def _shockley_start(self, b: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Piecewise-linear starting point for Newton; only a guess, so a failure falls back to h."""
        try:
            return self.ideal_voltages(b, h)
        except SolveError:
            return np.broadcast_to(h, b.shape).copy()

    def _pr_fallback_for(self, h):
        def fallback(b_sub, on_sub):
            from hil.circuit.mon import peaceman_rachford_nodal

            z = peaceman_rachford_nodal(self.circuit, b_sub, h, tol=1e-13)
            return self.circuit.diodes.orientation * (z - h) <= 0
        return fallback

    def solve(self, u, w=None, warm: CircuitState | None = None, injected: np.ndarray | None = None,
              source_currents: bool = True) -> CircuitState:
        """Equilibrium for source voltages ``u`` (B, p) and port voltages ``w`` (B, q), volts.

        ``warm`` (a previous state of the same batch size) seeds the active set or the
        Newton iterate, e.g. for the perturbation phases of hardware linearization.
        ``injected`` (B, n): currents in A fed into the hidden nodes by ideal current sources
        (a bench's injection at buffered nodes); they add to the nodal source currents.
        ``source_currents=False`` leaves ``i_src`` as None (a caller that forms it when it
        is needed, from ``u``, ``e`` and :meth:`NodalSystem.input_snapshot`) and, for
        uncoupled ideal diodes, ``diode_current`` too (−s·mu, from nothing a board reads).
        """
        nd = self.nodal
        ports_at_zero = self._ports_at_zero if w is None else None
        u, w, b, b_src = self._prepare(u, w, warm)
        if ports_at_zero is None:
            ports_at_zero = not w.any()
        if injected is not None:  # fixed currents of this solve only: a new b_src, never the held one
            b_src, b = b_src + injected, b + injected
        d = self._template.diodes
        if d.element is not None:
            return self._solve_element(u, w, b, b_src, warm)
        if d.is_linear:
            t0 = time.perf_counter()
            e = self.masked.solve(np.zeros(b.shape, bool), d.v_ref, b)
            r = _residual(self.k_dense if self.k_dense is not None else self.k_sparse, e, b)
            on, g_d, diode_current = np.zeros(b.shape, bool), None, np.zeros_like(b)
            scale = max(float(np.abs(b).max(initial=0.0)), float(np.abs(nd.diag * e).max(initial=0.0)), 1e-300)
            rel = float(np.abs(r).max(initial=0.0)) / scale
            report = SolveReport(bool(rel <= self.kkt_tol), "linear", {"linear": 1}, batch=b.shape[0],
                                 kcl_residual_a=float(np.abs(r).max(initial=0.0)), kcl_residual_rel=rel,
                                 wall_time_s=time.perf_counter() - t0)
            if not report.converged:
                report.note = f"KCL residual {rel:.1e} relative exceeds {self.kkt_tol:.0e}" if np.isfinite(e).all() \
                    else certificate_note(float("inf"), self.kkt_tol)  # NaN: a floating node
                raise SolveError("linear network solve not certified", report)
        elif d.is_ideal and not nd.coupled:
            # Uncoupled nodes: each node is its own one-variable LCP, solved in closed form
            # and certified in the same pass (one fused kernel for the whole batch).
            sol = solve_ideal_diagonal(nd.diag, b, self._s_float, self._h_float, self._voltage_scale(u, w, ports_at_zero),
                                       tol=self.kkt_tol, sign=self._sign, h_zero=self._vref_zero)
            e, on, g_d = sol.e, sol.on, None
            if not source_currents:
                diode_current = None
            else:
                diode_current = -sol.mu if self._sign == 1 else -d.orientation * sol.mu
            report = sol.report
        elif d.is_ideal:
            warm_on = warm.on if warm is not None and warm.on.shape == b.shape else None
            sol = None
            if self.compiled_coupled:
                # PDAS with CG per sample in one compiled kernel; the general solver (dense or
                # sparse LU, batched CG) for whatever it cannot finish or certify (hil.circuit.coupled).
                sol = solve_ideal_coupled(nd.k_csr, nd.diag, b, self._s_float, self._h_float,
                                          self._voltage_scale(u, w), self.kkt_tol, warm_on,
                                          warm.e if warm_on is not None else None, self.masked,
                                          self._pr_fallback_for(d.v_ref), held=warm_on is not None and warm.b_src is b_src)
            elif warm_on is not None and warm.b_src is b_src:  # held sources, new port voltages: phases
                sol = solve_held_set(self.masked, b, (w - warm.w) @ nd.g_out, warm.e, warm_on, d.orientation,
                                     d.v_ref, self._voltage_scale(u, w), self.kkt_tol, self._pr_fallback_for(d.v_ref))
            if sol is None:
                sol = solve_ideal(
                    self.masked, b, d.orientation, d.v_ref, warm_on,
                    self._voltage_scale(u, w), tol=self.kkt_tol, fallback=self._pr_fallback_for(d.v_ref),
                )
            e, on, g_d = sol.e, sol.on, None
            diode_current = -d.orientation * sol.mu
            report = sol.report
        else:
            # Uncoupled nodes start from their exact per-node solution instead (no e0).
            e0 = warm.e if warm is not None and warm.e.shape == b.shape and nd.coupled else None
            if e0 is not None and warm.g_d is not None and warm.w.shape == w.shape and np.any(w != warm.w):
                # Predictor: the linear response of the held operating point to the port change
                # (one solve with the held Jacobian); Newton then only corrects the curvature.
                e0 = e0 + solve_diagonal_shift(self.k_dense, self.k_sparse, warm.g_d, (w - warm.w) @ nd.g_out)
            if self._lambda_min is None:
                self._lambda_min = self._laplacian_lower_bound()
            sol = solve_shockley(self.k_dense, self.k_sparse, d, b, self._shockley_start, e0, self.tol,
                                 self._lambda_min, diag=nd.diag)
            e, g_d, diode_current = sol.e, sol.g_d, sol.current
            on = -d.orientation * diode_current > 1e3 * d.i_s_at_temperature
            report = sol.report
        y = port_currents(e, nd.g_out, self._g_out_row, None if ports_at_zero else w)
        i_src = source_currents_of(u, e, nd.g_in, self._g_in_col) if source_currents else None
        return CircuitState(u, w, e, diode_current, on, g_d, y, i_src, report, b_src)


    def adjoint_voltages(self, state: CircuitState, rhs: np.ndarray) -> np.ndarray:
        """Node voltages ê (B, n), V, of the linearized circuit at ``state`` for nodal currents ``rhs`` (B, n), A.

        Sources shorted and elements frozen: a clamped node (ideal diode conducting, or a
        piecewise-linear element at a clamp) is shorted to its reference, a node on a segment
        is loaded by that segment's conductance, a smooth element by its incremental conductance.
        ``rhs`` is G_outᵀ ŵ for port drives ŵ plus any currents injected into the hidden nodes.
        """
        d = self._template.diodes
        rhs = np.atleast_2d(rhs)
        if d.element is not None:
            from hil.circuit.element_solve import solve_shifted

            K = self.k_dense if self.k_dense is not None else self.k_sparse
            rhs = np.broadcast_to(rhs, state.e.shape)
            clamped = state.clamped if state.clamped is not None else np.zeros(state.e.shape, bool)
            return solve_shifted(K, clamped, np.zeros_like(rhs), state.g_d, rhs)
        if d.is_ideal or d.is_linear:
            return self.masked.solve(state.on, np.zeros(self.nodal.n), rhs)
        return solve_diagonal_shift(self.k_dense, self.k_sparse, state.g_d, rhs)

    def _solve_element(self, u, w, b, b_src, warm) -> CircuitState:
        """Registry elements (:mod:`hil.circuit.laws`): generic active-set or Newton solve."""
        from hil.circuit.element_solve import solve_piecewise, solve_smooth

        nd, el = self.nodal, self._template.diodes.element
        K = self.k_dense if self.k_dense is not None else self.k_sparse
        if el.piecewise_linear:
            warm_region = warm.region if warm is not None and warm.region is not None else None
            scale = max(self._voltage_scale(u, w), float(np.max(np.abs(el.reference_voltages()), initial=0.0)))
            e, region, g_d, report = solve_piecewise(K, b, el, scale, tol=self.kkt_tol, warm_region=warm_region)
            f, _ = el.law().current(e)
            f = np.where(region < 0, b - (e @ K.T if isinstance(K, np.ndarray) else (K @ e.T).T), f)
            on = (region < 0) | (g_d > 0)
        else:
            e0 = warm.e if warm is not None and warm.e.shape == b.shape else None
            e, region, g_d, report = solve_smooth(K, b, el, e0, self.tol.reltol, self.tol.vntol, self.tol.abstol)
            f, _ = el.current(e)
            on = np.abs(f) > 1e3 * np.abs(np.asarray(getattr(getattr(el, "bank", None), "i_s", 1e-12)))
        y = port_currents(e, nd.g_out, self._g_out_row, w)
        i_src = u * self._g_in_col - e @ nd.g_in
        return CircuitState(u, w, e, f, on, g_d, y, i_src, report, b_src, region)


def solve(circuit: Circuit, u, w=None) -> CircuitState:
    """One-shot equilibrium solve (see :class:`EquilibriumSolver`)."""
    return EquilibriumSolver(circuit).solve(u, w)
