"""A run whose board answers mostly with invalid samples stops with one line and stays resumable."""

import numpy as np

from hil.cli import main
from hil.train import loop
from hil.train.rundir import RunDir


def _mark_invalid_from_epoch(monkeypatch, first_bad_epoch: int, fraction: float):
    """Wrap the trainer's estimator: from ``first_bad_epoch`` (1-based, counted in batches of the
    first call's epoch) on, the first ``fraction`` of every batch is reported invalid."""
    real = loop.estimate
    calls = {"epoch": 0}
    real_epoch = loop.Trainer._epoch

    def counting_epoch(self):
        calls["epoch"] = self.epoch + 1
        return real_epoch(self)

    def marking(name, board, x, t, loss_fn, options):
        res = real(name, board, x, t, loss_fn, options)
        if calls["epoch"] >= first_bad_epoch:
            valid = np.ones(len(t), bool)
            valid[:int(np.ceil(fraction * len(t)))] = False
            res.stats["valid"], res.stats["invalid_samples"] = valid, int((~valid).sum())
        return res

    monkeypatch.setattr(loop, "estimate", marking)
    monkeypatch.setattr(loop.Trainer, "_epoch", counting_epoch)


def _train(tmp_path, *extra):
    return main(["train", "sim-digits", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=3",
                 "--set", "output.plots=false", "--set", "board.circuit.hidden.count=8",
                 "--set", "train.evaluate_test=false", *extra])


def test_mostly_invalid_epoch_stops_with_one_line_and_keeps_the_last_epoch(tmp_path, monkeypatch, capsys):
    _mark_invalid_from_epoch(monkeypatch, 2, 0.75)
    assert _train(tmp_path) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "stopped in epoch 2" in err and "train.max_invalid_fraction = 0.5" in err
    assert "--set train.max_invalid_fraction=" in err and "keeps epoch 1" in err and "--resume" in err
    run = RunDir(next(tmp_path.iterdir()))
    assert int(run.load_checkpoint("last")["epoch"]) == 1 and len(run.read_metrics()) == 1
    monkeypatch.undo()  # the board answers again: the run continues from epoch 1
    assert main(["train", "--resume", str(run.path), "-q"]) == 0
    assert int(run.load_checkpoint("last")["epoch"]) == 3


def test_threshold_is_configurable_and_validated(tmp_path, monkeypatch, capsys):
    _mark_invalid_from_epoch(monkeypatch, 1, 0.75)
    assert _train(tmp_path, "--set", "train.max_invalid_fraction=0.9") == 0  # 75 % tolerated
    row = RunDir(next(tmp_path.iterdir())).read_metrics()[-1]
    assert row["train_acc"] <= 0.25 + 1e-9  # invalid samples count as wrong
    assert _train(tmp_path, "--set", "train.max_invalid_fraction=1.5") == 2
    assert "train.max_invalid_fraction: must be in [0, 1]" in capsys.readouterr().err


def test_bench_rehearsal_in_compliance_from_epoch_2_stops_safe_and_resumable(tmp_path, monkeypatch, capsys):
    """End to end through the emulated bench: an output SMU sits at its current limit from the
    second epoch on; the run stops with one line, every output read back off, epoch 1 kept."""
    import json

    from hil.emulate.bench import EmulatedBench

    benches = []
    real_enter = EmulatedBench.__enter__

    def entered(self):
        benches.append(real_enter(self))
        return benches[-1]

    real_epoch = loop.Trainer._epoch

    def epoch(self):
        if self.epoch == 1:  # the second epoch: every port reading clamps at the limit
            benches[-1].emulators["smu5"].faults.force_compliance(count=None)
        return real_epoch(self)

    monkeypatch.setattr(EmulatedBench, "__enter__", entered)
    monkeypatch.setattr(loop.Trainer, "_epoch", epoch)
    assert main(["train", "bench-xor", "--emulate", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=3",
                 "--set", "output.plots=false"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "stopped in epoch 2" in err and "every output read back off" in err and "keeps epoch 1" in err
    assert benches[-1].all_outputs_safe()
    run = RunDir(next(tmp_path.iterdir()))
    assert int(run.load_checkpoint("last")["epoch"]) == 1
    kinds = [json.loads(line)["kind"] for line in (run.path / "events.jsonl").read_text().splitlines()]
    assert "compliance" in kinds and kinds[-2:] == ["error", "run_end"]


def test_a_slow_epoch_logs_batch_progress_in_plain_line_mode(tmp_path, monkeypatch, capsys):
    """Plain-line progress (a log file): an epoch that takes long (a bench) says which batch it is
    at, not only when it ends."""
    monkeypatch.setattr(loop, "LINE_EVERY_S", 0.0)
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "--set", "train.epochs=1",
                 "--set", "train.batch_size=1", "--set", "output.plots=false"]) == 0
    out = capsys.readouterr().out  # captured output is not a terminal: plain lines
    assert "epoch   1/1  batch 2/" in out and "epoch   1/1  loss" in out


def test_train_loss_is_the_mean_over_the_valid_samples(tmp_path, monkeypatch):
    """Invalid samples add no loss, so the epoch's loss divides by the valid samples only (dividing by
    every sample understated it by the invalid fraction)."""
    real = loop.estimate
    seen = {"loss": 0.0, "valid": 0}

    def marking(name, board, x, t, loss_fn, options):
        res = real(name, board, x, t, loss_fn, options)
        valid = np.ones(len(t), bool)
        valid[:len(t) // 2] = False
        res.stats["valid"], res.stats["invalid_samples"] = valid, int((~valid).sum())
        seen["loss"] += float(res.loss[valid].sum())
        seen["valid"] += int(valid.sum())
        return res

    monkeypatch.setattr(loop, "estimate", marking)
    assert _train(tmp_path, "--set", "train.max_invalid_fraction=0.9", "--set", "train.epochs=1") == 0
    row = RunDir(next(tmp_path.iterdir())).read_metrics()[-1]
    assert np.isclose(row["train_loss"], seen["loss"] / seen["valid"], rtol=1e-12)


def test_evaluate_averages_the_loss_over_the_valid_samples():
    from hil.boards.simulated import SimulatedBoard
    from hil.circuit.generate import random_circuit
    from hil.train.data import DataSplit
    from hil.train.losses import Loss

    c = random_circuit(6, 3, 4, seed=1)
    board = SimulatedBoard(c)
    rng = np.random.default_rng(0)
    split = DataSplit(rng.uniform(0, 1, (10, 3)), rng.integers(0, 2, 10))
    loss = Loss("cross_entropy", 1e5, c.differential_matrix())

    class HalfInvalid(SimulatedBoard):
        def measure(self, x, w=None):
            m = super().measure(x, w)
            valid = np.ones(len(x), bool)
            valid[::2] = False
            m.valid = valid
            return m

    half = HalfInvalid(c)
    acc, mean_loss, _ = loop.evaluate(half, loss, split)
    per = loss.value_and_grad(board.measure(split.x).y, split.y)[0]
    assert np.isclose(mean_loss, per[1::2].mean(), rtol=1e-12)
    assert acc <= 0.5 + 1e-12  # the invalid half counts as wrong
