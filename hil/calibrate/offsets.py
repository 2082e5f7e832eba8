"""Channel offsets from zero readings.

With every source (rails included) at 0 V and the ports at 0 V a passive network carries no
current and every node sits at 0 V, so each reading is the channel's offset plus noise.
Averaging N readings gives the offset to σ/√N; σ (including quantisation) is estimated from
the same readings.  Gains need an external reference (a loopback or a calibrated source) and
are not estimated here: the calibration records them as 1 and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ChannelOffsets:
    """Per-channel offsets (mean of the zero readings) and reading noise σ (sample std).

    ``y``: (q,) A, ``i_src``: (p,) A, ``e``: (n,) V; ``*_sigma`` alike; ``n_readings``."""

    y: np.ndarray
    i_src: np.ndarray
    e: np.ndarray
    y_sigma: np.ndarray
    i_src_sigma: np.ndarray
    e_sigma: np.ndarray
    n_readings: int


def samples_in_range(m, readings: tuple[str, ...] | None = None) -> np.ndarray | None:
    """Per sample, whether ``readings`` (keys of the board's ``info["over_range"]`` detail: ``sources``,
    ``y``, ``i_src``, ``e``; all of them when None) were inside their channels' range; without that
    detail the samples the board marked valid; None when the board says nothing of either."""
    over = m.info.get("over_range") if m.info else None
    if over is not None:
        keys = over.keys() if readings is None else readings
        return ~np.any([np.asarray(over[k], bool) for k in keys], axis=0)
    if m.valid is not None:
        return np.asarray(m.valid, bool).reshape(-1)
    return None


def require_in_range(m, step: str, hint: str) -> None:
    """RuntimeError naming ``step`` when a measurement has a reading at full scale or a source beyond its
    range (the board's ``info["over_range"]`` detail, else the samples it marked invalid): such
    readings are the range, not the signal."""
    valid = samples_in_range(m)
    if valid is None:
        return
    if not valid.all():
        raise RuntimeError(f"{step}: {int(np.count_nonzero(~valid))} of {valid.size} readings were over a channel's "
                           f"range (or a source beyond its range), so they read the range, not the signal; {hint}")


def zero_readings(board, n_readings: int = 4096) -> ChannelOffsets:
    """Measure ``n_readings`` zero patterns (one batch call) and summarise every channel."""
    if not hasattr(board, "measure_sources"):
        raise RuntimeError("calibration needs a board that can set every source (rails included): "
                           "it has no measure_sources capability")
    p = board.topology.n_sources
    m = board.measure_sources(np.zeros((n_readings, p)))
    require_in_range(m, "zero readings", "with every source at 0 V the channels' offsets alone exceed their range")
    std = lambda a: a.std(axis=0, ddof=1)
    return ChannelOffsets(m.y.mean(axis=0), m.i_src.mean(axis=0), m.e.mean(axis=0), std(m.y), std(m.i_src),
                          std(m.e), n_readings)
