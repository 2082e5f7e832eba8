"""Buffered cascades (physics.md §5): stage-by-stage solve, backward-order gradient vs FD,
SPICE export with E sources, configs, training without knowing the depth."""

import shutil

import numpy as np
import pytest

import hil.api as api
from hil.boards.cascade import CascadeBoard, StageLink, build_cascade
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.laws import with_element
from hil.config import ConfigError
from hil.train.estimators import estimate
from hil.train.losses import Loss

MIXED_2 = [{"model": "ideal"}, {"model": "shockley"}]
MIXED_3 = [{"model": "clip", "v_hi": 0.5}, {"model": "leaky", "r_s": 2e4}, {"model": "antiparallel", "v_b": 0.4}]
SMOOTH_2 = [{"model": "shockley", "spice_compat": True}, {"model": "antiparallel_shockley", "spice_compat": True}]


def cascade(elements, sizes=(6, 5, 4), n_in=3, n_out=4, seed=0, gain=4.0):
    stages, links, prev = [], [], n_in
    for s, (el, n) in enumerate(zip(elements, sizes)):
        q = n_out if s == len(elements) - 1 else 2
        c = with_element(random_circuit(n, prev, q, seed=seed + s, coupling_degree=2, g_range=(1e-5, 1e-4)), el)
        stages.append(SimulatedBoard(c))
        if s:
            links.append(StageLink(np.arange(prev), gain))
        prev = n
    return CascadeBoard(stages, links)


def batch(board, seed=1, size=4):
    rng = np.random.default_rng(seed)
    return rng.uniform(-2, 2, (size, board.topology.n_inputs)), rng.integers(0, 2, size)


@pytest.mark.parametrize("elements", [MIXED_2, MIXED_3], ids=["ideal+shockley", "clip+leaky+antiparallel"])
def test_backward_order_gradient_equals_central_fd(elements):
    b = cascade(elements)
    x, t = batch(b)
    loss = Loss("cross_entropy", 1e4, b.topology.differential)
    exact = estimate("hl-exact", b, x, t, loss)
    measured = estimate("hl", b, x, t, loss, {"delta_v": 1e-4})  # stage by stage, current injection
    fd = estimate("fd", b, x, t, loss, {"rel_step": 1e-5})
    scale = np.abs(fd.grad).max()
    for name, sl in b.topology.groups.items():
        assert np.abs(exact.grad[sl] - fd.grad[sl]).max() / scale <= 1e-7, name
        assert np.abs(measured.grad[sl] - fd.grad[sl]).max() / scale <= 1e-7, name
    # every stage receives gradient (the backward signal crossed every buffer)
    for s in range(b.depth):
        assert np.abs(exact.grad[b.topology.groups[f"s{s}.g_in"]]).max() > 1e-3 * scale


def test_buffers_draw_no_current_and_drive_the_next_stage():
    b = cascade(MIXED_2)
    x, _ = batch(b)
    m = b.measure(x)
    alone = b.stages[0].measure(x)
    n0 = b.stages[0].topology.n_hidden
    np.testing.assert_array_equal(m.e[:, :n0], alone.e)  # stage 0 is not loaded by stage 1
    xs = b.stage_inputs(x)
    np.testing.assert_allclose(xs[1], 4.0 * alone.e)
    p0 = b.stages[0].topology.n_sources
    np.testing.assert_allclose(m.u[:, p0:], b.stages[1].topology.source_voltages(xs[1]))


def test_port_only_estimators_are_refused_on_cascades():
    b = cascade(MIXED_2)
    x, t = batch(b)
    with pytest.raises(ValueError, match="hl-exact"):
        estimate("ep", b, x, t, Loss("cross_entropy", 1e4, b.topology.differential))


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
@pytest.mark.parametrize("elements", [MIXED_3, SMOOTH_2], ids=["piecewise", "smooth"])
def test_cascade_equals_ngspice_with_e_sources(elements):
    from hil.circuit.spice import run_ngspice
    from hil.circuit.spice_cascade import write_cascade_netlist

    b = cascade(elements)
    x, _ = batch(b, size=2)
    m = b.measure(x)
    hidden = [nm.replace(".", "_") for nm, k in zip(b.topology.node_names, b.topology.node_kinds) if k == "hidden"]
    for i in range(2):
        deck = write_cascade_netlist(b, x[i])
        assert "\nE" in deck
        res = run_ngspice(deck)
        assert max(abs(res.node_voltages[nm] - m.e[i, k]) for k, nm in enumerate(hidden)) <= 1e-7


def test_config_builds_a_cascade_and_trains_named_groups():
    cfg = api.load_config("sim-xor-cascade")
    s = api.parse_config(cfg, "sim-xor-cascade")
    board = api.build_board(cfg)
    assert isinstance(board, CascadeBoard) and board.depth == 2
    assert {"s0.g_in", "s1.g_in", "s1.g_out"} <= set(board.topology.groups)
    g0 = board.program(board.read_conductances())  # clipped into [g_min, g_max] as programming does
    s.trainable = ("s1.g_out",)
    x = np.array([[0.0, 1.0], [1.0, 1.0]])
    api.train_steps(board, s, x, np.array([1, 0]), steps=2)
    g1 = board.read_conductances()
    changed = np.flatnonzero(g1 != g0)
    sl = board.topology.groups["s1.g_out"]
    assert changed.size and changed.min() >= sl.start and changed.max() < sl.stop


def test_xor_cascade_trains(tmp_path):
    result = api.train("sim-xor-cascade", runs_dir=tmp_path)
    assert result.train_acc == 1.0


@pytest.mark.parametrize("stages, message", [
    ([], "non-empty list"),
    ([{"circuit": {"inputs": {"count": 2}, "hidden": {"count": 3}, "outputs": {"count": 2}, "conductances": {"g_in": 1e-5, "g_hh": "none", "g_leak": 1e-8, "g_out": 1e-5}}},
      {"buffer_gain": 2.0, "circuit": {"inputs": {"count": 5}, "hidden": {"count": 2}, "outputs": {"count": 2}, "conductances": {"g_in": 1e-5, "g_hh": "none", "g_leak": 1e-8, "g_out": 1e-5}}}],
     "board.stages[1].circuit.inputs: 5 inputs"),
    ([{"circuit": {"inputs": {"count": 2}, "hidden": {"count": 3}, "outputs": {"count": 2}, "conductances": {"g_in": 1e-5, "g_hh": "none", "g_leak": 1e-8, "g_out": 1e-5}}},
      {"buffer_gain": -1, "circuit": {"inputs": {"count": 3}, "hidden": {"count": 2}, "outputs": {"count": 2}, "conductances": {"g_in": 1e-5, "g_hh": "none", "g_leak": 1e-8, "g_out": 1e-5}}}],
     "board.stages[1].buffer_gain"),
])
def test_bad_stage_lists_are_config_errors(stages, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_cascade(stages, 1e-8, 1e-4)


@pytest.mark.parametrize("override, key", [("train.estimator=ep", "train.estimator"),
                                           ("train.hl.one_sweep=true", "train.hl.one_sweep")])
def test_cascade_with_port_estimator_is_a_config_error(override, key):
    cfg = api.load_config("sim-xor-cascade", [override])
    with pytest.raises(ConfigError, match=key):
        api.train(cfg, runs_dir="/nonexistent-never-created")
