"""The monotone operator equilibrium network (MON) view of a resistor–diode circuit.

With diode orientation s (S = diag(s)), reference h and normalising resistance a (Ω),
z = S (e - h) >= 0 obeys (physics.md §1.3–1.4, §1.6)

    z = σ_a(W z + U u + bias),   W = I - a S L S,   U = a S G_in,
    bias = a S (G_outᵀ w - L h),   y = C z + d,   C = G_out S,   d = G_out h - (G_out 1) ⊙ w,

where σ_a is ReLU for ideal diodes and the resolvent (I + a F̃)⁻¹ of the diode law
F̃(z) = S F(S z + h) otherwise.  The fixed point does not depend on a.  Forward–backward
and Peaceman–Rachford splitting solve it digitally; they are test oracles for the
circuit solvers and the fallback of the active-set solver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.circuit.elements import DiodeBank
from hil.circuit.model import Circuit
from hil.circuit.report import SolveError, SolveReport


@dataclass(frozen=True)
class MONView:
    """MON parameters of a circuit at normalising resistance ``alpha_ohm``."""

    W: np.ndarray
    U: np.ndarray
    bias: np.ndarray  # (B, n) or (n,)
    C: np.ndarray
    d: np.ndarray
    alpha_ohm: float
    diodes: DiodeBank

    def activation(self, x: np.ndarray, step: float = 1.0) -> np.ndarray:
        """Resolvent σ of (step·α)×co-content: ReLU for ideal diodes, scalar Newton otherwise."""
        if self.diodes.element is not None:
            return self.diodes.element.activation(x, step * self.alpha_ohm)[0]
        if self.diodes.is_ideal:
            return np.maximum(x, 0.0)
        if self.diodes.is_linear:
            return x
        return _smooth_resolvent(self.diodes, x, step * self.alpha_ohm)

    def activation_slope(self, x: np.ndarray) -> np.ndarray:
        """σ'_a(x): 1[x > 0] for ideal diodes, 1/(1 + a g̃(σ(x))) otherwise."""
        if self.diodes.element is not None:
            return self.diodes.element.activation(x, self.alpha_ohm)[1]
        if self.diodes.is_ideal:
            return (x > 0).astype(float)
        if self.diodes.is_linear:
            return np.ones_like(x)
        z = _smooth_resolvent(self.diodes, x, self.alpha_ohm)
        _, g = _f_tilde(self.diodes, z)
        return 1.0 / (1.0 + self.alpha_ohm * g)


def _f_tilde(d: DiodeBank, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = d.orientation
    f, g = d.node_current(s * z + d.v_ref)
    return s * f, g


def _smooth_resolvent(d: DiodeBank, x: np.ndarray, a: float) -> np.ndarray:
    """Solve z + a F̃(z) = x per element (monotone scalar equations, bracketed Newton)."""
    z = np.where(x > 0, x, 0.0)
    lo = np.minimum(x, 0.0) - 0.0
    hi = np.maximum(x, 0.0)
    for _ in range(200):
        f, g = _f_tilde(d, z)
        h = z + a * f - x
        lo = np.where(h < 0, z, lo)
        hi = np.where(h > 0, z, hi)
        step = h / (1.0 + a * g)
        new = z - step
        outside = (new <= lo) | (new >= hi)
        new = np.where(outside, 0.5 * (lo + hi), new)
        if np.all(np.abs(new - z) <= 1e-15 * (1.0 + np.abs(z))):
            return new
        z = new
    raise SolveError("diode resolvent did not converge", SolveReport(False, "resolvent"))


def mon_view(circuit: Circuit, alpha_ohm: float, w: np.ndarray | None = None) -> MONView:
    """Map a circuit to (W, U, bias, readout) for normalising resistance ``alpha_ohm`` > 0."""
    if not (np.isfinite(alpha_ohm) and alpha_ohm > 0):  # NaN would pass `<= 0` and iterate to max_iter
        raise ValueError(f"alpha_ohm must be a finite resistance > 0 (ohm), got {alpha_ohm!r}")
    c = circuit
    n = c.n_hidden
    generic = c.diodes.element is not None  # registry elements: z = e, σ_a from the element
    s = np.ones(n) if generic else c.diodes.orientation.astype(float)
    h = np.zeros(n) if generic else c.diodes.v_ref
    L = c.laplacian_dense()
    SLS = s[:, None] * L * s[None, :]
    W = np.eye(n) - alpha_ohm * SLS
    U = alpha_ohm * s[:, None] * c.g_in
    w = np.broadcast_to(c.output_voltage, (1, c.n_outputs)) if w is None else np.atleast_2d(w)
    bias = alpha_ohm * s * (w @ c.g_out - L @ h)
    C = c.g_out * s[None, :]
    d = c.g_out @ h - c.g_out.sum(axis=1) * w
    return MONView(W, U, bias, C, d, float(alpha_ohm), c.diodes)


def _stop(z_new, z_old, tol):
    return np.linalg.norm(z_new - z_old, axis=1) <= tol * (1.0 + np.linalg.norm(z_new, axis=1))


def forward_backward(view: MONView, u: np.ndarray, tol: float = 1e-13, max_iter: int = 200_000, step: float | None = None):
    """Forward–backward splitting z ← σ(z − τ((I − W) z − U u − bias)); returns (z, report).

    Default step τ = 2 / (λ_min + λ_max) of I − W (symmetric for an RD network).
    """
    A = np.eye(view.W.shape[0]) - view.W
    if step is None:
        ev = np.linalg.eigvalsh(0.5 * (A + A.T))
        step = 2.0 / (ev[0] + ev[-1])
    c = np.atleast_2d(u) @ view.U.T + view.bias
    z = np.zeros_like(c)
    for it in range(1, max_iter + 1):
        z_new = view.activation(z - step * (z @ A.T - c), step)
        if np.all(_stop(z_new, z, tol)):
            return z_new, SolveReport(True, "mon-fb", {"fb": it}, batch=z.shape[0])
        z = z_new
    raise SolveError("forward–backward did not converge", SolveReport(False, "mon-fb", {"fb": max_iter}, batch=z.shape[0]))


def peaceman_rachford(view: MONView, u: np.ndarray, tol: float = 1e-13, max_iter: int = 100_000, step: float = 1.0):
    """Peaceman–Rachford splitting with V = (I + τ(I − W))⁻¹ factored once; returns (z, report)."""
    n = view.W.shape[0]
    A = np.eye(n) - view.W
    c = np.atleast_2d(u) @ view.U.T + view.bias
    z, it = _pr_iterate(A, c, lambda x: view.activation(x, step), step, tol, max_iter)
    if z is None:
        raise SolveError("Peaceman–Rachford did not converge", SolveReport(False, "mon-pr", {"pr": max_iter}, batch=c.shape[0]))
    return z, SolveReport(True, "mon-pr", {"pr": it}, batch=c.shape[0])


def _pr_iterate(A, c, prox, step, tol, max_iter):
    n = A.shape[0]
    V = np.linalg.inv(np.eye(n) + step * A)
    xi = np.zeros_like(c)
    z = prox(xi)
    for it in range(1, max_iter + 1):
        xh = 2.0 * z - xi
        zh = (xh + step * c) @ V.T
        xi = 2.0 * zh - xh
        z_new = prox(xi)
        if np.all(_stop(z_new, z, tol)):
            return z_new, it
        z = z_new
    return None, max_iter


def peaceman_rachford_nodal(circuit: Circuit, b: np.ndarray, h: np.ndarray, tol: float = 1e-13, max_iter: int = 100_000) -> np.ndarray:
    """Ideal-diode node voltages (V) for nodal currents ``b`` (B, n) and clamp levels ``h`` by PR.

    Used as the cycle fallback of the active-set solver; raises if PR does not converge.
    """
    s = circuit.diodes.orientation.astype(float)
    L = circuit.laplacian_dense()
    a = 1.0 / float(np.max(np.diag(L)))
    A = a * s[:, None] * L * s[None, :]
    c = a * s * (b - L @ h)
    z, it = _pr_iterate(A, c, lambda x: np.maximum(x, 0.0), 1.0, tol, max_iter)
    if z is None:
        raise SolveError("Peaceman–Rachford fallback did not converge", SolveReport(False, "pr", {"pr": max_iter}, batch=b.shape[0]))
    return s * z + h


def implicit_gradient(view: MONView, z: np.ndarray, u: np.ndarray, dl_dz: np.ndarray) -> np.ndarray:
    """Winston–Kolter adjoint μ solving (I − J Wᵀ) μ = J ∂ℓ/∂z, J = diag(σ'(Wz + Uu + bias)); per sample."""
    x = z @ view.W.T + np.atleast_2d(u) @ view.U.T + view.bias
    J = view.activation_slope(x)
    n = z.shape[1]
    mats = np.eye(n)[None] - J[:, :, None] * view.W.T[None]
    return np.linalg.solve(mats, (J * dl_dz)[..., None])[..., 0]
