"""Training through the board protocol: learning, run directory, exact resume, reproducibility."""

import json

import numpy as np
import pytest
import yaml

from hil.boards.factory import make_board
from hil.cli import main
from hil.config import load_yaml
from hil.train.data import load_dataset
from hil.train.loop import Trainer
from hil.train.rundir import RunDir
from hil.train.settings import parse_settings


def xor_settings(tmp_path, **over):
    raw = load_yaml("sim-xor")
    raw["output"] = {"runs_dir": str(tmp_path), "plots": False}
    for k, v in over.items():
        node = raw
        *parts, last = k.split(".")
        for p in parts:
            node = node[p]
        node[last] = v
    if raw["train"]["estimator"] != "hl":
        raw["train"].pop("hl", None)
    return raw, parse_settings(raw)


class CountingBoard:
    """Wraps a board and counts measure calls (the trainer must use one batch call per phase)."""

    def __init__(self, board):
        self.inner = board
        self.calls = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def measure(self, x, w=None):
        self.calls.append(len(x) if w is None else (len(x), "phase"))
        return self.inner.measure(x, w)


def run(raw, s, tmp_path, board=None):
    board = board or make_board(s.backend, s.circuit, s.g_min, s.g_max)
    rd = RunDir.create(tmp_path, s.name)
    rd.write_config(raw)
    data = load_dataset(s.dataset, s.input_scale_v, s.validation_fraction)
    return Trainer(board, s, data, rd, progress=False).fit(), board, rd


@pytest.mark.parametrize("estimator, loss", [("hl", "cross_entropy"), ("hl", "mse"), ("hl-exact", "cross_entropy"),
                                             ("ep", "cross_entropy")])
def test_xor_is_learned(tmp_path, estimator, loss):
    raw, s = xor_settings(tmp_path, **{"train.estimator": estimator, "train.loss": loss})
    res, _, _ = run(raw, s, tmp_path)
    assert res.train_acc == 1.0 and res.outcome == "finished"


def test_minibatch_is_one_board_call_per_phase(tmp_path):
    raw, s = xor_settings(tmp_path, **{"train.epochs": 2, "train.batch_size": 4})
    s.eval_test = False
    b = CountingBoard(make_board(s.backend, s.circuit, s.g_min, s.g_max))
    run(raw, s, tmp_path, board=b)
    # per step: operating point, then the + phase of the whole minibatch in one call; the − phase
    # (of the samples whose + phase changed a diode state, or of all four) only after such a change
    steps = []
    for call in b.calls:
        if call == 4:
            steps.append([])
        else:
            steps[-1].append(call)
    assert len(steps) == 2 and all(s[0] == (4, "phase") and len(s) <= 2 for s in steps)
    assert all(s[1][0] <= 4 for s in steps if len(s) == 2)


def test_conductances_stay_in_range_and_frozen_groups_do_not_move(tmp_path):
    raw, s = xor_settings(tmp_path, **{"train.trainable": ["g_out"], "train.epochs": 20})
    board = make_board(s.backend, s.circuit, s.g_min, s.g_max)
    g0 = np.clip(board.read_conductances(), s.g_min, s.g_max)
    run(raw, s, tmp_path, board=board)
    g = board.read_conductances()
    topo = board.topology
    assert np.all(g >= s.g_min) and np.all(g <= s.g_max)
    np.testing.assert_array_equal(g[topo.groups["g_in"]], g0[topo.groups["g_in"]])
    assert np.any(g[topo.groups["g_out"]] != g0[topo.groups["g_out"]])


def test_run_directory_contents(tmp_path):
    raw, s = xor_settings(tmp_path, **{"train.epochs": 3})
    s.plots = True
    res, _, rd = run(raw, s, tmp_path)
    p = rd.path
    assert yaml.safe_load((p / "config.resolved.yaml").read_text())["name"] == "sim-xor"
    rows = rd.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    kinds = [e["kind"] for e in rd.events()]
    assert kinds[0] == "run_start" and kinds.count("epoch_end") == 3 and kinds[-1] == "run_end"
    assert rd.events()[-1]["data"]["outcome"] == "finished"
    for f in ("checkpoints/last.npz", "checkpoints/best.npz", "plots/curves.png", "plots/conductances.png"):
        assert (p / f).stat().st_size > 0


def test_resume_continues_exactly(tmp_path):
    raw, s = xor_settings(tmp_path / "a", **{"train.epochs": 6})
    full, board_full, _ = run(raw, s, tmp_path / "a")
    raw2, s2 = xor_settings(tmp_path / "b", **{"train.epochs": 6})
    s2.epochs = 3  # interrupted after three epochs
    _, _, rd = run(raw2, s2, tmp_path / "b")
    s2.epochs = 6
    board = make_board(s2.backend, s2.circuit, s2.g_min, s2.g_max)
    tr = Trainer(board, s2, load_dataset("xor"), rd, progress=False)
    tr.restore("last")
    tr.fit()
    np.testing.assert_array_equal(board.read_conductances(), board_full.read_conductances())
    assert [r["epoch"] for r in rd.read_metrics()] == [1, 2, 3, 4, 5, 6]


def test_same_seed_same_run_different_seed_different_run(tmp_path):
    finals = []
    for seed in (0, 0, 1):
        raw, s = xor_settings(tmp_path / str(len(finals)), **{"train.epochs": 3, "seed": seed, "train.batch_size": 2})
        _, b, _ = run(raw, s, tmp_path / str(len(finals)))
        finals.append(b.read_conductances())
    np.testing.assert_array_equal(finals[0], finals[1])
    assert not np.array_equal(finals[0], finals[2])


def test_cli_train_and_resume(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "run directory" in out
    run_dir = next(tmp_path.iterdir())
    assert main(["train", "--resume", str(run_dir), "-q", "--set", "train.epochs=4"]) == 0
    rows = RunDir(run_dir).read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [e["kind"] for e in RunDir(run_dir).events()].count("resume") == 1


def test_interrupted_run_keeps_checkpoint_and_logs_abort(tmp_path, monkeypatch):
    raw, s = xor_settings(tmp_path, **{"train.epochs": 5})
    board = make_board(s.backend, s.circuit, s.g_min, s.g_max)
    rd = RunDir.create(tmp_path, s.name)
    tr = Trainer(board, s, load_dataset("xor"), rd, progress=False)
    real = tr._epoch
    calls = {"n": 0}

    def epoch_then_interrupt():
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real()

    monkeypatch.setattr(tr, "_epoch", epoch_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    ev = rd.events()
    assert ev[-2]["kind"] == "abort" and ev[-1]["data"]["outcome"] == "aborted"
    assert int(rd.load_checkpoint("last")["epoch"]) == 2


def test_interrupted_run_still_gets_its_training_curves(tmp_path, monkeypatch):
    raw, s = xor_settings(tmp_path, **{"train.epochs": 5, "output.plots": True})
    board = make_board(s.backend, s.circuit, s.g_min, s.g_max)
    rd = RunDir.create(tmp_path, s.name)
    tr = Trainer(board, s, load_dataset("xor"), rd, progress=False)
    real = tr._epoch
    epochs = iter(range(10))
    monkeypatch.setattr(tr, "_epoch", lambda: real() if next(epochs) < 2 else (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert (rd.path / "plots" / "curves.png").stat().st_size > 1000
    assert not (rd.path / "plots" / "conductances.png").exists()  # no board read-out after an abort


@pytest.mark.slow
def test_digits_reaches_97_percent_with_shipped_config(tmp_path):
    """The main job: sim-digits (ideal diodes, hl estimator through the board) ≥ 97 % test accuracy."""
    raw = load_yaml("sim-digits")
    raw["output"] = {"runs_dir": str(tmp_path), "plots": False}
    raw["train"]["evaluate_test"] = False
    s = parse_settings(raw)
    res, board, rd = run(raw, s, tmp_path)
    from hil.train.loop import evaluate
    from hil.train.losses import Loss

    data = load_dataset("digits", s.input_scale_v)
    acc = evaluate(board, Loss(s.loss, s.gain_per_a, board.topology.differential), data.test)[0]
    assert acc >= 0.97, acc


def test_sigterm_ends_training_cleanly(tmp_path):
    """SIGTERM: exit status 130, run_end 'aborted' in the event log, last checkpoint resumable."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "hil.cli", "train", "sim-xor", "--runs-dir", str(tmp_path), "-q",
                             "--set", "train.epochs=100000", "--set", "output.plots=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    events = None
    while time.time() < deadline:
        runs = list(tmp_path.iterdir())
        if runs and (runs[0] / "events.jsonl").exists() and "epoch_end" in (runs[0] / "events.jsonl").read_text():
            events = runs[0] / "events.jsonl"
            break
        time.sleep(0.05)
    assert events is not None, proc.communicate(timeout=5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["kind"] == "run_end" and last["data"]["outcome"] == "aborted"
    assert int(RunDir(events.parent).load_checkpoint("last")["epoch"]) >= 1
