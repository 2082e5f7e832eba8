"""The shipped robustness scenario ``configs/sim-digits-mismatch.yaml``: it loads, its device
preset carries the four families the robustness benchmark needs, and its operating point keeps
every reading inside the current channels' range."""

from __future__ import annotations

import copy

import numpy as np

from hil.boards.factory import make_board
from hil.boards.nonideal import NonIdealBoard
from hil.config import load_yaml
from hil.devices import parse_devices
from hil.train.data import load_dataset
from hil.train.settings import parse_settings


def _settings(strip_devices: bool = False):
    raw = load_yaml("sim-digits-mismatch")
    if strip_devices:
        raw = copy.deepcopy(raw)
        raw["board"].pop("devices")
    return parse_settings(raw)


def test_mismatch_config_has_the_four_families():
    d = parse_devices(_settings().devices)
    assert d.diode_spread.enabled and d.diode_spread.v_ref_dtod > 0  # diode turn-on spread, V
    assert d.wires.enabled and d.wires.r_wire_row > 0 and d.wires.r_wire_col > 0  # wire resistance, ohm
    assert d.faults.enabled and np.isclose(d.faults.p_stuck_on + d.faults.p_stuck_off, 0.01)  # 1 % stuck
    assert d.adc_current.enabled and d.adc_current.adc_offset_std > 0  # reading offsets, A


def test_mismatch_board_builds_and_its_ideal_reference_is_the_same_network():
    s, ideal = _settings(), _settings(strip_devices=True)
    board = make_board(s.backend, s.circuit, s.g_min, s.g_max, devices=s.devices)
    ref = make_board(ideal.backend, ideal.circuit, ideal.g_min, ideal.g_max, devices=ideal.devices)
    assert isinstance(board, NonIdealBoard) and not isinstance(ref, NonIdealBoard)
    assert board.topology.n_conductances == ref.topology.n_conductances
    # same initial conductances: the ideal board's are the non-ideal board's programming targets
    np.testing.assert_array_equal(board.state_dict()["board_target_s"], ref.read_conductances())


def test_operating_point_keeps_source_currents_in_range():
    """Inputs and rails share one scale; a rail with every device at g_max (node at 0 V) and the
    measured source currents of the ideal network stay inside the ±range of the current readings."""
    s = _settings(strip_devices=True)
    raw = load_yaml("sim-digits-mismatch")
    scale = float(raw["data"]["input_scale_v"])
    rails = raw["board"]["circuit"]["inputs"]["rails"]
    assert rails["vb_p"] == scale and rails["vb_n"] == -scale
    ref = make_board(s.backend, s.circuit, s.g_min, s.g_max)
    data = load_dataset("digits", scale, 0.0)
    m = ref.measure(data.train.x[:256])
    n_hidden = ref.topology.n_hidden
    worst = n_hidden * s.g_max * scale  # A
    assert worst <= parse_devices(_settings().devices).adc_current.adc_range, worst
    assert np.max(np.abs(m.i_src)) < parse_devices(_settings().devices).adc_current.adc_range
