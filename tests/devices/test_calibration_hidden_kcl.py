"""In-circuit calibration of the hidden-node conductances (g_hh, g_leak) from the KCL of the nodes
whose diodes are off: exact on a board with exact readings (the sign of the unexplained current)."""

import numpy as np

from hil.boards.nonideal import NonIdealBoard
from hil.calibrate.conductances import estimate_conductances
from hil.calibrate.offsets import zero_readings
from hil.circuit.generate import random_circuit
from hil.devices import parse_devices


def test_coupling_and_leak_recovered_exactly_with_exact_readings():
    c = random_circuit(12, n_inputs=12, n_outputs=4, seed=2, coupling_degree=2, g_range=(1e-5, 1e-4), g_leak_s=1e-6)
    board = NonIdealBoard(c, 1e-8, 1e-4, parse_devices({"dtod": {"g_dtod_std": 0.05}}))  # spread, exact readings
    est = estimate_conductances(board, zero_readings(board), 0.2, 2)
    truth, groups = board.true_conductances(), board.topology.groups
    assert groups["g_hh"].stop > groups["g_hh"].start
    for name in ("g_in", "g_hh", "g_leak", "g_out"):
        sl = groups[name]
        assert np.max(np.abs(est.g[sl] / truth[sl] - 1)) <= 1e-8, name
    assert np.all(est.leak_stderr <= 1e-8 * truth[groups["g_leak"]])
