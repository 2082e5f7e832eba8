"""Wire resistance: the Kron-reduced terminal model against independent full nodal solves.

Oracles: (1) a full nodal system assembled here cell by cell (every wire node an unknown)
and solved densely, for a linear network; (2) ngspice on a deck with every wire node and
wire resistor written out, for a Shockley network (spice_compat: agreement to ~1e-12 V).
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from hil.circuit.coupling import Coupling
from hil.circuit.generate import random_circuit
from hil.circuit.solve import EquilibriumSolver
from hil.circuit.spice import run_ngspice, write_netlist
from hil.circuit.wires import WireSpec, apply_wires

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")


def _cells(circuit, spec):
    """Every resistor of the wired network as (node_a, node_b, conductance) with string node names."""
    out = []
    for arr, rows, cols, tag in (("g_in", circuit.source_names, circuit.hidden_names, "i"),
                                 ("g_out", circuit.hidden_names, circuit.output_names, "o")):
        g = getattr(circuit, arr).T  # (rows, cols)
        R, C = g.shape
        rn = lambda i, j: (rows[i] if (j == 0 and spec.r_source == 0) else f"{tag}r{i}_{j}")
        cn = lambda i, j: (cols[j] if (i == R - 1 and spec.r_terminal == 0) else f"{tag}c{i}_{j}")
        for i in range(R):
            for j in range(C):
                if g[i, j] > 0:
                    out.append((rn(i, j), cn(i, j), g[i, j]))
                if j + 1 < C:
                    out.append((rn(i, j), rn(i, j + 1), 1 / spec.r_wire_row))
                if i + 1 < R:
                    out.append((cn(i, j), cn(i + 1, j), 1 / spec.r_wire_col))
            if spec.r_source > 0:
                out.append((rows[i], rn(i, 0), 1 / spec.r_source))
        if spec.r_terminal > 0:
            for j in range(C):
                out.append((cols[j], cn(R - 1, j), 1 / spec.r_terminal))
    for (k, l), g in zip(circuit.g_hh.pairs, circuit.g_hh.values):
        out.append((circuit.hidden_names[k], circuit.hidden_names[l], g))
    for k, h in enumerate(circuit.hidden_names):
        out.append((h, "0", circuit.g_leak[k]))
    return out


@pytest.mark.parametrize("r_source,r_terminal", [(0.0, 0.0), (5.0, 3.0)])
def test_linear_network_matches_full_nodal_solve(r_source, r_terminal):
    c = random_circuit(5, n_inputs=3, n_outputs=2, seed=3, diode="none", g_range=(1e-3, 1e-2))
    spec = WireSpec(r_wire_row=2.0, r_wire_col=1.5, r_source=r_source, r_terminal=r_terminal)
    rng = np.random.default_rng(0)
    u = c.source_voltages(rng.uniform(-1, 1, (3, c.n_inputs)))
    w = rng.uniform(-0.1, 0.1, (3, c.n_outputs))
    wired = apply_wires(c, spec)
    st = EquilibriumSolver(wired.effective).solve(u, w)
    y = wired.port_currents(st.y, w)
    i_src = wired.source_currents(st.i_src, u)
    # independent dense assembly: fixed = sources, ports, ground
    res = _cells(c, spec)
    fixed = list(c.source_names) + list(c.output_names) + ["0"]
    free = sorted({n for a, b, _ in res for n in (a, b)} - set(fixed))
    idx = {n: i for i, n in enumerate(free)}
    K = np.zeros((len(free), len(free)))
    for b_ in range(u.shape[0]):
        fv = dict(zip(c.source_names, u[b_])) | dict(zip(c.output_names, w[b_])) | {"0": 0.0}
        K[:] = 0
        rhs = np.zeros(len(free))
        for a, bb, g in res:
            for x, z in ((a, bb), (bb, a)):
                if x in idx:
                    K[idx[x], idx[x]] += g
                    if z in idx:
                        K[idx[x], idx[z]] -= g
                    else:
                        rhs[idx[x]] += g * fv[z]
        v = np.linalg.solve(K, rhs)
        V = lambda n: v[idx[n]] if n in idx else fv[n]
        e_ref = np.array([V(h) for h in c.hidden_names])
        np.testing.assert_allclose(st.e[b_], e_ref, rtol=0, atol=1e-12)
        y_ref = np.zeros(c.n_outputs)
        i_ref = np.zeros(c.n_sources)
        for a, bb, g in res:
            for x, z, sgn in ((a, bb, 1), (bb, a, -1)):
                if x in c.output_names:
                    y_ref[c.output_names.index(x)] += g * (V(z) - V(x))
                if x in c.source_names:
                    i_ref[c.source_names.index(x)] += g * (V(x) - V(z))
        scale = np.abs(y_ref).max()
        np.testing.assert_allclose(y[b_], y_ref, rtol=0, atol=1e-9 * scale)
        np.testing.assert_allclose(i_src[b_], i_ref, rtol=0, atol=1e-9 * np.abs(i_ref).max())


def test_wires_change_the_solution_at_first_order_for_low_resistance_devices():
    c = random_circuit(6, n_inputs=4, n_outputs=2, seed=1, diode="ideal", g_range=(1e-3, 1e-2))
    u = c.source_voltages(np.ones((1, c.n_inputs)))
    e0 = EquilibriumSolver(c).solve(u).e
    e1 = EquilibriumSolver(apply_wires(c, WireSpec(1.0, 1.0)).effective).solve(u).e
    assert np.max(np.abs(e1 - e0)) > 1e-3 * np.max(np.abs(e0))


@needs_ngspice
def test_shockley_network_with_wires_matches_ngspice():
    c = random_circuit(4, n_inputs=3, n_outputs=2, seed=5, diode="shockley", g_range=(1e-3, 5e-3),
                       rail_v=2.0, spice_compat=True)
    spec = WireSpec(r_wire_row=3.0, r_wire_col=2.0, r_source=1.0, r_terminal=0.0)
    x = np.array([1.5, -2.0, 0.7])
    wired = apply_wires(c, spec)
    st = EquilibriumSolver(wired.effective).solve(c.source_voltages(x[None]))
    # ngspice deck: the circuit's deck without its g_in / g_out resistors, plus every wire element
    bare = dataclasses.replace(c, g_in=np.zeros_like(c.g_in), g_out=np.zeros_like(c.g_out),
                               g_hh=Coupling.none(c.n_hidden), g_leak=np.zeros(c.n_hidden), _cache={})
    deck = write_netlist(bare, x).splitlines()
    extra = [f"RW{k} {a} {b} {1.0 / g:.17g}" for k, (a, b, g) in enumerate(_cells(c, spec))]
    at = next(i for i, ln in enumerate(deck) if ln.startswith("* diodes"))
    res = run_ngspice("\n".join(deck[:at] + extra + deck[at:]) + "\n")
    e_ref = res.hidden_voltages(c)
    np.testing.assert_allclose(st.e[0], e_ref, rtol=0, atol=1e-9)
    y_ref = res.port_currents(c)
    np.testing.assert_allclose(wired.port_currents(st.y, st.w)[0], y_ref, rtol=1e-7, atol=1e-15)


def test_a_wired_board_under_read_noise_forms_its_topology_once_and_measures_as_a_fresh_one():
    """Read noise gives every board call other conductances, so the wired board rebuilds its terminal
    circuit each time; the edge list and names stay those of the first call (they used to be formed
    again at every call, an eighth of a training step on sim-digits-rram)."""
    from hil.boards.nonideal import NonIdealBoard
    from hil.devices import parse_devices

    c = random_circuit(6, n_inputs=3, n_outputs=2, seed=4, g_range=(1e-5, 1e-4))
    topology = c.topology()
    assert c.with_diodes(c.diodes).topology() is topology  # the diodes are not part of it
    devices = parse_devices({"wires": {"r_wire_row": 2.0, "r_wire_col": 1.5},
                             "read_noise": {"read_noise_scale": 0.01}})
    board = NonIdealBoard(c, 1e-8, 1e-4, devices)
    x = np.random.default_rng(1).uniform(-1, 1, (4, 3))
    board.measure(x)
    first = board._cache[0].circuit
    m = board.measure(x)
    again = board._cache[0].circuit
    assert again is not first and again.topology() is first.topology()
    fresh = dataclasses.replace(again, _cache={})  # the same circuit with its own topology built anew
    st = EquilibriumSolver(fresh).solve(board.model.sources(c.source_voltages(x)), None)
    np.testing.assert_allclose(board.model.readings(st.y, st.i_src, st.e)[2], m.e, rtol=0, atol=1e-12)
