"""What wire resistance does to a gradient formed at the line terminals.

A bench measures voltages at the terminals of a crossbar's lines (sources, hidden nodes,
output ports), not at every cell.  With wires (:mod:`hil.circuit.wires`) the voltage across a
device differs from the difference of its two line-terminal voltages by the IR drop along both
lines, so the hardware-linearization product v·v̂ formed from terminal voltages is not the
gradient for the device conductances.  This module gives

* :func:`ir_drop_estimate`: a first-order size of that difference, relative to the device
  voltages, from the conductances and the wire spec alone (what a board reports so that an
  estimator can say its answer may be biased);
* :func:`device_voltages`: the exact voltage across every device of one crossbar from its
  terminal voltages (the full nodal system of :func:`~hil.circuit.wires.array_laplacian`,
  the wire nodes solved by sparse LU);
* :func:`device_gradient`: the exact gradient ∂ℓ/∂g for every device from the operating
  point and the adjoint (hl drive) terminal voltages — the reference the terminal product is
  compared with (``benchmarks/wire_gradient.py``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from hil.circuit.wires import WireSpec, array_laplacian


def ir_drop_estimate(g: np.ndarray, spec: WireSpec) -> float:
    """Largest first-order IR drop along one line of crossbar ``g`` (R, C), relative to the device voltages.

    A row line is fed at column 0 (through ``r_source``): to first order (every device at the
    same voltage V) the drop at its far end is V·(r_source·Σ_k g_k + r_wire_row·Σ_k k·g_k),
    k = 0..C−1 the distance in segments.  A column line leaves at row R−1 (through
    ``r_terminal``): V·(r_terminal·Σ_i g_i + r_wire_col·Σ_i (R−1−i)·g_i).  Returns the largest
    of these ratios over all lines (dimensionless; Ω·S).
    """
    g = np.asarray(g, dtype=float)
    R, C = g.shape
    rows = spec.r_source * g.sum(axis=1) + spec.r_wire_row * (g @ np.arange(C))
    cols = spec.r_terminal * g.sum(axis=0) + spec.r_wire_col * (np.arange(R)[::-1] @ g)
    return float(max(rows.max(initial=0.0), cols.max(initial=0.0)))


def device_voltages(g: np.ndarray, spec: WireSpec, v_terminals: np.ndarray) -> np.ndarray:
    """Voltage across every device (row-line node minus column-line node), (B, R, C) in V.

    ``g`` (R, C) in S; ``v_terminals`` (B, R + C) in V: the R row terminals then the C column
    terminals.  The wire nodes carry no injected current, so they follow from the terminal
    voltages through the full nodal system (exact to rounding).
    """
    g = np.asarray(g, dtype=float)
    lap, T, row, col = array_laplacian(g, spec)
    v_t = np.atleast_2d(np.asarray(v_terminals, dtype=float))
    if v_t.shape[1] != T:
        raise ValueError(f"expected {T} terminal voltages per sample, got {v_t.shape[1]}")
    inner = lap[T:, T:].tocsc()
    coupling = lap[T:, :T]
    v_inner = -spla.splu(inner).solve(np.asarray(coupling @ v_t.T))
    v = np.vstack([v_t.T, v_inner])  # (N, B)
    return np.moveaxis(v[row] - v[col], -1, 0)


def device_gradient(g_in: np.ndarray, g_out: np.ndarray, spec: WireSpec, u: np.ndarray, e: np.ndarray,
                    w: np.ndarray, e_hat: np.ndarray, w_hat: np.ndarray) -> dict[str, np.ndarray]:
    """Exact batch-mean v·v̂ across every device of the two crossbars (1/S per unit loss).

    ``g_in`` (n, p) and ``g_out`` (q, n) in S; operating point: source voltages ``u`` (B, p),
    hidden nodes ``e`` (B, n), ports ``w`` (B, q) in V; adjoint (the hl drive ŵ at the ports,
    sources held): ``e_hat`` (B, n) and ``w_hat`` (B, q).  Returns ``{"g_in": (n, p),
    "g_out": (q, n)}`` with the sign convention of the hl estimators (the terminal product
    v·v̂ in place of the device product gives their answer).
    """
    zeros = np.zeros_like(np.atleast_2d(u))
    dv = device_voltages(np.asarray(g_in).T, spec, np.hstack([u, e]))
    dv_hat = device_voltages(np.asarray(g_in).T, spec, np.hstack([zeros, e_hat]))
    out = {"g_in": np.mean(dv * dv_hat, axis=0).T}
    dv = device_voltages(np.asarray(g_out).T, spec, np.hstack([e, w]))
    dv_hat = device_voltages(np.asarray(g_out).T, spec, np.hstack([e_hat, w_hat]))
    out["g_out"] = np.mean(dv * dv_hat, axis=0).T
    return out
