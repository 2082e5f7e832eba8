"""The robustness benchmark's ex-situ transfer as issue 11 defines it (``benchmarks/robustness.py``):
write-verify onto the non-ideal board and nothing else — the readings keep their offsets."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np

from hil.config import load_yaml

ROOT = Path(__file__).resolve().parents[2]


def _robustness():
    spec = importlib.util.spec_from_file_location("robustness_bench", ROOT / "benchmarks" / "robustness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _small_mismatch(offset_a: float) -> dict:
    raw = copy.deepcopy(load_yaml("sim-digits-mismatch"))
    c = raw["board"]["circuit"]
    c["inputs"]["count"], c["hidden"]["count"], c["outputs"]["count"] = 6, 5, 4
    raw["board"]["devices"]["faults"] = {"enabled": False}
    raw["board"]["devices"]["adc_current"]["adc_offset_std"] = offset_a
    return raw


def test_write_verify_only_transfer_sets_the_devices_and_leaves_the_reading_offsets():
    bench = _robustness()
    raw = _small_mismatch(5e-6)
    ideal = copy.deepcopy(raw)
    ideal["board"].pop("devices")
    target = bench.build(bench.settings_for(ideal)).read_conductances() * 0.5 + 2e-5
    board = bench.ex_situ_board(raw, target)
    assert np.max(np.abs(board.inner.true_conductances() / target - 1)) < 0.02  # write-verify to 2 %
    zero = board.measure_sources(np.zeros((4, board.topology.n_sources))).y  # sources at 0 V: only offsets
    assert np.all(np.abs(zero.mean(axis=0)) > 1e-7)  # offsets of µA, not corrected (noise 30 nA)
    quiet = bench.ex_situ_board(_small_mismatch(0.0), target)
    assert np.all(np.abs(quiet.measure_sources(np.zeros((4, quiet.topology.n_sources))).y.mean(axis=0)) < 1e-6)
