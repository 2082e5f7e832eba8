"""Every estimator against an oracle that shares no code with them: central finite differences of
the batch-mean loss, each side a fresh circuit with one conductance moved and a fresh solve (no
board, no estimator code), with the step's diode states checked.  Network kinds a user trains:
uncoupled ideal, coupled ideal with mixed orientation, coupled Shockley with a large series
resistance, uncoupled Shockley with series resistance (the per-node closed form), a leaky element.
Target: physics.md's 1e-7 relative for central estimators."""

import dataclasses

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.laws import with_element
from hil.circuit.solve import EquilibriumSolver
from hil.train.estimators import estimate
from hil.train.losses import Loss


def _series(c, r_s):
    return c.with_diodes(dataclasses.replace(c.diodes, r_s=np.full(c.n_hidden, r_s)))


KINDS = {
    "uncoupled-ideal": lambda: random_circuit(6, 3, 4, seed=2, coupling_degree=0, g_range=(1e-5, 1e-4)),
    "coupled-ideal-mixed": lambda: random_circuit(6, 3, 4, seed=3, coupling_degree=3, mixed_orientation=True,
                                                  g_range=(1e-5, 1e-4)),
    "coupled-shockley-rs-2k": lambda: _series(random_circuit(6, 3, 4, seed=5, diode="shockley", coupling_degree=2,
                                                             g_range=(1e-4, 1e-3)), 2e3),
    "uncoupled-shockley-rs-500": lambda: _series(random_circuit(6, 3, 4, seed=6, diode="shockley",
                                                                coupling_degree=0, g_range=(1e-4, 1e-3)), 500.0),
    "leaky": lambda: with_element(random_circuit(6, 3, 4, seed=7, coupling_degree=2, g_range=(1e-5, 1e-4)),
                                  {"model": "leaky", "r_s": 2e4}),
}


def central_fd(c, x, t, loss, rel=1e-6):
    g0 = c.conductance_vector()
    g_bar = float(np.median(g0[g0 > 0]))

    def mean_loss(g):
        cc = c.with_conductances(g)
        st = EquilibriumSolver(cc).solve(cc.source_voltages(x))
        return float(loss.value_and_grad(st.y, t)[0].mean()), st.on

    _, on0 = mean_loss(g0)
    out = np.empty_like(g0)
    for k in range(g0.size):
        h = rel * max(g0[k], g_bar)
        (fp, on_p), (fm, on_m) = mean_loss(g0 + h * (np.arange(g0.size) == k)), \
            mean_loss(g0 - h * (np.arange(g0.size) == k))
        assert np.array_equal(on_p, on0) and np.array_equal(on_m, on0), "a step crossed a kink"
        out[k] = (fp - fm) / (2 * h)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_estimators_match_an_independent_central_difference(kind):
    c = KINDS[kind]()
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-2, 2, (4, 3)), rng.integers(0, 2, 4)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    ref = central_fd(c, x, t, loss)
    board = SimulatedBoard(c)
    for est, opts in (("hl-exact", {}), ("hl", {"delta_v": 1e-3}), ("ep", {"delta_v": 1e-3}), ("fd", {})):
        got = estimate(est, board, x, t, loss, opts).grad
        err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
        assert err <= 1e-7, (est, err)
