"""Calibration through the board protocol only (never a simulator's hidden truth).

* :mod:`.offsets` — channel offsets and noise from zero readings (every source at 0 V).
* :mod:`.conductances` — in-circuit conductance read-out by least squares from Hadamard
  probe patterns with the diodes kept off.
* :mod:`.faults` — stuck/faulty device map and programming response from two programmed states.
* :mod:`.diodes` — diode I–V fit (I_s, n, R_s, leak) per hidden node.
* :mod:`.store` — the versioned calibration file, newest-calibration lookup, staleness.
* :mod:`.settings` — ``board.calibration`` (where, staleness, which compensations).
* :mod:`.apply` — ``hil train`` wraps the board with the newest calibration.
* :mod:`.run` — the whole procedure (``hil calibrate``) and its report.

Compensation itself lives in :mod:`hil.boards.calibrated` (a board wrapper).
"""
