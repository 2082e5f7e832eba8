"""Triggered list sweeps on 2602B SMUs through real pyvisa-py sockets (tsp-xor-triggered): the first
SMU's trigger timer paces the points and pulses digital I/O line 1, the other 2602Bs and the DAQ970A
step on the line; a batch is one list upload per channel and one read-back per instrument.

Proves from the emulators' transcripts: bench time as `hil estimate` predicts it, exchanges
independent of the batch size, limits refused before any I/O, compliance and sentinels masked per
sample, and every output off at 0 V after a fault, a timeout, Ctrl-C or SIGTERM during a run.
"""

import copy
import dataclasses

import numpy as np
import pytest
import yaml

from hil.bench.schema import bench_root
from hil.boards.bench_factory import make_instrument_board
from hil.boards.simulated import SimulatedBoard
from hil.drivers.errors import InstrumentTimeout, LimitViolation
from hil.emulate.bench import EmulatedBench
from hil.train.estimators import estimate
from hil.train.losses import Loss

from tests.boards.test_emulated_bench import XOR, open_board

BENCH = "tsp-xor-triggered"
CONFIG = "configs/bench-xor-tsp.yaml"
SMUS = ("smu1", "smu2", "smu3", "smu4", "smu5")


def _levels_zero_and_off(eb) -> None:
    """Every SMU channel of the transcript ends off, at 0 V (the last state record per channel)."""
    for name in SMUS:
        emu = eb.emulators[name]
        for ch in ("a", "b"):
            states = emu.transcript.states(ch)
            assert states, (name, ch)
            last = states[-1]
            assert not last["output_on"] and abs(last.get("level_v", 0.0)) <= 1e-12, (name, ch, last)


def test_triggered_measurement_matches_simulated_and_restores_the_instruments():
    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        sim = SimulatedBoard(eb.bench.circuit, 1e-8, 1e-4)
        with open_board(eb, rehearsal=False) as board:
            assert board._mode() == "triggered"
            m = board.measure(XOR)
            assert board.stats.sweeps == 1 and board.stats.stepwise_points == 0
            eb.settle()
            for name in SMUS:  # line no longer driven, stimuli cleared, nothing waits on the line
                emu = eb.emulators[name]
                assert emu.digio_lines[1].stimulus == 0 and not emu._bench_armed
                assert all(not ch.running and ch.source_detector.stimulus == 0 for ch in emu.channels.values())
            assert eb.world.trigger.armed == 0 and eb.emulators["daq"].trig_source == "IMMediate"
            lead_lines = eb.emulators["smu1"].transcript.received()
            assert any("trigger.timer[1].stimulus = smua.trigger.ARMED_EVENT_ID" in line for line in lead_lines)
            assert any("smua.trigger.source.stimulus = digio.trigger[1].EVENT_ID" in line
                       for line in eb.emulators["smu2"].transcript.received())
        assert eb.all_outputs_safe()
        _levels_zero_and_off(eb)
    s = sim.measure(XOR)
    np.testing.assert_allclose(m.e, s.e, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.y, s.y, rtol=1e-9, atol=1e-15)
    assert m.valid.all()


def hl_step_exchanges(B: int, seed: int = 0):
    """({instrument: (lines, queries)}, points) the emulators received for one hl step of batch B."""
    rng = np.random.default_rng(seed)
    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        with open_board(eb, rehearsal=False) as board:
            topo = board.topology
            x = rng.uniform(0, 1, (B, topo.n_inputs))
            t = rng.integers(0, topo.differential.shape[0], B)
            board.connect()
            eb.settle()
            before = {n: len(e.transcript.received()) for n, e in eb.emulators.items()}
            points0 = board.stats.points
            res = estimate("hl", board, x, t, Loss("cross_entropy", 1e5, topo.differential),
                           {"delta_v": 1e-3, "max_retries": 0})
            eb.settle()
            counts = {}
            for n, e in eb.emulators.items():
                lines = e.transcript.received()[before[n]:]
                counts[n] = (len(lines), sum("?" in line or "print" in line for line in lines))
            points = board.stats.points - points0
        assert eb.all_outputs_safe()
    assert res.stats["valid"].all()
    return counts, points


def test_round_trips_per_step_do_not_grow_with_the_batch():
    results = {B: hl_step_exchanges(B) for B in (1, 8, 32)}
    queries = {B: {n: q for n, (_, q) in c.items()} for B, (c, _) in results.items()}
    assert queries[1] == queries[8] == queries[32], queries
    lines = {B: sum(n for n, _ in c.values()) for B, (c, _) in results.items()}
    for B, (_, points) in results.items():
        # each script goes out in one write; its lines grow only by the list-building lines
        # (100 levels each) of the 10 SMU channels
        assert lines[B] - lines[1] <= 10 * -(-points // 100), (B, lines, points)
    assert results[32][1] > 10 * results[1][1]  # ... while the points grow with the batch
    print(f"{BENCH}: {lines[1]} lines, {sum(queries[1].values())} queries per hl step for B = 1, 8, 32")


def test_bench_time_model_agrees_with_virtual_clock():
    """hil estimate's step and epoch for bench-xor-tsp against the emulators' virtual clock."""
    from tests.boards.conftest import hl_epoch_on_virtual_clock

    predicted, step, epoch, eb = hl_epoch_on_virtual_clock(CONFIG, "bench-xor-tsp", readings="exact", round_trips=True)
    assert predicted["acquisition"] == "triggered"
    overruns = [e.text for e in eb.emulators["smu1"].transcript.entries("event") if "miss" in e.text]
    assert not overruns, overruns
    assert abs(step - predicted["measure_step_s"]) <= 0.10 * step, (step, predicted["measure_step_s"])
    assert abs(epoch - predicted["epoch_measure_s"]) <= 0.10 * epoch, (epoch, predicted["epoch_measure_s"])
    print(f"bench-xor-tsp per step: virtual clock {step:.3f} s, hil estimate {predicted['measure_step_s']:.3f} s; "
          f"per epoch {epoch:.3f} s vs {predicted['epoch_measure_s']:.3f} s")


@pytest.mark.parametrize("scan_nplc", [1.0, 2.0], ids=["scan_inside_point", "scan_longer_than_point"])
def test_a_triggered_point_lasts_as_long_as_its_slowest_reading(scan_nplc):
    """The DAQ scans while the lead SMU integrates: a point lasts max(SMU point, scan), never their
    sum. At 2 PLC the scan (8 x (2.2 ms + 40 ms)) outlasts the 201 ms point: the clock follows the
    scanner and the lead's transcript says a real bench would miss trigger pulses."""
    raw = copy.deepcopy(yaml.safe_load((bench_root() / f"{BENCH}.yaml").read_text()))
    daq = raw["instruments"]["daq"]
    for ch in daq["channels"].values():
        ch["nplc"] = scan_nplc
    scan_s = len(daq["channels"]) * (daq["relay_s"] + scan_nplc / raw["line_frequency_hz"])
    with EmulatedBench(raw, time_mode="virtual", readings="exact") as eb:
        with open_board(eb, rehearsal=False) as board:
            board.connect()
            eb.settle()
            points0, t0 = board.stats.points, eb.clock.now_s
            board.measure(XOR)
            per_point = (eb.clock.now_s - t0) / (board.stats.points - points0)
            point_s = board.instruments["smu1"].trigger_period_s("a", board.timing.settle_s)
        missed = [e.text for e in eb.emulators["smu1"].transcript.entries("event") if "miss" in e.text]
        assert eb.all_outputs_safe()
    assert per_point == pytest.approx(max(point_s, scan_s), rel=0.02), (per_point, point_s, scan_s)
    assert bool(missed) == (scan_s > point_s), missed


def test_arm_sweep_refuses_a_vector_over_the_limits_before_any_io():
    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        with open_board(eb, rehearsal=False) as board:
            board.connect()
            smu = board.instruments["smu1"]
            eb.settle()
            before = len(eb.emulators["smu1"].transcript.received())
            for bad in ({"a": np.array([0.0, 0.4, 2.0])},         # beyond v_max
                        {"a": np.array([0.0, 1.2, 0.0])}):        # a step above max_step_v
                with pytest.raises(LimitViolation):
                    smu.arm_sweep(bad, 0.0, lead=True)
            eb.settle()
            assert len(eb.emulators["smu1"].transcript.received()) == before
        assert eb.all_outputs_safe()


@pytest.mark.parametrize("fault", ["force_compliance", "sentinel"])
def test_compliance_and_sentinel_mark_only_the_affected_sample(fault):
    """The fault covers the readings of one follower channel up to the first sample of the sweep
    (its ramp points come first): exactly that sample is masked, with a compliance event."""
    from tests.boards.conftest import readings_through_first_sample

    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        with open_board(eb, rehearsal=False) as board:
            first = readings_through_first_sample(board, XOR)
            board.connect()
            faults = eb.emulators["smu4"].faults
            if fault == "force_compliance":
                faults.force_compliance("a", count=first)
            else:
                faults.sentinel("overflow", channel="a", count=first)
            m = board.measure(XOR)
            assert not faults.armed()
        assert eb.all_outputs_safe()
    assert m.valid.tolist() == [False, True, True, True]
    assert ("compliance", {"phase": 0, "samples": [0]}) in board.stats.events


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, "timeout"], ids=["ctrl_c", "sigterm", "timeout"])
def test_interrupted_run_ends_with_every_output_off_at_zero(stop, monkeypatch):
    """Ctrl-C / SIGTERM (the trainer's handler raises SystemExit) / a timeout while the host waits for a
    triggered run: the lead's trigger model is aborted first, then every source is ramped to 0 V and
    switched off, and no instrument is left waiting on the trigger line."""
    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        board = open_board(eb, timeout_s=1.0, rehearsal=False)
        expected = InstrumentTimeout if stop == "timeout" else stop
        with pytest.raises(expected):
            with board:
                board.measure(XOR[:1])
                if stop == "timeout":
                    eb.emulators["smu1"].faults.no_reply(count=None, match=r"printbuffer")
                else:
                    lead = board.instruments["smu1"]
                    real = lead._query

                    def interrupted(command, **kw):
                        if command.startswith("printbuffer"):
                            raise stop()
                        return real(command, **kw)

                    monkeypatch.setattr(lead, "_query", interrupted)
                board.measure(XOR[:1])
        eb.settle()
        received = eb.emulators["smu1"].transcript.received()
        k_abort = max(i for i, line in enumerate(received) if line.strip() == "smua.abort()")
        k_off = max(i for i, line in enumerate(received) if "smua.source.output = smua.OUTPUT_OFF" in line)
        assert k_abort < k_off
        assert eb.all_outputs_safe()
        _levels_zero_and_off(eb)
        assert eb.world.trigger.armed == 0


@pytest.mark.parametrize("inst, arm, expected", [
    ("smu3", lambda e: e.faults.garbage_reply(count=None, match=r"printbuffer"), "InstrumentProtocolError"),
    ("smu5", lambda e: e.push_error(-222, "Data out of range"), "InstrumentReportedError"),
    ("daq", lambda e: e.faults.no_reply(count=None, match=r"FETC\?"), "InstrumentTimeout"),
], ids=["follower_garbage", "follower_error_queue", "scanner_no_reply"])
def test_instrument_fault_in_a_triggered_batch_stops_with_outputs_off(inst, arm, expected):
    import hil.drivers.errors as errors

    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        board = open_board(eb, timeout_s=1.0, rehearsal=False)
        with pytest.raises(getattr(errors, expected)):
            with board:
                board.measure(XOR[:1])
                arm(eb.emulators[inst])
                board.measure(XOR[:1])
        assert eb.all_outputs_safe()
        _levels_zero_and_off(eb)
        assert eb.world.trigger.armed == 0
        assert not any(emu._bench_armed for name, emu in eb.emulators.items() if name in SMUS)


def _bench_with_a_2450_programmer() -> dict:
    """tsp-xor-triggered with its programming SMU swapped for a 2450 (no pulse capability)."""
    raw = copy.deepcopy(yaml.safe_load((bench_root() / f"{BENCH}.yaml").read_text()))
    assert raw["instruments"]["prog"]["driver"] == "keithley2600"  # the shipped bench can pulse
    raw["instruments"]["prog"] = {
        "driver": "keithley2450", "model": "2450", "resource": "TCPIP::192.0.2.31::5025::SOCKET",
        "channels": {"": {"v_min": -1.6, "v_max": 1.6, "i_compliance_a": 1.0e-4, "current_range_a": 1.0e-4,
                          "max_step_v": 1.6, "max_slew_v_per_s": 1.0e+5, "max_power_w": 1.6e-4}}}
    return raw


def test_programming_smu_without_pulses_is_refused_on_a_real_bench():
    """Outside a rehearsal the write-verify programmer needs a PulsedSource: bench-xor-tsp on a
    variant of its bench that programs through a 2450, which has none, is refused when the board
    is built, in one line naming board.programming.smu (nothing connected)."""
    from hil.config import load_yaml
    from hil.drivers.errors import InstrumentConfigError
    from hil.train.settings import parse_settings

    raw = load_yaml(CONFIG)
    raw["board"]["bench"] = _bench_with_a_2450_programmer()
    raw["board"]["programming"]["smu"] = "prog"
    settings = parse_settings(raw, "bench-xor-tsp")
    with EmulatedBench(settings.instrument_board.bench, time_mode="virtual", readings="exact") as eb:
        spec = dataclasses.replace(settings.instrument_board, bench=eb.loopback_bench)
        with pytest.raises(InstrumentConfigError,
                           match=r"board.programming.smu: prog \(Keithley2450\) cannot apply") as exc:
            make_instrument_board(spec, (1e-8, 1e-4), clock=lambda: eb.clock.now_s)
        assert "\n" not in str(exc.value)
        eb.settle()
        assert all(not e.transcript.received() for e in eb.emulators.values())
