"""The hidden↔hidden coupling is kept sparse from the config to the SPICE netlist."""

from __future__ import annotations

import dataclasses
import pickle
import tracemalloc

import numpy as np
import pytest

import hil.api as api
from hil.circuit.build import build_circuit, coupling_pairs_bound, estimated_memory_bytes
from hil.circuit.coupling import Coupling, CouplingError
from hil.circuit.generate import random_circuit
from hil.circuit.model import Circuit, CircuitError
from hil.circuit.nodal import NodalSystem
from hil.circuit.spice import write_netlist
from hil.config import ConfigError


def test_coupling_reads_like_the_symmetric_matrix_it_stands_for():
    c = Coupling.from_pairs(5, [[3, 1], [0, 4], [1, 2]], [3e-6, 1e-6, 2e-6])
    assert c.pairs.tolist() == [[0, 4], [1, 2], [1, 3]] and c.values.tolist() == [1e-6, 2e-6, 3e-6]
    dense = c.toarray()
    assert np.array_equal(dense, dense.T) and dense[3, 1] == dense[1, 3] == 3e-6
    assert c[3, 1] == c[1, 3] == 3e-6 and c[0, 1] == 0.0 and c[2, 2] == 0.0
    np.testing.assert_allclose(c.row_sums(), dense.sum(axis=1), rtol=1e-15)
    assert np.array_equal(c.tocsr().toarray(), dense)
    back = Coupling.from_dense(dense)
    assert np.array_equal(back.pairs, c.pairs) and np.array_equal(back.values, c.values)
    assert np.array_equal(c.degrees(), [1, 2, 1, 1, 1])
    with pytest.raises(IndexError):
        c[5, 0]
    assert not hasattr(c, "__array__")  # no silent densification through numpy
    with pytest.raises(ValueError):
        c.pairs[0, 0] = 2  # the topology is read-only
    again = pickle.loads(pickle.dumps(c))
    assert np.array_equal(again.pairs, c.pairs) and not again.pairs.flags.writeable


@pytest.mark.parametrize("pairs,values,message", [
    ([[1, 1]], [1e-6], "to itself"),
    ([[0, 1], [1, 0]], [1e-6, 2e-6], "joined twice"),
    ([[0, 7]], [1e-6], "outside"),
    ([[0, 1]], [1e-6, 2e-6], "2 conductances"),
    ([[0, 1], [1, 2]], [1e-6, -2e-6], "between hidden nodes 1 and 2 is negative"),
])
def test_coupling_refuses_bad_pairs(pairs, values, message):
    with pytest.raises(CouplingError, match=message):
        Coupling.from_pairs(4, pairs, values)


def test_dense_g_hh_is_still_accepted_and_a_mask_keeps_zero_resistors():
    base = random_circuit(4, 2, 2, seed=0, coupling_degree=0)
    g = np.zeros((4, 4))
    g[0, 2] = g[2, 0] = 5e-6
    mask = g > 0
    mask[1, 3] = mask[3, 1] = True  # a resistor programmed to 0 S stays in the topology
    c = Circuit(sources=base.sources, hidden_names=base.hidden_names, output_names=base.output_names,
                g_in=base.g_in, g_hh=g, g_leak=base.g_leak, g_out=base.g_out, diodes=base.diodes,
                output_voltage=base.output_voltage, coupling_mask=mask).validate()
    assert isinstance(c.g_hh, Coupling) and c.g_hh.pairs.tolist() == [[0, 2], [1, 3]]
    assert c.g_hh.values.tolist() == [5e-6, 0.0]
    assert c.topology().edge_names[c.topology().groups["g_hh"]] == ("R_h0_h2", "R_h1_h3")
    with pytest.raises(ValueError, match="coupling_mask applies only to a dense g_hh"):
        dataclasses.replace(c, g_hh=c.g_hh, coupling_mask=mask)
    g[0, 1] = 1e-6
    with pytest.raises(CircuitError, match="conductances.g_hh: must be symmetric"):
        Circuit(sources=base.sources, hidden_names=base.hidden_names, output_names=base.output_names,
                g_in=base.g_in, g_hh=g, g_leak=base.g_leak, g_out=base.g_out, diodes=base.diodes,
                output_voltage=base.output_voltage)


def test_a_mask_that_leaves_out_a_nonzero_conductance_is_refused():
    """The mask names every resistor: a nonzero conductance outside it would vanish from the circuit
    (it was dropped without a word before)."""
    base = random_circuit(5, 2, 2, seed=0, coupling_degree=0)
    g = np.zeros((5, 5))
    g[0, 1] = g[1, 0] = 1e-5
    mask = np.zeros((5, 5), bool)
    mask[3, 4] = True
    with pytest.raises(CouplingError, match="1e-05 S between hidden nodes 0 and 1 is outside the mask"):
        Coupling.from_dense(g, mask)
    with pytest.raises(ValueError, match="outside the mask"):
        Circuit(sources=base.sources, hidden_names=base.hidden_names, output_names=base.output_names,
                g_in=base.g_in, g_hh=g, g_leak=base.g_leak, g_out=base.g_out, diodes=base.diodes,
                output_voltage=base.output_voltage, coupling_mask=mask)
    mask[1, 0] = True  # either triangle names the pair
    c = Coupling.from_dense(g, mask)
    assert c.pairs.tolist() == [[0, 1], [3, 4]] and c.values.tolist() == [1e-5, 0.0]


def _dense_random_draw(n, degree, lo, hi, seed):
    """The coupling the builder drew before it was sparse: an (n, n) matrix, pair by pair."""
    rng = np.random.default_rng(seed)
    g = np.zeros((n, n))
    for k in range(n):
        for l in rng.choice(n, size=min(degree, n - 1) if n > 1 else 0, replace=False):
            if l != k:
                g[k, l] = g[l, k] = rng.uniform(lo, hi)
    k, l = np.nonzero(np.triu(g > 0, 1))
    return np.stack([k, l], axis=1), g[k, l]


@pytest.mark.parametrize("n,degree,seed", [(1, 2, 0), (3, 5, 1), (40, 4, 2), (300, 3, 7)])
def test_random_coupling_is_the_same_draw_as_the_dense_builder(n, degree, seed):
    data = {"seed": seed, "inputs": {"count": 1}, "hidden": {"count": n}, "outputs": {"count": 1},
            "conductances": {"g_in": 0.0, "g_leak": 1e-8, "g_out": 0.0,
                             "g_hh": {"random": {"degree": degree, "low": 1e-6, "high": 1e-5}}}}
    c = build_circuit(data)  # g_in is a number here: g_hh takes the first draws of the seed
    pairs, values = _dense_random_draw(n, degree, 1e-6, 1e-5, seed)
    assert np.array_equal(c.g_hh.pairs, pairs) and np.array_equal(c.g_hh.values, values)


def test_config_lists_coupling_pairs_by_name_or_index():
    data = {"inputs": {"count": 2}, "hidden": {"count": 4}, "outputs": {"count": 2},
            "conductances": {"g_in": 1e-5, "g_leak": 1e-8, "g_out": 1e-5,
                             "g_hh": {"pairs": [["h3", "h0", 2e-6], [1, 2, 0.0]]}}}
    c = build_circuit(data)
    assert c.g_hh.pairs.tolist() == [[0, 3], [1, 2]] and c.g_hh.values.tolist() == [2e-6, 0.0]
    data["conductances"]["g_hh"] = {"pairs": [["h0", "h9", 1e-6], [1, 1, 1e-6], [0, 2, -1.0], [0, 1]]}
    with pytest.raises(ConfigError) as exc:
        build_circuit(data)
    msg = str(exc.value)
    for part in ("circuit.conductances.g_hh.pairs[0]: 'h9' is not a hidden node",
                 "circuit.conductances.g_hh.pairs[1]", "circuit.conductances.g_hh.pairs[2]: conductance -1.0",
                 "circuit.conductances.g_hh.pairs[3]: expected [node, node, conductance_S]"):
        assert part in msg, msg
    data["conductances"]["g_hh"] = {"pairs": [["h0", "h1", 1e-6], ["h1", "h0", 1e-6]]}
    with pytest.raises(ConfigError, match="g_hh.pairs: hidden nodes 0 and 1 are joined twice"):
        build_circuit(data)


def test_all_to_all_number_and_matrix_forms_give_the_same_coupling():
    common = {"inputs": {"count": 2}, "hidden": {"count": 5}, "outputs": {"count": 2}}
    by_number = build_circuit(common | {"conductances": {"g_in": 1e-5, "g_out": 1e-5, "g_hh": 3e-6}})
    full = np.full((5, 5), 3e-6)
    np.fill_diagonal(full, 0.0)
    by_matrix = build_circuit(common | {"conductances": {"g_in": 1e-5, "g_out": 1e-5, "g_hh": full.tolist()}})
    assert by_number.g_hh.m == 10
    assert np.array_equal(by_number.g_hh.pairs, by_matrix.g_hh.pairs)
    assert np.array_equal(by_number.g_hh.values, by_matrix.g_hh.values)


def test_size_estimate_has_no_n_squared_term():
    one = estimated_memory_bytes(4096, 130, 20, n_pairs=4 * 4096)
    assert estimated_memory_bytes(8192, 130, 20, n_pairs=4 * 8192) < 2.01 * one  # linear in n
    assert coupling_pairs_bound({"random": {"degree": 4}}, 4096) == 4 * 4096
    assert coupling_pairs_bound("none", 4096) == 0
    assert coupling_pairs_bound(1e-6, 4) == 6 and coupling_pairs_bound({"pairs": [[0, 1, 0.0]]}, 4) == 1


def _wide_config(n_hidden: int) -> dict:
    return {"name": "wide-coupled", "seed": 0,
            "board": {"backend": "simulated", "g_min": 1e-8, "g_max": 1e-4, "circuit": {
                "name": "wide", "seed": 0, "inputs": {"count": 4, "inverted": True, "rails": {"vb_p": 1.0, "vb_n": -1.0}},
                "hidden": {"count": n_hidden, "element": {"model": "ideal"}},
                "outputs": {"count": 4, "voltage": 0.0, "differential": True},
                "conductances": {"g_in": {"uniform": [1e-6, 1e-4]}, "g_leak": 1e-8, "g_out": {"uniform": [1e-6, 1e-4]},
                                 "g_hh": {"random": {"degree": 4, "low": 1e-6, "high": 1e-5}}}}},
            "data": {"name": "xor"},
            "train": {"estimator": "hl", "loss": "cross_entropy", "gain_per_a": 1e3,
                      "optimizer": {"name": "adam", "lr": 1e-6}, "batch_size": 4, "epochs": 1,
                      "trainable": ["g_in", "g_hh", "g_out"]}}


def _arrays(obj, seen=None, depth=0):
    """Every numpy array reachable from ``obj`` through attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v, seen, depth + 1)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            yield from _arrays(v, seen, depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith(("hil", "boards")):
        for v in vars(obj).values():
            yield from _arrays(v, seen, depth + 1)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _arrays(getattr(obj, name, None), seen, depth + 1)
    elif hasattr(obj, "data") and hasattr(obj, "indices"):  # scipy.sparse
        yield obj.data


def test_wide_coupled_network_never_forms_an_n_by_n_array(monkeypatch):
    """4096 hidden nodes with degree-4 coupling: config → board → training step → programmed
    circuit → SPICE netlist.  No code path may densify the coupling (the dense accessors raise),
    the traced peak stays below a quarter of one n × n float64 array, no array reachable from
    the board has n²/64 elements, and the size estimate is within 2× of the traced peak."""
    n = 4096
    x = np.random.default_rng(0).uniform(-1, 1, (4, 4))
    t = np.array([0, 1, 0, 1])
    small = _wide_config(96)  # imports, compiled kernels and caches first, outside the trace
    api.train_steps(api.build_board(small), small, x, t, steps=1)

    def refuse(*_a, **_k):
        raise AssertionError("a dense (n, n) coupling was requested")

    for cls, name in ((Coupling, "toarray"), (Circuit, "laplacian_dense"), (NodalSystem, "k_dense")):
        monkeypatch.setattr(cls, name, refuse)
    cfg = _wide_config(n)
    tracemalloc.start()
    try:
        board = api.build_board(cfg)
        api.train_steps(board, cfg, x, t, steps=1)
        programmed = board.circuit
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    netlist = write_netlist(programmed, np.zeros(4))
    m = programmed.g_hh.m
    assert 3 * n < m <= 4 * n
    assert sum(ln.startswith("R_h") and " h" in ln and ln.split()[2].startswith("h")
               for ln in netlist.splitlines()) == m
    assert peak < 8 * n * n / 4, f"traced peak {peak / 2**20:.1f} MiB"
    biggest = max(a.size for a in _arrays(board))
    assert biggest < n * n / 64, biggest
    estimate = estimated_memory_bytes(n, programmed.n_sources, programmed.n_outputs, n_pairs=m)
    assert 0.5 <= peak / estimate <= 2.0, (peak / 2**20, estimate / 2**20)


def test_programming_coupling_resistors_updates_only_their_nodes_bit_for_bit():
    """Changing a few coupling resistors rewrites their K entries and the sums of their two nodes
    only; the result equals a nodal system built from scratch, bit for bit."""
    c = random_circuit(300, 3, 2, seed=4, coupling_degree=6)
    assert c.g_hh.degrees().max() >= 8  # rows wide enough for numpy's unrolled sums
    nodal = NodalSystem(c)
    rng = np.random.default_rng(1)
    g = c.conductance_vector()
    hh = c.topology().groups["g_hh"]
    for count in (1, 5, 40):
        g = g.copy()
        pick = hh.start + rng.choice(hh.stop - hh.start, count, replace=False)
        g[pick] = rng.uniform(1e-7, 1e-4, count)
        before = nodal.diag.copy()
        assert nodal.program(g) == count
        ends = np.unique(c.g_hh.pairs[pick - hh.start])
        others = np.setdiff1d(np.arange(c.n_hidden), ends)
        assert np.array_equal(nodal.diag[others], before[others])
        fresh = NodalSystem(c.with_conductances(g))
        assert np.array_equal(nodal.hh_row_sum, fresh.hh_row_sum)
        assert np.array_equal(nodal.diag, fresh.diag)
        assert np.array_equal(nodal.k_csr.data, fresh.k_csr.data)


def test_non_ideal_board_reprograms_its_solver_in_place():
    """A device board without wires keeps one solver and writes changed conductances into it;
    its solutions equal those of a solver built from scratch for the same device state."""
    from hil.circuit.solve import EquilibriumSolver

    cfg = _wide_config(40)
    cfg["board"]["devices"] = {"preset": "discrete-bench", "seed": 0,
                               "faults": {"p_stuck_on": 0.02, "p_stuck_off": 0.02}}
    board = api.build_board(cfg)
    x = np.random.default_rng(3).uniform(-1, 1, (6, 4))
    board.measure(x)
    solver = board._solver()[0]
    g = board.read_conductances() * np.where(np.arange(board.topology.n_conductances) % 5 == 0, 0.8, 1.0)
    board.program(g)
    board.measure(x)
    assert board._solver()[0] is solver  # programmed in place, not rebuilt
    seen = board.read_conductances()
    fresh = EquilibriumSolver(board._nominal.with_conductances(seen).with_diodes(board._diodes))
    u = board.model.sources(board.topology.source_voltages(x))
    a, b = solver.solve(u), fresh.solve(u)
    assert np.array_equal(a.e, b.e) and np.array_equal(a.y, b.y) and np.array_equal(a.i_src, b.i_src)


@pytest.mark.parametrize("degree", [0, 4])
def test_size_estimate_is_within_2x_of_the_traced_peak_of_board_and_a_step(degree):
    """The digits network (130 sources, 20 ports) at 512 hidden nodes, batch 32."""
    overrides = ["board.circuit.hidden.count=512", "train.trainable=[g_in, g_hh, g_out]"]
    if degree:
        overrides.append(f"board.circuit.conductances.g_hh={{random: {{degree: {degree}, low: 1.0e-6, high: 1.0e-5}}}}")
    cfg = api.load_config("sim-digits", overrides)
    data = api.load_data(cfg)
    x, t = data.train.x[:32], data.train.y[:32]
    warm = api.load_config("sim-digits", ["board.circuit.hidden.count=8"])
    api.train_steps(api.build_board(warm), warm, x, t, steps=1)  # imports and compiled kernels first
    tracemalloc.start()
    try:
        board = api.build_board(cfg)
        api.train_steps(board, cfg, x, t, steps=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    hh = board.topology.groups["g_hh"]
    assert (hh.stop - hh.start > 0) == bool(degree)
    estimate = estimated_memory_bytes(512, 130, 20, n_pairs=hh.stop - hh.start)
    assert 0.5 <= peak / estimate <= 2.0, (peak / 2**20, estimate / 2**20)
