"""The instrument board through real pyvisa-py sockets against the emulated bench (hil.emulate)."""

import atexit
import dataclasses
import json

import numpy as np
import pytest

from hil.boards.bench_config import InstrumentBoardSpec
from hil.boards.bench_factory import make_instrument_board
from hil.boards.simulated import SimulatedBoard
from hil.drivers.errors import InstrumentError
from hil.emulate.bench import EmulatedBench

ACQ = {"acquisition": "auto", "settle_s": 0.0, "ramp_points": True, "max_points": 2000, "noise_floor_v": 5e-6}
XOR = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
DAQ_NOISE_V = 3e-7 * 10.0  # emulated DAQ970A: σ = 3e-7 · range / √NPLC at 1 NPLC, 10 V range
DAQ_STEP_V = 3e-7 * 10.0   # resolution at NPLC ≥ 1 (6½ digits)
DMM_LOAD_S = 1e-7          # 10 MΩ input (the board does not switch the DAQ to > 10 GΩ)


def open_board(eb, timeout_s=None, rehearsal=True):
    bench = eb.loopback_bench
    if timeout_s is not None:
        bench = dataclasses.replace(bench, instruments={n: dataclasses.replace(s, timeout_s=timeout_s)
                                                        for n, s in bench.instruments.items()})
    spec = InstrumentBoardSpec(bench, ACQ, {"scheme": "write_verify" if rehearsal else "none"})
    return make_instrument_board(spec, (1e-8, 1e-4), clock=lambda: eb.clock.now_s,
                                 rehearsal_world=eb.world if rehearsal else None)


def node_conductance(circuit):
    """Total conductance attached to each hidden node, S."""
    topo = circuit.topology()
    g = circuit.conductance_vector()
    p = circuit.n_sources
    total = np.zeros(circuit.n_hidden)
    for k, (a, b) in enumerate(topo.edges):
        for node in (a, b):
            if p <= node < p + circuit.n_hidden:
                total[node - p] += g[k]
    return total


def test_measurement_matches_simulated_within_predicted_bound():
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        sim = SimulatedBoard(eb.bench.circuit, 1e-8, 1e-4)
        with open_board(eb, rehearsal=False) as board:
            m = board.measure(XOR)
        s = sim.measure(XOR)
        assert eb.all_outputs_safe()
    # predicted: 5 σ of the reading noise + half a resolution step + the DMM's loading of the node
    G = node_conductance(eb.bench.circuit)
    bound = 5 * DAQ_NOISE_V + DAQ_STEP_V / 2 + np.abs(s.e) * DMM_LOAD_S / (G + DMM_LOAD_S)
    assert np.all(np.abs(m.e - s.e) <= bound), (np.abs(m.e - s.e) / bound).max()
    np.testing.assert_allclose(m.y, s.y, rtol=1e-3, atol=2e-8)  # SMU readings: 1 mA range, 6½ digits
    assert m.valid.all()


STOPS = [  # fault armed after a first good batch → the batch raises, every output ends off at 0 V
    ("daq", lambda f: f.no_reply(count=None, match=r"READ\?"), "InstrumentTimeout"),
    ("daq", lambda f: f.late_reply(1.0, count=None, match=r"READ\?"), "InstrumentTimeout"),
    ("daq", lambda f: f.drop_connection(match=r"READ\?"), "InstrumentError"),
    ("daq", lambda f: f.garbage_reply(count=None, match=r"READ\?"), "InstrumentProtocolError"),
    ("smu_y2", None, "InstrumentReportedError"),  # an error pushed onto the queue (-222)
]
MASKS = [  # the batch completes, the affected samples are marked invalid, the run goes on
    ("smu_y2", lambda f: f.force_compliance(count=None)),
    ("daq", lambda f: f.sentinel("overflow", count=None)),
]


@pytest.mark.parametrize("inst, arm, expected", STOPS,
                         ids=["no_reply", "late_reply", "drop_connection", "garbage_reply", "push_error"])
def test_fault_mid_batch_stops_with_outputs_off(inst, arm, expected):
    import hil.drivers.errors as errors

    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        board = open_board(eb, timeout_s=0.5, rehearsal=False)
        with pytest.raises(getattr(errors, expected)):
            with board:
                board.measure(XOR[:1])
                if arm is None:
                    eb.emulators[inst].push_error(-222, "Data out of range")
                else:
                    arm(eb.emulators[inst].faults)
                board.measure(XOR[:1])
        assert eb.all_outputs_safe()  # from what the emulators hold, not what the driver believes


@pytest.mark.parametrize("inst, arm", MASKS, ids=["force_compliance", "sentinel"])
def test_bad_readings_are_masked_not_used(inst, arm):
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        with open_board(eb, timeout_s=0.5, rehearsal=False) as board:
            board.connect()
            arm(eb.emulators[inst].faults)
            m = board.measure(XOR[:2])
            assert not m.valid.any()
            assert any(kind == "compliance" for kind, _ in board.stats.events)
        assert eb.all_outputs_safe()


def test_interlock_open_at_connect_leaves_everything_off():
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        eb.emulators["smu_y2"].faults.interlock_open()
        board = open_board(eb, timeout_s=0.5, rehearsal=False)
        with pytest.raises(InstrumentError, match="[Ii]nterlock"):
            with board:
                board.measure(XOR[:1])
        assert eb.all_outputs_safe()


def test_after_kill_the_next_connect_ramps_outputs_down_within_limits():
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        board = open_board(eb, rehearsal=False)
        board.connect()
        board.instruments["smu_x"].set_voltage("1", 1.0)  # a live output left behind, as after kill -9
        for inst in board.instruments.values():
            inst.transport.close()  # the process dies: no shutdown, links gone
        atexit.unregister(board.safe_state)  # (and no exit hook: a killed process runs none)
        assert not eb.all_outputs_safe()
        mark = len(eb.emulators["smu_x"].transcript.states("1"))
        with open_board(eb, rehearsal=False) as again:
            again.connect()
        levels = [s["level_v"] for s in eb.emulators["smu_x"].transcript.states("1")[mark:]]
        steps = np.abs(np.diff([1.0] + levels))
        assert steps.max() <= 0.25 + 1e-9  # max_step_v of the bench's input channels
        assert eb.all_outputs_safe()


def test_train_on_emulated_bench_stops_on_fault_and_resumes(tmp_path):
    from hil.config import load_yaml
    from hil.train.data import load_dataset
    from hil.train.loop import Trainer
    from hil.train.rundir import RunDir
    from hil.train.settings import parse_settings

    raw = load_yaml("configs/bench-xor.yaml")
    raw["train"]["epochs"] = 1
    raw["output"]["plots"] = False
    settings = parse_settings(raw, "bench-xor")
    data = load_dataset("xor")
    run = RunDir.create(tmp_path, "bx")
    with EmulatedBench(settings.instrument_board.bench, time_mode="virtual") as eb:
        # the bench's own I/O timeouts (5 s) where replies are expected: a loaded machine must not turn
        # a slow reply into a fault; a short one only where the missing reply is the fault under test
        spec = dataclasses.replace(settings.instrument_board, bench=eb.loopback_bench)
        fast = {n: dataclasses.replace(i, timeout_s=1.0) for n, i in eb.loopback_bench.instruments.items()}
        fault_spec = dataclasses.replace(spec, bench=dataclasses.replace(eb.loopback_bench, instruments=fast))
        board = make_instrument_board(spec, (settings.g_min, settings.g_max), clock=lambda: eb.clock.now_s,
                                      rehearsal_world=eb.world)
        with board:
            Trainer(board, settings, data, run, progress=False).fit()
        settings.epochs = 2
        eb.emulators["daq"].faults.no_reply(count=None, match=r"READ\?")
        board = make_instrument_board(fault_spec, (settings.g_min, settings.g_max), clock=lambda: eb.clock.now_s,
                                      rehearsal_world=eb.world)
        with pytest.raises(InstrumentError):
            with board:
                tr = Trainer(board, settings, data, run, progress=False)
                tr.restore("last")
                tr.fit()
        assert eb.all_outputs_safe()
        assert [e["kind"] for e in run.events()][-2:] == ["error", "run_end"]
        assert len(run.read_metrics()) == 1  # the completed epoch is kept
        eb.emulators["daq"].faults.clear()
        board = make_instrument_board(spec, (settings.g_min, settings.g_max), clock=lambda: eb.clock.now_s,
                                      rehearsal_world=eb.world)
        with board:
            tr = Trainer(board, settings, data, run, progress=False)
            tr.restore("last")
            result = tr.fit()
        assert result.epochs_done == 2 and eb.all_outputs_safe()
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["bench_time_s"] > 0 for r in rows)


def test_cli_train_emulated_writes_run_with_snapshots(tmp_path, capsys):
    from hil.cli import main

    rc = main(["train", "bench-xor", "--emulate", "-q", "--runs-dir", str(tmp_path),
               "--set", "train.epochs=1", "--set", "output.plots=false"])
    assert rc == 0
    run = next(tmp_path.iterdir())
    meta = json.loads((run / "metadata.json").read_text())
    assert set(meta["instruments"]) >= {"smu1", "daq", "matrix"}
    assert meta["instruments"]["daq"]["identity"]["model"] == "DAQ970A"
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "bench_time_s" in header and "program_unconverged" in header


class PhasedSim:
    """The simulated board measuring the same phases as the bench (one-sweep ``hl``)."""

    def __init__(self, inner):
        self.inner, self.topology = inner, inner.topology

    def measure(self, x, w=None):
        return self.inner.measure(x, w)

    def measure_phases(self, x, w_phases):
        return [self.inner.measure(x, w) for w in w_phases]


def test_hl_gradient_through_sockets_within_predicted_noise_bound():
    """One hl gradient measured through the emulated bench equals the simulated board's (same one-sweep
    hl, same drive) within the bound predicted from the DAQ's reading noise, resolution and loading."""
    from hil.board import Measurement
    from hil.train.estimators import estimate
    from hil.train.losses import Loss

    x, t = XOR[1:3], np.array([1, 1])
    delta = 0.01
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        c = eb.bench.circuit
        sim = SimulatedBoard(c, 1e-8, 1e-4)
        loss = Loss("cross_entropy", 1e5, sim.topology.differential)
        opts = {"delta_v": delta, "max_retries": 0}
        with open_board(eb, rehearsal=False) as board:
            bench_hl = estimate("hl", board, x, t, loss, opts)
        assert eb.all_outputs_safe()
    sim_hl = estimate("hl", PhasedSim(sim), x, t, loss, opts)
    # prediction: v and v̂ of every branch from the exact circuit; node readings with σ_e
    topo, E, B = sim.topology, sim.topology.edges, len(x)
    op = sim.measure(x)
    w_hat = -loss.value_and_grad(op.y, t)[1]
    e_hat, _ = sim.linearized_response(x, w_hat)
    n0 = topo.node_voltages(op)
    nh = topo.node_voltages(Measurement(u=0 * op.u, w=w_hat, y=0 * op.y, i_src=0 * op.i_src, e=e_hat))
    v, vh = n0[:, E[:, 0]] - n0[:, E[:, 1]], nh[:, E[:, 0]] - nh[:, E[:, 1]]
    sig_e = np.hypot(DAQ_NOISE_V, DAQ_STEP_V / np.sqrt(12))
    sig_vh = (sig_e * np.sqrt((w_hat ** 2).sum(1)) / (np.sqrt(2) * delta))[:, None]  # central, per port
    sig_g = np.sqrt((v ** 2 * sig_vh ** 2 + vh ** 2 * sig_e ** 2 + sig_e ** 2 * sig_vh ** 2).sum(0)) / B
    G = node_conductance(c)
    beta = (DMM_LOAD_S / (G + DMM_LOAD_S))[E[:, 0] - c.n_sources]  # every branch starts at a hidden node
    loading = (beta * (np.abs(n0[:, E[:, 0]] * vh) + np.abs(v * vh))).mean(0)
    bound = 5 * sig_g + loading
    ratio = np.abs(bench_hl.grad - sim_hl.grad) / bound
    assert ratio.max() <= 1.0, ratio.max()
    print(f"hl through sockets vs simulated: max |Δ|/bound = {ratio.max():.3f}, "
          f"max relative {np.abs(bench_hl.grad - sim_hl.grad).max() / np.abs(sim_hl.grad).max():.2e}")


@pytest.fixture
def started_benches(monkeypatch):
    """Every ``EmulatedBench`` the CLI starts during the test, in order (to inspect what the emulated
    instruments hold after the command returned)."""
    import hil.emulate.bench as emulate_bench

    started = []

    class Recorded(emulate_bench.EmulatedBench):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            started.append(self)

    monkeypatch.setattr(emulate_bench, "EmulatedBench", Recorded)
    return started


def test_sigterm_during_training_ends_safe_and_resumes(tmp_path, started_benches, capsys):
    """SIGTERM mid-run (hil train --emulate): exit 130, outputs off at 0 V per the emulators, the run keeps
    its completed epochs and --resume continues."""
    import os
    import signal
    import threading

    from hil.cli import main

    started = started_benches
    args = ["train", "bench-xor", "--emulate", "-q", "--runs-dir", str(tmp_path), "--set", "output.plots=false"]

    finished = threading.Event()

    def terminate_after_first_epoch():  # polls until the first checkpoint exists; gives up when main returns
        while not list(tmp_path.glob("*/checkpoints/last.npz")):
            if finished.wait(0.05):
                return
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_after_first_epoch, daemon=True)
    killer.start()
    try:
        rc = main(args + ["--set", "train.epochs=50"])
    finally:
        finished.set()
        killer.join(timeout=10)
    assert rc == 130
    err = capsys.readouterr().err
    assert "interrupted; safe shutdown ran, every output read back off;" in err and "--resume" in err
    assert started and started[0].all_outputs_safe()
    run = next(tmp_path.iterdir())
    done = len((run / "metrics.csv").read_text().splitlines()) - 1
    assert 1 <= done < 50
    assert main(["train", "--resume", str(run), "-q", "--emulate", "--set", f"train.epochs={done + 1}"]) == 0
    assert len((run / "metrics.csv").read_text().splitlines()) - 1 == done + 1
    assert started[-1].all_outputs_safe()


def test_bench_time_model_agrees_with_virtual_clock():
    """hil estimate's epoch (one hl step of the four XOR samples in one sweep, then the evaluation)
    against the emulators' virtual clock running exactly those measurements through the drivers."""
    from tests.boards.conftest import hl_epoch_on_virtual_clock

    predicted, step, epoch, _ = hl_epoch_on_virtual_clock("configs/bench-xor.yaml", "bench-xor", round_trips=True)
    assert abs(step - predicted["measure_step_s"]) <= 0.10 * step, (step, predicted["measure_step_s"])
    assert abs(epoch - predicted["epoch_measure_s"]) <= 0.10 * epoch, (epoch, predicted["epoch_measure_s"])
    print(f"bench time per epoch: virtual clock {epoch:.3f} s, hil estimate {predicted['epoch_measure_s']:.3f} s")


def test_scanner_relay_time_is_one_figure_for_estimate_and_emulator(tmp_path):
    """The DAQ970A per-channel relay time: the published DAQM900A scan rate (450 channels/s) by
    default, a bench file's relay_s (e.g. an armature module, 80 channels/s) for both the estimate
    and the emulated bench, which then still agree."""
    from hil.bench.timing import FIGURES
    from hil.emulate.daq970 import Daq970Emulator
    from tests.boards.conftest import hl_epoch_on_virtual_clock

    assert abs(FIGURES["daq970a"].channel_s - 1 / 450) <= 0.02 / 450
    assert Daq970Emulator("daq", "DAQ970A").relay_s == FIGURES["daq970a"].channel_s
    bench = tmp_path / "armature-bench.yaml"
    bench.write_text(open("configs/benches/xor-bench.yaml").read().replace(
        "    slots: {1: 20}\n", "    slots: {1: 20}\n    relay_s: 12.5e-3\n"))
    config = tmp_path / "bench-xor-armature.yaml"
    config.write_text(open("configs/bench-xor.yaml").read().replace("bench: xor-bench", f"bench: {bench}"))
    fast, _, fast_epoch, _ = hl_epoch_on_virtual_clock("configs/bench-xor.yaml", "bench-xor", round_trips=True)
    slow, step, epoch, _ = hl_epoch_on_virtual_clock(str(config), "armature", round_trips=True)
    assert slow["t_scan_s"] - fast["t_scan_s"] == pytest.approx(8 * (12.5e-3 - 2.2e-3))  # eight hidden nodes
    assert abs(epoch - slow["epoch_measure_s"]) <= 0.10 * epoch, (epoch, slow["epoch_measure_s"])
    assert epoch > 1.15 * fast_epoch  # the slower scan shows on the virtual clock too
    print(f"armature module: virtual clock {epoch:.3f} s, hil estimate {slow['epoch_measure_s']:.3f} s per epoch")


def test_cli_instrument_fault_is_one_line_with_verified_state(tmp_path, started_benches, capsys):
    import threading

    from hil.cli import main

    started = started_benches

    def error_after_first_epoch():
        while not list(tmp_path.glob("*/checkpoints/last.npz")):
            threading.Event().wait(0.05)
        started[0].emulators["daq"].push_error(-222, "Data out of range")

    threading.Thread(target=error_after_first_epoch, daemon=True).start()
    rc = main(["train", "bench-xor", "--emulate", "-q", "--runs-dir", str(tmp_path), "--set", "output.plots=false",
               "--set", "train.epochs=50"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "InstrumentReportedError" in err[0] and "every output read back off" in err[0] and "--resume" in err[0]
    assert started[0].all_outputs_safe()


def test_batch_beyond_a_channels_limits_is_refused_before_any_level_is_applied():
    """Inputs scaled past a source channel's v_max (e.g. data.input_scale_v too large): the whole
    batch is refused before the first level is written, and the error names the node and channel."""
    from hil.drivers.errors import LimitViolation

    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        with open_board(eb, timeout_s=0.5, rehearsal=False) as board:
            board.connect()
            eb.settle()
            marks = {n: len(e.transcript.states()) for n, e in eb.emulators.items()}
            with pytest.raises(LimitViolation) as exc:
                board.measure(np.array([[0.0, 1.0], [0.0, 2.0]]))  # x1 = 2 V > v_max 1.5 V of smu_x.2
            assert "x1" in str(exc.value) and "smu_x.2" in str(exc.value)
            eb.settle()
            assert {n: len(e.transcript.states()) for n, e in eb.emulators.items()} == marks
        assert eb.all_outputs_safe()


def test_cli_calibrate_fault_reads_the_outputs_back(tmp_path, started_benches, capsys):
    """An instrument fault during `hil calibrate --emulate`: exit 1, one line saying every output was
    read back off (as hil train says), and the emulators agree."""
    import threading

    from hil.cli import main

    started = started_benches

    def garble_a_later_scan():
        while not started:
            threading.Event().wait(0.02)
        started[0].emulators["daq"].faults.garbage_reply(match=r"READ\?")

    threading.Thread(target=garble_a_later_scan, daemon=True).start()
    rc = main(["calibrate", "bench-xor", "--emulate", "--dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert "InstrumentProtocolError" in err[0] and "every output read back off" in err[0]
    assert started[0].all_outputs_safe()


def test_cli_calibrate_ctrl_c_reports_the_outputs_as_read_back(tmp_path, started_benches, capsys, monkeypatch):
    """Ctrl-C during `hil calibrate --emulate`: the line states the outputs as read back ('every
    output read back off'), not an unverified 'the board is in its safe state'; the emulators agree."""
    import hil.calibrate.run as run
    from hil.cli import main

    def ctrl_c(board, *a, **k):
        board.measure(np.zeros((1, board.topology.n_inputs)))  # something is on the bench
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "calibrate", ctrl_c)
    rc = main(["calibrate", "bench-xor", "--emulate", "--dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 130 and err[-1].startswith("hil: interrupted; safe shutdown ran, every output read back off, "
                                            "and no calibration was written"), err
    assert started_benches[0].all_outputs_safe()


def test_cli_crash_inside_the_trainer_reads_the_outputs_back(tmp_path, started_benches, capsys, monkeypatch):
    """A bug (any exception) in the middle of a bench run: one line that still says the outputs were
    read back off and what the run directory keeps; the emulators agree."""
    from hil.cli import main
    from hil.train import loop

    real = loop.Trainer._epoch
    calls = []

    def failing_second_epoch(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise ZeroDivisionError("injected in the middle of the run")
        return real(self, *a, **k)

    monkeypatch.setattr(loop.Trainer, "_epoch", failing_second_epoch)
    rc = main(["train", "bench-xor", "--emulate", "-q", "--runs-dir", str(tmp_path), "--set", "output.plots=false",
               "--set", "train.epochs=3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert "internal error: ZeroDivisionError" in err[0] and "every output read back off" in err[0]
    assert "keeps epoch 1" in err[0] and "--resume" in err[0]
    assert started_benches[0].all_outputs_safe()


def test_verify_safe_reads_levels_back_not_only_output_states():
    """An output that reads back off but whose programmed level reads back 0.3 V is not reported
    as safe (the drivers' own shutdown verification requires off AND 0 V; so does the board's)."""
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        with open_board(eb, timeout_s=0.5, rehearsal=False) as board:
            board.measure(XOR[:1])
            board.safe_state()
            assert board.verify_safe() == []
            eb.emulators["smu_y2"].faults.misreport_level(0.3, count=None)
            problems = board.verify_safe()
            assert len(problems) == 1 and problems[0].startswith("smu_y2.") and "0.3" in problems[0], problems
            eb.emulators["smu_y2"].faults.clear()
        assert eb.all_outputs_safe()


def test_cli_instrument_unreachable_at_connect_reads_the_other_outputs_back(tmp_path, started_benches, capsys,
                                                                            monkeypatch):
    """The DAQ refuses connections when the board connects (the SMUs already are): one line saying
    the SMU outputs were read back off."""
    import hil.emulate.bench as emulate_bench
    from hil.cli import main

    real_start = emulate_bench.EmulatedBench.start

    def start_with_the_daq_refusing(self):
        real_start(self)
        self.emulators["daq"].refuse_connections(True)
        return self

    monkeypatch.setattr(emulate_bench.EmulatedBench, "start", start_with_the_daq_refusing)
    rc = main(["train", "bench-xor", "--emulate", "-q", "--runs-dir", str(tmp_path), "--set", "output.plots=false",
               "--set", "train.epochs=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert "'daq'" in err[0] and "every output read back off" in err[0]
    assert started_benches[0].all_outputs_safe()


def test_verify_safe_names_matrix_relays_the_shutdown_could_not_open():
    """The CLI's 'every output read back off' rests on verify_safe(): a 707B that lost its link with a
    crosspoint closed (and refuses to be reached again) must appear there, not only the SMUs."""
    with EmulatedBench("xor-bench", time_mode="virtual") as eb:
        board = open_board(eb, timeout_s=1.0)
        try:
            board.connect()
            matrix = board.instruments["matrix"]
            matrix.connect(["1A01"], exclusive=True)
            eb.settle()
            assert eb.emulators["matrix"].closed_crosspoints() == ["1A01"]
            assert "matrix: relays still closed: 1A01" in board.verify_safe()  # read from the instrument
            eb.emulators["matrix"].refuse_connections(True)
            eb.emulators["matrix"].faults.drop_connection(count=None)
            board.safe_state()
            problems = board.verify_safe()
            assert any(p.startswith("matrix") for p in problems), problems
            assert not any(p.startswith("smu") or p.startswith("prog") for p in problems), problems
        finally:
            eb.emulators["matrix"].faults.clear()
            eb.emulators["matrix"].refuse_connections(False)
            board.close()
