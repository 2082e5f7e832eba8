"""Run directory: resolved config, metrics CSV, checkpoints, append-only event log.

Layout (``runs/<UTC yyyymmddTHHMMSSZ>_<name>/``)::

    .lock                  held (flock) by the one process writing the run
    config.resolved.yaml   the config as run; rewritten (atomically) when a resume overrides it
    metadata.json          versions, source revision, host, start and end time
    metrics.csv            one row per epoch, appended and flushed
    events.jsonl           one strict-JSON object per line, flushed per record
    checkpoints/last.npz   conductances with names and group layout, optimizer and RNG state
    checkpoints/best.npz   best validation (or, without a validation split, training) accuracy
    plots/*.png            loss/accuracy curves, conductance maps, confusion matrices

Every whole-file write goes through a uniquely named temporary file in the same folder and
an atomic rename, so a crash never leaves a half-written file or a stray temporary behind.
Readers tolerate damage (blank or garbage metric rows, a half-written last event line, a
truncated checkpoint) and report it instead of raising a traceback.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CHECKPOINT_TAGS = ("last", "best")


class RunDirError(RuntimeError):
    """A run directory that cannot be used (busy, damaged beyond repair, not writable)."""


class RunDirInUse(RunDirError):
    """Another process holds the run directory's lock (it is writing the run)."""


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_os_error():
            os.unlink(tmp)
        raise


class _suppress_os_error:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, OSError)


def strict_json(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def source_revision() -> str | None:
    """``git describe --always --dirty`` of the source checkout, or None when not in one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        r = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                           capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.strip() or None


def prepare_runs_dir(runs_dir: str | Path, what: str = "runs directory", create: bool = True) -> Path:
    """Create ``runs_dir`` if needed and check it is a writable directory (RunDirError otherwise,
    its message starting with ``what`` and the path).  With ``create`` False (a dry run) nothing is
    created: a path that does not exist yet passes the checks a later run would make first."""
    shown = f"{what} " + (str(runs_dir) if str(runs_dir).isprintable() else repr(str(runs_dir)))
    if not str(runs_dir).strip():
        raise RunDirError(f"{what} {str(runs_dir)!r}: empty path")
    if "\0" in str(runs_dir) or len(str(runs_dir)) > 4096:
        raise RunDirError(f"{shown}: not a valid path")
    p = Path(runs_dir)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"{shown}: exists and is not a directory")
    if not create and not p.exists():
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{shown}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise RunDirError(f"{shown}: not writable")
    return p


class RunDir:
    """A run directory and every file in it.

    ``RunDir(path)`` opens it for reading; :meth:`create` makes a new one and :meth:`resume`
    reopens one for writing — both take the directory's lock, so only one process writes a
    run at a time.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_file = None
        self.warnings: list[str] = []

    # ---- ownership ------------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: str | Path, name: str) -> "RunDir":
        """A new, uniquely named run directory (atomic ``mkdir``: two runs never share one)."""
        base = prepare_runs_dir(runs_dir)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        for i in range(10_000):
            path = base / (f"{stamp}_{name}" if i == 0 else f"{stamp}_{name}-{i}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunDirError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
            run = cls(path)
            run.lock()
            (path / "checkpoints").mkdir()
            (path / "plots").mkdir()
            return run
        raise RunDirError(f"no free run directory name under {base} for {stamp}_{name}")

    @classmethod
    def resume(cls, path: str | Path) -> "RunDir":
        """Reopen an existing run for writing: lock it, repair a half-written event line."""
        run = cls(Path(path))
        run.lock()
        for sub in ("checkpoints", "plots"):
            (run.path / sub).mkdir(exist_ok=True)
        run.repair_events()
        return run

    def lock(self) -> None:
        """Take the run's exclusive lock (released when the process ends or on :meth:`close`)."""
        import fcntl

        try:
            f = open(self.path / ".lock", "a+")
        except OSError as exc:
            raise RunDirError(f"run directory {self.path}: cannot open its lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            owner = f.read().strip()
            f.close()
            raise RunDirInUse(f"run directory {self.path} is in use by another process"
                              f"{f' ({owner})' if owner else ''}; wait for it to finish or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()} since {utc_now()}\n")
        f.flush()
        self._lock_file = f

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"hil: warning: {message}", file=sys.stderr)

    # ---- config and metadata ---------------------------------------------------------
    def write_config(self, config: dict) -> None:
        from hil.config import dump_yaml

        atomic_write(self.path / "config.resolved.yaml", dump_yaml(config).encode())

    def read_config(self) -> dict:
        """The resolved config (ConfigError with the file name when it is damaged)."""
        from hil.config import load_yaml

        return load_yaml(self.path / "config.resolved.yaml")

    def write_metadata(self, extra: dict | None = None) -> None:
        import scipy

        meta = {
            "started_utc": utc_now(),
            "ended_utc": None,
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "host": platform.node(),
            "platform": platform.platform(),
        }
        from hil import __version__

        meta["hil"] = __version__
        meta["source_revision"] = source_revision()
        meta.update(extra or {})
        atomic_write(self.path / "metadata.json", json.dumps(strict_json(meta), indent=2).encode())

    def read_metadata(self) -> dict:
        try:
            data = json.loads((self.path / "metadata.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def update_metadata(self, **fields) -> None:
        """Merge ``fields`` into metadata.json (a damaged file is replaced by a fresh one)."""
        meta = self.read_metadata()
        meta.update(fields)
        atomic_write(self.path / "metadata.json", json.dumps(strict_json(meta), indent=2).encode())

    # ---- event log ------------------------------------------------------------------------
    def event(self, kind: str, step: int | None = None, **data) -> None:
        rec = {"ts": utc_now(), "step": step, "kind": kind, "instrument": None, "data": strict_json(data)}
        line = json.dumps(rec, allow_nan=False) + "\n"
        with open(self.path / "events.jsonl", "a") as f:
            f.write(line)
            f.flush()

    def repair_events(self) -> None:
        """Drop a half-written last line of events.jsonl (a crash mid-write) and log the repair."""
        p = self.path / "events.jsonl"
        if not p.exists():
            return
        raw = p.read_bytes()
        lines = raw.split(b"\n")
        good, bad = [], 0
        for ln in lines:
            if not ln.strip():
                continue
            try:
                json.loads(ln)
                good.append(ln)
            except ValueError:
                bad += 1
        if bad or (raw and not raw.endswith(b"\n")):
            atomic_write(p, b"".join(l + b"\n" for l in good))
            if bad:
                self._warn(f"{p}: dropped {bad} damaged line(s) of the event log")
                self.event("log_repaired", dropped_lines=bad)

    def events(self) -> list[dict]:
        """Every readable event (damaged lines are skipped)."""
        p = self.path / "events.jsonl"
        out = []
        if p.exists():
            for ln in p.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(ln)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
        return out

    # ---- metrics ----------------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        """Append one row; an existing file keeps its own header (columns it lacks are dropped)."""
        p = self.path / "metrics.csv"
        header = None
        if p.exists() and p.stat().st_size:
            with open(p, newline="", errors="replace") as f:
                header = next(csv.reader(line for line in f if line.strip()), None)
        with open(p, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header or list(row), extrasaction="ignore", restval="")
            if header is None:
                w.writeheader()
            w.writerow(row)
            f.flush()

    def read_metrics(self) -> list[dict]:
        """Rows of metrics.csv as floats; blank or unreadable rows are skipped."""
        p = self.path / "metrics.csv"
        if not p.exists():
            return []
        rows = []
        with open(p, newline="", errors="replace") as f:
            for r in csv.DictReader(line for line in f if line.strip()):
                try:
                    rows.append({k: float(v) if v != "" else float("nan") for k, v in r.items() if k is not None})
                except (TypeError, ValueError):
                    continue
        return rows

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep the header and the readable rows up to ``last_epoch`` (a resume continues from there)."""
        p = self.path / "metrics.csv"
        if not p.exists():
            return
        lines = p.read_text(errors="replace").splitlines(keepends=True)
        lines = [l if l.endswith("\n") else l + "\n" for l in lines if l.strip()]
        if not lines:
            p.unlink()
            return

        def keep(line: str) -> bool:
            try:
                return int(float(line.split(",", 1)[0])) <= last_epoch
            except ValueError:
                return False

        kept = lines[:1] + [l for l in lines[1:] if keep(l)]
        if kept != p.read_text(errors="replace").splitlines(keepends=True):
            atomic_write(p, "".join(kept).encode())

    # ---- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, tag: str, arrays: dict) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        p = self.path / "checkpoints" / f"{tag}.npz"
        atomic_write(p, buf.getvalue())
        return p

    def load_checkpoint(self, tag: str = "last") -> dict:
        """A checkpoint's arrays; RunDirError (one line) if it is missing or damaged."""
        p = self.path / "checkpoints" / f"{tag}.npz"
        if not p.exists():
            raise RunDirError(f"no checkpoint {p}")
        if p.is_file() and not zipfile.is_zipfile(p):  # (numpy would suggest loading it with pickle)
            raise RunDirError(f"checkpoint {p} is damaged (not an NPZ archive)")
        try:
            with np.load(p, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise RunDirError(f"checkpoint {p} is damaged ({type(exc).__name__}: {exc})") from None
        if "conductances_s" not in data or "epoch" not in data:
            raise RunDirError(f"checkpoint {p} is damaged (no conductances or epoch)")
        return data

    def checkpoint_epoch(self, tag: str = "last") -> int | None:
        """The epoch a checkpoint holds, or None when it is missing or cannot be read."""
        try:
            return int(self.load_checkpoint(tag)["epoch"])
        except Exception:
            return None

    def load_checkpoint_with_fallback(self, tag: str = "last") -> tuple[str, dict]:
        """``tag``'s checkpoint, or the other one (with a warning) when it is damaged."""
        try:
            return tag, self.load_checkpoint(tag)
        except RunDirError as first:
            for other in CHECKPOINT_TAGS:
                if other == tag:
                    continue
                try:
                    data = self.load_checkpoint(other)
                except RunDirError:
                    continue
                self._warn(f"{first}; using the {other} checkpoint (epoch {int(data['epoch'])}) instead")
                return other, data
            raise
