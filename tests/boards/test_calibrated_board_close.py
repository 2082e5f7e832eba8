"""A calibrated bench board closes the bench under it: ``with`` ends with every output off at 0 V,
every transport released and the exit hook removed (before, it only ran the safe state, and the
interpreter's exit ran the whole shutdown again on transports left open)."""

import types

import numpy as np

from hil.boards.calibrated import CalibratedBoard
from hil.boards.simulated import SimulatedBoard
from hil.calibrate.settings import CalibrationSettings
from hil.circuit.generate import random_circuit

from .conftest import make_boards


def _no_compensation(m: int) -> tuple:
    """A calibration that corrects nothing (no offsets, no stuck devices, no drift) for m conductances."""
    cal = types.SimpleNamespace(arrays={"fault_code": np.zeros(m, int), "fault_fixed_s": np.zeros(m)})
    return cal, CalibrationSettings(offsets=False, stuck_mask=False, drift="none", write_verify_rel_tol=0.0)


def test_leaving_a_calibrated_bench_board_switches_off_and_releases_every_instrument():
    board, _, bench = make_boards()
    wrapped = CalibratedBoard(board, *_no_compensation(board.topology.n_conductances))
    with wrapped:
        board.connect()
        assert board._atexit
        wrapped.measure(np.array([[0.3, -0.2]]))
    smus = [inst for inst in bench.instruments.values() if hasattr(inst, "output_enabled")]
    assert smus and all(not inst._on[ch] and inst._setpoint[ch] == 0.0 for inst in smus for ch in inst.channels)
    assert all(not inst.connected for inst in bench.instruments.values())  # transports released
    assert not board._atexit  # nothing left for the interpreter's exit to shut down again


def test_a_calibrated_simulated_board_still_just_forgets_its_operating_point():
    sim = SimulatedBoard(random_circuit(4, 2, 2, seed=0, coupling_degree=0))
    x = np.array([[0.1, 0.2]])
    with CalibratedBoard(sim, *_no_compensation(sim.topology.n_conductances)) as wrapped:
        wrapped.measure(x)
        assert sim._last is not None
    assert sim._last is None
