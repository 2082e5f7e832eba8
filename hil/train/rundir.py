"""Run directory: resolved config, metrics CSV, checkpoints, append-only event log.

Layout (``runs/<UTC yyyymmddTHHMMSSZ>_<name>/``)::

    config.resolved.yaml   written once (temporary file + rename)
    metadata.json          versions, host, start time
    metrics.csv            one row per epoch, appended and flushed
    events.jsonl           one JSON object per line, flushed per record
    checkpoints/last.npz   conductances, optimizer and RNG state (atomic replace)
    checkpoints/best.npz   best validation (or training) accuracy so far
    plots/*.png            loss/accuracy curves, conductance maps
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import yaml


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    """Creates or reopens a run directory and owns every file in it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.path / "plots").mkdir(exist_ok=True)

    @classmethod
    def create(cls, runs_dir: str | Path, name: str) -> "RunDir":
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = Path(runs_dir) / f"{stamp}_{name}"
        path, i = base, 1
        while path.exists():
            path = base.with_name(f"{base.name}-{i}")
            i += 1
        return cls(path)

    # ---- write-once files ---------------------------------------------------
    def write_config(self, config: dict) -> None:
        _atomic_write(self.path / "config.resolved.yaml", yaml.safe_dump(config, sort_keys=False).encode())

    def read_config(self) -> dict:
        from hil.config import load_yaml

        return load_yaml(self.path / "config.resolved.yaml")

    def write_metadata(self, extra: dict | None = None) -> None:
        import numpy, scipy

        meta = {
            "started_utc": utc_now(),
            "python": sys.version.split()[0],
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "host": platform.node(),
            "platform": platform.platform(),
        }
        try:
            from importlib.metadata import version

            meta["hil"] = version("hil")
        except Exception:  # not installed as a distribution
            meta["hil"] = "unknown"
        meta.update(extra or {})
        _atomic_write(self.path / "metadata.json", json.dumps(meta, indent=2).encode())

    # ---- append-only files ----------------------------------------------------
    def event(self, kind: str, step: int | None = None, **data) -> None:
        rec = {"ts": utc_now(), "step": step, "kind": kind, "instrument": None, "data": data}
        with open(self.path / "events.jsonl", "a") as f:
            f.write(json.dumps(rec, default=float) + "\n")
            f.flush()

    def events(self) -> list[dict]:
        p = self.path / "events.jsonl"
        return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []

    def append_metrics(self, row: dict) -> None:
        p = self.path / "metrics.csv"
        new = not p.exists()
        with open(p, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
            f.flush()

    def read_metrics(self) -> list[dict]:
        p = self.path / "metrics.csv"
        if not p.exists():
            return []
        with open(p) as f:
            return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]

    def truncate_metrics(self, last_epoch: int) -> None:
        """Drop rows after ``last_epoch`` (a resumed run continues from its checkpoint)."""
        p = self.path / "metrics.csv"
        if not p.exists():
            return
        lines = p.read_text().splitlines(keepends=True)
        keep = lines[:1] + [l for l in lines[1:] if int(float(l.split(",", 1)[0])) <= last_epoch]
        if len(keep) != len(lines):  # rows of epochs after the checkpoint: replace atomically
            _atomic_write(p, "".join(keep).encode())

    # ---- checkpoints ------------------------------------------------------------------
    def save_checkpoint(self, tag: str, arrays: dict) -> Path:
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        p = self.path / "checkpoints" / f"{tag}.npz"
        _atomic_write(p, buf.getvalue())
        return p

    def load_checkpoint(self, tag: str = "last") -> dict:
        p = self.path / "checkpoints" / f"{tag}.npz"
        if not p.exists():
            raise FileNotFoundError(f"no checkpoint {p}")
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
