"""hil sweep: grid × seeds as independent runs, resumable, CSV table and plot; local pool and Dask."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from hil.cli import main
from hil.config import ConfigError
from hil.sweep import expand, load_sweep, parse_sweep
from hil.sweep.runner import train_point
from hil.sweep.spec import config_hash

XOR_SET = {"train.epochs": 15, "output.plots": False}


def sweep_file(tmp_path, **over) -> Path:
    data = {"name": "xor-lr", "config": "sim-xor", "set": dict(XOR_SET),
            "grid": {"train.optimizer.lr": [2.0e-6, 5.0e-6]}, "seeds": [0, 1],
            "output": str(tmp_path / "out")}
    data.update(over)
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_expand_grid_times_seeds_with_stable_ids(tmp_path):
    spec = load_sweep(str(sweep_file(tmp_path)))
    points = expand(spec)
    assert len(points) == 4 and len({p.run_id for p in points}) == 4
    p = points[0]
    assert p.raw["seed"] == p.seed and p.raw["board"]["circuit"]["seed"] == p.seed
    assert p.raw["train"]["epochs"] == 15 and p.raw["train"]["optimizer"]["lr"] == 2.0e-6
    assert [q.run_id for q in expand(spec)] == [q.run_id for q in points]  # identity survives a restart


def test_list_entries_of_a_cascade_are_reached_by_index(tmp_path):
    spec = load_sweep(str(sweep_file(
        tmp_path, config="sim-xor-cascade", grid={"board.stages.1.buffer_gain": [2.0, 8.0]})))
    points = expand(spec)
    assert [p.raw["board"]["stages"][1]["buffer_gain"] for p in points] == [2.0, 2.0, 8.0, 8.0]
    # the default seed key board.circuit.seed means every stage's circuit seed on a cascade
    assert all(st["circuit"]["seed"] == p.seed for p in points for st in p.raw["board"]["stages"])
    assert "circuit" not in points[0].raw["board"] and points[0].label == "buffer_gain1=2"
    bad = load_sweep(str(sweep_file(tmp_path, config="sim-xor-cascade", grid={"board.stages.5.buffer_gain": [2.0]},
                                    seed_keys=["seed"])))
    with pytest.raises(ConfigError, match="board.stages.5.buffer_gain: no list entry 5"):
        expand(bad)


@pytest.mark.parametrize("over, message", [
    ({"grid": {"train.epochs": 3}}, "grid.train.epochs: expected a non-empty list of values"),
    ({"grid": {"train.batch_size": [0, 2]}}, "batch_size=0 \\(seeds 0, 1\\): train.batch_size: must be > 0"),
    ({"seeds": [0, -1]}, "seeds: expected a list of integers >= 0"),
    ({"metric": "accuracy"}, "metric: must be one of test_acc, val_acc, train_acc"),
    ({"grid": {"train.optimizer.lr": [1e-6]}, "plot": {"x": "seed"}}, "plot.x: seed is not a grid key"),
    ({"config": "no-such-config"}, "config: no-such-config: file not found"),
    ({"girds": {}}, "girds: unknown key \\(did you mean 'grid'\\?\\)"),
])
def test_sweep_file_problems_exit_2_with_dotted_paths(tmp_path, capsys, over, message):
    import re

    assert main(["sweep", str(sweep_file(tmp_path, **over))]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_local_pool_sweep_is_resumable_and_writes_table_and_plot(tmp_path, capsys):
    f = sweep_file(tmp_path)
    assert main(["sweep", str(f), "--workers", "2"]) == 0
    out = tmp_path / "out"
    table = rows(out / "results.csv")
    assert len(table) == 4 and {r["status"] for r in table} == {"finished"}
    assert {r["train.optimizer.lr"] for r in table} == {"2e-06", "5e-06"} and {r["seed"] for r in table} == {"0", "1"}
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 and int(r["epochs"]) == 15 for r in table)
    summary = rows(out / "summary.csv")
    assert len(summary) == 2 and all(r["finished"] == "2" for r in summary)
    assert (out / "summary.png").stat().st_size > 10_000 and (out / "sweep.yaml").is_file()
    run_dirs = sorted((out / "runs").iterdir())
    assert all((d / "metrics.csv").is_file() and (d / "result.json").is_file() for d in run_dirs)
    capsys.readouterr()

    # started again: nothing runs; a run whose result marker is gone is completed from its checkpoint
    mtimes = {d.name: (d / "metrics.csv").stat().st_mtime_ns for d in run_dirs}
    assert main(["sweep", str(f)]) == 0
    assert "4 finished before, 0 to run" in capsys.readouterr().out
    (run_dirs[0] / "result.json").unlink()
    assert main(["sweep", str(f), "--workers", "1"]) == 0
    assert "3 finished before, 1 to run" in capsys.readouterr().out
    assert (run_dirs[0] / "result.json").is_file() and len(rows(run_dirs[0] / "metrics.csv")) == 15
    assert all((d / "metrics.csv").stat().st_mtime_ns == mtimes[d.name] for d in run_dirs)


def test_an_interrupted_run_continues_from_its_last_epoch(tmp_path, capsys, monkeypatch):
    from hil.train.loop import Trainer

    f = sweep_file(tmp_path, grid={}, seeds=[0])
    original = Trainer._epoch

    def interrupted(self):
        if self.epoch == 5:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_epoch", interrupted)
    assert main(["sweep", str(f), "--workers", "1"]) == 130
    assert capsys.readouterr().err.strip().endswith(
        f"interrupted; of 1 run(s) 0 finished, 1 keep their last epoch, 0 not started: "
        f"'hil sweep {f}' continues them")
    monkeypatch.setattr(Trainer, "_epoch", original)
    assert main(["sweep", str(f), "--dry-run"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("pending (continues from epoch 5)")
    (run,) = (tmp_path / "out" / "runs").iterdir()
    assert len(rows(run / "metrics.csv")) == 5 and not (run / "result.json").exists()
    assert rows(tmp_path / "out" / "results.csv")[0]["status"] == "pending"
    assert main(["sweep", str(f), "--workers", "1"]) == 0
    assert [int(r["epoch"]) for r in rows(run / "metrics.csv")] == list(range(1, 16))
    kinds = [json.loads(l)["kind"] for l in (run / "events.jsonl").read_text().splitlines()]
    assert kinds.count("run_start") == 1 and "abort" in kinds and "resume" in kinds


def test_a_failing_run_is_reported_and_retried_while_others_finish(tmp_path, capsys):
    f = sweep_file(tmp_path, grid={"data.name": ["xor", "csv"]}, seeds=[0])
    spec = load_sweep(str(f))
    with pytest.raises(ConfigError, match="data.path: required"):
        expand(spec)  # caught before anything runs ...
    f = sweep_file(tmp_path, grid={"data.path": [str(tmp_path / "missing.csv")]}, seeds=[0],
                   set={**XOR_SET, "data.name": "csv"})
    assert main(["sweep", str(f), "--workers", "1"]) == 1  # ... a missing file only when the run loads it
    captured = capsys.readouterr()
    assert "FAILED: ConfigError: data.path: file not found" in captured.out and "1 run(s) failed" in captured.err
    table = rows(tmp_path / "out" / "results.csv")
    assert table[0]["status"] == "failed" and "file not found" in table[0]["error"]
    assert main(["sweep", str(f), "--dry-run"]) == 0
    assert "1 run (1 point × 1 seed), 0 finished before, 1 to run" in capsys.readouterr().out


def test_worker_without_the_sweep_directory_ships_the_run_back(tmp_path):
    spec = parse_sweep({"config": "sim-xor", "set": {**XOR_SET, "train.epochs": 2}})
    p = expand(spec)[0]
    task = {"run_id": p.run_id, "raw": p.raw, "config_hash": config_hash(p.raw),
            "run_dir": str(tmp_path / "elsewhere" / "runs" / p.run_id), "threads": 1}
    r = train_point(task)
    assert r["status"] == "finished" and r["epochs"] == 2
    assert {"metrics.csv", "config.resolved.yaml", "result.json"} - set(r["files"]) == {"result.json"}
    assert not (tmp_path / "elsewhere").exists()


def test_sweep_on_a_dask_cluster_by_address(tmp_path, capsys):
    from dask import distributed  # part of the test extra: this test must run in CI, never skip
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        f = sweep_file(tmp_path, seeds=[0], cluster=lc.scheduler_address)
        assert main(["sweep", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"Dask cluster {lc.scheduler_address}" in out
    table = rows(tmp_path / "out" / "results.csv")
    assert len(table) == 2 and {r["status"] for r in table} == {"finished"}
    result = json.loads(next((tmp_path / "out" / "runs").iterdir()).joinpath("result.json").read_text())
    assert result["status"] == "finished" and result["epochs"] == 15


def test_unreachable_cluster_is_a_one_line_runtime_error(tmp_path, capsys):
    f = sweep_file(tmp_path, seeds=[0], cluster="tcp://127.0.0.1:9", cluster_timeout_s=1)
    spec = load_sweep(str(f))
    assert spec.cluster == "tcp://127.0.0.1:9"
    assert main(["sweep", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hil sweep: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_summary_plot_takes_mapping_grid_values(tmp_path):
    """A swept element ({model: …} mappings) is a category on the plot's x axis."""
    from hil.sweep.report import plot_summary, summarise

    elements = [{"model": "ideal"}, {"model": "clip", "v_lo": 0.0, "v_hi": 0.3}]
    spec = load_sweep(str(sweep_file(tmp_path, grid={"board.circuit.hidden.element": elements})))
    table = [{"board.circuit.hidden.element": el, "seed": s, "status": "finished", "test_acc": 0.9 + 0.01 * s,
              "seconds_per_epoch": 1.0} for el in elements for s in (0, 1)]
    plot_summary(spec, table, tmp_path / "summary.png")
    assert (tmp_path / "summary.png").stat().st_size > 10_000
    assert [r["test_acc_mean"] for r in summarise(spec, table)] == pytest.approx([0.905, 0.905])


def test_summary_plot_takes_device_family_grid_values(tmp_path):
    """A whole device family as a grid value (robustness sweeps) is plotted as a category."""
    from hil.sweep.report import plot_summary

    spec = parse_sweep({"config": "sim-xor", "grid": {"board.devices.faults": [{"p_stuck_on": 0.0},
                                                                              {"p_stuck_on": 0.01}]}})
    rows = [{"board.devices.faults": v, "seed": 0, "status": "finished", "test_acc": a}
            for v, a in (({"p_stuck_on": 0.0}, 1.0), ({"p_stuck_on": 0.01}, 0.75))]
    plot_summary(spec, rows, tmp_path / "summary.png")
    assert (tmp_path / "summary.png").stat().st_size > 0


def test_sigterm_stops_a_pool_sweep_with_a_queued_run_promptly(tmp_path):
    """SIGTERM to `hil sweep` while two runs train and a third waits in the pool's queue: the sweep
    exits 130 promptly, the finished runs keep their results, the running ones end like an
    interrupted `hil train` (checkpoint kept, `abort` logged), the queued one never starts, and
    results.csv lists every run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    f = sweep_file(tmp_path, grid={"train.epochs": [3, 100_000]}, seeds=[0, 1, 2], set={"output.plots": False})
    runs = tmp_path / "out" / "runs"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "hil", "sweep", str(f), "--workers", "2"], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # 3 short runs done, 2 long ones training
            done = list(runs.glob("*/result.json"))
            training = list(runs.glob("epochs=100000-*/checkpoints/last.npz"))
            if len(done) == 3 and len(training) == 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None and len(training) == 2, proc.communicate(timeout=5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "interrupted; of 6 run(s) 3 finished, 2 keep their last epoch, 1 not started" in err, err
    table = rows(tmp_path / "out" / "results.csv")
    assert sorted(r["status"] for r in table) == ["finished"] * 3 + ["pending"] * 3
    long_runs = sorted(runs.glob("epochs=100000-*"))
    started = [d for d in long_runs if (d / "events.jsonl").is_file()]
    assert len(started) == 2, [d.name for d in long_runs]  # the queued run never started
    for d in started:
        kinds = [json.loads(line)["kind"] for line in (d / "events.jsonl").read_text().splitlines()]
        assert "abort" in kinds and (d / "checkpoints" / "last.npz").is_file() and not (d / "result.json").exists()
    print(f"hil sweep stopped {stop_s:.1f} s after SIGTERM")


def test_a_closed_pipe_ends_the_listing_quietly(tmp_path, capsys, monkeypatch):
    """`hil sweep FILE --dry-run | head -1`: the reader going away is not a sweep error."""
    import hil.sweep

    def reader_gone(*a, **k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(hil.sweep, "run_sweep", reader_gone)
    assert main(["sweep", str(sweep_file(tmp_path)), "--dry-run"]) == 141
    assert capsys.readouterr().err == ""


def test_dry_run_refuses_an_output_that_the_run_would_refuse_and_creates_nothing(tmp_path, capsys):
    """``--dry-run`` with an output that is a file: exit 2 as the real run, not a listing of runs that
    could never be written; an output that does not exist yet is listed and not created."""
    f = sweep_file(tmp_path)
    (tmp_path / "taken.yaml").write_text("x: 1\n")
    for argv in ([], ["--dry-run"]):
        assert main(["sweep", str(f), "--output", str(tmp_path / "taken.yaml"), *argv]) == 2
        assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["sweep", str(f), "--dry-run"]) == 0
    assert "4 to run" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_a_directory_given_as_the_sweep_file_is_named_as_one(tmp_path, capsys):
    assert main(["sweep", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a directory, expected a sweep file" in err and "file not found" not in err
