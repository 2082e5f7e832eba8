"""The fault map of a board whose conductances cannot be read out in circuit (more hidden nodes
than the probe patterns can vary independently) says it could not judge them, instead of
counting them as resolved healthy devices."""

from __future__ import annotations

import numpy as np

from hil.boards.nonideal import NonIdealBoard
from hil.calibrate.faults import characterise
from hil.calibrate.offsets import zero_readings
from hil.circuit.generate import random_circuit
from hil.devices import parse_devices


def test_devices_that_cannot_be_read_out_count_as_unresolved():
    # 8 hidden nodes, 2 inputs: the in-circuit read-out leaves every conductance unknown (NaN)
    c = random_circuit(8, n_inputs=2, n_outputs=4, seed=0, coupling_degree=0, g_range=(1e-5, 1e-4),
                       diode="ideal", g_leak_s=1e-8)
    b = NonIdealBoard(c, 1e-8, 1e-4, parse_devices({"preset": "rram-crossbar", "seed": 1}))
    fmap = characterise(b, zero_readings(b), repeats=2, amplitude_v=0.2)
    topo = b.topology
    judged = np.zeros(topo.n_conductances, bool)
    for g in ("g_in", "g_out"):
        judged[topo.groups[g]] = True
    unread = judged & ~np.isfinite(fmap.slope)
    assert unread.sum() > 0 and not fmap.faulty[unread].any()
    assert fmap.unresolved >= unread.sum()
