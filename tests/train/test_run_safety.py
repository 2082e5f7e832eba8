"""Nothing lost, nothing inconsistent: locks, atomic files, damaged run directories, interrupts."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from hil.cli import main
from hil.train.loop import deferred_interrupts
from hil.train.rundir import RunDir, atomic_write

XOR = ["--set", "output.plots=false"]


def train(tmp_path, epochs=3, *extra):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", f"train.epochs={epochs}",
                 *XOR, *extra]) == 0
    return max(tmp_path.iterdir())


def one_line(err):
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_run_being_written_cannot_be_resumed_twice(tmp_path, capsys):
    run = train(tmp_path)
    holder = RunDir.resume(run)  # another process writing the run (flock is per open file)
    try:
        assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=5"]) == 1
        err = capsys.readouterr().err
        assert "in use by another process" in err and f"pid {os.getpid()}" in err
        one_line(err)
    finally:
        holder.close()
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=5"]) == 0


def test_run_directories_created_in_the_same_second_are_distinct(tmp_path):
    runs = [RunDir.create(tmp_path, "same") for _ in range(5)]
    assert len({r.path for r in runs}) == 5
    for r in runs:
        r.close()


def test_temporary_files_are_unique_and_never_left_behind(tmp_path, monkeypatch):
    run = train(tmp_path)
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    target = tmp_path / "f.txt"
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert list(tmp_path.glob(".f.txt.*")) == [] and not target.exists()


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 garbage", b"not a zip at all"])
def test_damaged_last_checkpoint_falls_back_to_best(tmp_path, capsys, damage):
    run = train(tmp_path, 3)
    best_epoch = int(RunDir(run).load_checkpoint("best")["epoch"])
    (run / "checkpoints" / "last.npz").write_bytes(damage)
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=5"]) == 0
    err = capsys.readouterr().err
    assert "is damaged" in err and f"using the best checkpoint (epoch {best_epoch})" in err
    assert "pickle" not in err  # (numpy's own message suggests loading a text file unsafely)
    assert int(RunDir(run).load_checkpoint("last")["epoch"]) == 5  # repaired by the next save


def test_both_checkpoints_damaged_is_one_line(tmp_path, capsys):
    run = train(tmp_path, 2)
    for tag in ("last", "best"):
        (run / "checkpoints" / f"{tag}.npz").write_bytes(b"\x00" * 10)
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=5"]) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err
    one_line(err)
    assert main(["eval", str(run)]) == 1
    one_line(capsys.readouterr().err)


@pytest.mark.parametrize("content", ["", "\n\n", "epoch,step\n\n1,2\ngarbage,row,\n"])
def test_empty_or_blank_metrics_are_tolerated(tmp_path, capsys, content):
    run = train(tmp_path, 2)
    (run / "metrics.csv").write_text(content)
    assert RunDir(run).read_metrics() is not None
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=3"]) == 0
    rows = RunDir(run).read_metrics()
    assert rows and rows[-1]["epoch"] == 3


def test_garbage_resolved_config_is_a_config_error(tmp_path, capsys):
    run = train(tmp_path, 1)
    (run / "config.resolved.yaml").write_bytes(b"\x89PNG\x00\x00garbage")
    assert main(["train", "--resume", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    assert "config.resolved.yaml" in err and "Traceback" not in err
    (run / "config.resolved.yaml").write_text("- just\n- a list\n")
    assert main(["eval", str(run)]) == 2


def test_half_written_event_line_is_repaired(tmp_path, capsys):
    run = train(tmp_path, 2)
    with open(run / "events.jsonl", "a") as f:
        f.write('{"ts": "2026-01-01", "kind": "epoch_e')
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=3"]) == 0
    assert "dropped 1 damaged line" in capsys.readouterr().err
    lines = (run / "events.jsonl").read_text().splitlines()
    kinds = [json.loads(l)["kind"] for l in lines]  # every line is valid JSON again
    assert "log_repaired" in kinds and kinds[-1] == "run_end"


def test_event_log_is_strict_json_and_metadata_complete(tmp_path):
    run = train(tmp_path, 2)
    for line in (run / "events.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    ends = [json.loads(l) for l in (run / "events.jsonl").read_text().splitlines()
            if json.loads(l)["kind"] == "epoch_end"]
    assert ends[0]["data"]["val_acc"] is None  # no validation split: null, not NaN
    meta = json.loads((run / "metadata.json").read_text())
    assert "source_revision" in meta and meta["ended_utc"] and meta["outcome"] == "finished"
    assert meta["epochs_done"] == 2 and meta["hil"]


def test_resume_records_overrides_in_the_resolved_config_and_warns_on_cosine(tmp_path, capsys):
    run = train(tmp_path, 2, "--set", "train.optimizer.schedule=cosine")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=4"]) == 0
    err = capsys.readouterr().err
    assert "cosine schedule" in err and "train.epochs changed from 2 to 4" in err
    cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert cfg["train"]["epochs"] == 4
    ev = [json.loads(l) for l in (run / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "warning" and "cosine" in e["data"]["message"] for e in ev)
    assert next(e for e in ev if e["kind"] == "resume")["data"]["overrides"] == ["train.epochs=4"]


def test_best_checkpoint_is_chosen_on_validation(tmp_path, capsys):
    assert main(["train", "sim-digits", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=3",
                 "--set", "data.validation_fraction=0.2", "--set", "train.evaluate_test=false", *XOR]) == 0
    out = capsys.readouterr().out
    assert "chosen on validation accuracy" in out
    run = next(tmp_path.iterdir())
    rows = RunDir(run).read_metrics()
    best = int(RunDir(run).load_checkpoint("best")["epoch"])
    assert best == 1 + int(np.argmax([r["val_acc"] for r in rows]))


def test_interrupt_before_the_first_epoch_says_there_is_no_checkpoint(tmp_path, capsys, monkeypatch):
    from hil.train.loop import Trainer

    monkeypatch.setattr(Trainer, "_epoch", lambda self: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", *XOR]) == 130
    err = capsys.readouterr().err
    assert "before the first epoch completed" in err and "keeps the checkpoint" not in err
    run = next(tmp_path.iterdir())
    last = json.loads((run / "events.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "run_end" and last["data"]["epochs_done"] == 0


def test_signals_during_bookkeeping_are_delivered_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            done.append(True)
    assert done == [True]


def test_an_interrupt_during_the_epochs_saves_still_prints_that_epochs_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C while an epoch's metrics and checkpoints are written: the signal waits until they are
    saved, and the epoch's line is printed before it is taken, so the last line a user sees is the
    epoch the run keeps (it was missing before: the signal came between the saves and the line)."""
    original = RunDir.append_metrics

    def append_then_interrupt(self, row):
        original(self, row)
        if row["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)

    monkeypatch.setattr(RunDir, "append_metrics", append_then_interrupt)
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "--set", "train.epochs=5", *XOR]) == 130
    captured = capsys.readouterr()
    epoch_lines = [l for l in captured.out.splitlines() if l.startswith("epoch ")]
    assert [l.split()[1] for l in epoch_lines] == ["1/5", "2/5"]
    assert "keeps the checkpoint of epoch 2" in captured.err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_event_log_agrees_with_the_checkpoint_after_a_signal(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-m", "hil", "train", "sim-xor", "--runs-dir", str(tmp_path), "-q",
                             "--set", "train.epochs=100000", *XOR],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        runs = list(tmp_path.iterdir())
        if runs and (runs[0] / "events.jsonl").exists() and \
                (runs[0] / "events.jsonl").read_text().count("epoch_end") >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]  # (stderr shown if not)
    run = next(tmp_path.iterdir())
    saved = int(RunDir(run).load_checkpoint("last")["epoch"])
    events = [json.loads(l) for l in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "run_end" and events[-1]["data"]["epochs_done"] == saved
    assert max(e["data"]["epoch"] for e in events if e["kind"] == "epoch_end") == saved
    assert f"keeps the checkpoint of epoch {saved}" in err
    assert [r["epoch"] for r in RunDir(run).read_metrics()][-1] == saved


def test_metrics_of_an_older_run_keep_their_columns_on_resume(tmp_path):
    run = train(tmp_path, 2)
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("unresolved_flips")
    (run / "metrics.csv").write_text("\n".join(",".join(c for i, c in enumerate(l.split(",")) if i != drop)
                                               for l in lines) + "\n")
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=3"]) == 0
    rows = RunDir(run).read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3] and "unresolved_flips" not in rows[-1]
    assert all(len(l.split(",")) == len(header) - 1 for l in (run / "metrics.csv").read_text().splitlines())


def test_paths_with_nul_are_one_line_config_errors(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path / "a\x00b"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "not a valid path" in err and "\\x00" in err
    assert main(["train", "--resume", str(tmp_path / "a\x00b")]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and "\x00" not in err


def test_checkpoint_with_damaged_contents_is_one_line(tmp_path, capsys):
    run = train(tmp_path, 2)
    p = run / "checkpoints" / "last.npz"
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["rng_state"] = np.array("{not json")
    np.savez(p, **arrays)
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=3"]) == 1
    err = capsys.readouterr().err
    assert "last of" in err and "is damaged (JSONDecodeError" in err
    one_line(err)


def test_checkpoint_with_short_adam_moments_is_one_line(tmp_path, capsys):
    """opt_v of the wrong size (the compiled Adam step reads no bounds) is a damaged checkpoint."""
    run = train(tmp_path, 1, "--set", "train.optimizer.name=adam")
    for tag in ("last", "best"):
        path = run / "checkpoints" / f"{tag}.npz"
        ck = dict(np.load(path))
        ck["opt_v"] = ck["opt_v"][:1]
        with open(path, "wb") as fh:
            np.savez(fh, **ck)
    assert main(["train", "--resume", str(run), "-q", "--set", "train.epochs=2"]) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err
    one_line(err)
