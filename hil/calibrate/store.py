"""The versioned calibration file: one directory per calibration under the board's folder.

Layout (``<dir>/<board_id>/<UTC timestamp>/``): ``calibration.json`` (format version, board
identity, time, temperature, summary numbers, caveats) and ``calibration.npz`` (arrays:
offsets and noise per channel, conductance estimates, fault codes and fixed values,
programming gains, diode fit, drift reference).  :func:`newest` finds the latest one;
:func:`staleness` says why it may no longer apply.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


@dataclass
class Calibration:
    """A loaded calibration: metadata dict and arrays dict (SI units)."""

    path: Path
    meta: dict
    arrays: dict

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.meta["created_utc"])


def board_id(settings_name: str, circuit: dict | None, devices: dict | None, bench: str | None = None,
             emulated: bool = False) -> str:
    """A folder name for one physical (or simulated) board: an instrument bench by its bench name
    (``bench-<name>``, and ``bench-<name>-emulated`` for its rehearsal, so a rehearsal's calibration
    is never applied to the real instruments nor the other way round); a simulated board by its
    circuit name, non-ideality preset and seed."""
    if bench is not None:
        return f"bench-{bench}" + ("-emulated" if emulated else "")
    cname = (circuit or {}).get("name", "circuit")
    seed = (devices or {}).get("seed", 0)
    preset = (devices or {}).get("preset", "ideal")
    return f"{cname}-{preset}-{seed}"


def save(root: str | Path, board: str, meta: dict, arrays: dict) -> Path:
    """Write a new calibration directory (atomic per file); returns its path.  In ``calibration.json``
    a number that is not finite (the condition number of a board that cannot be identified) is
    written as null, so that strict JSON readers accept the file."""
    now = datetime.now(timezone.utc)
    path = Path(root) / board / now.strftime("%Y%m%dT%H%M%S%fZ")
    path.mkdir(parents=True, exist_ok=False)
    meta = {"format": FORMAT_VERSION, "board": board, "created_utc": now.isoformat(), **meta}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    from hil.train.rundir import strict_json  # (JSON has no NaN or Infinity: an undefined number is null)

    text = json.dumps(strict_json(meta), indent=2, allow_nan=False)
    for name, data in (("calibration.npz", buf.getvalue()), ("calibration.json", text.encode())):
        tmp = path / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path / name)
    return path


class UnreadableCalibration(ValueError):
    """A calibration folder that cannot be loaded; ``reason`` says why in a few words."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}; run 'hil calibrate' again or remove that folder")


def load(path: str | Path) -> Calibration:
    """The calibration in folder ``path``; :class:`UnreadableCalibration` (a ValueError) naming the
    folder when it cannot be loaded (missing or truncated files, invalid JSON, another format version)."""
    path = Path(path)
    try:
        meta = json.loads((path / "calibration.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError("calibration.json is not a mapping")
        if meta.get("format") != FORMAT_VERSION:
            raise UnreadableCalibration(path, f"calibration format {meta.get('format')} (this version reads "
                                              f"{FORMAT_VERSION})")
        datetime.fromisoformat(meta["created_utc"])
        with np.load(path / "calibration.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except UnreadableCalibration:
        raise
    except FileNotFoundError as exc:
        raise UnreadableCalibration(path, f"unreadable calibration ({Path(exc.filename).name} is missing)") from None
    except (ValueError, OSError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise UnreadableCalibration(path, f"unreadable calibration ({type(exc).__name__}: {exc})") from None
    return Calibration(path, meta, arrays)


def same_devices(cal: Calibration, devices: dict | None) -> bool:
    """Whether ``cal`` was taken with the same ``board.devices`` section (True when it did not record one)."""
    if "devices" not in cal.meta:
        return True
    norm = lambda d: json.loads(json.dumps(d or {}, sort_keys=True, default=float))
    return norm(cal.meta["devices"]) == norm(devices)


def topology_problem(cal: Calibration, topology) -> str | None:
    """Why ``cal`` cannot apply to a board of ``topology`` (another number of sources, hidden nodes,
    output ports or conductances), or None when its arrays fit."""
    a = cal.arrays
    want = {"offset_i_src": topology.n_sources, "offset_e": topology.n_hidden, "offset_y": topology.n_outputs,
            "conductance_s": topology.n_conductances, "fault_code": topology.n_conductances}
    got = {k: (int(a[k].shape[0]) if k in a and a[k].ndim else None) for k in want}
    if got == want:
        return None
    return (f"calibration {cal.path} was taken on a board with {got['offset_i_src']} sources, {got['offset_e']} hidden "
            f"nodes, {got['offset_y']} output ports and {got['conductance_s']} conductances; this board has "
            f"{topology.n_sources}, {topology.n_hidden}, {topology.n_outputs} and {topology.n_conductances}: run "
            "'hil calibrate' for this board (or set board.calibration.apply: false)")


def newest(root: str | Path, board: str) -> Calibration | None:
    """The latest complete calibration of ``board`` under ``root``, or None."""
    folder = Path(root) / board
    if not folder.is_dir():
        return None
    for cand in sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True):
        if (cand / "calibration.json").is_file() and (cand / "calibration.npz").is_file():
            return load(cand)
    return None


def staleness(cal: Calibration, max_age_hours: float, temperature_c: float | None,
              max_temperature_delta_c: float = 2.0) -> list[str]:
    """Reasons the calibration may not apply any more (empty when it is fresh)."""
    out = []
    age_h = (datetime.now(timezone.utc) - cal.created).total_seconds() / 3600.0
    if age_h > max_age_hours:
        out.append(f"calibration {cal.path.name} is {age_h:.1f} h old (limit {max_age_hours:g} h)")
    t_cal = cal.meta.get("temperature_c")
    if temperature_c is not None and t_cal is not None and abs(temperature_c - t_cal) > max_temperature_delta_c:
        out.append(f"calibration {cal.path.name} was taken at {t_cal:g} °C, the board is at {temperature_c:g} °C")
    return out
