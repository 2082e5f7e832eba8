"""The ``hl`` estimator on buffered cascades: the backward order measured stage by stage.

A cascade's buffers carry signals forwards only, so perturbing the output ports excites the
last stage alone.  The gradient is measured in backward order, every phase a small-signal
measurement around the operating point (physical hardware linearization, no frozen switches):

1. operating point of the whole cascade (one measurement, every stage held);
2. last stage S: its output ports at w₀ ± ε ŵ with ŵ = −∂ℓ/∂y.  The central difference of
   its node voltages gives v̂ and ∂ℓ/∂g = v·v̂ for its conductances; the difference of the
   currents its sources (buffer outputs and rails) deliver gives î_S = ∂ℓ/∂u_S;
3. the signal crosses the buffers backwards digitally: ∂ℓ/∂x_S = î_S·du_S/dx_S (plain and
   inverted copies summed), and a buffer of gain A sensing node k of stage S−1 makes
   ∂ℓ/∂e_{S−1}[k] = A·∂ℓ/∂x_S[j];
4. stage S−1 at its operating point: current sources at its buffered nodes inject ±ε ĵ with
   ĵ = −∂ℓ/∂e_{S−1} (its own ports are driven too if they enter the loss).  Its inputs stay
   at their operating point (the buffers before it draw no current), so the difference of
   its node voltages is its linearised response: ∂ℓ/∂g = v·v̂ and î_{S−1} as in step 2;
5. down to stage 0.

Each stage's phases are checked for flips as the one-stage ``hl`` does it (state changes on
piecewise-linear elements, asymmetric ± responses on any board); a flagged sample is measured
again with a 10× smaller ε, up to ``max_retries`` times.  A sample left with a flip in stage s
also biases every earlier stage (their injected signal comes from stage s), which the bias
note says.  The board needs :class:`hil.board.BufferedInjection`.
"""

from __future__ import annotations

import numpy as np

from hil.board import Measurement, StageLayout, require_buffered_injection, valid_mask
from hil.train.estimators import GradientResult, _invalid_note, _unreadable_note, resolvable, response_flips
from hil.train.losses import Loss


def _stage_view(m: Measurement, lay: StageLayout) -> Measurement:
    """The part of a whole-cascade measurement that belongs to one stage."""
    return Measurement(u=m.u[:, lay.sources], w=m.w[:, lay.outputs], y=m.y[:, lay.outputs],
                       i_src=m.i_src[:, lay.sources], e=m.e[:, lay.hidden],
                       on=None if m.on is None else m.on[:, lay.hidden],
                       piecewise_linear=m.piecewise_linear, valid=m.valid, noise_v=m.noise_v)


def _node_conductance(lay: StageLayout, g: np.ndarray) -> np.ndarray:
    """Total programmed conductance (S) attached to each hidden node of a stage (n_s,)."""
    topo = lay.topology
    kinds = np.array(topo.node_kinds)
    total = np.zeros(len(kinds))
    np.add.at(total, topo.edges[:, 0], g)
    np.add.at(total, topo.edges[:, 1], g)
    return total[kinds == "hidden"]


def _stage_states_changed(op_s: Measurement, rows: np.ndarray, both: Measurement, k: int) -> np.ndarray:
    """(k,) element state changes between the held stage and either phase of [plus; minus]."""
    if not op_s.piecewise_linear or op_s.on is None or both.on is None:
        return np.zeros(k, bool)
    return np.any(both.on.reshape(2, k, -1) != op_s.on[rows], axis=(0, 2))


def cascade_hl_gradient(board, x: np.ndarray, target, loss: Loss, delta_v: float = 0.01, central: bool = True,
                        max_retries: int = 3, keep_per_sample: bool = False, flip_rel_tol: float = 1e-3,
                        one_sweep: bool | None = None) -> GradientResult:
    """Hardware-linearization gradient of a cascade in backward order (see the module docstring).

    Args:
        board: a board with :class:`hil.board.BufferedInjection` (else
            :class:`hil.board.UnsupportedCapability`).
        x: inputs (B, n_inputs), V.  target: labels or targets for ``loss``.
        delta_v: drive amplitude, V: the port drive is scaled so that max|εŵ| = delta_v, the
            injected currents so that max_k |εĵ_k| / G_k = delta_v (G_k: conductance programmed
            at node k, so the node's excursion is about delta_v).
        central: central differences (two phases per stage, error O(ε²) on smooth elements) or
            one-sided (one phase, error O(ε)).
        max_retries: re-measurements of flagged samples with a 10× smaller ε, per stage.
        keep_per_sample: also return the per-sample products (B, m).
        flip_rel_tol: accuracy asked of the ± symmetry check (:func:`response_flips`).
        one_sweep: not available on cascades (each stage needs the previous stage's answer).

    Returns:
        :class:`GradientResult` with ``source_grad`` = ∂ℓ/∂u of every stage (B, Σp), 1/V per
        unit loss, and ``stats`` per stage (``stages``) and in total.
    """
    if one_sweep:
        from hil.config import ConfigError  # (what a config would refuse: one line naming the option)

        raise ConfigError(["one_sweep: a cascade is measured stage by stage (each stage's drive comes from the "
                           "stage after it); leave it unset (train.hl.one_sweep in a config)"])
    board = require_buffered_injection(board, "the 'hl' estimator on a cascade")
    layouts = board.stage_layouts
    x = np.atleast_2d(np.asarray(x, dtype=float))
    B = x.shape[0]
    op = board.measure(x)
    val, dy = loss.value_and_grad(op.y, target)
    w_hat_all = -dy
    g_all = board.read_conductances()
    ok = valid_mask(op).copy()
    grad = np.zeros(g_all.size)
    per = np.full((B, g_all.size), np.nan) if keep_per_sample else None
    i_hat_all = np.zeros_like(op.i_src)
    biased_from = np.zeros(B, bool)  # samples with an unresolved flip in this or a later stage
    stage_stats: list[dict] = []
    responses: list[tuple[StageLayout, np.ndarray, np.ndarray]] = []
    dl_dx_next = None  # ∂ℓ/∂(logical inputs of the stage after this one), (B, n_inputs of that stage)
    phases = 1
    for s in range(len(layouts) - 1, -1, -1):
        lay = layouts[s]
        topo = lay.topology
        op_s = _stage_view(op, lay)
        n0 = topo.node_voltages(op_s)
        w_hat = w_hat_all[:, lay.outputs]
        j_hat = None
        if dl_dx_next is not None:
            nxt = layouts[s + 1]
            j_hat = -nxt.gain * dl_dx_next  # (B, buffers): −∂ℓ/∂e at every buffer's node, A per unit ε
        volts = np.max(np.abs(w_hat), axis=1, initial=0.0)
        if j_hat is not None:
            g_node = _node_conductance(lay, g_all[lay.params])[layouts[s + 1].buffered]
            volts = np.maximum(volts, np.max(np.abs(j_hat) / np.maximum(g_node, 1e-300), axis=1, initial=0.0))
        eps = (delta_v / np.where(volts > 0, volts, 1.0))[:, None]  # (B, 1) drive scale, V·A per unit loss
        n_hat = np.zeros_like(n0)
        i_hat = np.zeros_like(op_s.i_src)
        todo = np.arange(B)
        retries, flipped, from_response, excursion = 0, 0, 0, 0.0
        unreadable = np.zeros(0, int)  # flagged samples whose retry would drown in the reading noise
        flags = np.zeros(0, bool)
        signs = (1.0, -1.0) if central else (1.0,)
        while todo.size:
            es = eps[todo]
            w0 = op_s.w[todo]
            w = np.concatenate([w0 + sg * es * w_hat[todo] for sg in signs])
            inj = None if j_hat is None else np.concatenate([sg * es * j_hat[todo] for sg in signs])
            m = board.measure_stage(x[todo], s, w=w, injected=inj)
            phases += len(signs)
            k = todo.size
            nodes = topo.node_voltages(m)
            phase_ok = valid_mask(m).reshape(len(signs), k).all(axis=0)
            noise = max(m.noise_v, op.noise_v)
            if central:
                npl, nmi = nodes[:k], nodes[k:]
                flags = _stage_states_changed(op_s, todo, m, k)
                by_response = response_flips(npl, n0[todo], nmi, noise, flip_rel_tol)
                from_response += int(np.count_nonzero(by_response & ~flags))
                flags |= by_response
                n_hat[todo] = (npl - nmi) / (2 * es)
                i_hat[todo] = (m.i_src[:k] - m.i_src[k:]) / (2 * es)
                excursion = max(excursion, float(np.max(np.abs(m.e[:k] - op_s.e[todo]), initial=0.0)))
            else:
                flags = np.zeros(k, bool)
                if op_s.piecewise_linear and op_s.on is not None and m.on is not None:
                    flags = np.any(m.on != op_s.on[todo], axis=1)
                n_hat[todo] = (nodes - n0[todo]) / es
                i_hat[todo] = (m.i_src - op_s.i_src[todo]) / es
                excursion = max(excursion, float(np.max(np.abs(m.e - op_s.e[todo]), initial=0.0)))
            ok[todo] &= phase_ok
            flags &= phase_ok
            flipped += int(np.count_nonzero(flags))
            if noise > 0 and topo.n_hidden:  # (see hil.train.estimators.resolvable)
                readable = resolvable(m.e[:k] - (m.e[k:] if central else op_s.e[todo]), noise)  # what a retry reads
                unreadable = np.concatenate([unreadable, todo[flags & ~readable]])
                flags &= readable
            if not flags.any() or retries >= max_retries:
                break
            retries += 1
            todo = todo[flags]
            eps[todo] /= 10.0
        unresolved = np.concatenate([todo[flags] if todo.size and flags.size else np.zeros(0, int), unreadable])
        biased_from[unresolved] = True
        i_hat[~ok] = 0.0  # an unusable sample sends nothing back
        i_hat_all[:, lay.sources] = i_hat
        responses.append((lay, n0, n_hat))
        stage_info = (op.info or {}).get("stages") or [None] * len(layouts)
        stage_stats.append({"stage": s, "flipped_samples": flipped, "flips_from_response": from_response,
                            "retries": retries, "unresolved_flips": int(unresolved.size),
                            "unresolvable": int(unreadable.size),
                            "max_excursion_v": excursion,  # largest hidden-node move in a phase, V
                            "piecewise_linear": bool(op_s.piecewise_linear),
                            # two clamps per element: "no state changed" does not mean "stayed linear"
                            "ambiguous_states": bool((stage_info[s] or {}).get("ambiguous_states"))})
        dl_dx_next = i_hat @ topo.source_matrix if s else None
    stage_stats.reverse()
    for lay, n0, n_hat in responses:  # batch means over the samples valid in every stage
        if ok.any():
            grad[lay.params] = lay.topology.mean_branch_product(n0[ok], n_hat[ok])
        if keep_per_sample:
            e = lay.topology.edges
            prod = (n0[:, e[:, 0]] - n0[:, e[:, 1]]) * (n_hat[:, e[:, 0]] - n_hat[:, e[:, 1]])
            per[:, lay.params] = np.where(ok[:, None], prod, np.nan)
    return GradientResult(grad, val, op, source_grad=i_hat_all, per_sample=per,
                          stats=_stats(stage_stats, ok, biased_from, op, central, phases))


def _stats(stage_stats: list[dict], ok: np.ndarray, biased_from: np.ndarray, op: Measurement, central: bool,
           phases: int) -> dict:
    """Totals over the stages and the bias note (why the answer may be biased), as every estimator returns."""
    notes = []
    n_invalid = ok.size - int(np.count_nonzero(ok))
    n_biased = int(np.count_nonzero(biased_from & ok))
    for st in stage_stats:
        if st["unresolved_flips"]:
            notes.append(f"stage {st['stage']}: {st['unresolved_flips']} sample(s) still had an element flip after "
                         f"{st['retries']} re-measurement(s)" + _unreadable_note(st["unresolvable"])
                         + ": their gradient mixes two linearizations"
                         + (f" in stages 0..{st['stage']}" if st["stage"] else ""))
    if n_invalid:
        notes.append(_invalid_note(n_invalid))
    smooth = [st["stage"] for st in stage_stats if not st["piecewise_linear"]]
    if smooth:
        notes.append(f"stage(s) {', '.join(map(str, smooth))} not piecewise linear: "
                     f"{'central' if central else 'one-sided'} difference, truncation error "
                     f"O(delta_v{'²' if central else ''}), carried back to the earlier stages")
    ambiguous = [st["stage"] for st in stage_stats if st["ambiguous_states"]]
    if ambiguous and not central:
        notes.append(f"stage(s) {', '.join(map(str, ambiguous))} have elements with two clamps (clip, antiparallel), "
                     "whose states do not change when a node goes from one clamp to the other: a one-sided "
                     "difference cannot see such a jump (the central one flags it by the asymmetry of its phases)")
    if op.noise_v > 0:
        notes.append(f"reading noise {op.noise_v:.3g} V per node voltage")
    note = "; ".join(notes) if notes else None
    return {"stages": stage_stats, "flipped_samples": sum(st["flipped_samples"] for st in stage_stats),
            "flips_from_response": sum(st["flips_from_response"] for st in stage_stats),
            "retries": sum(st["retries"] for st in stage_stats), "unresolved_flips": n_biased,
            # every flagged sample is re-measured (none resolved from one phase), every − phase measured
            # (unresolvable: the sum over the stages, a sample once per stage it stopped in; unresolved_flips: samples)
            "one_sided": 0, "unresolvable": sum(st["unresolvable"] for st in stage_stats),
            "mirror_measured": ok.size if central else 0,
            "invalid_samples": n_invalid, "phases": phases, "valid": ok,
            "may_be_biased": note is not None, "bias_note": note}
