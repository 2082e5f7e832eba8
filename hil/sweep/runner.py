"""Running a sweep's points: one training run per point, locally or on a Dask cluster.

* :func:`train_point` trains one resolved config into its run directory.  It is a plain
  top-level function of picklable arguments, so a process pool and a Dask worker call it
  the same way.  A run directory holding a checkpoint of the same config is continued from
  its last completed epoch; ``result.json`` written at the end marks the run finished.
* When a worker cannot see the sweep directory (a cluster without a shared file system) it
  trains in a temporary directory and sends the run directory's files back with the result.
* :func:`run_points` executes the pending points: in this process (one worker), on a local
  process pool sized to the machine, or on a Dask cluster (a scheduler address, or ``local``
  for a ``LocalCluster`` on this machine), and reports each result as it arrives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterable

from hil.sweep.spec import RunPoint

RESULT_FILE = "result.json"


def machine_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def read_result(run_dir: Path) -> dict | None:
    p = Path(run_dir) / RESULT_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def is_finished(run_dir: Path, config_hash: str) -> bool:
    r = read_result(run_dir)
    return bool(r) and r.get("status") == "finished" and r.get("config_hash") == config_hash


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _train(raw: dict, run_path: Path, progress: bool) -> dict:
    """Train ``raw`` into ``run_path``, continuing from its checkpoint when there is one."""
    import copy

    from hil import api
    from hil.train.loop import Trainer
    from hil.train.rundir import RunDir

    raw = copy.deepcopy(raw)
    raw.setdefault("output", {})["runs_dir"] = str(run_path.parent)
    resumable = (run_path / "checkpoints" / "last.npz").is_file() and (run_path / "config.resolved.yaml").is_file()
    if resumable:
        resumable = RunDir(run_path).read_config() == raw
    res = None
    if resumable:  # the same config stopped part-way: continue exactly from its last epoch
        res = api.resume(run_path, progress=progress)
    else:
        settings = api.parse_config(raw)
        board, data, cal_meta = api._board_and_data(settings, "")
        run_path.mkdir(parents=True, exist_ok=True)
        run = RunDir(run_path)
        run.lock()  # before anything is removed: a run another process is writing stays untouched
        try:
            for old in run_path.iterdir():  # a failed or changed earlier attempt: start afresh
                if old.name != ".lock":
                    shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
            for sub in ("checkpoints", "plots"):
                (run_path / sub).mkdir()
            run.write_config(raw)
            run.write_metadata({"config_source": "hil sweep", "estimator": settings.estimator,
                                "data": data.describe(), **cal_meta})
            with board:
                res = api._fit(board, Trainer(board, settings, data, run, progress=progress))
        finally:
            run.close()
    metrics = RunDir(run_path).read_metrics()
    last = metrics[-1] if metrics else {}
    nan = float("nan")
    return {
        "epochs": int(last.get("epoch", 0)),
        "train_acc": last.get("train_acc", nan), "val_acc": last.get("val_acc", nan),
        "test_acc": last.get("test_acc", nan), "conduction_fraction": last.get("conduction_fraction", nan),
        "seconds_per_epoch": (sum(m["epoch_time_s"] for m in metrics) / len(metrics)) if metrics else nan,
        "best_epoch": res.best_epoch if res else None, "resumed": bool(resumable),
    }


def train_point(task: dict) -> dict:
    """Train one sweep point; never raises (a failure is reported in the result).

    ``task``: ``run_id``, ``raw`` (resolved config), ``config_hash``, ``run_dir`` (absolute
    path), ``threads`` (BLAS threads for this run), ``progress``.
    """
    t0 = time.time()
    run_path = Path(task["run_dir"])
    shared = run_path.parent.is_dir()
    tmp = None
    if not shared:  # a cluster worker without the sweep directory: train locally, ship the files back
        tmp = Path(tempfile.mkdtemp(prefix="hil-sweep-"))
        run_path = tmp / run_path.name
    out = {"run_id": task["run_id"], "config_hash": task["config_hash"], "host": os.uname().nodename}
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=task.get("threads") or None):
            out.update(_train(task["raw"], run_path, task.get("progress", False)))
        out["status"] = "finished"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # reported, the sweep goes on with the other points
        from hil.train.rundir import RunDirInUse

        if isinstance(exc, RunDirInUse):  # another sweep process is training it: its result is not ours
            out["in_use"] = True
        out["status"] = "failed"
        msg = "\n".join(exc.problems) if hasattr(exc, "problems") else str(exc)
        out["error"] = f"{type(exc).__name__}: {msg}"
        out["traceback"] = traceback.format_exc(limit=8)
    out["wall_s"] = time.time() - t0
    if shared:
        if run_path.is_dir() and not out.get("in_use"):
            _write_json(run_path / RESULT_FILE, out)
    else:
        files = {}
        if run_path.is_dir():
            for f in run_path.rglob("*"):
                if f.is_file():
                    files[str(f.relative_to(run_path))] = f.read_bytes()
        out["files"] = files
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def store_result(run_dir: Path, result: dict) -> dict:
    """Write files shipped back by a remote worker and the result marker; returns the result without files."""
    files = result.pop("files", None)
    if files is not None:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        for rel, data in files.items():
            p = run_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not result.get("in_use") and read_result(run_dir) != result:
        _write_json(run_dir / RESULT_FILE, result)
    return result


def _tasks(points: Iterable[RunPoint], runs_dir: Path, threads: int, progress: bool) -> list[dict]:
    from hil.sweep.spec import config_hash

    return [{"run_id": p.run_id, "raw": p.raw, "config_hash": config_hash(p.raw),
             "run_dir": str((runs_dir / p.run_id).resolve()), "threads": threads, "progress": progress}
            for p in points]


def run_points(points: list[RunPoint], runs_dir: Path, on_result: Callable[[dict], None], *,
               workers: int | None = None, cluster: str | None = None, cluster_timeout_s: float = 20.0) -> None:
    """Run ``points`` (already known to be pending) and call ``on_result`` as each one ends.

    ``workers``: local pool size (default: one per core, at most one per point); with a
    ``cluster`` the scheduler decides placement and ``workers`` sizes a ``local`` cluster only.
    """
    if not points:
        return
    runs_dir.mkdir(parents=True, exist_ok=True)
    n = max(1, min(len(points), workers or machine_cores()))
    threads = max(1, machine_cores() // n)
    if cluster:
        _run_dask(_tasks(points, runs_dir, 1, False), runs_dir, on_result, cluster, n, cluster_timeout_s)
    elif n == 1:
        for task in _tasks(points, runs_dir, threads, False):
            on_result(store_result(runs_dir / task["run_id"], train_point(task)))
    else:
        _run_pool(_tasks(points, runs_dir, threads, False), runs_dir, on_result, n)


def _outcome(task: dict, get_result: Callable[[], dict]) -> dict:
    """The worker's result, or a failure record when the worker itself died (killed, lost)."""
    try:
        return get_result()
    except Exception as exc:
        return {"run_id": task["run_id"], "config_hash": task["config_hash"], "status": "failed",
                "error": f"worker lost: {type(exc).__name__}: {exc}"}


class WorkerStopped(KeyboardInterrupt):
    """Raised in a pool worker asked to stop: the run ends like an interrupted ``hil train``."""


#: a pool worker's stop state: ``requested`` once SIGTERM arrived, ``running`` while it trains a run
_WORKER = {"requested": False, "running": False}


def _raise_stop(signum, frame):
    """SIGTERM in a pool worker: interrupt the run it trains; the worker then starts no other run
    (a task already waiting in the pool's queue is handed back unstarted, see ``_pool_point``)."""
    _WORKER["requested"] = True
    if _WORKER["running"]:
        raise WorkerStopped()


def _worker_init() -> None:
    """Pool workers leave Ctrl-C to the sweep process and stop on its SIGTERM."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stop)


def _pool_point(task: dict) -> dict:
    """``train_point`` in a pool worker, unless the sweep was stopped before this run started."""
    if _WORKER["requested"]:
        return {"run_id": task["run_id"], "config_hash": task["config_hash"], "status": "not started",
                "error": "the sweep was stopped before this run started"}
    _WORKER["running"] = True
    try:
        return train_point(task)
    finally:
        _WORKER["running"] = False


def _interrupt_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM to the pool's processes so each run ends cleanly (abort event, checkpoint kept)."""
    import signal

    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


def _run_pool(tasks: list[dict], runs_dir: Path, on_result, n: int) -> None:
    with ProcessPoolExecutor(max_workers=n, initializer=_worker_init) as pool:
        futures = {pool.submit(_pool_point, t): t for t in tasks}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    task = futures[f]
                    on_result(store_result(runs_dir / task["run_id"], _outcome(task, f.result)))
        except BaseException:  # Ctrl-C / SIGTERM: queued runs are dropped, running ones are interrupted
            # futures still in the executor are cancelled; the few already handed to the workers'
            # queue come back unstarted (_pool_point), so the pool's shutdown waits only for the
            # running runs to end their own interrupt handling
            _interrupt_workers(pool)
            pool.shutdown(wait=True, cancel_futures=True)
            raise


@contextlib.contextmanager
def _interrupts_ignored_by_children():
    """Start processes that ignore SIGINT: a terminal's Ctrl-C reaches every process of the group,
    and the local cluster's workers would each print a traceback; this process handles the
    interrupt and stops them (their runs keep the checkpoint of their last epoch)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_dask(tasks: list[dict], runs_dir: Path, on_result, address: str, n: int, timeout_s: float) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        from hil.config import ConfigError

        raise ConfigError(["cluster: needs Dask (pip install 'hil[cluster]')"]) from None
    import logging

    cluster = None
    if address == "local":
        with _interrupts_ignored_by_children():
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)  # the workers' log lines: errors only
        client = Client(cluster)
    else:
        client = Client(address, timeout=f"{timeout_s}s")
    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    try:
        futures = [client.submit(train_point, t, key=f"hil-sweep-{t['run_id']}", pure=False) for t in tasks]
        by_key = {f.key: t for f, t in zip(futures, tasks)}
        try:
            for f in as_completed(futures):
                task = by_key[f.key]
                on_result(store_result(runs_dir / task["run_id"], _outcome(task, f.result)))
        except BaseException:
            # cancelled tasks and (local cluster) workers stopped mid-run are what the user asked for:
            # Dask's warnings about them would bury the one-line message of what the sweep kept
            dask_log.setLevel(logging.ERROR)
            client.cancel(futures)
            raise
    finally:
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        finally:
            dask_log.setLevel(level)
