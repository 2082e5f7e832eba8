"""A whole sweep: expand, skip finished runs, run the rest, write the table and the plot.

The sweep directory::

    sweep.yaml      the sweep file as given (for the record)
    runs/<run_id>/  one ordinary run directory per point (config, metrics, checkpoints,
                    plots) plus result.json once it ended
    results.csv     one row per run: grid values, seed, status, accuracies, s/epoch, error
    summary.csv     per grid point over the seeds: runs, finished, failed, metric mean/min/max/std
    summary.png     the metric against a grid key (dots per seed, mean line, min–max band)
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hil.sweep.progress import SweepHeartbeat
from hil.sweep.report import plot_summary, results_rows, summarise, write_csv
from hil.sweep.runner import is_finished, machine_cores, read_result, run_points
from hil.sweep.spec import RunPoint, SweepSpec, config_hash, expand


@dataclass
class SweepOutcome:
    directory: Path
    points: list[RunPoint]
    skipped: int  # finished before this invocation
    ran: int
    failed: int
    rows: list[dict]  # results.csv rows
    summary: list[dict]  # summary.csv rows


def _pct(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if v != v else f"{100 * v:.2f} %"  # NaN: no finished run measured it


def write_reports(spec: SweepSpec, points: list[RunPoint], directory: Path) -> tuple[list[dict], list[dict]]:
    """(Re)write results.csv, summary.csv and summary.png from the runs' result files.

    Ctrl-C/SIGTERM are held until the files are written (then re-delivered): an interrupt in the
    middle would leave a half-written table or a half-imported plotting library behind."""
    from hil.train.loop import deferred_interrupts

    with deferred_interrupts():
        results = {}
        for p in points:
            r = read_result(directory / "runs" / p.run_id)
            if r and r.get("config_hash") == config_hash(p.raw):
                results[p.run_id] = r
        rows = results_rows(spec, points, results)
        summary = summarise(spec, rows)
        write_csv(directory / "results.csv", rows)
        write_csv(directory / "summary.csv", summary)
        plot_summary(spec, rows, directory / "summary.png")
    return rows, summary


def resumable_epoch(run_dir: Path) -> int | None:
    """The epoch an unfinished run's last checkpoint holds (None: no readable checkpoint)."""
    import numpy as np

    try:
        with np.load(run_dir / "checkpoints" / "last.npz", allow_pickle=False) as ck:
            return int(ck["epoch"])
    except Exception:
        return None


def run_state(run_dir: Path, config_hash_: str) -> str:
    """What a start of the sweep would do with one run: ``finished``, ``failed: <error> (runs again)``,
    ``pending (continues from epoch N)`` or ``pending``."""
    if is_finished(run_dir, config_hash_):
        return "finished"
    epoch = resumable_epoch(run_dir)
    result = read_result(run_dir)
    if result and result.get("status") == "failed" and result.get("config_hash") == config_hash_:
        error = str(result.get("error") or "unknown error").splitlines()[0]
        again = f"continues from epoch {epoch}" if epoch else "runs again"
        return f"failed: {error} ({again})"
    return f"pending (continues from epoch {epoch})" if epoch else "pending"


def run_sweep(spec: SweepSpec | str | Path, *, output: str | None = None, workers: int | None = None,
              cluster: str | None = None, dry_run: bool = False,
              echo: Callable[[str], None] = print) -> SweepOutcome:
    """Run every pending point of ``spec`` (from :func:`~hil.sweep.spec.load_sweep`, or a sweep file's
    path); finished runs of the same config are skipped.

    ``output``/``workers``/``cluster`` override the sweep file.  Reports are rewritten after
    every finished run, so an interrupted sweep still leaves an up-to-date table.
    """
    if isinstance(spec, (str, Path)):
        from hil.sweep.spec import load_sweep

        spec = load_sweep(str(spec))
    if not isinstance(spec, SweepSpec):
        raise TypeError(f"spec: expected a SweepSpec (from load_sweep) or a sweep file's path, got {type(spec).__name__}")
    points = expand(spec)
    directory = Path(output or spec.output)
    # before anything runs: results that cannot be written are lost work (a dry run checks, creates nothing)
    from hil.config import ConfigError
    from hil.train.rundir import RunDirError, prepare_runs_dir

    try:
        prepare_runs_dir(directory, "sweep directory", create=not dry_run)
    except RunDirError as exc:
        raise ConfigError([f"{'--output' if output else 'output'}: {exc}"], spec.source) from None
    runs_dir = directory / "runs"
    pending = [p for p in points if not is_finished(runs_dir / p.run_id, config_hash(p.raw))]
    skipped = len(points) - len(pending)
    cluster = cluster if cluster is not None else spec.cluster
    workers_key = "--workers" if workers else "workers"
    workers = workers or spec.workers
    if any(isinstance(p.raw.get("board"), dict) and p.raw["board"].get("backend") == "instruments" for p in points):
        from hil.config import ConfigError  # runs on one bench share its instruments: one at a time, here

        if cluster:
            raise ConfigError([f"{'--cluster' if cluster != spec.cluster else 'cluster'}: runs on an instrument "
                               "bench cannot go to a cluster (they share the bench's instruments)"], spec.source)
        if workers is not None and workers > 1:
            raise ConfigError([f"{workers_key}: runs on an instrument bench share its instruments and run one at a "
                               f"time; give 1 (got {workers})"], spec.source)
        workers = 1
    n_local = max(1, min(len(pending) or 1, workers or machine_cores()))
    where = f"Dask cluster {cluster}" if cluster else (f"{n_local} local worker process{'es' if n_local > 1 else ''}"
                                                       if n_local > 1 else "this process")
    n_seeds, n_points = len(spec.seeds), len(points) // max(len(spec.seeds), 1)
    echo(f"hil sweep: {spec.name}: {len(points)} run{'s' * (len(points) != 1)} ({n_points} point{'s' * (n_points != 1)} × "
         f"{n_seeds} seed{'s' * (n_seeds != 1)}), {skipped} finished before, {len(pending)} to run on {where} → {directory}")
    if dry_run:
        for p in points:
            echo(f"  {p.run_id:60s} {run_state(runs_dir / p.run_id, config_hash(p.raw))}")
        return SweepOutcome(directory, points, skipped, 0, 0, [], [])
    if spec.source and Path(spec.source).is_file():
        target = directory / "sweep.yaml"
        if Path(spec.source).resolve() != target.resolve():
            shutil.copyfile(spec.source, target)
    by_id = {p.run_id: p for p in points}
    counter = {"done": 0, "failed": 0}

    def on_result(r: dict) -> None:
        counter["done"] += 1
        p = by_id[r["run_id"]]
        if r.get("status") == "finished":
            msg = (f"{spec.metric.replace('_acc', '')} {_pct(r.get(spec.metric))}, "
                   f"{r.get('epochs')} epochs, {float(r.get('seconds_per_epoch', float('nan'))):.3g} s/epoch")
        else:
            counter["failed"] += 1
            msg = f"FAILED: {str(r.get('error', '')).splitlines()[0] if r.get('error') else 'unknown error'}"
        echo(f"[{counter['done']}/{len(pending)}] {p.label} seed {p.seed}: {msg}")
        write_reports(spec, points, directory)

    try:
        with SweepHeartbeat(pending, runs_dir, lambda: counter["done"], echo):
            run_points(pending, runs_dir, on_result, workers=workers, cluster=cluster,
                       cluster_timeout_s=spec.cluster_timeout_s)
    finally:
        rows, summary = write_reports(spec, points, directory)
    return SweepOutcome(directory, points, skipped, counter["done"], counter["failed"], rows, summary)


def _seconds(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if v != v else f"{v:.3g}"


def print_summary(outcome: SweepOutcome, spec: SweepSpec, out=None) -> None:
    """The per-point summary as an aligned text table (on ``out``, default the current ``sys.stdout``)."""
    out = out or sys.stdout
    m = spec.metric
    keys = (["config"] if spec.vary_config else []) + list(spec.grid)
    print(f"\nsummary ({m} over seeds {list(spec.seeds)}; finished runs only)", file=out)
    head = [k.rsplit(".", 1)[-1] for k in keys] + ["runs", "mean", "min", "max", "s/epoch"]
    table = [head]
    for s in outcome.summary:
        table.append([str(s[k]) for k in keys] + [f"{s['finished']}/{s['runs']}", _pct(s[f"{m}_mean"]),
                                                 _pct(s[f"{m}_min"]), _pct(s[f"{m}_max"]),
                                                 _seconds(s['seconds_per_epoch_mean'])])
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)), file=out)
    print(f"\n  table  {outcome.directory / 'results.csv'}\n  plot   {outcome.directory / 'summary.png'}", file=out)
