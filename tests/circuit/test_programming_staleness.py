"""Cached state of the fast paths (held operating points and their source currents, lazily
formed port currents, partially refreshed nodal matrices, the non-ideal board's reprogrammed
solver) never outlives a programming step: every reading equals a freshly built board's."""

import numpy as np
import pytest

from hil.boards.nonideal import NonIdealBoard
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.devices import parse_devices


def _worst(a, b):
    return max(float(np.max(np.abs(x - y)) / max(np.abs(y).max(), 1e-300)) for x, y in zip(a, b))


@pytest.mark.parametrize("degree", [0, 4], ids=["uncoupled", "coupled"])
def test_readings_after_programming_equal_a_fresh_board(degree):
    c = random_circuit(20, 5, 4, seed=1, coupling_degree=degree, g_range=(1e-6, 1e-4))
    board = SimulatedBoard(c, 1e-8, 1e-4)
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (6, 5))
    g = board.read_conductances()
    hh = c.topology().groups["g_hh"]
    for step in range(6):
        board.measure(x)  # a held operating point (and its source currents) before programming
        lazy = board.measure(np.concatenate([x, x]), rng.normal(0, 0.05, (12, 4)))
        g = g.copy()
        # a few conductances, or only coupling resistors (partial K refresh), or all of them
        pool = np.arange(g.size)[hh] if step % 3 == 1 and degree else np.arange(g.size)
        idx = rng.choice(pool, min(pool.size, 3 if step % 3 < 2 else pool.size), replace=False)
        g[idx] = rng.uniform(0.0, 1e-4, idx.size)
        y_lazy_before = lazy.y.copy() if step % 2 else None  # read before or after programming
        board.program(g)
        fresh = SimulatedBoard(c.with_conductances(g), 1e-8, 1e-4)
        if step % 2 == 0:
            y_lazy = lazy.y  # formed now: must use the conductances of its own measurement
        else:
            y_lazy = y_lazy_before
        assert np.isfinite(y_lazy).all()
        w = rng.normal(0, 0.05, (12, 4))
        both = np.concatenate([x, x])
        # the phases straight after programming (the held point is stale), then an operating point
        for xs, ws in ((both, w), (x, None), (both, w), (x[[4, 1]], None)):
            a, b = board.measure(xs, ws), fresh.measure(xs, ws)
            assert np.array_equal(a.on, b.on)
            assert _worst((a.e, a.y, a.i_src), (b.e, b.y, b.i_src)) <= 1e-12


@pytest.mark.parametrize("degree", [0, 4], ids=["uncoupled", "coupled"])
def test_non_ideal_board_reprogrammed_in_place_equals_one_rebuilt(degree):
    c = random_circuit(12, 4, 2, seed=0, coupling_degree=degree, g_range=(1e-6, 1e-4))
    spec = {"preset": "rram-crossbar", "seed": 3, "wires": {"enabled": False}}
    a = NonIdealBoard(c, 1e-7, 1e-4, parse_devices(spec))
    b = NonIdealBoard(c, 1e-7, 1e-4, parse_devices(spec))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (5, 4))
    for _ in range(4):
        g = rng.uniform(1e-6, 1e-4, a.topology.n_conductances)
        a.program(g)
        b.program(g)
        for xs, w in ((x, None), (np.concatenate([x, x]), rng.normal(0, 0.05, (10, 2)))):
            b._programmed = b._cache = None  # b: a solver built afresh for every reading
            ma, mb = a.measure(xs, w), b.measure(xs, w)
            assert np.array_equal(ma.y, mb.y) and np.array_equal(ma.e, mb.e)
