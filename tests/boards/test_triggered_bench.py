"""Triggered multi-instrument list sweeps through real pyvisa-py sockets: B2902A list sweeps and
DAQ970A scans stepped by one shared bench trigger line (scpi-xor-triggered); a batch is one list
upload per channel, one start and one read-back per instrument, whatever the batch size."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.drivers.errors import LimitViolation
from hil.emulate.bench import EmulatedBench
from hil.train.estimators import estimate
from hil.train.losses import Loss

from tests.boards.test_emulated_bench import XOR, open_board

BENCH = "scpi-xor-triggered"


def exchanges_per_hl_step(B, seed=0):
    """({instrument: (lines received, queries)}, trigger pulses, points swept) for one hl step."""
    rng = np.random.default_rng(seed)
    with EmulatedBench(BENCH, time_mode="virtual", readings="exact") as eb:  # ideal DMM: fast world solves
        with open_board(eb, rehearsal=False) as board:
            assert board._mode() == "triggered"
            topo = board.topology
            x = rng.uniform(0, 1, (B, topo.n_inputs))
            t = rng.integers(0, topo.differential.shape[0], B)
            eb.settle()
            before = {n: len(e.transcript.received()) for n, e in eb.emulators.items()}
            pulses0, points0 = eb.world.trigger.pulses, board.stats.points
            res = estimate("hl", board, x, t, Loss("cross_entropy", 1e5, topo.differential),
                           {"delta_v": 1e-3, "max_retries": 0})
            eb.settle()
            counts = {}
            for n, e in eb.emulators.items():
                lines = e.transcript.received()[before[n]:]
                counts[n] = (len(lines), sum("?" in line for line in lines))
            pulses, points = eb.world.trigger.pulses - pulses0, board.stats.points - points0
        assert eb.all_outputs_safe()
    assert res.stats["valid"].all()
    return counts, pulses, points


def test_round_trips_do_not_grow_with_the_batch():
    """Queries per instrument are the same for B = 1, 8 and 32; every point is one trigger pulse."""
    results = {B: exchanges_per_hl_step(B) for B in (1, 8, 32)}
    queries = {B: {n: q for n, (_, q) in c.items()} for B, (c, _, _) in results.items()}
    assert queries[1] == queries[8] == queries[32], queries
    lines = {B: sum(n for n, _ in c.values()) for B, (c, _, _) in results.items()}
    for B, (counts, pulses, points) in results.items():
        assert pulses == points > 9 * B  # operating point and ± per output port, plus ramp points
        # lines grow only by the list-upload messages (100 levels each) of the 10 SMU channels
        assert lines[B] - lines[1] <= 10 * (-(-points // 100) - 1), (B, lines)
    print(f"{BENCH}: lines per hl step {lines}, queries {sum(queries[1].values())} for every B")


def test_triggered_measurement_matches_simulated_and_restores_the_instruments():
    """Noise on: every sample valid and within the predicted bound of the simulated board; after the
    batch every SMU channel is back in fixed mode on automatic trigger, the DAQ on immediate."""
    from tests.boards.test_emulated_bench import DAQ_NOISE_V, DAQ_STEP_V, DMM_LOAD_S, XOR, node_conductance

    with EmulatedBench(BENCH, time_mode="virtual") as eb:
        sim = SimulatedBoard(eb.bench.circuit, 1e-8, 1e-4)
        with open_board(eb, rehearsal=False) as board:
            m = board.measure(XOR)
            assert board.stats.sweeps == 1 and board.stats.stepwise_points == 0
            eb.settle()
            smu = eb.emulators["smu_x"]
            assert all(smu.chans[ch].voltage_mode == "FIX" and smu.chans[ch].extra["trig_source"] == "AINT"
                       and not smu.chans[ch].extra["tout"] for ch in ("1", "2"))
            assert eb.emulators["daq"].trig_source == "IMMediate" and eb.world.trigger.armed == 0
        assert eb.all_outputs_safe()
    s = sim.measure(XOR)
    G = node_conductance(eb.bench.circuit)
    bound = 5 * DAQ_NOISE_V + DAQ_STEP_V / 2 + np.abs(s.e) * DMM_LOAD_S / (G + DMM_LOAD_S)
    assert np.all(np.abs(m.e - s.e) <= bound), (np.abs(m.e - s.e) / bound).max()
    np.testing.assert_allclose(m.y, s.y, rtol=1e-3, atol=2e-8)
    assert m.valid.all()


def test_arm_sweep_refuses_a_vector_over_the_limits_before_any_io():
    """arm_sweep checks exactly as list_sweep: a level beyond v_max sends nothing."""
    with EmulatedBench(BENCH, time_mode="virtual") as eb:
        with open_board(eb, rehearsal=False) as board:
            board.connect()
            smu = board.instruments["smu_x"]
            eb.settle()
            before = len(eb.emulators["smu_x"].transcript.received())
            with pytest.raises(LimitViolation):
                smu.arm_sweep({"1": np.array([0.0, 0.2, 2.0])}, 0.0, lead=True)
            eb.settle()
            assert len(eb.emulators["smu_x"].transcript.received()) == before
        assert eb.all_outputs_safe()


@pytest.mark.parametrize("inst, arm, expected", [
    ("daq", lambda f: f.no_reply(count=None, match=r"FETC\?"), "InstrumentTimeout"),
    ("smu_y23", lambda f: f.garbage_reply(count=None, match=r"FETC"), "InstrumentProtocolError"),
], ids=["daq_no_reply", "follower_garbage"])
def test_fault_in_a_triggered_batch_stops_with_outputs_off(inst, arm, expected):
    """A fault at the read-back of a triggered batch raises; every output ends off at 0 V and no
    instrument is left waiting on the trigger line."""
    import hil.drivers.errors as errors

    with EmulatedBench(BENCH, time_mode="virtual") as eb:
        board = open_board(eb, timeout_s=1.0, rehearsal=False)
        with pytest.raises(getattr(errors, expected)):
            with board:
                board.measure(XOR[:1])
                arm(eb.emulators[inst].faults)
                board.measure(XOR[:1])
        assert eb.all_outputs_safe()
        assert eb.world.trigger.armed == 0
