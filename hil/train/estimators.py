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


def _split(m: Measurement) -> tuple[Measurement, Measurement]:
    """The two halves of a measurement of a stacked batch [first; second]."""
    k = m.e.shape[0] // 2
    half = lambda a, sl: None if a is None else a[sl]
    return tuple(Measurement(u=m.u[sl], w=m.w[sl], y=m.y[sl], i_src=m.i_src[sl], e=m.e[sl], on=half(m.on, sl),
                             piecewise_linear=m.piecewise_linear, info=m.info)
                 for sl in (slice(0, k), slice(k, 2 * k)))


def _operating_point(board: Board, x: np.ndarray, target, loss: Loss) -> tuple[Measurement, np.ndarray, np.ndarray]:
    """Measure the operating point; return it, the per-sample loss and the drive ŵ = −∂ℓ/∂y (A⁻¹)."""
    op = board.measure(x)
    val, dy = loss.value_and_grad(op.y, target)
    return op, val, -dy


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
        if central:  # both perturbation phases as one batch of 2k measurements
            plus, minus = _split(board.measure(np.concatenate([xs, xs]), np.concatenate([w0 + es * ws, w0 - es * ws])))
        else:
            plus, minus = board.measure(xs, w0 + es * ws), None
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
    return GradientResult(grad, val, op, source_grad=i_hat, per_sample=per,
                          stats={"flipped_samples": flipped_total, "retries": retries})


def hl_exact_gradient(board: Board, x: np.ndarray, target, loss: Loss, keep_per_sample: bool = False) -> GradientResult:
    """Exact linearized-circuit gradient (needs a board with :class:`ExactLinearization`)."""
    if not isinstance(board, ExactLinearization):
        raise TypeError("the hl-exact estimator needs a simulated board (linearized_response); use 'hl' on hardware")
    topo = board.topology
    op, val, w_hat = _operating_point(board, x, target, loss)
    e_hat, i_hat = board.linearized_response(x, w_hat)
    adj = Measurement(u=np.zeros_like(op.u), w=w_hat, y=np.zeros_like(op.y), i_src=i_hat, e=e_hat)
    grad, per = _finish(topo, topo.node_voltages(op), topo.node_voltages(adj), keep_per_sample)
    return GradientResult(grad, val, op, source_grad=i_hat, per_sample=per)


def ep_gradient(board: Board, x: np.ndarray, target, loss: Loss, beta: float | None = None, centred: bool = True,
                delta_v: float = 0.01, keep_per_sample: bool = False) -> GradientResult:
    """Equilibrium propagation with nudged port voltages w = w₀ ± β ŵ.

    β is in V·A per unit loss; when it is not given it is chosen per batch so that the
    largest nudge is ``delta_v`` volts (one β for the whole batch).
    """
    topo = board.topology
    op, val, w_hat = _operating_point(board, x, target, loss)
    if beta is None:
        peak = float(np.max(np.abs(w_hat), initial=0.0))
        beta = delta_v / peak if peak > 0 else 1.0
    n0 = topo.node_voltages(op)
    npl = topo.node_voltages(board.measure(x, op.w + beta * w_hat))
    # v+² − v₋² = (v+ − v₋)(v+ + v₋): a product of two branch differences.
    other = topo.node_voltages(board.measure(x, op.w - beta * w_hat)) if centred else n0
    scale = 4 * beta if centred else 2 * beta
    grad, per = _finish(topo, npl - other, (npl + other) / scale, keep_per_sample)
    return GradientResult(grad, val, op, per_sample=per, stats={"beta": beta})


def fd_gradient(board: Board, x: np.ndarray, target, loss: Loss, rel_step: float = 1e-4,
                g_floor: float = 1e-9) -> GradientResult:
    """Central finite differences of the batch-mean loss, one conductance at a time (slow).

    The step is ``rel_step * max(|g|, g_floor)``.  Below ~1e-4 relative the rounding of
    the loss difference (eps_mach * loss / h) dominates; piecewise-linear (ideal-diode)
    networks have no truncation error at all as long as no diode flips within h.
    """
    g0 = board.read_conductances()
    op = board.measure(x)
    val, _ = loss.value_and_grad(op.y, target)
    grad = np.zeros_like(g0)
    try:
        for k in range(g0.size):
            h = rel_step * max(abs(g0[k]), g_floor)
            out, applied = [], []
            for sign in (1.0, -1.0):
                g = g0.copy()
                g[k] += sign * h
                # the board may clip at its range: divide by the step actually programmed
                applied.append(board.program(g, rel_tol=0.0)[k])
                out.append(loss.value_and_grad(board.measure(x).y, target)[0].mean())
            grad[k] = (out[0] - out[1]) / (applied[0] - applied[1])
    finally:
        board.program(g0, rel_tol=0.0)
    return GradientResult(grad, val, op)


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
