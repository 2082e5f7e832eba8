"""Ctrl-C or SIGTERM while `hil` is still loading: one line, exit 130, no traceback, nothing created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The child raises the signal at itself exactly when the named module starts loading.
CHILD = r"""
import os, signal, sys
import hil.__main__ as entry

MODULE, SIGNAL, RUNS = sys.argv[1:4]

class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), getattr(signal, SIGNAL))
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["hil", "train", "sim-xor", "--set", "train.epochs=1", "-q", "--runs-dir", RUNS]
sys.exit(entry.run())
"""


@pytest.mark.parametrize("module, sig", [("hil.cli", "SIGINT"), ("scipy.sparse", "SIGINT"),
                                         ("hil.emulate.cli", "SIGTERM")])
def test_signal_while_loading_is_one_line_and_exit_130(module, sig, tmp_path):
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-c", CHILD, module, sig, str(runs)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "hil: interrupted while starting; nothing was done"
    assert not runs.exists()


def test_console_script_points_at_the_guarded_entry():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["hil"] == "hil.__main__:run"
