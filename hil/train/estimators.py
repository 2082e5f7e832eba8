"""Gradient estimators: ∂ℓ/∂g for every conductance, measured through the board protocol.

* ``hl``: hardware linearization as a bench does it (physics.md §3.2): operating point,
  then the output ports driven at w₀ ± ε ŵ with ŵ = −∂ℓ/∂y, ε chosen per sample so
  that max|εŵ| = ``delta_v`` volts (on an exact piecewise-linear board that reports diode
  states, the − phase only for samples whose + phase changed a state); branch responses by
  central (or one-sided) difference; ∂ℓ/∂g_k = v_k · v̂_k.  If a diode changes state in a perturbed phase the
  sample is re-measured with a 10× smaller drive (up to ``max_retries``), unless the
  smaller drive's response would drown in the board's reading noise (:func:`resolvable`).
* ``hl-exact``: the linearized circuit itself (simulated boards only).
* ``ep``: equilibrium propagation with nudge w = ±β ŵ (one-sided or centred).
* ``fd``: central finite differences by reprogramming each conductance (ground truth).

Every estimator also returns the input-source sensitivities ∂ℓ/∂u (A⁻¹·A/V = 1/V per
unit loss) that cascades need, where it can measure them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from hil.board import (Board, ExactLinearization, Measurement, PhasedMeasurement, as_program_result,
                       valid_mask)
from hil.circuit.coupled_kernels import edge_products_kernel
from hil.kernels import (NO_SOURCE_MAP, cross_entropy_drive_kernel, flip_accounting_kernel,
                         hl_drive_kernel, hl_first_pass_kernel, hl_held_pass_kernel, hl_minus_rows_kernel,
                         hl_plus_phase_kernel, repeats_of)
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


class _SourceGradOnRead(GradientResult):
    """A result whose ∂ℓ/∂u is assembled from the phases' source-current readings when first read.

    Training never reads it (cascades and callers that ask do); the readings are kept, so
    the answer is the same whenever it is read.
    """

    @property
    def source_grad(self) -> np.ndarray | None:
        d = self.__dict__
        if d.get("_source_grad") is None and d.get("_assemble") is not None:
            d["_source_grad"] = d.pop("_assemble")()
        return d.get("_source_grad")

    @source_grad.setter
    def source_grad(self, value) -> None:
        self.__dict__["_source_grad"] = value


def _finish(topology, n0: np.ndarray | None, n_hat, keep: bool, sel: np.ndarray | None = None):
    """Batch-mean v·v̂ per conductance from node voltages (B, nodes); per-sample if ``keep``.

    ``n0`` None: the sources held their voltages in every phase and ``n_hat`` is the parts
    (u, e, w, ê, ŵ) of :meth:`~hil.board.BoardTopology.mean_response_product` (the response
    is 0 at the sources and ground).  ``sel``: the samples to use (all when None).
    """
    if n0 is None:
        parts = n_hat if sel is None else tuple(a[sel] for a in n_hat)
        grad = topology.mean_response_product(*parts)
        if not keep:
            return grad, None
        u, e, w, e_hat, w_hat = parts
        ground = np.zeros((u.shape[0], 1))
        n0 = np.concatenate([u, e, w, ground], axis=1)
        n_hat = np.concatenate([np.zeros(u.shape), e_hat, w_hat, ground], axis=1)
    else:
        if sel is not None:
            n0, n_hat = n0[sel], n_hat[sel]
        grad = topology.mean_branch_product(n0, n_hat)
        if not keep:
            return grad, None
    e = topology.edges
    return grad, (n0[:, e[:, 0]] - n0[:, e[:, 1]]) * (n_hat[:, e[:, 0]] - n_hat[:, e[:, 1]])


def _finish_valid(topology, n0, n_hat, keep: bool, ok: np.ndarray, n_invalid: int):
    """:func:`_finish` over the valid samples ``ok`` (B,) only (``n_invalid`` of them False): the
    gradient is their batch mean (zero when none is valid) and a kept per-sample row of an invalid
    sample is NaN."""
    if not n_invalid:
        return _finish(topology, n0, n_hat, keep)
    if ok.any():
        grad, per_ok = _finish(topology, n0, n_hat, keep, ok)
    else:
        grad, per_ok = np.zeros(topology.n_conductances), None
    per = None
    if keep:
        per = np.full((ok.size, grad.size), np.nan)
        if per_ok is not None:
            per[ok] = per_ok
    return grad, per


def _is_phased(board) -> bool:
    """``isinstance(board, PhasedMeasurement)``; the slow protocol check only runs for boards with ``measure_phases``."""
    return hasattr(board, "measure_phases") and isinstance(board, PhasedMeasurement)


def _operating_point(board: Board, x: np.ndarray, target, loss: Loss) -> tuple[Measurement, np.ndarray, np.ndarray]:
    """Measure the operating point; return it, the per-sample loss and the drive ŵ = −∂ℓ/∂y (A⁻¹)."""
    op = board.measure(x)
    val, dy = loss.value_and_grad(op.y, target)
    return op, val, -dy


def _ambiguous_states(op: Measurement) -> bool:
    """Whether the board says its elements' states do not name their regions (two clamps, both
    reported on: ``info["ambiguous_states"]``), so "no state changed" does not mean "stayed linear"."""
    return bool(op.info and op.info.get("ambiguous_states"))


def _wire_note(op: Measurement) -> str | None:
    """A bias note when the board reports crossbar wire resistance (``info["wire_ir_drop"]``), device
    conductances that change from one board call to the next (``info["varying_conductances"]``, the
    board's own sentence: read noise, drift), so that the phases of one estimate see different
    devices, or inexact reading or source chains (``info["reading_errors"]``, the board's sentence);
    None when the board reports none of these."""
    info = op.info
    if not info:
        return None
    drop, varying, errors = info.get("wire_ir_drop"), info.get("varying_conductances"), info.get("reading_errors")
    if not (drop or varying or errors):  # (the usual case, once per gradient: no list, no join)
        return None
    notes = [n for n in (varying, errors) if n]
    if drop:
        notes.append(f"crossbar wires: v·v̂ is formed from line-terminal voltages, not across each device; the "
                     f"lines' IR drop is up to {100 * drop:.3g} % of the device voltages (first order), so is the bias")
    return "; ".join(notes) or None


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
    return _asymmetric(n_plus, n0, n_minus, n_plus - n_minus, noise_v, rel_tol)


def _asymmetric(n_plus, n0, n_minus, diff, noise_v: float, rel_tol: float) -> np.ndarray:
    """:func:`response_flips` given ``diff = n_plus − n_minus`` (= d+ + d−, also the central response)."""
    asym = n_plus + n_minus  # d+ − d− = n+ + n− − 2 n0
    asym -= n0
    asym -= n0
    np.abs(asym, out=asym)
    threshold = np.abs(diff).max(axis=1)
    threshold *= rel_tol / 2
    threshold += 5.0 * np.sqrt(6.0) * noise_v
    return asym.max(axis=1) > threshold


def resolvable(e_response: np.ndarray, noise_v: float, shrink: float = 10.0) -> np.ndarray:
    """Samples (B,) whose hidden-node response would still be readable after a ``shrink``× smaller drive.

    ``e_response`` (B, n) is the measured hidden-node response of a sample (V; the ± difference
    for central phases).  A re-measurement is only worth making when its largest response
    stays above the noise of a difference of two readings, 5·√2·``noise_v`` (5 σ); below it,
    a retry returns reading noise divided by an ever smaller drive, which then dominates the
    batch mean.  A board without reading noise (``noise_v`` = 0) can always retry.
    """
    if noise_v <= 0 or e_response.shape[1] == 0:
        return np.ones(e_response.shape[0], bool)
    return np.abs(e_response).max(axis=1) / shrink > 5.0 * np.sqrt(2.0) * noise_v


def hl_gradient(board: Board, x: np.ndarray, target: ArrayLike, loss: Loss, delta_v: float = 0.01,
                central: bool = True, max_retries: int = 3, keep_per_sample: bool = False,
                flip_rel_tol: float = 1e-3, one_sweep: bool | None = None) -> GradientResult:
    """Hardware-linearization gradient from two (central) or one (one-sided) perturbation phases.

    Flips are detected from the diode states where the board reports them (ideal diodes)
    and, for central differences, from the measurements themselves (:func:`response_flips`),
    so boards without state access and smooth diodes are covered too.  A flagged sample
    is re-measured with a 10× smaller drive, up to ``max_retries`` times — except on a
    piecewise-linear board that reports its states, when only one of the two phases changed
    a state: the other phase kept every element in its region, so its one-sided difference
    is the exact linear response (the region is convex) and is used without re-measuring.
    On such a board (exact: no reading noise, every sample valid; states that name the elements'
    regions, i.e. not two clamps, ``info["ambiguous_states"]``) the − phase is therefore only
    measured where it is needed: the + phase of the whole batch first, then the − phase of the
    samples whose + phase changed a state (see :func:`_hl_lean`); ``stats["mirror_measured"]``
    counts the samples whose − phase was measured.
    A flagged sample whose response a 10× smaller drive would bury in the reading noise is
    not re-measured (:func:`resolvable`; counted in ``stats['unresolvable']``): its flipped
    estimate has a bounded error, the retry's noise would not.

    With ``one_sweep`` (default: when the board has :class:`~hil.board.PhasedMeasurement`)
    the operating point and the ± perturbation of every output port are measured in one
    sweep (1 + 2q phases, q output ports, each port driven by ±``delta_v``) and the
    response to ŵ is assembled from the per-port responses (the small-signal response is
    linear in the drive).  Samples the board marks invalid are left out of the gradient.
    """
    if not (math.isfinite(delta_v) and delta_v > 0):  # the drive kernel picks eps only for delta_v > 0
        raise ValueError(f"hl: delta_v must be a positive, finite drive amplitude in volts, got {delta_v!r}")
    if one_sweep is None:
        one_sweep = _is_phased(board)
    if one_sweep:
        if not isinstance(board, PhasedMeasurement):
            raise TypeError("one_sweep needs a board with measure_phases (PhasedMeasurement)")
        return _hl_port_basis(board, x, target, loss, delta_v, central, max_retries, keep_per_sample, flip_rel_tol)
    topo = board.topology
    if central:
        op = board.measure(x)
        # the board vouches for the form of the arrays (Measurement.exact_for; any measurement type may come)
        exact = getattr(op, "exact_for", None) is topo
        widths = _widths(topo) if exact else _check_shapes(topo, op)  # the compiled passes below read no bounds
        if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[0] == op.w.shape[0] \
                and (exact or (op.valid is None and op.noise_v == 0 and op.piecewise_linear and op.on is not None)) \
                and _wire_note(op) is None and not _ambiguous_states(op):  # (notes: read every time)
            labels = loss._kernel_labels(op.y, target)
            if labels is not None:
                return _hl_lean(board, topo, widths, x, op, labels, loss, float(delta_v), max_retries,
                                keep_per_sample, flip_rel_tol, exact)
        val, dy = loss.value_and_grad(op.y, target)
        return _hl_central(board, topo, x, op, val, -dy, float(delta_v), max_retries, keep_per_sample,
                           flip_rel_tol)
    op, val, w_hat = _operating_point(board, x, target, loss)
    B = x.shape[0]
    eps = np.empty((B, 1))  # volts per unit ŵ, chosen per sample so that max|εŵ| = delta_v
    amp = np.max(np.abs(w_hat), axis=1, keepdims=True)
    amp[amp == 0] = 1.0
    np.divide(delta_v, amp, out=eps)
    n0 = topo.node_voltages(op)
    n_hat = np.zeros(n0.shape)
    i_hat = np.zeros(op.u.shape)
    ok = valid_mask(op).copy() if op.valid is not None else None  # None: every sample valid so far
    todo = np.arange(B)
    everything = slice(None)  # the first pass covers the whole batch: views instead of gathers
    retries, flipped_total, unreadable = 0, 0, 0
    while todo.size:
        rows = everything if todo.size == B else todo
        xs, ws, es = x[rows], w_hat[rows], eps[rows]
        plus = board.measure(xs, op.w[rows] + es * ws)
        noise = max(plus.noise_v, op.noise_v)
        readable = resolvable(plus.e - op.e[rows], noise) if noise > 0 else None
        flips = _flipped(op, todo, plus)
        phase_ok = valid_mask(plus)
        n_hat[rows] = (topo.node_voltages(plus) - n0[rows]) / es
        i_hat[rows] = (plus.i_src - op.i_src[rows]) / es
        flagged = flips
        if phase_ok is not None:
            ok = (valid_mask(op) if ok is None else ok).copy()
            ok[rows] &= phase_ok
            flips &= phase_ok
            flagged = flagged & phase_ok
        flipped_total += int(np.count_nonzero(flagged))
        if readable is not None:
            unreadable += int(np.count_nonzero(flips & ~readable))
            flips &= readable
        if not flips.any() or retries >= max_retries:
            break
        retries += 1
        todo = todo[flips]
        eps[todo] /= 10.0
    unresolved = (int(flips.sum()) if todo.size else 0) + unreadable  # both kept with a flipped estimate
    all_valid = ok is None
    if all_valid:  # a read-only "every sample valid" mask (no copy made)
        ok = _uniform_mask(True, B)
    return _result(topo, op, val, n0, n_hat, i_hat, ok, keep_per_sample, False, unresolved,
                   {"flipped_samples": flipped_total, "flips_from_response": 0, "retries": retries,
                    "one_sided": 0, "unresolvable": unreadable, "mirror_measured": 0}, n_invalid=0 if all_valid else None)


def _widths(topo) -> tuple[int, int, int, int]:
    """The topology's (sources p, hidden nodes n, ports q, conductances m), counted once per topology."""
    widths = topo.__dict__.get("_hl_sizes")
    if widths is None:
        widths = topo.__dict__["_hl_sizes"] = (topo.n_sources, topo.n_hidden, topo.n_outputs, topo.n_conductances)
    return widths


def _check_shapes(topo, op: Measurement) -> tuple[int, int, int, int]:
    """The topology's :func:`_widths`; ValueError unless the operating point's arrays agree with each
    other and the topology (the compiled passes of the central path read no bounds): u (B, p),
    e (B, n), w and y (B, q), on (B, n) when reported."""
    widths = _widths(topo)
    p, n, q, _ = widths
    ys = op.y.shape
    B = ys[0] if len(ys) == 2 else -1
    on = op.on
    if ys == op.w.shape == (B, q) and op.u.shape == (B, p) and op.e.shape == (B, n) \
            and (on is None or on.shape == (B, n)):
        return widths
    for name, what, shape in (("u", "source voltages", (B, p)), ("e", "node voltages", (B, n)),
                              ("w", "port voltages", (B, q)), ("y", "port currents", (B, q)),
                              ("on", "diode states", (B, n))):
        got = getattr(getattr(op, name), "shape", shape)  # (on may be None)
        if got != shape:
            raise ValueError(f"hl: the board's operating point has {what} {name} of shape {got}, expected {shape} "
                             f"for {B} samples, {p} sources, {n} hidden nodes and {q} ports")


def _hl_lean(board: Board, topo, widths: tuple[int, int, int, int], x: np.ndarray, op: Measurement,
             labels: np.ndarray, loss: Loss, delta_v: float, max_retries: int, keep_per_sample: bool,
             flip_rel_tol: float, exact: bool = False) -> GradientResult:
    """:func:`_hl_central` for the common case, with the fewest calls: cross-entropy on differential
    pairs, an exact piecewise-linear board reporting diode states, every sample valid.  Loss and
    drives are one compiled call.  Then the + phase alone (ports at w₀ + εŵ): if it held the
    sources, kept every sample valid and changed no diode state, its one-sided difference is the
    linear response exactly (the segment from the operating point lies in one region of the
    piecewise-linear network, where it is linear; the central difference gives the same to
    rounding), and the responses and v·v̂ are one more compiled call, with
    no − phase measured.  The samples whose + phase changed a state are measured in the − phase
    (those rows only): each whose − phase changed none takes its one-sided difference; those
    flipped in both phases continue in :func:`_hl_central`'s re-measurements (``resume``).  A
    phase the lane cannot take as it is (invalid or noisy samples, sources that moved), or
    ``max_retries`` 0 with a sample flipped in both phases, has the − phase of the whole batch
    measured, both phases taken as one stacked ± measurement: if every sample is then resolved
    (none flagged, or each from the phase that kept its states), the result is written here;
    anything else continues in :func:`_hl_central` from the phases already measured.
    ``widths``: (p, n, q, m) of :func:`_check_shapes`, whose checks ``op`` passed (or ``exact``: the
    board vouched for ``op`` against ``topo``, :attr:`~hil.board.Measurement.exact_for`)."""
    B = op.w.shape[0]
    _, n, q, m = widths
    val, w_hat, eps, w_both = np.empty(B), np.empty((B, q)), np.empty((B, 1)), np.empty((2 * B, q))
    x = _c(x)
    if exact:  # C-ordered float64 (bool) arrays of the topology's widths already
        y, w0, e0, u0, on0 = op.y, op.w, op.e, op.u, op.on
    else:
        y, w0, e0, u0, on0 = _c(op.y), _c(op.w), _c(op.e), _c(op.u), _c(op.on, _BOOL)
    if not cross_entropy_drive_kernel(y, labels, *loss._d_sparse, float(loss.gain_per_a), w0, delta_v,
                                      val, w_hat, eps, w_both):
        raise ValueError(loss._label_range())
    if not B:  # an empty batch measures nothing
        return _hl_central(board, topo, x, op, val, w_hat, delta_v, max_retries, keep_per_sample, flip_rel_tol)
    plus = board.measure(x, w_both[:B])  # (the first B rows: C-contiguous)
    plan = None if keep_per_sample else topo._response_plan()
    out = np.empty(m) if plan is not None else _NO_VALUES
    e_hat, w_resp = np.empty((B, n)), np.empty((B, q))
    blocks, sources = (plan[3], plan[4]) if plan is not None else (_NO_BLOCKS, NO_SOURCE_MAP)
    phase = _plus_arrays(plus, topo, op, n, q)
    if phase is not None:
        changed = np.empty(B, np.bool_)
        n_changed = hl_plus_phase_kernel(phase[0], phase[1], e0, w0, phase[2], on0,
                                         eps[:, 0], u0, blocks, sources, e_hat, w_resp, changed, out)
        # how ∂ℓ/∂u is assembled when read: one-sided from the + phase (see _central_source_grad)
        phases = [(slice(None), B, plus, eps, ("phase", None, 1.0, op))]
        if not n_changed:
            return _lean_result(topo, op, val, plan, out, e0, e_hat, w_resp, keep_per_sample, B, 0, 0, 0, 0, phases)
        rows = changed.nonzero()[0]  # (``take``: the gathers of a few rows cost a quarter of fancy indexing)
        minus = _minus_phase(board, topo, x.take(rows, axis=0), w_both[B:].take(rows, axis=0), (u0, e0, w0, on0),
                             rows, eps, e_hat, w_resp, blocks, sources, out)
        if minus is not None:
            minus, flipped, n_flipped = minus
            if not n_flipped:  # (the usual case) every one of them one-sided from its − phase (v·v̂ formed)
                phases.append((rows, n_changed, minus, eps.take(rows, axis=0), ("phase", None, -1.0, op)))
                return _lean_result(topo, op, val, plan, out, e0, e_hat, w_resp, keep_per_sample, B, n_changed, 0,
                                    n_changed, n_changed, phases)
            kept = ~flipped
            if n_flipped < n_changed:  # one-sided from the − phase where it kept every state
                phases.append((rows[kept], n_changed - n_flipped, minus, eps[rows[kept]],
                               ("phase", kept.nonzero()[0], -1.0, op)))
            if max_retries > 0:  # flipped in both phases: re-measured with smaller drives, those samples only
                return _hl_central(board, topo, x, op, val, w_hat, delta_v, max_retries, keep_per_sample,
                                   flip_rel_tol, resume=(eps, e_hat, w_resp, phases, rows[flipped], n_changed,
                                                         n_changed - n_flipped, n_changed))
    both = _StackedPhases(plus, board.measure(x, w_both[B:]), op)  # a state changed (or not lean): the − phase
    if not _lean_phase(both, op.u, op.on, 2, n, q):
        return _hl_central(board, topo, x, op, val, w_hat, delta_v, max_retries, keep_per_sample, flip_rel_tol,
                           (both, eps, w_both))
    flags = np.empty((6, B), np.bool_)
    counts = hl_first_pass_kernel(_c(both.e), _c(both.w), e0, w0, _c(both.on, _BOOL), on0,
                                  eps[:, 0], float(flip_rel_tol), u0, blocks, sources, e_hat, w_resp, flags,
                                  out)
    n_flagged, n_by_response, n_single, _ = counts
    if n_flagged != n_single:  # a sample to re-measure: the general bookkeeping (it repeats this pass)
        return _hl_central(board, topo, x, op, val, w_hat, delta_v, max_retries, keep_per_sample, flip_rel_tol,
                           (both, eps, w_both))
    phases = [(slice(None), B, both, eps, None)]
    if n_single:  # samples resolved from the phase that kept every state
        phases.append((np.arange(B), B, both, eps, ("pair", flags[4].nonzero()[0], flags[0], op)))
    return _lean_result(topo, op, val, plan, out, e0, e_hat, w_resp, keep_per_sample, B, n_flagged, n_by_response,
                        n_single, B, phases)


def _plus_arrays(plus: Measurement, topo, op: Measurement, n: int, q: int):
    """(e, w, on) of the + phase ``plus`` of the operating point ``op`` as C-ordered arrays when the
    lean lane can take it as it is (:func:`_lean_phase`; or, without looking at the arrays, when
    the board vouched for it against ``topo`` and says it held ``op``'s sources once), else None."""
    if getattr(plus, "exact_for", None) is topo:
        held = plus.held_sources
        if held is not None and held[0] is op.u and held[1] == 1:
            return plus.e, plus.w, plus.on
    if _lean_phase(plus, op.u, op.on, 1, n, q):
        return _c(plus.e), _c(plus.w), _c(plus.on, _BOOL)
    return None


def _lean_phase(m: Measurement, u0: np.ndarray, on0: np.ndarray, k: int, n: int, q: int) -> bool:
    """Whether the lean lane can take measurement ``m`` of ``k`` stacked phases of the operating point
    with source voltages ``u0`` (B, p) and diode states ``on0`` as it is: every sample valid, no
    reading noise, states reported, the sources held (as the board says, or compared), the
    shapes right (n hidden nodes, q ports)."""
    B = u0.shape[0]
    if not (_exact_rows(m, k * B, n, q) and on0.shape == (B, n)):
        return False
    held = m.held_sources if isinstance(m, Measurement) else None
    return (held is not None and held[0] is u0 and held[1] == k) or _sources_held(m.u, u0, k)


def _exact_rows(m: Measurement, rows: int, n: int, q: int) -> bool:
    """Whether measurement ``m`` has every sample valid, no reading noise, its diode states reported,
    and ``rows`` rows of n hidden nodes and q ports (what the lean lane reads of a phase, sources
    aside)."""
    on = m.on
    return m.valid is None and m.noise_v == 0 and on is not None and on.shape == (rows, n) \
        and m.e.shape == (rows, n) and m.w.shape == (rows, q)


def _minus_phase(board: Board, topo, x: np.ndarray, w_minus: np.ndarray, held: tuple, rows: np.ndarray,
                 eps: np.ndarray, e_hat: np.ndarray, w_resp: np.ndarray, blocks: np.ndarray, sources: np.ndarray,
                 out: np.ndarray) -> tuple[Measurement, np.ndarray, int] | None:
    """The − phase of the samples ``rows`` (inputs ``x``, port voltages ``w_minus`` = w₀ − εŵ of those
    samples; ``eps`` (B, 1) every sample's drive), whose + phase changed a diode state.  If the
    board took it as the lean lane needs (valid, exact, states reported, sources held), the
    responses of the samples whose − phase changed no state become its one-sided difference
    (v₀ − v₋)/ε (exact, as for the + phase) in ``e_hat`` and ``w_resp`` (B rows) and, when none
    changed a state and ``out`` has entries, the batch means of v·v̂ go into ``out`` (``blocks`` and
    ``sources`` of the response plan); (the measurement, which of ``rows`` changed a state in this
    phase too, how many did) is returned; else None (nothing written).  ``held``: the operating
    point's (u, e, w, on) as C-ordered arrays (float64; bool states).  A measurement the board
    vouched for against ``topo`` (:attr:`~hil.board.Measurement.exact_for`) is read as it is."""
    minus = board.measure(x, w_minus)
    K = rows.size
    if getattr(minus, "exact_for", None) is topo and minus.e.shape[0] == K:
        u, e, w, on = minus.u, minus.e, minus.w, minus.on
    elif _exact_rows(minus, K, e_hat.shape[1], w_resp.shape[1]):
        u, e, w, on = _c(minus.u), _c(minus.e), _c(minus.w), _c(minus.on, _BOOL)
    else:
        return None
    u0, e0, w0, on0 = held
    flipped = np.empty(K, np.bool_)
    n_flipped = hl_minus_rows_kernel(u, u0, e, w, on, e0, w0, on0, rows, eps, e_hat, w_resp, flipped, blocks, sources,
                                     out)
    return None if n_flipped < 0 else (minus, flipped, n_flipped)  # (−1: the sources were not held)


#: the statistics of a lean-lane gradient that do not depend on the batch (in the order callers see)
_LEAN_STATS = {"flipped_samples": 0, "flips_from_response": 0, "retries": 0, "one_sided": 0, "unresolvable": 0,
               "mirror_measured": 0, "invalid_samples": 0, "unresolved_flips": 0, "may_be_biased": False,
               "bias_note": None, "valid": None}


def _lean_result(topo, op: Measurement, val: np.ndarray, plan, out: np.ndarray, e0: np.ndarray, e_hat: np.ndarray,
                 w_resp: np.ndarray, keep_per_sample: bool, B: int, n_flagged: int, n_by_response: int,
                 n_single: int, n_mirror: int, phases: list) -> GradientResult:
    """The lean lane's result: the gradient (``out`` already holds v·v̂ of the dense groups when
    ``plan`` is given; hidden↔hidden edges added here), statistics (``n_mirror``: the samples whose
    − phase was measured), and ∂ℓ/∂u assembled from the ``phases`` when first read."""
    if plan is not None:
        if plan[2].size:  # hidden↔hidden edges
            edge_products_kernel(e0, _c(e_hat), plan[1][0], plan[1][1], 1.0 / B, plan[2], out)
        grad, per = out, None
    else:
        grad, per = _finish(topo, None, (op.u, op.e, op.w, e_hat, w_resp), keep_per_sample)
    stats = dict(_LEAN_STATS, flipped_samples=n_flagged, flips_from_response=n_by_response, one_sided=n_single,
                 mirror_measured=n_mirror, valid=_uniform_mask(True, B))
    res = _SourceGradOnRead.__new__(_SourceGradOnRead)  # every field set here (cheaper than __init__)
    res.__dict__.update(grad=grad, loss=val, op=op, _source_grad=None, per_sample=per, stats=stats,
                        _assemble=partial(_central_source_grad, op.u.shape, phases))
    return res


class _StackedPhases(Measurement):
    """The + and − phases of ``hl``, measured by two board calls with the same inputs, seen as the
    one stacked ± measurement :func:`_hl_central` reads: rows k and k + B are sample k's + and −
    phase.  Node voltages, port voltages, states and validity are stacked at once; source
    voltages, port currents, source currents and ``info`` (``{"phases": (plus info, minus info)}``)
    when first read.  The sources count as held twice when the board said each phase held them."""

    def __init__(self, plus: Measurement, minus: Measurement, op: Measurement):
        d = self.__dict__
        d.update(e=np.concatenate((plus.e, minus.e)), w=np.concatenate((plus.w, minus.w)),
                 on=None if plus.on is None or minus.on is None else np.concatenate((plus.on, minus.on)),
                 piecewise_linear=bool(plus.piecewise_linear and minus.piecewise_linear),
                 valid=None if plus.valid is None and minus.valid is None
                 else np.concatenate((valid_mask(plus), valid_mask(minus))),
                 noise_v=max(plus.noise_v, minus.noise_v), _parts=(plus, minus))
        held = [m.held_sources if isinstance(m, Measurement) else None for m in (plus, minus)]
        if all(h is not None and h[0] is op.u and h[1] == 1 for h in held):
            d["held_sources"] = (op.u, 2)

    def _stacked(self, name: str):
        d = self.__dict__
        if name not in d:
            plus, minus = d["_parts"]
            d[name] = np.concatenate((getattr(plus, name), getattr(minus, name)))
        return d[name]

    u = property(lambda self: self._stacked("u"))
    y = property(lambda self: self._stacked("y"))
    i_src = property(lambda self: self._stacked("i_src"))

    @property
    def info(self) -> dict:
        plus, minus = self.__dict__["_parts"]
        return {"phases": (plus.info, minus.info)}


_NO_VALUES = np.empty(0)
_NO_BLOCKS = np.zeros((0, 5), np.int64)


def _hl_central(board: Board, topo, x: np.ndarray, op: Measurement, val: np.ndarray, w_hat: np.ndarray,
                delta_v: float, max_retries: int, keep_per_sample: bool, flip_rel_tol: float,
                first=None, resume=None) -> GradientResult:
    """``hl`` with central differences: both perturbation phases of the samples still to measure
    as one stacked batch of 2k measurements per pass (see :func:`hl_gradient`).  ``first``: the
    first pass's stacked measurement of the whole batch, its ``eps`` (B, 1) and drives (2B, q),
    when already measured (by :func:`_hl_lean`).  ``resume``: the lean lane's state after its
    single phases, (eps (B, 1), e_hat (B, n), w_resp (B, q) with every sample but the ones to
    re-measure resolved, its ∂ℓ/∂u phases, the samples flipped in both phases (indices), the
    samples flagged in the + phase, those resolved from one phase, those whose − phase was
    measured): the passes continue with the re-measurement of those samples."""
    B = x.shape[0]
    p, n, q = op.u.shape[1], op.e.shape[1], op.w.shape[1]
    mirrored = B
    if first is not None:
        first, eps, w_both = first
    elif resume is not None:
        eps, e_hat, w_resp, source_phases, todo, flipped_total, one_sided, mirrored = resume
    else:
        eps = np.empty((B, 1))  # volts per unit ŵ, chosen per sample so that max|εŵ| = delta_v
        w_both = np.empty((2 * B, q))  # the + and − port voltages of every sample, for the first pass
        hl_drive_kernel(_c(w_hat), _c(op.w), delta_v, eps, w_both)
    # Node order [sources, hidden, ports, ground].  The responses of the hidden nodes and ports
    # (every sample is written by the first pass); when the sources hold the same voltages in
    # every phase (they follow x) they do not respond and the node arrays are never assembled
    # (``u_hat`` stays None).
    u_hat = n0 = None
    ok = valid_mask(op).copy() if op.valid is not None else None  # None: every sample valid so far
    seen_by_response, unreadable = 0, 0
    n_flagged, flags = 0, None
    if resume is None:
        e_hat, w_resp = np.empty((B, n)), np.empty((B, q))
        source_phases = []  # how each pass measured ∂ℓ/∂u; assembled from the readings when read
        rows = todo = slice(None)  # the first pass covers the whole batch: views instead of gathers
        xs, es, k = x, eps, B
        retries, flipped_total, one_sided = 0, 0, 0
    else:  # the lean lane's samples flipped in both phases: their first re-measurement
        retries, rows = 1, todo
        xs, es, k, w_both = _smaller_drives(x, op, w_hat, eps, todo)
    # element states that do not name their regions (two clamps): a phase that changed no state may
    # still have crossed a region, so no sample is resolved from one phase (see _held_source_phases)
    ambiguous = _ambiguous_states(op)
    while k:  # (an empty batch measures nothing)
        whole = retries == 0  # the first pass: the whole batch
        both = first if whole and first is not None else board.measure(np.concatenate([xs, xs]), w_both)
        noise = max(both.noise_v, op.noise_v)
        phase_ok = None if both.valid is None else valid_mask(both).reshape(2, k).all(axis=0)
        if op.valid is not None:  # a sample invalid at its operating point is left out: no flip of it to chase
            op_ok = valid_mask(op)[rows]
            phase_ok = op_ok if phase_ok is None else phase_ok & op_ok
        held = both.held_sources if isinstance(both, Measurement) else None
        flags = np.empty((6, k), np.bool_)  # plus_flip, minus_flip, by_response, readable, single, flips
        if (held is not None and whole and held[0] is op.u and held[1] == 2) \
                or _sources_held(both.u, op.u if whole else op.u[rows]):  # 0 in every response
            counts = _held_source_phases(op, rows, k, both, es, noise, flip_rel_tol, phase_ok, e_hat, w_resp,
                                         whole, flags, ambiguous)
            plus_flip = flags[0]
            pm = None  # one-sided responses are already written
        else:
            if n0 is None:
                n0 = topo.node_voltages(op)
            if u_hat is None:  # the sources moved: their responses are kept from now on
                u_hat = np.zeros((B, p))
            n_both = topo.node_voltages(both)
            npl, nmi, ref = n_both[:k], n_both[k:], n0[rows]
            diff = npl - nmi
            by_response = _c(_asymmetric(npl, ref, nmi, diff, noise, flip_rel_tol), _BOOL)
            readable = resolvable(both.e[:k] - both.e[k:], noise) if noise > 0 else _uniform_mask(True, k)
            _write_nodes(u_hat, e_hat, w_resp, rows, np.divide(diff, 2 * es, out=diff))
            sides = _flipped_sides(op, rows, k, both)
            if sides is not None and ambiguous:  # a change in either phase counts for both: no one-sided resolution
                sides = np.repeat(sides.any(axis=0)[None], 2, axis=0)
            pm = (npl, nmi, ref)
            # (from numpy formulas: contiguous bool arrays, as the compiled pass gives)
            plus_flip, minus_flip = (_c(sides[0], _BOOL), _c(sides[1], _BOOL)) if sides is not None \
                else (_uniform_mask(False, k),) * 2
            counts = flip_accounting_kernel(
                plus_flip, minus_flip, by_response,
                _uniform_mask(True, k) if phase_ok is None else _c(phase_ok, _BOOL), _c(readable, _BOOL),
                flags[4], flags[5])
        n_flagged, n_by_response, n_single, n_unreadable = counts
        source_phases.append((rows, k, both, es, None))
        if phase_ok is not None:
            ok = (valid_mask(op) if ok is None else ok).copy()
            ok[rows] &= phase_ok
        seen_by_response += n_by_response
        flipped_total += n_flagged
        unreadable += n_unreadable
        if n_flagged and isinstance(todo, slice):  # sample indices from here on
            todo = np.arange(B)
        if n_single:  # one phase kept every state: its one-sided difference is exact
            sel = flags[4].nonzero()[0]
            if pm is not None:
                npl, nmi, ref = pm
                side = np.where(plus_flip[sel][:, None], ref[sel] - nmi[sel], npl[sel] - ref[sel])
                _write_nodes(u_hat, e_hat, w_resp, todo[sel], side / es[sel])
            # (``es`` may be a view of ``eps``: only re-measured samples, never these, get a smaller drive)
            source_phases.append((todo, k, both, es, ("pair", sel, plus_flip, op)))
            one_sided += n_single
        if n_flagged == n_single + n_unreadable or retries >= max_retries:  # nothing left to re-measure
            break
        retries += 1
        rows = todo = todo[flags[5]]
        xs, es, k, w_both = _smaller_drives(x, op, w_hat, eps, todo)
    # samples re-measured as often as allowed and still flipped, and unreadable ones, keep a flipped estimate
    unresolved = (int(np.count_nonzero(flags[5])) if n_flagged else 0) + unreadable
    if u_hat is None:  # the sources held in every phase: the product from the parts
        n_hat = (op.u, op.e, op.w, e_hat, w_resp)
    else:  # (n0 was formed when the first response at the sources was)
        n_hat = np.concatenate([u_hat, e_hat, w_resp, np.zeros((B, 1))], axis=1)
    all_valid = ok is None
    if all_valid:  # a read-only "every sample valid" mask (no copy made)
        ok = _uniform_mask(True, B)
    return _result(topo, op, val, n0, n_hat, partial(_central_source_grad, op.u.shape, source_phases), ok,
                   keep_per_sample, True, unresolved,
                   {"flipped_samples": flipped_total, "flips_from_response": seen_by_response, "retries": retries,
                    "one_sided": one_sided, "unresolvable": unreadable, "mirror_measured": mirrored},
                   n_invalid=0 if all_valid else None)


def _smaller_drives(x: np.ndarray, op: Measurement, w_hat: np.ndarray, eps: np.ndarray, todo: np.ndarray):
    """A re-measurement of the samples ``todo``: their drives ``eps`` (B, 1) divided by 10 in place;
    returns their inputs, drives (k, 1), count and stacked ± port voltages (2k, q) in V."""
    eps[todo] /= 10.0
    es = eps[todo]
    w_both = np.empty((2 * todo.size, op.w.shape[1]))  # the given (smaller) drives
    hl_drive_kernel(_c(w_hat[todo]), _c(op.w[todo]), 0.0, _c(es), w_both)
    return x[todo], es, todo.size, w_both


_NO_STATES = np.zeros((0, 0), dtype=np.bool_)
_FIVE_SQRT6 = 5.0 * float(np.sqrt(6.0))  # 5 σ of a combination of three readings (per unit σ)
_ALL = np.ones(4096, dtype=np.bool_)  # shared read-only "every sample" / "no sample" masks
_ALL.setflags(write=False)
_NONE_FLIPPED = np.zeros(4096, dtype=np.bool_)
_NONE_FLIPPED.setflags(write=False)


def _uniform_mask(value: bool, k: int) -> np.ndarray:
    """A read-only bool mask of ``k`` samples all equal to ``value``: a view of a shared array
    (no allocation) for batches up to 4096, a new read-only array above."""
    shared = _ALL if value else _NONE_FLIPPED
    if k <= shared.size:
        return shared[:k]
    mask = np.full(k, bool(value))
    mask.setflags(write=False)
    return mask


def _write_nodes(u_hat: np.ndarray, e_hat: np.ndarray, w_hat: np.ndarray, rows, values: np.ndarray) -> None:
    """Write node-ordered responses ``values`` (k, nodes) of the samples ``rows`` into the source,
    hidden-node and port response arrays (the ground column is 0 in every response)."""
    p, n = u_hat.shape[1], e_hat.shape[1]
    u_hat[rows] = values[:, :p]
    e_hat[rows] = values[:, p:p + n]
    w_hat[rows] = values[:, p + n:p + n + w_hat.shape[1]]


def _held_source_phases(op: Measurement, rows, k: int, both: Measurement, es: np.ndarray, noise_v: float,
                        rel_tol: float, phase_ok: np.ndarray | None, e_hat: np.ndarray, w_hat: np.ndarray,
                        whole_batch: bool, flags: np.ndarray, ambiguous: bool = False) -> tuple[int, int, int, int]:
    """Responses, symmetry test, state comparison and flip bookkeeping of a stacked ± measurement
    whose sources held the operating point's voltages, in one compiled pass
    (:func:`hil.kernels.hl_held_pass_kernel`).

    Writes the responses of the hidden nodes and ports into ``e_hat[rows]`` and ``w_hat[rows]``
    (C-contiguous (B, n) and (B, q)): central, or, for a sample where exactly one phase changed
    a diode state (and both phases are valid), the other phase's one-sided difference; and
    (plus_flip, minus_flip, by_response, readable, single, flips) into ``flags`` (6, k) (the
    state changes stay False when the board reports no states or is not piecewise linear;
    readability by :func:`resolvable` on a board with reading noise).
    With ``ambiguous`` (the elements' states do not name their regions: two clamps, see
    :meth:`hil.circuit.laws.base.NodeElement.states_name_regions`) no sample is resolved from one
    phase: the phase that kept its states may have gone from one clamp to the other, so such a
    sample keeps its central response and is re-measured like any flagged one.
    Returns the counts of :func:`hil.kernels.flip_accounting_kernel`.
    """
    n, q = op.e.shape[1], op.w.shape[1]
    states = op.piecewise_linear and op.on is not None and both.on is not None
    e0, w0 = (op.e, op.w) if whole_batch else (op.e[rows], op.w[rows])
    if whole_batch:  # write straight into the result
        nh_e, nh_w = e_hat, w_hat
    else:
        nh_e, nh_w = np.empty((k, n)), np.empty((k, q))
    if both.e.shape != (2 * k, n) or both.w.shape != (2 * k, q) or e0.shape != (k, n):
        raise ValueError(f"± measurement of {k} samples: expected {2 * k} rows of {n} hidden nodes and {q} "
                         f"ports, got node voltages {both.e.shape} and ports {both.w.shape}")
    if states and (both.on.shape != (2 * k, n) or op.on.shape != op.e.shape):  # the kernel reads no bounds
        raise ValueError(f"± measurement of {k} samples: expected diode states of shape {(2 * k, n)} and "
                         f"{op.e.shape}, got {both.on.shape} and {op.on.shape}")
    noisy = noise_v > 0
    if noisy:  # would a flagged sample's response survive a 10× smaller drive?
        flags[3] = resolvable(both.e[:k] - both.e[k:], noise_v)
    counts = hl_held_pass_kernel(
        _c(both.e), _c(both.w), _c(e0), _c(w0), _c(both.on, _BOOL) if states else _NO_STATES,
        _c(op.on if whole_batch else op.on[rows], _BOOL) if states else _NO_STATES,
        _uniform_mask(True, k) if phase_ok is None else _c(phase_ok, _BOOL), _c(es[:, 0]), float(rel_tol),
        _FIVE_SQRT6 * noise_v, not noisy, nh_e, nh_w, flags, not ambiguous)
    if not whole_batch:
        e_hat[rows], w_hat[rows] = nh_e, nh_w
    return counts


def _sources_held(u_both: np.ndarray, u0: np.ndarray, k: int = 2) -> bool:
    """Whether the source voltages ``u_both`` (k·B, p) of ``k`` stacked phases are ``u0`` (B, p) k
    times (exactly: a NaN never matches), in one compiled comparison."""
    return u_both.ndim == 2 and u0.ndim == 2 and u_both.shape[0] == k * u0.shape[0] \
        and repeats_of(_c(u_both), _c(u0)) == k


_F64, _BOOL = np.dtype(np.float64), np.dtype(np.bool_)


def _c(a: np.ndarray, dtype: np.dtype = _F64) -> np.ndarray:
    """``a`` as a C-contiguous array of ``dtype`` (``_F64`` or ``_BOOL``; itself when it already is one:
    the identity test on the dtype is the quick path, an equal dtype object passes through
    ``np.ascontiguousarray`` without a copy)."""
    return a if a.dtype is dtype and a.flags.c_contiguous else np.ascontiguousarray(a, dtype=dtype)


def _flipped_sides(op: Measurement, rows, k: int, both: Measurement) -> np.ndarray | None:
    """(2, k) state changes in the + and − halves of a stacked measurement, or None when the
    board reports no states or is not piecewise linear (then states say nothing about linearity)."""
    if not op.piecewise_linear or op.on is None or both.on is None:
        return None
    return np.any(both.on.reshape(2, k, -1) != op.on[rows], axis=2)


def _central_source_grad(shape: tuple[int, int], phases: list) -> np.ndarray:
    """∂ℓ/∂u (B, p) from the source-current readings, in the order the passes measured them.

    Each entry is (batch rows, k, measurement, drives es of those rows, how): ``how`` None for a
    stacked ± measurement of k samples, (i₊ − i₋)/2ε; ("pair", sel, plus_flip, op) for its samples
    ``sel`` resolved from the phase that kept its states, (i₊ − i₀)/ε or (i₀ − i₋)/ε; ("phase",
    sel, sign, op) for a single phase (sign +1: the + phase, −1: the − phase) of which the
    measurement's rows ``sel`` (None: all) are the batch rows given, one-sided.  Later passes
    override earlier ones, as for the node responses.
    """
    i_hat = np.zeros(shape)
    for rows, k, both, es, how in phases:
        i_src = both.i_src
        if how is None:
            i_hat[rows] = (i_src[:k] - i_src[k:]) / (2 * es)
        elif how[0] == "phase":
            _, sel, sign, op = how
            i_hat[rows] = ((i_src if sel is None else i_src[sel]) - op.i_src[rows]) * sign / es
        else:
            _, sel, plus_flip, op = how
            rows = rows[sel]
            i0 = op.i_src[rows]
            i_hat[rows] = np.where(plus_flip[sel][:, None], i0 - i_src[k:][sel], i_src[:k][sel] - i0) / es[sel]
    return i_hat


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
    retries, flipped_total, seen_by_response, unreadable = 0, 0, 0, 0
    n_hidden = op.e.shape[1]
    while True:
        k = len(signs)
        nh = np.zeros((todo.size, n0.shape[1]))
        ih = np.zeros((todo.size, op.i_src.shape[1]))
        flips = np.zeros(todo.size, bool)
        phase_ok = np.ones(todo.size, bool)
        moved = np.zeros(todo.size)  # largest hidden-node response to one port's drive (± difference if central), V
        noise = op.noise_v
        for o in range(q):
            plus = per_port[k * o]
            minus = per_port[k * o + 1] if central else None
            npl = topo.node_voltages(plus)
            phase_ok &= valid_mask(plus)
            noise = max(noise, plus.noise_v)
            st = _flipped(op, todo, plus, minus)
            if central:
                nmi = topo.node_voltages(minus)
                phase_ok &= valid_mask(minus)
                noise = max(noise, minus.noise_v)
                resp = response_flips(npl, n0[todo], nmi, max(plus.noise_v, op.noise_v), flip_rel_tol)
                seen_by_response += int(np.sum(resp & ~st))
                st |= resp
                dn, di = (npl - nmi) / (2 * step), (plus.i_src - minus.i_src) / (2 * step)
            else:
                dn, di = (npl - n0[todo]) / step, (plus.i_src - op.i_src[todo]) / step
            if n_hidden:  # what a retry reads: the ± difference (central, as _hl_central judges) or the + response
                np.maximum(moved, np.abs(plus.e - (minus.e if central else op.e[todo])).max(axis=1), out=moved)
            flips |= st
            nh += w_hat[todo, o:o + 1] * dn
            ih += w_hat[todo, o:o + 1] * di
        n_hat[todo], i_hat[todo] = nh, ih
        ok[todo] &= phase_ok
        flips &= ok[todo]  # (invalid at the operating point or in a phase: left out, not re-measured)
        flipped_total += int(flips.sum())
        if noise > 0 and n_hidden:  # a retry whose response would drown in the reading noise is not made
            readable = resolvable(moved[:, None], noise)
            unreadable += int(np.count_nonzero(flips & ~readable))
            flips &= readable
        if not flips.any() or retries >= max_retries:
            break
        retries += 1
        todo, step = todo[flips], step[flips] / 10.0
        per_port = board.measure_phases(x[todo], phases(w0[todo], step))
    unresolved = int(flips.sum()) + unreadable  # both kept with a flipped estimate
    return _result(topo, op, val, n0, n_hat, i_hat, ok, keep_per_sample, central, unresolved,
                   {"flipped_samples": flipped_total, "flips_from_response": seen_by_response, "retries": retries,
                    "one_sided": 0, "unresolvable": unreadable, "mirror_measured": B if central else 0,
                    "phases": 1 + len(signs) * q})


def _invalid_note(n: int) -> str:
    """The part of a bias note on the ``n`` samples the board marked invalid."""
    return f"{n} invalid sample(s) left out of the batch mean"


def _unreadable_note(n: int) -> str:
    """The part of a bias note on flipped samples left without a further re-measurement (:func:`resolvable`;
    some may have been re-measured before)."""
    return f" ({n} of them not re-measured further: a drive 10× smaller than their last would bury their response " \
        "in the reading noise)" if n else ""


def _result(topo, op, val, n0, n_hat, i_hat, ok, keep_per_sample, central, unresolved, stats,
            n_invalid: int | None = None) -> GradientResult:
    """Batch-mean gradient over the valid samples only; invalid samples are counted, never used.

    The bias note says why the answer may be biased: unresolved flips, invalid samples left
    out, truncation of a non-piecewise-linear response, reading noise.  ``n_invalid``: the
    number of False entries of ``ok`` when the caller knows it.
    """
    if n_invalid is None:
        n_invalid = ok.size - int(np.count_nonzero(ok))
    wire = _wire_note(op) if op.info else None
    ambiguous = not central and op.piecewise_linear and _ambiguous_states(op)
    note = None
    if unresolved or n_invalid or not op.piecewise_linear or op.noise_v > 0 or wire or ambiguous:
        notes = []
        if unresolved:
            notes.append(f"{unresolved} sample(s) still had a diode flip after {stats['retries']} re-measurement(s)"
                         f"{_unreadable_note(stats.get('unresolvable', 0))}: their gradient mixes two linearizations")
        if n_invalid:
            notes.append(_invalid_note(n_invalid))
        if not op.piecewise_linear:
            notes.append(f"smooth diodes (or a board not known to be piecewise linear): "
                         f"{'central' if central else 'one-sided'} difference, truncation error "
                         f"O(delta_v{'²' if central else ''})")
        if op.noise_v > 0:
            notes.append(f"reading noise {op.noise_v:.3g} V per node voltage")
        if ambiguous:
            notes.append("one-sided difference on elements with two clamps: a node that went from one clamp to the "
                         "other within the drive changes no reported state, so such a flip goes undetected")
        if wire:
            notes.append(wire)
        note = "; ".join(notes)
    stats["invalid_samples"] = n_invalid
    stats["unresolved_flips"] = unresolved
    stats["may_be_biased"] = note is not None
    stats["bias_note"] = note
    grad, per = _finish_valid(topo, n0, n_hat, keep_per_sample, ok, n_invalid)
    stats["valid"] = ok
    if callable(i_hat):  # assembled from the phases' readings when first read
        res = _SourceGradOnRead(grad, val, op, source_grad=None, per_sample=per, stats=stats)
        res.__dict__["_assemble"] = i_hat
        return res
    return GradientResult(grad, val, op, source_grad=i_hat, per_sample=per, stats=stats)


def hl_exact_gradient(board: Board, x: np.ndarray, target: ArrayLike, loss: Loss, keep_per_sample: bool = False) -> GradientResult:
    """Exact linearized-circuit gradient (needs a board with :class:`ExactLinearization`)."""
    if not isinstance(board, ExactLinearization):
        raise TypeError("the hl-exact estimator needs a simulated board (linearized_response); use 'hl' on hardware")
    topo = board.topology
    op, val, w_hat = _operating_point(board, x, target, loss)
    e_hat, i_hat = board.linearized_response(x, w_hat)
    adj = Measurement(u=np.zeros_like(op.u), w=w_hat, y=np.zeros_like(op.y), i_src=i_hat, e=e_hat)
    ok = valid_mask(op)  # samples the board marked invalid are left out, as every estimator does
    n_invalid = ok.size - int(np.count_nonzero(ok))
    grad, per = _finish_valid(topo, topo.node_voltages(op), topo.node_voltages(adj), keep_per_sample, ok, n_invalid)
    note = "; ".join(n for n in (_invalid_note(n_invalid) if n_invalid else None, _exact_note(op)) if n) or None
    return GradientResult(grad, val, op, source_grad=i_hat, per_sample=per,
                          stats={"invalid_samples": n_invalid, "valid": ok, **_bias(note)})


def _exact_note(op: Measurement) -> str | None:
    """Why an ``hl-exact`` answer may not be the gradient: diodes exactly at their kink (the loss is
    not differentiable there), reading noise in the operating point, crossbar wires."""
    notes = []
    info = op.info or {}
    reports = [info.get("report")] + [st.get("report") for st in info.get("stages", ())]  # a cascade: per stage
    degenerate = sum(getattr(r, "degenerate", 0) or 0 for r in reports)
    if degenerate:
        notes.append(f"{degenerate} diode(s) exactly at their kink (zero voltage and current): the loss is not "
                     "differentiable there; the frozen state gives one one-sided derivative")
    if op.noise_v > 0:
        notes.append(f"reading noise {op.noise_v:.3g} V per node voltage in the operating point")
    wire = _wire_note(op)
    if wire:
        notes.append(wire)
    return "; ".join(notes) or None


def ep_gradient(board: Board, x: np.ndarray, target: ArrayLike, loss: Loss, beta: float | None = None, centred: bool = True,
                delta_v: float = 0.01, max_retries: int = 3, keep_per_sample: bool = False) -> GradientResult:
    """Equilibrium propagation with nudged port voltages w = w₀ ± β ŵ.

    β is in V·A per unit loss; when it is not given it is chosen per batch so that the
    largest nudge is ``delta_v`` volts (one β for the whole batch).  On ideal-diode boards a
    sample in which a diode changes state between the free and a nudged phase is
    re-measured with a 10× smaller β (up to ``max_retries`` times), as ``hl`` does.
    """
    if beta is not None and not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"ep: beta must be a positive, finite nudge strength in V·A per unit loss, got {beta!r}")
    if not (math.isfinite(delta_v) and delta_v > 0):
        raise ValueError(f"ep: delta_v must be a positive, finite nudge amplitude in volts, got {delta_v!r}")
    topo = board.topology
    op, val, w_hat = _operating_point(board, x, target, loss)
    if beta is None:
        peak = float(np.max(np.abs(w_hat), initial=0.0))
        beta = delta_v / peak if peak > 0 else 1.0
    betas = np.full((x.shape[0], 1), float(beta))
    n0 = topo.node_voltages(op)
    n_plus, n_other = np.zeros_like(n0), n0.copy()
    ok = valid_mask(op).copy()  # samples a phase marks invalid are left out of the gradient
    todo = np.arange(x.shape[0])
    retries, flipped_total = 0, 0
    # elements with two clamps: a jump from one to the other changes no reported state, only the
    # asymmetry of the two nudged phases shows it (see NodeElement.states_name_regions)
    ambiguous = centred and op.piecewise_linear and _ambiguous_states(op)
    while todo.size:
        xs, bs, ws, w0 = x[todo], betas[todo], w_hat[todo], op.w[todo]
        plus = board.measure(xs, w0 + bs * ws)
        minus = board.measure(xs, w0 - bs * ws) if centred else None
        n_plus[todo] = topo.node_voltages(plus)
        if centred:
            n_other[todo] = topo.node_voltages(minus)
        phase_ok = valid_mask(plus) & (valid_mask(minus) if centred else True)
        ok[todo] &= phase_ok
        flips = _flipped(op, todo, plus, minus) & phase_ok
        if ambiguous:
            flips |= response_flips(n_plus[todo], n0[todo], n_other[todo],
                                    max(plus.noise_v, minus.noise_v, op.noise_v)) & phase_ok
        flipped_total += int(flips.sum())
        if not flips.any() or retries >= max_retries:
            break
        retries += 1
        todo = todo[flips]
        betas[todo] /= 10.0
    unresolved = int(flips.sum()) if todo.size else 0
    n_invalid = ok.size - int(np.count_nonzero(ok))
    # v+² − v₋² = (v+ − v₋)(v+ + v₋): a product of two branch differences.
    scale = 4 * betas if centred else 2 * betas
    grad, per = _finish_valid(topo, n_plus - n_other, (n_plus + n_other) / scale, keep_per_sample, ok, n_invalid)
    notes = []
    if unresolved:
        notes.append(f"{unresolved} sample(s) still had a diode flip after {retries} re-measurement(s): "
                     "their gradient mixes two linearizations")
    if not centred:
        notes.append("one-sided nudge: bias O(beta) (0.5·beta·v̂² per conductance)")
    elif not op.piecewise_linear:
        notes.append("smooth diodes: centred nudge, bias O(beta²)")
    if n_invalid:
        notes.append(_invalid_note(n_invalid))
    if op.noise_v > 0:
        notes.append(f"reading noise {op.noise_v:.3g} V per node voltage, divided by the nudge")
    note = "; ".join(n for n in (*notes, _wire_note(op)) if n) or None
    return GradientResult(grad, val, op, per_sample=per,
                          stats={"beta": float(beta), "flipped_samples": flipped_total, "retries": retries,
                                 "unresolved_flips": unresolved, "invalid_samples": n_invalid, "valid": ok,
                                 **_bias(note)})


def _typical_conductance(g: np.ndarray, g_floor: float) -> float:
    """Median of the non-zero conductances (S): the scale a step is compared against."""
    nz = np.abs(g[g != 0])
    return max(float(np.median(nz)) if nz.size else 0.0, g_floor)


def _one_sided_slope(f0: float, f1: float, f2: float, h1: float, h2: float) -> float:
    """f'(0) from f(0), f(h1), f(h2) on one side, second order: the three-point formula for the steps the
    board actually programmed (h2 = 2·h1 gives (−3f₀ + 4f₁ − f₂)/(2h₁)); first order from the one
    point that moved when the other did not move or coincides with it; 0 when neither moved."""
    if h1 and h2 and h1 != h2:  # exact for f = f0 + a·h + b·h², from the differences (no cancellation of f0)
        return (h2 * h2 * (f1 - f0) - h1 * h1 * (f2 - f0)) / (h1 * h2 * (h2 - h1))
    if h1:
        return (f1 - f0) / h1
    return (f2 - f0) / h2 if h2 else 0.0


def fd_gradient(board: Board, x: np.ndarray, target: ArrayLike, loss: Loss, rel_step: float | None = None,
                g_floor: float = 1e-9, max_retries: int = 3) -> GradientResult:
    """Finite differences of the batch-mean loss, one conductance at a time (a reference; slow).

    Step: ``h = rel_step · max(|g_k|, ḡ)`` with ḡ the median non-zero conductance of the
    board, so that a small conductance (a leak) still changes the loss well above rounding;
    ``rel_step`` defaults to 1e-4, which balances the O(h²) truncation error of the loss's
    own curvature against rounding.  Central differences where
    ``g ± h`` is programmable, otherwise the second-order one-sided formula towards the inside of
    the range, (−3f₀ + 4f₁ − f₂)/(2h) for steps h and 2h, written for the steps the board actually
    programmed (:func:`_one_sided_slope`).  On ideal-diode boards a step
    during which a diode changes state is retried 10× smaller (up to ``max_retries``), except on a
    board that draws new devices at every programming event (``info["redraws_on_write"]``), where
    every step is another board and the note says so.
    The board's operating point warm-starts every perturbed solve.

    Every step reprograms the board, so the base vector (the read-back) is programmed once
    before the operating point is measured: the operating point and every perturbed
    measurement then see one board.  A board whose programming is not exact (levels,
    spread, programming noise) ends on other device values than it started with; the bias
    note says so, and names conductances whose ± steps left the loss exactly unchanged
    (a step below one programmable level, a stuck device).
    """
    if rel_step is not None and not (math.isfinite(rel_step) and rel_step > 0):
        raise ValueError(f"fd: rel_step must be a positive, finite relative step, got {rel_step!r}")
    g0 = board.read_conductances()
    g_min, g_max = board.conductance_bounds
    board.program(g0, rel_tol=0.0)  # a no-op on a board that holds what it reads back
    op = board.measure(x)
    val, _ = loss.value_and_grad(op.y, target)
    ok = valid_mask(op)  # the loss is the mean over the operating point's valid samples
    whole = bool(ok.all())
    f0 = float(val.mean() if whole else val[ok].mean()) if ok.any() else 0.0
    lost = [0]  # perturbed measurements in which a valid sample went invalid
    if rel_step is None:
        rel_step = 1e-4
    redraw = op.info.get("redraws_on_write") if op.info else None
    if redraw:  # every step is another board: a state change is the new devices', a smaller step does not help
        max_retries = 0
    g_bar = _typical_conductance(g0, g_floor)
    grad = np.zeros_like(g0)
    one_sided, unresolved, flat = 0, 0, 0
    rows = np.arange(x.shape[0])

    def at(k: int, value: float) -> tuple[float, float, bool]:
        g = g0.copy()
        g[k] = value
        applied = as_program_result(g, board.program(g, rel_tol=0.0), (g_min, g_max)).achieved[k]
        m = board.measure(x)
        v = loss.value_and_grad(m.y, target)[0]
        if m.valid is not None and not valid_mask(m)[ok].all():
            lost[0] += 1
            v = np.where(valid_mask(m), v, val)  # never a difference of an invalid reading: no change
        return float(v.mean() if whole else v[ok].mean()), float(applied), bool(_flipped(op, rows, m).any())

    try:
        for k in range(g0.size if ok.any() else 0):
            h = rel_step * max(abs(g0[k]), g_bar)
            for attempt in range(max_retries + 1):
                if g0[k] - h >= g_min and g0[k] + h <= g_max:
                    (fp, gp, a), (fm, gm, b) = at(k, g0[k] + h), at(k, g0[k] - h)
                    flat += fp == fm == f0
                    grad[k], flipped, side = (fp - fm) / (gp - gm) if gp != gm else 0.0, a or b, False
                else:
                    sign = 1.0 if g0[k] + 2 * h <= g_max else -1.0
                    if g0[k] + sign * 2 * h < g_min or g0[k] + sign * 2 * h > g_max:
                        h /= 10.0  # the range is narrower than 2h on both sides
                        continue
                    (f1, g1, a), (f2, g2, b) = at(k, g0[k] + sign * h), at(k, g0[k] + 2 * sign * h)
                    flat += f1 == f2 == f0
                    grad[k], flipped, side = _one_sided_slope(f0, f1, f2, g1 - g0[k], g2 - g0[k]), a or b, True
                if not flipped:
                    break
                h /= 10.0
            one_sided += side
            unresolved += flipped
    finally:
        board.program(g0, rel_tol=0.0)
    moved = board.read_conductances()
    moved = float(np.max(np.abs(moved - g0) / np.maximum(np.abs(g0), g_bar), initial=0.0))
    notes = []
    if redraw:
        notes.append(f"{redraw}: every step measures another board, so each difference mixes the step with the "
                     "change of devices (diode-state changes between the operating point and a step come from "
                     "that too, and no step is retried smaller)")
    elif unresolved:
        notes.append(f"{unresolved} conductance(s): a diode flipped within the smallest step tried")
    else:
        notes.append(f"finite differences: truncation error O(h²) with h = {rel_step:g}·max(|g|, {g_bar:.3g} S)")
    n_invalid = ok.size - int(np.count_nonzero(ok))
    if n_invalid:
        notes.append(_invalid_note(n_invalid))
    if lost[0]:
        notes.append(f"{lost[0]} perturbed measurement(s) made a valid sample invalid: that sample's difference counts as 0")
    if op.noise_v > 0:
        notes.append(f"reading noise {op.noise_v:.3g} V: each difference divides it by the step")
    if flat:
        notes.append(f"{flat} conductance(s) whose ± steps left the loss exactly unchanged (a step below one "
                     "programmable level, a stuck device, or a gradient that is exactly 0, as for a device "
                     "on a clamped node): their gradient reads 0")
    if op.info and op.info.get("varying_conductances"):  # (wires do not bias FD: it steps the devices)
        notes.append(op.info["varying_conductances"])
    if moved > 1e-9:
        notes.append(f"the board reads back up to {100 * moved:.3g} % (of max(|g|, ḡ)) away from where it started: "
                     "its programming is not exact (levels, spread, programming or read noise), so the steps "
                     "differentiate through the programming")
    return GradientResult(grad, val, op, stats={"rel_step": rel_step, "typical_conductance_s": g_bar,
                                                "one_sided": one_sided, "unresolved_flips": unresolved,
                                                "invalid_samples": n_invalid, "valid": ok,
                                                "unresponsive": flat, "board_moved_rel": moved,
                                                **_bias("; ".join(notes))})


def estimate(name: str, board: Board, x: ArrayLike, target: ArrayLike, loss: Loss,
             options: dict | None = None) -> GradientResult:
    """Dispatch by estimator name (``hl``, ``hl-exact``, ``ep``, ``fd``); ``hl`` on a cascade board
    runs stage by stage in backward order (:mod:`hil.train.cascade_hl`)."""
    opts = options if options is not None else {}
    if len(x) == 0:  # the batch mean of nothing: NaN in every component, which no optimizer should take
        raise ValueError(f"{name}: an empty batch has no gradient (give at least one input vector)")
    if name == "hl" and getattr(board, "needs_backward_order", False):
        from hil.train.cascade_hl import cascade_hl_gradient  # backward order, stage by stage

        return cascade_hl_gradient(board, x, target, loss, **opts)
    if name == "ep" and getattr(board, "needs_backward_order", False):
        from hil.config import ConfigError  # (what a config would refuse: one line naming the estimator)

        raise ConfigError(["estimator: 'ep' perturbs output ports only, which does not reach the earlier "
                           "stages of a cascade; use 'hl' or 'hl-exact' (backward order) or 'fd'"])
    if name == "hl":
        return hl_gradient(board, x, target, loss, **opts)
    if name == "hl-exact":
        return hl_exact_gradient(board, x, target, loss, **opts)
    if name == "ep":
        return ep_gradient(board, x, target, loss, **opts)
    if name == "fd":
        return fd_gradient(board, x, target, loss, **opts)
    raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
