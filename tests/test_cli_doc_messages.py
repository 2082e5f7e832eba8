"""The bench failure lines quoted in docs/bench-training.md are the ones `hil train` prints."""

import re
from pathlib import Path

import pytest

from hil import cli
from hil.drivers.errors import InstrumentConnectionError, InstrumentReportedError
from hil.train.rundir import RunDir

DOC = (Path(__file__).resolve().parent.parent / "docs" / "bench-training.md").read_text()


class _Run:
    """What the CLI reads of the run it is writing: its path and its last checkpoint."""
    path = "runs/…"

    def load_checkpoint(self, tag):
        return {"epoch": 1 if tag == "last" else 0}

    checkpoint_epoch = RunDir.checkpoint_epoch  # read through load_checkpoint above


def _quoted(start: str) -> str:
    found = re.search(r"`(" + re.escape(start) + r"[^`]*)`", DOC)
    assert found, f"docs/bench-training.md quotes no line starting {start!r}"
    return found.group(1)


def _matches(quote: str, printed: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, quote.split("…"))), printed) is not None


@pytest.fixture
def run_being_written(monkeypatch):
    monkeypatch.setitem(cli._RUN, "run", _Run())


def test_instrument_fault_line(run_being_written):
    exc = InstrumentReportedError(-222, "Data out of range", instrument="smu1")
    exc.unverified = []
    printed = f"hil train: {cli._instrument_message(exc)}"
    quote = _quoted("hil train: instrument fault:")
    assert _matches(quote, printed), (quote, printed)


def test_cannot_open_the_bench_line():
    exc = InstrumentConnectionError("could not connect", instrument="smu1")
    exc.phase = "open"
    quote = _quoted("hil train: cannot open the bench:")
    assert _matches(quote, f"hil train: {cli._instrument_message(exc)}")


def test_interrupt_line(run_being_written):
    exc = KeyboardInterrupt()
    exc.unverified = []
    quote = _quoted("hil: interrupted;")
    assert _matches(quote.replace("epoch 3", "epoch 1"), f"hil: {cli._interrupt_message(exc)}")
