"""`hil train --resume` stays bit-exact with device noise on (the board state is checkpointed)."""

from __future__ import annotations

import numpy as np
import pytest

from hil.cli import main
from hil.train.rundir import RunDir

NOISY = ("board.devices={preset: rram-crossbar, seed: 5, wires: {enabled: false}}")


def _metrics(run_dir):
    return [(r["epoch"], r["train_loss"], r["test_acc"]) for r in RunDir(run_dir).read_metrics()]


COUPLED = ("board.circuit.conductances.g_hh={random: {degree: 2, low: 1.0e-6, high: 1.0e-5}}",
           "train.trainable=[g_in, g_hh, g_out]")


@pytest.mark.parametrize("coupled", [False, True], ids=["uncoupled", "coupled"])
def test_resume_with_noise_is_bit_exact(tmp_path, coupled):
    # coupled: the sparse coupling, the compiled PDAS–CG solve and the board's solver
    # reprogrammed in place (not rebuilt) must resume bit for bit too
    common = ["-q", "--set", NOISY, "--set", "output.plots=false"]
    for item in COUPLED if coupled else ():
        common += ["--set", item]
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path / "full"), "--set", "train.epochs=4"] + common) == 0
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path / "cut"), "--set", "train.epochs=2"] + common) == 0
    cut = next((tmp_path / "cut").iterdir())
    assert main(["train", "--resume", str(cut), "-q", "--set", "train.epochs=4"]) == 0
    full = next((tmp_path / "full").iterdir())
    assert _metrics(cut) == _metrics(full)
    a = np.load(full / "checkpoints" / "last.npz")
    b = np.load(cut / "checkpoints" / "last.npz")
    np.testing.assert_array_equal(a["board_g_dev_s"], b["board_g_dev_s"])
    assert str(a["board_rng_state"]) == str(b["board_rng_state"])


def test_bad_device_config_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set",
                 "board.devices={preset: nope}"]) == 2
    assert "board.devices.preset" in capsys.readouterr().err
