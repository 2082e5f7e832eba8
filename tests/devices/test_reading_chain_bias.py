"""Estimators on a non-ideal board whose reading or source chains are not exact (static ADC offsets and
gains, current-reading noise or quantisation, DAC errors): they form the gradient from readings and
commanded source voltages, so they must say their answer may be biased.  Before, a board with only
static reading offsets and gains (no reading noise) gave hl, hl-exact and ep answers 2–4 % off the
gradient of the loss it reports, with ``may_be_biased`` False."""

import numpy as np
import pytest

from hil.boards.nonideal import NonIdealBoard
from hil.circuit.generate import random_circuit
from hil.devices.model import parse_devices
from hil.train.estimators import estimate
from hil.train.losses import Loss

CHAINS = {
    "currents": {"adc_current": {"adc_bits": 0, "adc_noise_std": 0.0, "adc_offset_std": 2e-6, "adc_gain_std": 0.02}},
    "node voltages": {"adc_voltage": {"adc_bits": 0, "adc_noise_std": 0.0, "adc_offset_std": 5e-3,
                                      "adc_gain_std": 0.02}},
    "sources": {"dac": {"dac_bits": 0, "dac_offset_std": 5e-3, "dac_gain_std": 0.02}},
}


def setup(devices):
    c = random_circuit(6, 3, 4, seed=7, coupling_degree=2, g_range=(1e-5, 1e-4))
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-1, 1, (4, 3)), rng.integers(0, 2, 4)
    board = NonIdealBoard(c, 1e-8, 1e-3, parse_devices(devices))
    return board, x, t, Loss("cross_entropy", 1e4, c.differential_matrix())


def fd_of_reported_loss(board, x, t, loss, rel=1e-5):
    """Central differences of the batch-mean loss computed from the board's own port-current readings."""
    g0 = board.read_conductances()
    h = rel * np.median(g0)
    out = np.empty_like(g0)
    for k in range(g0.size):
        f = []
        for s in (1, -1):
            g = g0.copy()
            g[k] += s * h
            board.program(g)
            f.append(loss.value_and_grad(board.measure(x).y, t)[0].mean())
        out[k] = (f[0] - f[1]) / (2 * h)
    board.program(g0)
    return out


@pytest.mark.parametrize("chain", list(CHAINS))
def test_static_reading_and_source_errors_are_named(chain):
    board, x, t, loss = setup(CHAINS[chain])
    ref = fd_of_reported_loss(board, x, t, loss)
    for est, opts in (("hl", {"delta_v": 1e-4}), ("hl-exact", {}), ("ep", {"delta_v": 1e-4})):
        r = estimate(est, board, x, t, loss, opts)
        err = np.max(np.abs(r.grad - ref)) / np.max(np.abs(ref))
        assert err > 1e-3  # the answer really is off the gradient of the reported loss
        assert r.stats["may_be_biased"], (chain, est)
        assert "reading and source chains are not exact" in r.stats["bias_note"] and chain in r.stats["bias_note"]


def test_exact_chains_add_no_note():
    # static device effects (spread) leave the readings exact: the estimators stay exact for the devices
    board, x, t, loss = setup({"dtod": {"g_dtod_std": 0.05}, "adc_current": {"enabled": False}})
    assert "reading_errors" not in board.measure(x).info
    assert not estimate("hl", board, x, t, loss, {"delta_v": 1e-4}).stats["may_be_biased"]


def test_current_reading_noise_is_named():
    board, x, t, loss = setup({"adc_current": {"adc_bits": 16, "adc_noise_std": 3e-8}})
    r = estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    assert r.stats["may_be_biased"] and "noise σ 3e-08, 16 bit" in r.stats["bias_note"]


def test_the_compensation_wrapper_keeps_the_note_and_says_what_it_corrected():
    from types import SimpleNamespace

    from hil.boards.calibrated import CalibratedBoard

    board, x, t, loss = setup(CHAINS["currents"])
    topo = board.topology
    arrays = {"offset_y": np.zeros(topo.n_outputs), "offset_i_src": np.zeros(topo.n_sources),
              "offset_e": np.zeros(topo.n_hidden), "gain_y": np.ones(topo.n_outputs),
              "gain_i_src": np.ones(topo.n_sources), "gain_e": np.ones(topo.n_hidden),
              "fault_code": np.zeros(topo.n_conductances, int), "fault_fixed_s": np.zeros(topo.n_conductances)}
    settings = SimpleNamespace(offsets=True, gains=True, stuck_mask=False, write_verify_rel_tol=0.0, drift="none")
    wrapped = CalibratedBoard(board, SimpleNamespace(arrays=arrays), settings)
    r = estimate("hl", wrapped, x, t, loss, {"delta_v": 1e-4})
    assert r.stats["may_be_biased"] and "corrected with the calibrated offsets and gains" in r.stats["bias_note"]
