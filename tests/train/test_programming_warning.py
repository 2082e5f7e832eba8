"""A bench epoch whose write-verify left devices unconverged or stuck says so on its console line:
a user watching a run whose devices do not follow the optimiser sees it at once, not only in
metrics.csv after the run."""

import numpy as np

import hil.api as hil
from hil.board import ProgramResult
from hil.train.data import load_dataset
from hil.train.loop import Trainer
from hil.train.rundir import RunDir
from hil.train.settings import parse_settings


class PartlyStuckBench:
    """A simulated board that reports programming evidence like a bench: of the devices each step
    moves, the first ``stuck`` keep their conductance."""

    def __init__(self, inner, stuck: int):
        self.inner, self.stuck = inner, stuck
        self.topology, self.conductance_bounds = inner.topology, inner.conductance_bounds
        self.held = np.array(inner.read_conductances(), dtype=float)  # a copy: what the devices hold, S

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def bench_time_s(self) -> float:
        return 0.0

    def program(self, target, rel_tol=None):
        target = np.array(target, dtype=float)  # a copy: the simulated board may share its array
        stuck = np.zeros(target.size, bool)
        stuck[np.flatnonzero(target != self.held)[:self.stuck]] = True
        wanted = np.where(stuck, self.held, target)
        achieved = np.array(self.inner.program(wanted, rel_tol=rel_tol), dtype=float)
        self.held = achieved.copy()
        return ProgramResult(target, achieved, stuck.astype(int) * 5, ~stuck, stuck, 0.02)


def _fit(tmp_path, stuck: int, capsys) -> str:
    cfg = hil.load_config("sim-xor", overrides=["train.epochs=2", "output.plots=false"])
    settings = parse_settings(cfg, "sim-xor")
    board = PartlyStuckBench(hil.build_board(cfg), stuck)
    Trainer(board, settings, load_dataset("xor"), RunDir.create(tmp_path, f"s{stuck}"), progress="lines").fit()
    return capsys.readouterr().out


def test_epoch_line_names_unconverged_and_stuck_devices(tmp_path, capsys):
    lines = [l for l in _fit(tmp_path, 3, capsys).splitlines() if l.startswith("epoch")]
    assert len(lines) == 2
    for line in lines:
        assert "programming: " in line and " stuck (metrics.csv" in line, line
        assert int(line.split("programming: ")[1].split()[0]) > 0
    clean = [l for l in _fit(tmp_path, 0, capsys).splitlines() if l.startswith("epoch")]
    assert len(clean) == 2 and not any("programming" in l for l in clean)  # a healthy bench: the usual line
