"""Compensation as a board wrapper, driven by a calibration (:mod:`hil.calibrate`).

Each compensation is switchable:

* **reading offsets and gains**: subtract each channel's calibrated offset from every
  reading and divide by its calibrated gain (``gains``; a calibration without gains has 1);
* **stuck mask**: devices the fault map marks faulty are commanded to (and reported at)
  their measured value, so the optimiser never moves them and the trainer's model keeps
  their fixed value;
* **write-verify**: after each programming, read back (averaging ``reads`` reads), and
  re-command devices outside ``rel_tol`` with a multiplicative correction, up to ``max_iter``
  rounds (stops early when nothing is left or the error stops shrinking); a final report
  is kept in ``last_write_verify``;
* **drift**: every ``drift_every`` board calls re-measure the reference patterns and rescale
  port currents by the ratio to the reference (one global factor or one per output port).  The
  reference is the calibration's until the wrapper programs the board; every programming
  measures it again right after the write, so the correction restores the readings the board
  gave when its devices were written (it does not undo the programming itself).

It needs only the board protocol (plus ``measure_sources`` for the drift reference).
"""

from __future__ import annotations

import numpy as np

from hil.board import BoardBase, Measurement


class CalibratedBoard(BoardBase):
    """Wrap ``inner`` with the compensations of ``settings`` using calibration ``cal``."""

    def __init__(self, inner, cal, settings):
        self.inner, self.cal, self.s = inner, cal, settings
        a = cal.arrays
        self._off = (a["offset_y"], a["offset_i_src"], a["offset_e"]) if settings.offsets else None
        self._gain = ((a["gain_y"], a["gain_i_src"], a["gain_e"])
                      if getattr(settings, "gains", False) and "gain_y" in a else None)
        self._faulty = (a["fault_code"] != 0) if settings.stuck_mask else None
        self._fixed = a["fault_fixed_s"]
        self._calls = 0
        self._drift_gain = np.ones(inner.topology.n_outputs)
        #: the reference patterns' port currents (A) the drift gain compares with: the calibration's,
        #: then those read right after each programming
        self._drift_ref = a["drift_y"] if "drift_y" in a else None
        self.last_write_verify: dict = {}

    def __getattr__(self, name):
        """Other capabilities of the wrapped board (instrument snapshots, clocks, …) pass through."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ---- protocol --------------------------------------------------------------------
    @property
    def topology(self):
        return self.inner.topology

    @property
    def conductance_bounds(self):
        return self.inner.conductance_bounds

    def measure(self, x, w=None) -> Measurement:
        self._maybe_refresh_drift()
        return self._correct(self.inner.measure(x, w))

    def measure_sources(self, u, w=None) -> Measurement:
        return self._correct(self.inner.measure_sources(u, w))

    def program(self, g, rel_tol: float = 0.01) -> np.ndarray:
        g = np.clip(np.asarray(g, dtype=float), *self.conductance_bounds)
        if self._faulty is not None:
            g = np.where(self._faulty, self._fixed, g)
        cmd = g.copy()
        self.inner.program(cmd, rel_tol=0.0)
        tol = self.s.write_verify_rel_tol
        if tol > 0:
            self._write_verify(g, cmd, tol)
        if self.s.drift != "none":  # the devices as written are what later readings are held to
            self._drift_ref = self._reference_currents()
            self._drift_gain = np.ones_like(self._drift_gain)
        return g

    def read_conductances(self) -> np.ndarray:
        return self.inner.read_conductances()

    def safe_state(self) -> None:
        self.inner.safe_state()

    def close(self) -> None:
        """Close the wrapped board as it closes itself: a bench's safe state, then its transports
        released (and its exit hook removed); a board without ``close`` is put in its safe state."""
        close = getattr(self.inner, "close", None)
        (close if callable(close) else self.inner.safe_state)()

    def __exit__(self, exc_type, exc, tb) -> None:
        exit_inner = getattr(self.inner, "__exit__", None)  # (a bench's keeps the failure in flight as the one that leaves)
        if callable(exit_inner):
            exit_inner(exc_type, exc, tb)
        else:
            self.close()

    # ---- optional capabilities passed through -------------------------------------------
    def state_dict(self) -> dict:
        st = self.inner.state_dict() if hasattr(self.inner, "state_dict") else {}
        st = dict(st)
        st["board_comp_calls"] = np.array(self._calls)
        st["board_comp_drift_gain"] = self._drift_gain.copy()
        if self._drift_ref is not None:
            st["board_comp_drift_ref"] = np.array(self._drift_ref, dtype=float)
        return st

    def load_state_dict(self, state: dict) -> None:
        if hasattr(self.inner, "load_state_dict"):
            self.inner.load_state_dict({k: v for k, v in state.items() if not k.startswith("board_comp_")})
        if "board_comp_calls" in state:
            self._calls = int(state["board_comp_calls"])
            self._drift_gain = np.array(state["board_comp_drift_gain"], dtype=float)
        if "board_comp_drift_ref" in state:
            self._drift_ref = np.array(state["board_comp_drift_ref"], dtype=float)

    def elapse(self, seconds: float) -> None:
        self.inner.elapse(seconds)

    # ---- compensations --------------------------------------------------------------------
    def _correct(self, m: Measurement) -> Measurement:
        if self._off is not None:
            m.y, m.i_src, m.e = m.y - self._off[0], m.i_src - self._off[1], m.e - self._off[2]
        if self._gain is not None:
            m.y, m.i_src, m.e = m.y / self._gain[0], m.i_src / self._gain[1], m.e / self._gain[2]
        if self.s.drift != "none":
            m.y = m.y * self._drift_gain
        if (self._off is not None or self._gain is not None) and m.info and m.info.get("reading_errors"):
            what = " and ".join(w for w, on in (("offsets", self._off is not None), ("gains", self._gain is not None))
                                if on)
            m.info = dict(m.info, reading_errors=m.info["reading_errors"] + f" (readings corrected with the calibrated "
                          f"{what}; what remains is the calibration's error and the noise)")
        return m

    def _write_verify(self, target: np.ndarray, cmd: np.ndarray, tol: float) -> None:
        free = np.ones(target.size, bool) if self._faulty is None else ~self._faulty
        free &= target > 0
        prev_bad = np.inf
        it = 0
        err = np.zeros(target.size)
        for it in range(1, self.s.write_verify_max_iter + 1):
            read = np.mean([self.inner.read_conductances() for _ in range(self.s.write_verify_reads)], axis=0)
            err = np.where(free, read / np.where(target > 0, target, 1.0) - 1.0, 0.0)
            bad = free & (np.abs(err) > tol)
            if not bad.any() or bad.sum() >= prev_bad:
                break
            prev_bad = bad.sum()
            cmd = np.where(bad, np.clip(cmd / (1.0 + err), *self.conductance_bounds), cmd)
            self.inner.program(cmd, rel_tol=0.0)
        self.last_write_verify = {"rounds": it, "max_rel_error": float(np.max(np.abs(err), initial=0.0)),
                                  "outside_tol": int(np.sum(free & (np.abs(err) > tol)))}

    def _reference_currents(self) -> np.ndarray:
        """Port currents (A) of the calibration's reference patterns now, corrected as the stored
        reference was (offsets, and gains when calibrated) whichever corrections the readings get:
        the drift ratio must compare like with like."""
        a = self.cal.arrays
        y = self.inner.measure_sources(a["drift_u"]).y
        y = y - a["offset_y"] if "offset_y" in a else y
        return y / a["gain_y"] if "gain_y" in a else y

    def _maybe_refresh_drift(self) -> None:
        if self.s.drift == "none":
            return
        if self._calls % self.s.drift_every == 0:
            y = self._reference_currents()
            ref = self._drift_ref
            if self.s.drift == "global":
                gain = np.sum(np.abs(ref)) / max(np.sum(np.abs(y)), 1e-300)
                self._drift_gain = np.full(ref.shape[1], gain)
            else:
                self._drift_gain = np.sum(np.abs(ref), axis=0) / np.maximum(np.sum(np.abs(y), axis=0), 1e-300)
        self._calls += 1
