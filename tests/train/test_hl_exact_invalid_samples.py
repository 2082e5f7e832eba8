"""``hl-exact`` leaves out the samples a board marks invalid and counts them, as every other estimator
does (physics.md).  Before, it averaged them in (on a non-ideal board, a node-voltage reading at full
scale) and reported an exact answer with no ``invalid_samples`` count."""

import dataclasses

import numpy as np

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


class FirstSampleInvalid(SimulatedBoard):
    """A simulated board whose operating points mark sample 0 invalid (a reading at full scale)."""

    def measure(self, x, w=None):
        m = super().measure(x, w)
        valid = np.ones(len(x), bool)
        valid[0] = False
        return dataclasses.replace(m, valid=valid)


def test_hl_exact_leaves_invalid_samples_out_and_says_so():
    c = random_circuit(6, 3, 4, seed=1, coupling_degree=2, g_range=(1e-5, 1e-4))
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-2, 2, (5, 3)), rng.integers(0, 2, 5)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    exact = estimate("hl-exact", SimulatedBoard(c), x[1:], t[1:], loss)
    assert exact.stats["invalid_samples"] == 0 and not exact.stats["may_be_biased"]
    r = estimate("hl-exact", FirstSampleInvalid(c), x, t, loss, {"keep_per_sample": True})
    assert np.max(np.abs(r.grad - exact.grad)) <= 1e-12 * np.max(np.abs(exact.grad))
    assert r.stats["invalid_samples"] == 1 and not r.stats["valid"][0] and r.stats["valid"][1:].all()
    assert r.stats["may_be_biased"] and "1 invalid sample(s) left out" in r.stats["bias_note"]
    assert np.isnan(r.per_sample[0]).all() and np.isfinite(r.per_sample[1:]).all()
