"""``board.calibration`` settings: where calibrations live, staleness, which compensations apply.

    board:
      calibration:
        dir: calibrations          # root folder; one sub-folder per board
        apply: true                # hil train wraps the board with the newest calibration
        max_age_hours: 24          # older → a warning
        max_temperature_delta_c: 2 # taken at another temperature → a warning
        offsets: true              # subtract calibrated reading offsets
        gains: true                # divide by calibrated channel gains (sources as the reference)
        gain_repeats: 32           # board calls per gain pattern set
        stuck_mask: true           # faulty devices keep their measured value, never updated
        write_verify: {rel_tol: 0.0, max_iter: 8, reads: 4}   # rel_tol 0: off
        drift: none                # none | global | per_output
        drift_every: 200           # board calls between drift-reference re-measurements
        amplitude_v: 0.5           # probe amplitude
        repeats: 64                # board calls per conductance read-out
"""

from __future__ import annotations

from dataclasses import dataclass

from hil.config import ConfigError, Section, non_negative, positive


@dataclass
class CalibrationSettings:
    dir: str = "calibrations"
    apply: bool = True
    max_age_hours: float = 24.0
    max_temperature_delta_c: float = 2.0
    offsets: bool = True
    gains: bool = True
    gain_repeats: int = 32
    stuck_mask: bool = True
    write_verify_rel_tol: float = 0.0
    write_verify_max_iter: int = 8
    write_verify_reads: int = 4
    drift: str = "none"
    drift_every: int = 200
    amplitude_v: float = 0.5
    repeats: int = 64


def parse_calibration(data: dict | None, path: str = "board.calibration") -> CalibrationSettings:
    problems: list[str] = []
    d = CalibrationSettings()
    sec = Section(data or {}, path, problems)
    out = CalibrationSettings(
        dir=sec.get("dir", str, d.dir),
        apply=sec.get("apply", bool, d.apply),
        max_age_hours=sec.get("max_age_hours", float, d.max_age_hours, check=positive),
        max_temperature_delta_c=sec.get("max_temperature_delta_c", float, d.max_temperature_delta_c, check=non_negative),
        offsets=sec.get("offsets", bool, d.offsets),
        gains=sec.get("gains", bool, d.gains),
        gain_repeats=sec.get("gain_repeats", int, d.gain_repeats, check=positive),
        stuck_mask=sec.get("stuck_mask", bool, d.stuck_mask),
        drift=sec.get("drift", str, d.drift, choices=("none", "global", "per_output")),
        drift_every=sec.get("drift_every", int, d.drift_every, check=positive),
        amplitude_v=sec.get("amplitude_v", float, d.amplitude_v, check=positive),
        repeats=sec.get("repeats", int, d.repeats, check=positive),
    )
    wv = sec.section("write_verify")
    out.write_verify_rel_tol = wv.get("rel_tol", float, d.write_verify_rel_tol, check=non_negative)
    out.write_verify_max_iter = wv.get("max_iter", int, d.write_verify_max_iter, check=positive)
    out.write_verify_reads = wv.get("reads", int, d.write_verify_reads, check=positive)
    wv.finish()
    sec.finish()
    if problems:
        raise ConfigError(problems)
    return out
