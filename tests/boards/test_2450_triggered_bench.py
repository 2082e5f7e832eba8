"""Keithley 2450s on the bench trigger line (scpi-xor-2450-triggered): the 2450s follow the B2902A
lead through digital I/O line 1, through real pyvisa-py sockets. A batch measured triggered equals
the same batch measured stepwise; the exchanges per hl step do not grow with the batch; a fault in a
triggered batch ends with every output off at 0 V (from the emulators' transcripts)."""

import dataclasses

import numpy as np
import pytest

from hil.boards.bench_config import InstrumentBoardSpec
from hil.boards.bench_factory import make_instrument_board
from hil.drivers.errors import InstrumentConfigError, InstrumentProtocolError, InstrumentTimeout, LimitViolation
from hil.emulate.bench import EmulatedBench
from hil.train.estimators import estimate
from hil.train.losses import Loss

from tests.boards.test_emulated_bench import ACQ, XOR

BENCH = "scpi-xor-2450-triggered"
FOLLOWERS = ("smu_y2", "smu_y3")


def board_on(eb, mode="auto", timeout_s=None):
    bench = eb.loopback_bench
    if timeout_s is not None:
        bench = dataclasses.replace(bench, instruments={n: dataclasses.replace(s, timeout_s=timeout_s)
                                                        for n, s in bench.instruments.items()})
    spec = InstrumentBoardSpec(bench, dict(ACQ, acquisition=mode), {"scheme": "none"})
    return make_instrument_board(spec, (1e-8, 1e-4), clock=lambda: eb.clock.now_s)


def hl_step(eb, board, B, seed=0):
    rng = np.random.default_rng(seed)
    topo = board.topology
    x = XOR if B == 4 else rng.uniform(0, 1, (B, topo.n_inputs))
    t = np.array([0, 1, 1, 0]) if B == 4 else rng.integers(0, topo.differential.shape[0], B)
    return estimate("hl", board, x, t, Loss("cross_entropy", 1e5, topo.differential),
                    {"delta_v": 0.01, "max_retries": 0})


def test_triggered_batch_equals_stepwise_with_exact_readings():
    """One hl step (operating point and ± drive of every output port) measured triggered and
    stepwise through the sockets: gradients and output currents agree to float64 round-off."""
    results = {}
    for mode in ("triggered", "stepwise"):
        with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
            with board_on(eb, mode) as board:
                assert board._mode() == mode
                res = hl_step(eb, board, 4)
                stats = board.stats
            assert eb.all_outputs_safe()
            lists = [line for n in FOLLOWERS for line in eb.emulators[n].transcript.received()
                     if line.startswith(":SOUR:LIST:VOLT")]
        results[mode] = (res, stats, lists)
    trig, step = results["triggered"], results["stepwise"]
    assert trig[1].stepwise_points == 0 and step[1].sweeps == 0
    assert any(float(v) != 0.0 for line in trig[2] for v in line.split(" ", 1)[1].split(","))  # ± drive on the 2450s
    assert not step[2]
    assert trig[0].stats["valid"].all() and step[0].stats["valid"].all()
    rel = np.abs(trig[0].grad - step[0].grad).max() / np.abs(step[0].grad).max()
    print(f"{BENCH}: triggered vs stepwise hl gradient, max |Δ| / max |g| = {rel:.2e}")
    assert rel <= 1e-9, rel


def exchanges(B):
    """({instrument: (lines, queries)}, points) for one hl step of batch B, triggered."""
    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        with board_on(eb) as board:
            board.connect()
            assert board._mode() == "triggered"
            eb.settle()
            before = {n: len(e.transcript.received()) for n, e in eb.emulators.items()}
            points0 = board.stats.points
            res = hl_step(eb, board, B)
            eb.settle()
            counts = {}
            for n, e in eb.emulators.items():
                got = e.transcript.received()[before[n]:]
                counts[n] = (len(got), sum("?" in line for line in got))
            points = board.stats.points - points0
        assert eb.all_outputs_safe()
    assert res.stats["valid"].all()
    return counts, points


def test_exchanges_per_step_do_not_grow_with_the_batch():
    """B = 1, 8, 32: the same queries per instrument; a 2450's lines grow only by one list-upload
    message per 100 points."""
    results = {B: exchanges(B) for B in (1, 8, 32)}
    queries = {B: {n: q for n, (_, q) in c.items()} for B, (c, _) in results.items()}
    assert queries[1] == queries[8] == queries[32], queries
    for B, (counts, points) in results.items():
        for n in FOLLOWERS:
            assert counts[n][0] - results[1][0][n][0] <= -(-points // 100) - 1, (B, n, counts[n], points)
    assert results[32][1] > 10 * results[1][1]
    print(f"{BENCH}: queries per hl step {sum(queries[1].values())} for B = 1, 8, 32 "
          f"(points {[results[B][1] for B in (1, 8, 32)]}); 2450 lines/queries "
          f"{[results[B][0]['smu_y2'] for B in (1, 8, 32)]}")


def _abort_before_off(transcript):
    received = transcript.received()
    aborts = [k for k, line in enumerate(received) if line.strip().upper() == ":ABOR"]
    offs = [k for k, line in enumerate(received) if line.strip().upper() == ":OUTP OFF"]
    return bool(aborts) and bool(offs) and aborts[0] < offs[-1]


@pytest.mark.parametrize("arm, expected", [
    (lambda f: f.no_reply(count=None, match=r"TRAC:ACT"), InstrumentTimeout),
    (lambda f: f.garbage_reply(count=None, match=r"TRAC:DATA"), InstrumentProtocolError),
], ids=["no_reply_while_waiting", "garbage_read_back"])
def test_fault_in_a_triggered_batch_ends_safe(arm, expected):
    """A 2450 follower fails at the read-back of a triggered batch: the run stops with the error,
    the follower's trigger model was aborted before its output went off, every output ends off at
    0 V and nothing waits on the trigger line."""
    with EmulatedBench(BENCH, time_mode="virtual") as eb:
        board = board_on(eb, timeout_s=1.0)
        with pytest.raises(expected):
            with board:
                board.measure(XOR[:1])
                arm(eb.emulators["smu_y2"].faults)
                board.measure(XOR[:1])
        assert eb.all_outputs_safe()
        assert eb.world.trigger.armed == 0
        emu = eb.emulators["smu_y2"]
        assert _abort_before_off(emu.transcript)
        assert not emu.ch.output_on and emu.ch.level_v == 0.0


@pytest.mark.parametrize("fault", ["force_compliance", "sentinel"])
def test_compliance_and_sentinel_on_a_follower_mask_only_their_sample(fault):
    """The fault covers a 2450's readings up to the first sample of the sweep (its ramp points come
    first): exactly that sample is masked, with a compliance event; the run goes on and the outputs
    end off at 0 V."""
    from tests.boards.conftest import readings_through_first_sample

    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        with board_on(eb) as board:
            first = readings_through_first_sample(board, XOR)
            board.connect()
            faults = eb.emulators["smu_y3"].faults
            if fault == "force_compliance":
                faults.force_compliance(count=first)
            else:
                faults.sentinel("overflow", count=first)
            m = board.measure(XOR)
            assert not faults.armed()
        assert eb.all_outputs_safe()
    assert m.valid.tolist() == [False, True, True, True]
    assert ("compliance", {"phase": 0, "samples": [0]}) in board.stats.events


def test_arm_sweep_refuses_before_any_io():
    """Limits, step, settle time and the lead role are checked before anything reaches the 2450."""
    with EmulatedBench(BENCH, time_mode="virtual") as eb:
        with board_on(eb) as board:
            board.connect()
            smu = board.instruments["smu_y2"]
            eb.settle()
            before = len(eb.emulators["smu_y2"].transcript.received())
            cases = [({"": np.array([0.0, 0.1, 0.6])}, 0.0, False, LimitViolation),   # beyond v_max 0.5
                     ({"": np.array([0.0, 0.2, 0.0])}, 0.0, False, LimitViolation),   # step above 0.1 V
                     ({"": np.array([0.0, 0.05, 0.0])}, 1e-3, False, InstrumentConfigError),
                     ({"": np.array([0.0, 0.05, 0.0])}, 0.0, True, InstrumentConfigError)]
            for vec, settle, lead, err in cases:
                with pytest.raises(err):
                    smu.arm_sweep(vec, settle, lead=lead)
            eb.settle()
            assert len(eb.emulators["smu_y2"].transcript.received()) == before
        assert eb.all_outputs_safe()


def test_bench_time_model_agrees_with_virtual_clock():
    """hil estimate's measurement time per step and per epoch on this bench (bench-xor-tsp's training
    settings, no programming) against the emulators' virtual clock, within 10 %."""
    from hil.config import load_yaml
    from tests.boards.conftest import hl_epoch_on_virtual_clock

    raw = load_yaml("bench-xor-tsp")
    raw["board"]["bench"] = BENCH
    raw["board"]["programming"] = {"scheme": "none"}
    predicted, step, epoch, _ = hl_epoch_on_virtual_clock(raw, "bench-xor-2450", readings="exact")
    assert predicted["acquisition"] == "triggered"
    print(f"{BENCH} per step: virtual clock {step:.3f} s, hil estimate {predicted['measure_step_s']:.3f} s; "
          f"per epoch {epoch:.3f} s vs {predicted['epoch_measure_s']:.3f} s")
    assert abs(step - predicted["measure_step_s"]) <= 0.10 * step, (step, predicted["measure_step_s"])
    assert abs(epoch - predicted["epoch_measure_s"]) <= 0.10 * epoch, (epoch, predicted["epoch_measure_s"])


def test_a_2450_wired_first_follows_and_the_first_b2900_leads():
    """With a 2450 holding the first source port the board still arms it as a follower and lets the
    first B2902A lead; the batch equals the stepwise one."""
    import copy

    import yaml

    from hil.bench.schema import bench_root

    raw = copy.deepcopy(yaml.safe_load((bench_root() / f"{BENCH}.yaml").read_text()))
    inst, wiring = raw["bench"]["instruments"], raw["bench"]["wiring"]
    inst["smu_y2"]["channels"][""] = dict(inst["smu_x"]["channels"]["1"])    # input limits
    inst["smu_x"]["channels"]["1"] = dict(inst["smu_y01"]["channels"]["1"])  # output limits
    wiring["sources"] = {"x0": "smu_y2", **{k: v for k, v in wiring["sources"].items() if k != "x0"}}
    wiring["outputs"]["y2"] = "smu_x.1"
    measured = {}
    for mode in ("triggered", "stepwise"):
        with EmulatedBench(raw, time_mode="virtual", readings="exact") as eb:
            with board_on(eb, mode) as board:
                assert next(iter(board._smus())) == "smu_y2"
                assert board._mode() == mode and (mode == "stepwise" or board._lead() == "smu_x")
                measured[mode] = board.measure(XOR)
            assert eb.all_outputs_safe()
            if mode == "triggered":
                received = eb.emulators["smu_y2"].transcript.received()
                assert ":INIT" in received and any(line.startswith(":TRIG:BLOC:WAIT") for line in received)
    for key in ("y", "e"):
        a, b = getattr(measured["triggered"], key), getattr(measured["stepwise"], key)
        assert np.abs(a - b).max() <= 1e-9 * np.abs(b).max(), key


def test_a_list_stepped_out_of_order_is_refused_and_ends_safe():
    """If the instrument's first list step recalled index 2 instead of 1 (one point ahead), the source
    values stored with the readings do not match the upload: InstrumentProtocolError, outputs off."""
    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:
        emu = eb.emulators["smu_y2"]
        recall = emu._recall
        emu._recall = lambda name, index: recall(name, index % len(emu.ch.list_v) + 1)
        board = board_on(eb)
        with pytest.raises(InstrumentProtocolError, match="did not step as programmed"):
            with board:
                hl_step(eb, board, 1)
        assert eb.all_outputs_safe()
        assert eb.world.trigger.armed == 0
