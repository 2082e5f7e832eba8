"""Calibration on an instrument bench: the measure_sources capability and the channel bounds through
real pyvisa-py sockets, `hil calibrate --emulate`, and where a bench's calibrations are kept."""

import numpy as np
import pytest

from hil.circuit.solve import solve
from hil.calibrate import store
from hil.cli import main
from hil.emulate.bench import EmulatedBench

from boards.test_emulated_bench import open_board


def test_measure_sources_drives_every_source_channel_as_given():
    """Probe levels outside what the inputs map to (here a rail at −0.3 V) reach the circuit: the
    bench's readings equal the simulated board's for the same source voltages."""
    with EmulatedBench("scpi-xor", time_mode="virtual", readings="exact") as eb:
        p = eb.bench.circuit.n_sources
        u = np.array([np.linspace(-0.3, 0.4, p), np.linspace(0.2, -0.1, p)])
        with open_board(eb, rehearsal=False) as board:
            m = board.measure_sources(u)
            lo, hi = board.level_bounds_v()
        s = solve(eb.bench.circuit, u)
        assert eb.all_outputs_safe()
    np.testing.assert_allclose(m.u, u)
    np.testing.assert_allclose(m.e, s.e, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m.y, s.y, rtol=1e-6, atol=1e-12)
    limits = [eb.bench.instruments[port.instrument].channels[port.channel]
              for port in board.wiring.smu_ports()]
    assert lo.tolist() == [c.settings["v_min"] for c in limits] and hi.tolist() == [c.settings["v_max"] for c in limits]
    with pytest.raises(ValueError, match="source voltages per sample"):
        board.measure_sources(np.zeros((1, p + 1)))


def test_emulate_is_refused_for_a_simulated_config(capsys):
    assert main(["calibrate", "sim-xor", "--emulate"]) == 2
    assert "--emulate: only for board.backend: instruments" in capsys.readouterr().err


def test_a_bench_and_its_rehearsal_keep_separate_calibrations():
    assert store.board_id("bench-xor", None, None, "xor-bench") == "bench-xor-bench"
    assert store.board_id("bench-xor", None, None, "xor-bench", emulated=True) == "bench-xor-bench-emulated"
    assert store.board_id("sim-xor", {"name": "xor-2x8x4"}, None) == "xor-2x8x4-ideal-0"
