"""Gradient estimators: ∂ℓ/∂g for every conductance, measured through the board protocol.

* ``hl``: hardware linearization as a bench does it (physics.md §3.2): operating point,
  then the output ports driven at w₀ ± ε ŵ with ŵ = −∂ℓ/∂y, ε chosen per sample so
  that max|εŵ| = ``delta_v`` volts; branch responses by central (or one-sided)
  difference; ∂ℓ/∂g_k = v_k · v̂_k.  If a diode changes state in a perturbed phase the
  sample is re-measured with a 10× smaller drive (up to ``max_retries``).
* ``hl-exact``: the linearized circuit itself (simulated boards only).
* ``ep``: equilibrium propagation with nudge w = ±β ŵ (one-sided or centred).
* ``fd``: central finite differences by reprogramming each conductance (ground truth).

Every estimator also returns the input-source sensitivities ∂ℓ/∂u (A⁻¹·A/V = 1/V per
unit loss) that cascades need, where it can measure them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hil.board import Board, ExactLinearization, Measurement
from hil.train.losses import Loss

ESTIMATORS = ("hl", "hl-exact", "ep", "fd")


@dataclass
class GradientResult:
    """Batch-mean gradient ∂ℓ/∂g (m,) in 1/S per unit loss, and what it was measured from."""

    grad: np.ndarray
    loss: np.ndarray  # (B,) per-sample loss at the operating point
    op: Measurement  # operating point
    source_grad: np.ndarray | None = None  # (B, p) ∂ℓ/∂u per sample
    per_sample: np.ndarray | None = None  # (B, m) when requested
    stats: dict = field(default_factory=dict)


def _finish(topology, n0: np.ndarray, n_hat: np.ndarray, keep: bool):
    """Batch-mean v·v̂ per conductance from node voltages (B, nodes); per-sample if ``keep``."""
    grad = topology.mean_branch_product(n0, n_hat)
    if not keep:
        return grad, None
    e = topology.edges
    return grad, (n0[:, e[:, 0]] - n0[:, e[:, 1]]) * (n_hat[:, e[:, 0]] - n_hat[:, e[:, 1]])


def _operating_point(board: Board, x: np.ndarray, target, loss: Loss) -> tuple[Measurement, np.ndarray, np.ndarray]:
    """Measure the operating point; return it, the per-sample loss and the drive ŵ = −∂ℓ/∂y (A⁻¹)."""
    op = board.measure(x)
    val, dy = loss.value_and_grad(op.y, target)
    return op, val, -dy


def _bias(note: str | None) -> dict:
    """The ``stats`` entries every estimator returns: whether the answer may be biased, and why."""
    return {"may_be_biased": note is not None, "bias_note": note}


def _flipped(op: Measurement, rows: np.ndarray, *phases: Measurement) -> np.ndarray:
    """(len(rows),) True where a diode changed state between the operating point and a phase.

    Only meaningful for piecewise-linear (ideal-diode) boards, where a flip changes the
    linearization itself; smooth boards never report flips.
    """
    flips = np.zeros(rows.size, bool)
    if not op.piecewise_linear or op.on is None:
        return flips
    for ph in phases:
        if ph is not None and ph.on is not None:
            flips |= np.any(ph.on != op.on[rows], axis=1)
    return flips


def hl_gradient(board: Board, x: np.ndarray, target, loss: Loss, delta_v: float = 0.01,
                central: bool = True, max_retries: int = 3, keep_per_sample: bool = False) -> GradientResult:
    """Hardware-linearization gradient from two (central) or one (one-sided) perturbation phases."""
    topo = board.topology
    op, val, w_hat = _operating_point(board, x, target, loss)
    amp = np.max(np.abs(w_hat), axis=1, keepdims=True)
    amp = np.where(amp > 0, amp, 1.0)
    eps = delta_v / amp  # (B, 1) volts per unit ŵ
    n0 = topo.node_voltages(op)
    n_hat = np.zeros_like(n0)
    i_hat = np.zeros_like(op.i_src)
    todo = np.arange(x.shape[0])
    retries, flipped_total = 0, 0
    while todo.size:
        xs, ws, es = x[todo], w_hat[todo], eps[todo]
        w0 = op.w[todo]
        plus = board.measure(xs, w0 + es * ws)
        minus = board.measure(xs, w0 - es * ws) if central else None
        flips = np.zeros(todo.size, bool)
        if op.piecewise_linear and op.on is not None and plus.on is not None:
            flips |= np.any(plus.on != op.on[todo], axis=1)
            if minus is not None:
                flips |= np.any(minus.on != op.on[todo], axis=1)
        npl = topo.node_voltages(plus)
        if central:
            n_hat[todo] = (npl - topo.node_voltages(minus)) / (2 * es)
            i_hat[todo] = (plus.i_src - minus.i_src) / (2 * es)
        else:
            n_hat[todo] = (npl - n0[todo]) / es
            i_hat[todo] = (plus.i_src - op.i_src[todo]) / es
        flipped_total += int(flips.sum())
        if not flips.any() or retries >= max_retries:
            break
        retries += 1
        todo = todo[flips]
        eps[todo] /= 10.0
    grad, per = _finish(topo, n0, n_hat, keep_per_sample)
    unresolved = int(flips.sum()) if todo.size else 0
    if unresolved:
        note = (f"{unresolved} sample(s) still had a diode flip after {retries} re-measurement(s): "
                "their gradient mixes two linearizations")
    elif not op.piecewise_linear:
        note = f"smooth diodes: {'central' if central else 'one-sided'} difference, truncation error " \
               f"O(delta_v{'²' if central else ''})"
    else:
        note = None
    return GradientResult(grad, val, op, source_grad=i_hat, per_sample=per,
                          stats={"flipped_samples": flipped_total, "retries": retries,
                                 "unresolved_flips": unresolved, **_bias(note)})


def hl_exact_gradient(board: Board, x: np.ndarray, target, loss: Loss, keep_per_sample: bool = False) -> GradientResult:
    """Exact linearized-circuit gradient (needs a board with :class:`ExactLinearization`)."""
    if not isinstance(board, ExactLinearization):
        raise TypeError("the hl-exact estimator needs a simulated board (linearized_response); use 'hl' on hardware")
    topo = board.topology
    op, val, w_hat = _operating_point(board, x, target, loss)
    e_hat, i_hat = board.linearized_response(x, w_hat)
    adj = Measurement(u=np.zeros_like(op.u), w=w_hat, y=np.zeros_like(op.y), i_src=i_hat, e=e_hat)
    grad, per = _finish(topo, topo.node_voltages(op), topo.node_voltages(adj), keep_per_sample)
    return GradientResult(grad, val, op, source_grad=i_hat, per_sample=per, stats=_bias(None))


def ep_gradient(board: Board, x: np.ndarray, target, loss: Loss, beta: float | None = None, centred: bool = True,
                delta_v: float = 0.01, max_retries: int = 3, keep_per_sample: bool = False) -> GradientResult:
    """Equilibrium propagation with nudged port voltages w = w₀ ± β ŵ.

    β is in V·A per unit loss; when it is not given it is chosen per batch so that the
    largest nudge is ``delta_v`` volts (one β for the whole batch).  On ideal-diode boards a
    sample in which a diode changes state between the free and a nudged phase is
    re-measured with a 10× smaller β (up to ``max_retries`` times), as ``hl`` does.
    """
    topo = board.topology
    op, val, w_hat = _operating_point(board, x, target, loss)
    if beta is None:
        peak = float(np.max(np.abs(w_hat), initial=0.0))
        beta = delta_v / peak if peak > 0 else 1.0
    betas = np.full((x.shape[0], 1), float(beta))
    n0 = topo.node_voltages(op)
    n_plus, n_other = np.zeros_like(n0), n0.copy()
    todo = np.arange(x.shape[0])
    retries, flipped_total = 0, 0
    while todo.size:
        xs, bs, ws, w0 = x[todo], betas[todo], w_hat[todo], op.w[todo]
        plus = board.measure(xs, w0 + bs * ws)
        minus = board.measure(xs, w0 - bs * ws) if centred else None
        n_plus[todo] = topo.node_voltages(plus)
        if centred:
            n_other[todo] = topo.node_voltages(minus)
        flips = _flipped(op, todo, plus, minus)
        flipped_total += int(flips.sum())
        if not flips.any() or retries >= max_retries:
            break
        retries += 1
        todo = todo[flips]
        betas[todo] /= 10.0
    unresolved = int(flips.sum()) if todo.size else 0
    # v+² − v₋² = (v+ − v₋)(v+ + v₋): a product of two branch differences.
    scale = 4 * betas if centred else 2 * betas
    grad, per = _finish(topo, n_plus - n_other, (n_plus + n_other) / scale, keep_per_sample)
    if unresolved:
        note = (f"{unresolved} sample(s) still had a diode flip after {retries} re-measurement(s): "
                "their gradient mixes two linearizations")
    elif not centred:
        note = "one-sided nudge: bias O(beta) (0.5·beta·v̂² per conductance)"
    elif not op.piecewise_linear:
        note = "smooth diodes: centred nudge, bias O(beta²)"
    else:
        note = None
    return GradientResult(grad, val, op, per_sample=per,
                          stats={"beta": float(beta), "flipped_samples": flipped_total, "retries": retries,
                                 "unresolved_flips": unresolved, **_bias(note)})


def _typical_conductance(g: np.ndarray, g_floor: float) -> float:
    """Median of the non-zero conductances (S): the scale a step is compared against."""
    nz = np.abs(g[g != 0])
    return max(float(np.median(nz)) if nz.size else 0.0, g_floor)


def fd_gradient(board: Board, x: np.ndarray, target, loss: Loss, rel_step: float | None = None,
                g_floor: float = 1e-9, max_retries: int = 3) -> GradientResult:
    """Finite differences of the batch-mean loss, one conductance at a time (a reference; slow).

    Step: ``h = rel_step · max(|g_k|, ḡ)`` with ḡ the median non-zero conductance of the
    board, so that a small conductance (a leak) still changes the loss well above rounding;
    ``rel_step`` defaults to 1e-4, which balances the O(h²) truncation error of the loss's
    own curvature against rounding.  Central differences where
    ``g ± h`` is programmable, otherwise the second-order one-sided formula
    (−3f₀ + 4f₁ − f₂)/(2h) towards the inside of the range.  On ideal-diode boards a step
    during which a diode changes state is retried 10× smaller (up to ``max_retries``).
    The board's operating point warm-starts every perturbed solve.
    """
    g0 = board.read_conductances()
    g_min, g_max = board.conductance_bounds
    op = board.measure(x)
    val, _ = loss.value_and_grad(op.y, target)
    f0 = float(val.mean())
    if rel_step is None:
        rel_step = 1e-4
    g_bar = _typical_conductance(g0, g_floor)
    grad = np.zeros_like(g0)
    one_sided, unresolved = 0, 0
    rows = np.arange(x.shape[0])

    def at(k: int, value: float) -> tuple[float, float, bool]:
        g = g0.copy()
        g[k] = value
        applied = board.program(g, rel_tol=0.0)[k]
        m = board.measure(x)
        return float(loss.value_and_grad(m.y, target)[0].mean()), float(applied), bool(_flipped(op, rows, m).any())

    try:
        for k in range(g0.size):
            h = rel_step * max(abs(g0[k]), g_bar)
            for attempt in range(max_retries + 1):
                if g0[k] - h >= g_min and g0[k] + h <= g_max:
                    (fp, gp, a), (fm, gm, b) = at(k, g0[k] + h), at(k, g0[k] - h)
                    grad[k], flipped, side = (fp - fm) / (gp - gm), a or b, False
                else:
                    sign = 1.0 if g0[k] + 2 * h <= g_max else -1.0
                    if g0[k] + sign * 2 * h < g_min or g0[k] + sign * 2 * h > g_max:
                        h /= 10.0  # the range is narrower than 2h on both sides
                        continue
                    (f1, g1, a), (f2, g2, b) = at(k, g0[k] + sign * h), at(k, g0[k] + 2 * sign * h)
                    step = g1 - g0[k]
                    grad[k], flipped, side = (-3 * f0 + 4 * f1 - f2) / (2 * step), a or b, True
                if not flipped:
                    break
                h /= 10.0
            one_sided += side
            unresolved += flipped
    finally:
        board.program(g0, rel_tol=0.0)
    if unresolved:
        note = f"{unresolved} conductance(s): a diode flipped within the smallest step tried"
    else:
        note = f"finite differences: truncation error O(h²) with h = {rel_step:g}·max(|g|, {g_bar:.3g} S)"
    return GradientResult(grad, val, op, stats={"rel_step": rel_step, "typical_conductance_s": g_bar,
                                                "one_sided": one_sided, "unresolved_flips": unresolved,
                                                **_bias(note)})


def estimate(name: str, board: Board, x, target, loss: Loss, options: dict | None = None) -> GradientResult:
    """Dispatch by estimator name (``hl``, ``hl-exact``, ``ep``, ``fd``)."""
    opts = dict(options or {})
    if name == "hl":
        return hl_gradient(board, x, target, loss, **opts)
    if name == "hl-exact":
        return hl_exact_gradient(board, x, target, loss, **opts)
    if name == "ep":
        return ep_gradient(board, x, target, loss, **opts)
    if name == "fd":
        return fd_gradient(board, x, target, loss, **opts)
    raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
