"""Progress of long commands that run in stages (``hil calibrate``): a line when a stage starts
and, while it runs, a sign of life.

On a terminal the running stage shows a tqdm bar on stderr (elapsed time, and the points the
board has measured when it counts them); elsewhere (a log file, a pipe) a plain line every ``every_s``
seconds says how long the stage has been running — the same split as the training loop's
progress (a bar on a terminal, plain lines otherwise).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional, TextIO

#: seconds between two plain progress lines of a running stage (log files and pipes)
LINE_EVERY_S = 10.0


class StageProgress:
    """``stage(text)`` starts a stage; a background thread reports on it until the next one or
    :meth:`close` (also the context manager's exit).

    Args:
        prefix: what every line starts with, e.g. ``"hil calibrate"``.
        counter: ``counter() -> int``, measured points so far (e.g. an instrument board's
            ``stats.measured_points``); ``None`` when the board does not count them.
        bar: ``True`` for a tqdm bar, ``False`` for plain lines, ``None``: a bar on a terminal.
        every_s: seconds between plain lines (``LINE_EVERY_S`` by default).
    """

    def __init__(self, prefix: str, counter: Optional[Callable[[], int]] = None, bar: Optional[bool] = None,
                 every_s: Optional[float] = None, stream: Optional[TextIO] = None) -> None:
        self.prefix, self.counter = prefix, counter
        self.stream = stream or sys.stdout
        self.bar_mode = sys.stderr.isatty() if bar is None else bar  # as training: the bar on stderr
        self.every_s = LINE_EVERY_S if every_s is None else float(every_s)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._stage: Optional[str] = None
        self._t0 = 0.0
        self._count0 = 0
        self._bar = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _points(self) -> Optional[int]:
        if self.counter is None:
            return None
        try:
            return int(self.counter())
        except Exception:  # a counter is a courtesy: never let it break the work it reports on
            return None

    def stage(self, text: str) -> None:
        """End the running stage's report, print ``text`` and start reporting on the new stage."""
        with self._lock:
            self._end_bar()
            print(f"{self.prefix}: {text}", file=self.stream, flush=True)
            self._stage, self._t0 = text.split(" ", 1)[0], time.monotonic()
            self._count0 = self._points() or 0
            if self.bar_mode:
                from tqdm import tqdm

                self._bar = tqdm(total=None, desc=f"  stage {self._stage}", unit=" points", leave=False,
                                 file=sys.stderr, dynamic_ncols=True, bar_format="{desc}: {elapsed}{postfix}")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stage-progress", daemon=True)
            self._thread.start()

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _run(self) -> None:
        while not self._wake.wait(self._until_next_report()):
            with self._lock:
                if self._stop or self._stage is None:
                    return
                # plain lines keep the running stage's own clock: every every_s seconds of it
                if self.bar_mode or time.monotonic() - self._t0 >= 0.999 * self.every_s:
                    self._report()

    def _until_next_report(self) -> float:
        """Seconds to the next report: 0.5 s for the bar, else the next multiple of ``every_s``
        since the running stage started (a stage that began between two beats gets its own)."""
        if self.bar_mode:
            return 0.5
        elapsed = max(time.monotonic() - self._t0, 0.0)
        return max(self.every_s - elapsed % self.every_s, 0.01)

    def _report(self) -> None:
        elapsed = time.monotonic() - self._t0
        points = self._points()
        done = None if points is None else points - self._count0
        counted = f", {done} points measured" if done else ""  # a triggered sweep counts only when it ends
        if self._bar is not None:
            self._bar.postfix = counted.removeprefix(", ")
            self._bar.refresh()
            return
        print(f"{self.prefix}:   … stage {self._stage} running for {elapsed:.0f} s{counted}", file=self.stream,
              flush=True)

    def close(self) -> None:
        """Stop reporting (the running stage's bar is removed; nothing more is printed)."""
        with self._lock:
            self._stop = True
            self._end_bar()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
