"""Calibration on an instrument bench: the measure_sources capability and the channel bounds through
real pyvisa-py sockets, `hil calibrate --emulate`, and where a bench's calibrations are kept."""

import numpy as np
import pytest

from hil.circuit.solve import solve
from hil.calibrate import store
from hil.cli import main
from hil.emulate.bench import EmulatedBench

from hil.boards.bench_config import InstrumentBoardSpec
from hil.boards.bench_factory import make_instrument_board

ACQ = {"acquisition": "auto", "settle_s": 0.0, "ramp_points": True, "max_points": 2000, "noise_floor_v": 5e-6}


def open_board(eb):
    """The instrument board on the emulated bench's loopback resources, no programmer."""
    spec = InstrumentBoardSpec(eb.loopback_bench, ACQ, {"scheme": "none"})
    return make_instrument_board(spec, (1e-8, 1e-4), clock=lambda: eb.clock.now_s)


def test_measure_sources_drives_every_source_channel_as_given():
    """Probe levels outside what the inputs map to (here a rail at −0.3 V) reach the circuit: the
    bench's readings equal the simulated board's for the same source voltages."""
    with EmulatedBench("scpi-xor", time_mode="virtual", readings="exact") as eb:
        p = eb.bench.circuit.n_sources
        u = np.array([np.linspace(-0.3, 0.4, p), np.linspace(0.2, -0.1, p)])
        with open_board(eb) as board:
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


def test_voltage_gain_levels_stay_within_the_tightest_channel():
    """The common levels of the voltage-gain step went up to 1.5 V on every terminal whatever the
    bench allowed: on scpi-xor (output ports limited to ±0.5 V) the calibration stopped at its
    second stage with a limit violation. They now stop at the lowest effective v_max."""
    from hil.calibrate.gains import common_level_voltage_gains
    from hil.calibrate.offsets import ChannelOffsets

    with EmulatedBench("scpi-xor", time_mode="virtual", readings="exact") as eb:
        with open_board(eb) as board:
            topo = board.topology
            zero = lambda k: np.zeros(k)
            off = ChannelOffsets(zero(topo.n_outputs), zero(topo.n_sources), zero(topo.n_hidden),
                                 zero(topo.n_outputs), zero(topo.n_sources), zero(topo.n_hidden), 1)
            gains = common_level_voltage_gains(board, off, levels=4, readings=2)
            top = float(np.max(board.level_bounds_v()[1].min()))
        eb.settle()
        levels = [s["level_v"] for s in eb.emulators["smu_y2"].transcript.states("")]
        assert eb.all_outputs_safe()
    assert top == 0.5 and max(levels) == pytest.approx(0.5)
    np.testing.assert_allclose(gains, 1.0, rtol=1e-4)  # exact readings: 1 but for the DMM's 10 GΩ loading


def test_probe_amplitude_beyond_the_bench_limits_is_refused_before_measuring(tmp_path, capsys):
    """board.calibration.amplitude_v = 5 V on bench-xor (channels ±1.5 V) used to run the first
    stage for minutes, then stop with a limit violation pointing at data.input_scale_v (exit 1)."""
    assert main(["calibrate", "bench-xor", "--emulate", "--dir", str(tmp_path),
                 "--set", "board.calibration.amplitude_v=5"]) == 2
    err = capsys.readouterr().err
    assert "board.calibration.amplitude_v: 5 V probes x0 at -5 .. 5 V, beyond smu1.a's limits -1.5 .. 1.5 V" in err
    assert "Traceback" not in err and "1/6" not in capsys.readouterr().out
