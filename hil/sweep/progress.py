"""A sweep's sign of life between finished runs: which runs are at which epoch.

A sweep prints a line when a run ends; runs of many epochs can take far longer than that. While
the sweep runs, :class:`SweepHeartbeat` prints every ``EVERY_S`` seconds how many runs are done
and the epoch each running run has reached, read from the ``metrics.csv`` the runs write into
the sweep directory (runs on cluster workers without that directory are counted, not detailed).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from hil.sweep.spec import RunPoint
from hil.train.settings import DEFAULT_EPOCHS

#: seconds between two progress lines of a running sweep
EVERY_S = 30.0


def completed_epochs(run_dir: Path) -> int:
    """Rows in ``run_dir/metrics.csv`` (the epochs completed so far; 0 when there is no file)."""
    try:
        with open(run_dir / "metrics.csv", encoding="utf-8", errors="replace") as fh:
            return max(sum(1 for line in fh if line.strip()) - 1, 0)
    except OSError:
        return 0


def _target_epochs(p: RunPoint) -> int | None:
    train = p.raw.get("train") if isinstance(p.raw, dict) else None
    epochs = train.get("epochs", DEFAULT_EPOCHS) if isinstance(train, dict) else None
    return epochs if isinstance(epochs, int) else None


class SweepHeartbeat:
    """Background progress lines for ``points`` (the runs this start has to run).

    ``done()`` -> how many of them have ended; ``echo`` prints one line.
    """

    def __init__(self, points: list[RunPoint], runs_dir: Path, done: Callable[[], int],
                 echo: Callable[[str], None], every_s: float | None = None) -> None:
        self.points, self.runs_dir, self.done, self.echo = points, runs_dir, done, echo
        self.every_s = EVERY_S if every_s is None else float(every_s)
        self._start = {p.run_id: completed_epochs(runs_dir / p.run_id) for p in points}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-progress", daemon=True)
        self._t0 = time.monotonic()

    def __enter__(self) -> "SweepHeartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.echo(self.line())
            except Exception:  # a progress line must never disturb the sweep
                pass

    def line(self) -> str:
        """``hil sweep: … 2 of 6 runs done after 1.5 min; at epoch: lr=2e-06 seed 1 12/150, …``"""
        done = self.done()
        moving = []
        for p in self.points:
            run_dir = self.runs_dir / p.run_id
            if (run_dir / "result.json").is_file() and completed_epochs(run_dir) == self._start[p.run_id]:
                continue  # ended before this start (a failed run being retried has not moved yet)
            now = completed_epochs(run_dir)
            target = _target_epochs(p)
            if now > self._start[p.run_id] and (target is None or now < target):
                moving.append(f"{p.label} seed {p.seed} {now}/{target if target is not None else '?'}")
        minutes = (time.monotonic() - self._t0) / 60
        detail = f"; at epoch: {', '.join(moving)}" if moving else ""
        return f"hil sweep: … {done} of {len(self.points)} runs done after {minutes:.1f} min{detail}"
