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

from hil.board import Board, ExactLinearization, Measurement, PhasedMeasurement, valid_mask
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


def response_flips(n_plus: np.ndarray, n0: np.ndarray, n_minus: np.ndarray, noise_v: float = 0.0,
                   rel_tol: float = 1e-3) -> np.ndarray:
    """Samples (B,) whose ± one-sided responses disagree: a flip seen in the measurements alone.

    Around an operating point where every element stays in one linear region, the
    responses to +ε and −ε are mirror images: ``d+ = v(+) − v(0)`` equals
    ``d− = v(0) − v(−)`` (exactly for ideal diodes, to O(ε²) for smooth ones).  A diode
    changing state in one phase, or a smooth diode leaving its linear region, breaks
    the symmetry.  A sample is flagged when ``max|d+ − d−|`` exceeds ``rel_tol`` times
    the response ``max|d+ + d−|/2`` plus the noise floor ``5·√6·noise_v`` (the reading
    noise of the three-reading combination, 5 σ).  A kink the check lets through leaves
    an error of about ``rel_tol`` relative in that sample's response, so ``rel_tol`` is
    the accuracy asked of a piecewise-linear board; on smooth diodes it also bounds the
    curvature seen within ±ε.  Arrays are node voltages (B, nodes), V.
    """
    d_plus, d_minus = n_plus - n0, n0 - n_minus
    asym = np.max(np.abs(d_plus - d_minus), axis=1)
    scale = np.max(np.abs(d_plus + d_minus), axis=1) / 2
    return asym > rel_tol * scale + 5.0 * np.sqrt(6.0) * noise_v


def _state_flips(op_on, plus: Measurement, minus: Measurement | None, piecewise: bool) -> np.ndarray:
    """Samples where a piecewise-linear board reports a changed diode state in a perturbed phase."""
    flips = np.zeros(plus.y.shape[0], bool)
    if piecewise and op_on is not None and plus.on is not None:
        flips |= np.any(plus.on != op_on, axis=1)
        if minus is not None and minus.on is not None:
            flips |= np.any(minus.on != op_on, axis=1)
    return flips


def hl_gradient(board: Board, x: np.ndarray, target, loss: Loss, delta_v: float = 0.01,
                central: bool = True, max_retries: int = 3, keep_per_sample: bool = False,
                flip_rel_tol: float = 1e-3, one_sweep: bool | None = None) -> GradientResult:
    """Hardware-linearization gradient from two (central) or one (one-sided) perturbation phases.

    Flips are detected from the diode states where the board reports them (ideal diodes)
    and, for central differences, from the measurements themselves (:func:`response_flips`),
    so boards without state access and smooth diodes are covered too.  A flagged sample
    is re-measured with a 10× smaller drive, up to ``max_retries`` times.

    With ``one_sweep`` (default: when the board has :class:`~hil.board.PhasedMeasurement`)
    the operating point and the ± perturbation of every output port are measured in one
    sweep (1 + 2q phases, q output ports, each port driven by ±``delta_v``) and the
    response to ŵ is assembled from the per-port responses (the small-signal response is
    linear in the drive).  Samples the board marks invalid are left out of the gradient.
    """
    if one_sweep is None:
        one_sweep = isinstance(board, PhasedMeasurement)
    if one_sweep:
        if not isinstance(board, PhasedMeasurement):
            raise TypeError("one_sweep needs a board with measure_phases (PhasedMeasurement)")
        return _hl_port_basis(board, x, target, loss, delta_v, central, max_retries, keep_per_sample, flip_rel_tol)
    topo = board.topology
    op, val, w_hat = _operating_point(board, x, target, loss)
    amp = np.max(np.abs(w_hat), axis=1, keepdims=True)
    amp = np.where(amp > 0, amp, 1.0)
    eps = delta_v / amp  # (B, 1) volts per unit ŵ
    n0 = topo.node_voltages(op)
    n_hat = np.zeros_like(n0)
    i_hat = np.zeros_like(op.i_src)
    ok = valid_mask(op).copy()
    todo = np.arange(x.shape[0])
    retries, flipped_total, seen_by_response = 0, 0, 0
    while todo.size:
        xs, ws, es = x[todo], w_hat[todo], eps[todo]
        w0 = op.w[todo]
        plus = board.measure(xs, w0 + es * ws)
        minus = board.measure(xs, w0 - es * ws) if central else None
        flips = _state_flips(None if op.on is None else op.on[todo], plus, minus, op.piecewise_linear)
        npl = topo.node_voltages(plus)
        phase_ok = valid_mask(plus)
        if central:
            nmi = topo.node_voltages(minus)
            phase_ok = phase_ok & valid_mask(minus)
            by_response = response_flips(npl, n0[todo], nmi, max(plus.noise_v, op.noise_v), flip_rel_tol)
            seen_by_response += int(np.sum(by_response & ~flips))
            flips |= by_response
            n_hat[todo] = (npl - nmi) / (2 * es)
            i_hat[todo] = (plus.i_src - minus.i_src) / (2 * es)
        else:
            n_hat[todo] = (npl - n0[todo]) / es
            i_hat[todo] = (plus.i_src - op.i_src[todo]) / es
        ok[todo] &= phase_ok
        flips &= phase_ok
        flipped_total += int(flips.sum())
        if not flips.any() or retries >= max_retries:
            break
        retries += 1
        todo = todo[flips]
        eps[todo] /= 10.0
    return _result(topo, op, val, n0, n_hat, i_hat, ok, keep_per_sample,
                   {"flipped_samples": flipped_total, "flips_from_response": seen_by_response, "retries": retries})


def _hl_port_basis(board, x, target, loss, delta_v, central, max_retries, keep_per_sample, flip_rel_tol):
    """``hl`` with the operating point and per-port ± drives in one sweep (see :func:`hl_gradient`)."""
    topo = board.topology
    B, q = x.shape[0], topo.n_outputs
    w0 = np.broadcast_to(topo.output_voltage, (B, q))
    signs = (1.0, -1.0) if central else (1.0,)

    def phases(w_base, step):
        out = []
        for o in range(q):
            for s in signs:
                w = np.array(w_base, dtype=float)
                w[:, o] += s * step[:, 0]
                out.append(w)
        return out

    step = np.full((B, 1), float(delta_v))
    ms = board.measure_phases(x, [None] + phases(w0, step))
    op, per_port = ms[0], ms[1:]
    val, dy = loss.value_and_grad(op.y, target)
    w_hat = -dy
    n0 = topo.node_voltages(op)
    n_hat = np.zeros_like(n0)
    i_hat = np.zeros_like(op.i_src)
    ok = valid_mask(op).copy()
    todo = np.arange(B)
    retries, flipped_total, seen_by_response = 0, 0, 0
    while True:
        k = len(signs)
        nh = np.zeros((todo.size, n0.shape[1]))
        ih = np.zeros((todo.size, op.i_src.shape[1]))
        flips = np.zeros(todo.size, bool)
        phase_ok = np.ones(todo.size, bool)
        for o in range(q):
            plus = per_port[k * o]
            minus = per_port[k * o + 1] if central else None
            npl = topo.node_voltages(plus)
            phase_ok &= valid_mask(plus)
            st = _state_flips(None if op.on is None else op.on[todo], plus, minus, op.piecewise_linear)
            if central:
                nmi = topo.node_voltages(minus)
                phase_ok &= valid_mask(minus)
                resp = response_flips(npl, n0[todo], nmi, max(plus.noise_v, op.noise_v), flip_rel_tol)
                seen_by_response += int(np.sum(resp & ~st))
                st |= resp
                dn, di = (npl - nmi) / (2 * step), (plus.i_src - minus.i_src) / (2 * step)
            else:
                dn, di = (npl - n0[todo]) / step, (plus.i_src - op.i_src[todo]) / step
            flips |= st
            nh += w_hat[todo, o:o + 1] * dn
            ih += w_hat[todo, o:o + 1] * di
        n_hat[todo], i_hat[todo] = nh, ih
        ok[todo] &= phase_ok
        flips &= phase_ok
        flipped_total += int(flips.sum())
        if not flips.any() or retries >= max_retries:
            break
        retries += 1
        todo, step = todo[flips], step[flips] / 10.0
        per_port = board.measure_phases(x[todo], phases(w0[todo], step))
    return _result(topo, op, val, n0, n_hat, i_hat, ok, keep_per_sample,
                   {"flipped_samples": flipped_total, "flips_from_response": seen_by_response, "retries": retries,
                    "phases": 1 + len(signs) * q})


def _result(topo, op, val, n0, n_hat, i_hat, ok, keep_per_sample, stats) -> GradientResult:
    """Batch-mean gradient over the valid samples only; invalid samples are counted, never used."""
    stats = dict(stats, invalid_samples=int(np.sum(~ok)))
    if ok.all():
        grad, per = _finish(topo, n0, n_hat, keep_per_sample)
    elif ok.any():
        grad, per_ok = _finish(topo, n0[ok], n_hat[ok], keep_per_sample)
        per = None
        if keep_per_sample:
            per = np.full((ok.size, grad.size), np.nan)
            per[ok] = per_ok
    else:
        grad = np.zeros(topo.n_conductances)
        per = np.full((ok.size, grad.size), np.nan) if keep_per_sample else None
    stats["valid"] = ok
    return GradientResult(grad, val, op, source_grad=i_hat, per_sample=per, stats=stats)


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
