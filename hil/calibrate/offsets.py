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


def zero_readings(board, n_readings: int = 4096) -> ChannelOffsets:
    """Measure ``n_readings`` zero patterns (one batch call) and summarise every channel."""
    if not hasattr(board, "measure_sources"):
        raise RuntimeError("calibration needs a board that can set every source (rails included): "
                           "it has no measure_sources capability")
    p = board.topology.n_sources
    m = board.measure_sources(np.zeros((n_readings, p)))
    std = lambda a: a.std(axis=0, ddof=1)
    return ChannelOffsets(m.y.mean(axis=0), m.i_src.mean(axis=0), m.e.mean(axis=0), std(m.y), std(m.i_src),
                          std(m.e), n_readings)
