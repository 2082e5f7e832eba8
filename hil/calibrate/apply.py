"""Apply the newest calibration when training (``hil train``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hil.calibrate import store
from hil.config import ConfigError
from hil.calibrate.settings import parse_calibration


def wrap_with_calibration(board, settings, resume_dir: str | None = None,
                          emulated: bool = False, warn: bool = True) -> tuple[object, dict]:
    """(board, metadata): the board wrapped with the newest calibration of this board if
    ``board.calibration.apply`` and one exists; a stale one is applied with a warning.  When a
    calibratable board has none, ``metadata["calibration_searched"]`` names the folder looked in.
    A resumed run (``resume_dir``) uses the calibration its metadata recorded, so it continues exactly.
    ``emulated``: an instrument bench rehearsed on its emulators (its own calibrations).  ``warn``:
    print the staleness warnings on stderr, and refuse a recorded calibration that cannot be read
    (ValueError); False (evaluating a finished run): no staleness warnings, and an unreadable
    recorded calibration is warned about and left out."""
    cs = parse_calibration(settings.calibration)
    name = store.board_id(settings.name, settings.circuit, settings.devices, bench_name(settings), emulated)
    meta = {"calibration": None}
    if not cs.apply:
        return board, meta
    if resume_dir is not None:
        recorded = _recorded(resume_dir)
        if recorded is None:
            return board, meta
        try:
            cal = store.load(recorded)
        except store.UnreadableCalibration as exc:
            why = f"the run trained with calibration {recorded}, which cannot be read ({exc.reason}); was it moved?"
            if warn:  # continuing a run on other readings would change it silently
                raise ConfigError([f"{why}, or add --set board.calibration.apply=false to go on without it"]) from None
            print(f"hil: warning: {why}; using the board without it", file=sys.stderr)
            return board, meta
    else:
        try:
            cal = store.newest(cs.dir, name)
        except store.UnreadableCalibration as exc:  # one line naming the folder, without the class name
            raise ConfigError([str(exc)]) from None
    if cal is None:
        if resume_dir is None and hasattr(board, "measure_sources"):  # a board that could have been calibrated
            meta["calibration_searched"] = str(Path(cs.dir) / name)
        return board, meta
    problem = store.topology_problem(cal, board.topology)
    if problem is not None:  # its arrays would not even broadcast against this board's readings
        raise ConfigError([problem])
    temp = ((settings.devices or {}).get("temperature", {}) or {}).get("temperature_c")
    reasons = store.staleness(cal, cs.max_age_hours, temp, cs.max_temperature_delta_c)
    if bench_name(settings) is None and not store.same_devices(cal, settings.devices):
        reasons.append(f"calibration {cal.path.name} was taken with another board.devices section "
                       f"({cal.meta.get('devices')}) than this config's ({settings.devices})")
    for r in reasons if warn else ():  # (an evaluation of a finished run: the run's own calibration, as it was)
        print(f"hil: warning: {r}; run 'hil calibrate' again", file=sys.stderr)
    from hil.boards.calibrated import CalibratedBoard

    meta["calibration"] = {"path": str(Path(cal.path).resolve()), "created_utc": cal.meta["created_utc"],
                           "stale": reasons, "offsets": cs.offsets, "gains": cs.gains, "stuck_mask": cs.stuck_mask,
                           "write_verify_rel_tol": cs.write_verify_rel_tol, "drift": cs.drift}
    return CalibratedBoard(board, cal, cs), meta


def _recorded(run_dir: str) -> str | None:
    """The calibration folder a run's metadata records: the one found from the run directory (the path
    relative to it, so runs and calibrations can move together), else the path recorded as it was
    (absolute since runs record one; relative to the working directory of older runs)."""
    import json

    p = Path(run_dir) / "metadata.json"
    if not p.is_file():
        return None
    cal = json.loads(p.read_text()).get("calibration")
    if not isinstance(cal, dict):
        return None
    from_run = cal.get("path_from_run")
    if from_run is not None and (Path(run_dir) / from_run).is_dir():
        return str((Path(run_dir) / from_run).resolve())
    return cal.get("path")


def record_from_run(meta: dict, run_dir: str | Path) -> dict:
    """``meta`` (of :func:`wrap_with_calibration`) with the calibration's path also recorded relative to
    the run directory ``run_dir`` (``path_from_run``), so that a run evaluated or resumed from any
    working directory, or moved together with its calibrations, finds its calibration."""
    cal = meta.get("calibration")
    if not isinstance(cal, dict) or not cal.get("path"):
        return meta
    try:
        relative = os.path.relpath(cal["path"], Path(run_dir).resolve())
    except ValueError:  # (another drive: no relative path; the absolute one stays)
        return meta
    return {**meta, "calibration": {**cal, "path_from_run": relative}}


def bench_name(settings) -> str | None:
    """The bench's name for an instrument-backed config, else ``None``."""
    spec = getattr(settings, "instrument_board", None)
    return None if spec is None or settings.backend != "instruments" else spec.bench.name


def calibration_identity(settings, emulated: bool = False) -> tuple[str, float, str]:
    """(board folder name, bench temperature in °C, diode law) of a config's board, as ``hil calibrate``
    records them: the temperature of ``board.devices.temperature``, else the element's, else 27 °C."""
    name = store.board_id(settings.name, settings.circuit, settings.devices, bench_name(settings), emulated)
    element = ((settings.circuit or {}).get("hidden", {}) or {}).get("element", {}) or {}
    temperature = ((settings.devices or {}).get("temperature", {}) or {}).get("temperature_c",
                                                                              element.get("temperature_c", 27.0))
    return name, temperature, element.get("model", "ideal")
