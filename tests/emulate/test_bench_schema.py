"""Bench-file loader: shipped benches load; every mistake is reported at once with its path."""

from __future__ import annotations

import copy

import pytest
import yaml

from hil.bench.schema import bench_root, load_bench, port_name, shipped_bench_names
from hil.config import ConfigError


def _raw(name: str) -> dict:
    return yaml.safe_load((bench_root() / f"{name}.yaml").read_text())


def test_shipped_benches_load():
    assert {"scpi-xor", "demo-xor"} <= set(shipped_bench_names())
    demo = load_bench("demo-xor")
    kinds = {spec.kind for spec in demo.instruments.values()}
    assert kinds == {"smu", "scanner", "matrix"}
    assert sum(spec.kind == "smu" for spec in demo.instruments.values()) >= 3
    assert demo.instruments["matrix"].model == "707B"
    assert demo.wiring.crosspoints[("matrix", "1A01")] == ("prog_bus", "h0")
    assert demo.wiring.connections()["smu_rail.a"] == "vb_p"
    assert port_name("smu_y2", "") == "smu_y2"
    smu = demo.instruments["smu_x"].channels["1"].smu_config()
    assert smu.limits.i_compliance_a == 1e-3 and smu.autozero == "off"


def test_every_problem_is_reported_with_its_path():
    raw = copy.deepcopy(_raw("scpi-xor"))
    b = raw["bench"]
    del b["instruments"]["smu_x"]["channels"]["1"]["max_step_v"]
    b["instruments"]["smu_x"]["channels"]["2"]["v_max"] = -2.0
    b["instruments"]["smu_y2"]["model"] = "2460"
    b["instruments"]["daq"]["channels"]["101"]["range_v"] = "ten"
    b["instruments"]["daq"]["bogus"] = 1
    b["wiring"]["sources"]["x9"] = "smu_x.1"
    b["wiring"]["hidden"]["h0"] = "daq.120"
    b["circuit"] = "no-such-config"
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = "\n".join(info.value.problems)
    for expected in (
        "bench.instruments.smu_x.channels.1.max_step_v: required",
        "bench.instruments.smu_x.channels.2.v_max: must be > v_min",
        "bench.instruments.smu_y2.model: '2460' is not a keithley2450 model",
        "bench.instruments.daq.channels.101.range_v: expected a finite number",
        "bench.instruments.daq.bogus: unknown key",
        "bench.circuit: file not found",
    ):
        assert expected in problems, problems


def test_wiring_errors_name_the_endpoint():
    raw = copy.deepcopy(_raw("scpi-xor"))
    raw["bench"]["wiring"]["sources"]["x0"] = "nobody.1"
    raw["bench"]["wiring"]["hidden"]["h0"] = "daq.120"
    raw["bench"]["wiring"]["outputs"]["y0"] = "smu_x.2"
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = "\n".join(info.value.problems)
    assert "bench.wiring.sources.x0: unknown instrument 'nobody'" in problems
    assert "bench.wiring.hidden.h0: daq has no configured channel '120'" in problems
    assert "bench.wiring.outputs.y0: smu_x.2 is already wired to x1" in problems


def test_matrix_crosspoints_are_checked():
    raw = copy.deepcopy(_raw("demo-xor"))
    raw["bench"]["wiring"]["crosspoints"] = {"2A01": ["prog_bus", "h0"], "1A02": ["h0", "h1"], "1A03": ["nowhere", "h0"]}
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = "\n".join(info.value.problems)
    assert "crosspoints.2A01: slot 2 but matrix owns slot 1" in problems
    assert "crosspoints.1A02: joins two circuit nodes" in problems
    assert "crosspoints.1A03: unknown line 'nowhere'" in problems


def test_crosspoints_off_the_matrix_or_given_twice_are_refused():
    """A row or column the matrix does not have, and one relay under two spellings (the second
    silently replaced the first): refused with their paths, as board.programming.devices are."""
    raw = copy.deepcopy(_raw("demo-xor"))
    raw["bench"]["wiring"]["crosspoints"].update({"1Z04": ["prog_bus", "h0"], "1A13": ["prog_bus", "h1"],
                                                  "1a01": ["prog_bus", "h2"]})
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = "\n".join(info.value.problems)
    assert "crosspoints.1Z04: not on matrix: crosspoint '1Z04': rows" in problems, problems
    assert "crosspoints.1A13: not on matrix: crosspoint '1A13': rows" in problems
    assert "crosspoints.1a01: the same crosspoint as '1A01' above" in problems


@pytest.mark.parametrize("spelling", ["same", "case", "board0"])
def test_two_instruments_at_one_address_are_refused(spelling):
    """Two entries with one VISA address would drive one instrument's channels as two instruments'
    (outputs wired twice, each entry's limits describing only half of what that channel does)."""
    raw = copy.deepcopy(_raw("scpi-xor"))
    inst = raw["bench"]["instruments"]
    address = inst["smu_y01"]["resource"]
    inst["smu_y2"]["resource"] = {"same": address, "case": address.lower(),
                                  "board0": address.replace("TCPIP::", "TCPIP0::", 1)}[spelling]
    with pytest.raises(ConfigError, match=r"bench\.instruments\.smu_y2\.resource: .* is the address of "
                                          r"bench\.instruments\.smu_y01 too"):
        load_bench(raw)


@pytest.mark.parametrize("resource, says", [
    ("nonsense", "'nonsense' is not a VISA resource name: unknown interface type; for example "
                 "TCPIP::192.0.2.10::5025::SOCKET"),
    ("TCPIP::192.0.2.20:5025::SOCKET", "'TCPIP::192.0.2.20:5025::SOCKET' is not a VISA resource name: the syntax "
                                       "is 'TCPIP[board]::host address::port::SOCKET'"),
    ("TCPIP::192.0.2.20::70000::SOCKET", "invalid SOCKET port '70000'"),
])
def test_a_resource_the_bench_could_not_open_is_refused_when_the_bench_is_read(resource, says):
    """What the connection would refuse (pyvisa's parser, a SOCKET port outside 1..65535) is a
    configuration problem with its path at load; before, it surfaced when the bench was opened,
    after the instruments before it were already connected.  Surrounding spaces are dropped, as
    the connection drops them."""
    raw = copy.deepcopy(_raw("scpi-xor"))
    raw["bench"]["instruments"]["daq"]["resource"] = resource
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    assert f"bench.instruments.daq.resource: {says}" in "\n".join(info.value.problems)
    raw["bench"]["instruments"]["daq"]["resource"] = " TCPIP::192.0.2.20::5025::SOCKET "
    assert load_bench(raw).instruments["daq"].resource.strip() == "TCPIP::192.0.2.20::5025::SOCKET"


def test_a_single_channel_2601b_with_channel_b_is_refused_when_read():
    """The 2601B has only smua: a channel b in the bench file is a problem with the instrument's path
    at load (it surfaced only when the bench was opened or emulated)."""
    raw = copy.deepcopy(_raw("xor-bench"))
    prog = raw["instruments"]["prog"]
    prog["channels"]["b"] = copy.deepcopy(prog["channels"]["a"])
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    assert any(p.endswith("instruments.prog: model 2601B has no channel(s) ['b'] (only a)")
               for p in info.value.problems), info.value.problems


def test_a_single_channel_instrument_wired_twice_is_named_without_a_trailing_dot():
    raw = copy.deepcopy(_raw("scpi-xor"))
    wiring = raw["bench"]["wiring"]
    wiring["outputs"]["y2"] = "smu_y3"  # smu_y3 (a 2450, channel "") already drives y3
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = "\n".join(info.value.problems)
    assert "smu_y3 is already wired to" in problems and "smu_y3. " not in problems, problems


def test_missing_power_key_and_alias():
    raw = copy.deepcopy(_raw("scpi-xor"))
    ch = raw["bench"]["instruments"]["smu_y2"]["channels"][""]
    del ch["max_power_w"]
    ch["i_limit_a"] = ch.pop("i_compliance_a")
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    assert any("smu_y2.channels..max_power_w: required" in p for p in info.value.problems)
    ch["max_power_w"] = 1e-3
    bench = load_bench(raw)
    assert bench.instruments["smu_y2"].channels[""].settings["i_compliance_a"] == 1e-3


def test_trigger_line_checked_with_its_path():
    raw = copy.deepcopy(_raw("tsp-xor-triggered"))
    inst = raw["instruments"]
    inst["smu1"]["trigger_line"] = 15
    inst["smu2"]["model"] = "2604B"
    inst["prog"] = {"driver": "keithley2450", "model": "2450", "resource": "TCPIP::192.0.2.31::5025::SOCKET",
                    "trigger_line": 7,
                    "channels": {"": {"v_min": -1.6, "v_max": 1.6, "i_compliance_a": 1e-4, "current_range_a": 1e-4,
                                      "max_step_v": 1.6, "max_slew_v_per_s": 1e5, "max_power_w": 1.6e-4}}}
    with pytest.raises(ConfigError) as exc:
        load_bench(raw)
    text = str(exc.value)
    assert "instruments.smu1.trigger_line: expected a digital I/O line 1..14" in text
    assert "instruments.smu2.trigger_line: the 2604B has no digital I/O port" in text
    assert "instruments.prog.trigger_line: expected a digital I/O line 1..6" in text
    assert load_bench("tsp-xor-triggered").instruments["smu3"].options["trigger_line"] == 1


def test_voltage_limits_beyond_the_instruments_source_range_are_refused():
    from hil.config import load_yaml

    raw = load_yaml("configs/benches/xor-bench.yaml")
    raw["instruments"]["smu1"]["channels"]["a"].update(v_min=-500.0, v_max=500.0)
    with pytest.raises(ConfigError) as exc:
        load_bench(raw)
    problems = "\n".join(exc.value.problems)
    assert "bench.instruments.smu1.channels.a.v_max: 500 V is beyond the 2602B's 40.4 V source range" in problems
    assert "bench.instruments.smu1.channels.a.v_min: -500 V is beyond" in problems


@pytest.mark.parametrize("inst, channel, key, value, top", [
    ("smu_y2", "", "i_compliance_a", 20.0, "2450's 1.05 A"),
    ("smu_rail", "a", "current_range_a", 7.0, "2602B's 3.03 A"),
    ("smu_x", "1", "i_compliance_a", 5.0, "B2902A's 3.03 A"),
])
def test_currents_beyond_the_models_source_range_are_refused_when_read(inst, channel, key, value, top):
    """A compliance or current range the instrument cannot source is a typo: refused with its path
    when the file is read (it failed only at connect, after other instruments were connected)."""
    raw = copy.deepcopy(_raw("demo-xor"))
    ch = raw["bench"]["instruments"][inst]["channels"][channel]
    ch[key] = value
    if key == "i_compliance_a":
        ch.pop("current_range_a", None)
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = "\n".join(info.value.problems)
    assert f"bench.instruments.{inst}.channels.{channel}.{key}: {value:g} A is beyond the {top} source range" in problems


def test_a_1_5_a_2600b_model_is_held_to_its_own_range():
    from hil.drivers.keithley2600 import Keithley2600

    assert Keithley2600.max_source_a_of("2636B") == 1.515 and Keithley2600.max_source_a_of("2602B") == 3.03


def test_source_range_is_the_named_models_not_the_familys():
    """A 2602B sources at most 40.4 V (40 V range + 1 %): 100 V limits on it are refused, on a 2612B
    (200 V range) they are accepted."""
    from hil.config import load_yaml

    raw = load_yaml("configs/benches/xor-bench.yaml")
    raw["instruments"]["smu1"]["channels"]["a"].update(v_min=-100.0, v_max=100.0, max_power_w=None)
    with pytest.raises(ConfigError) as exc:
        load_bench(copy.deepcopy(raw))
    assert "bench.instruments.smu1.channels.a.v_max: 100 V is beyond the 2602B's 40.4 V source range" in \
        "\n".join(exc.value.problems)
    wide = copy.deepcopy(raw)
    wide["instruments"]["smu1"]["channels"]["a"]["voltage_range_v"] = 60.0
    wide["instruments"]["smu1"]["channels"]["a"].update(v_min=-1.0, v_max=1.0)
    with pytest.raises(ConfigError, match=r"smu1\.channels\.a\.voltage_range_v: 60 V is beyond the 2602B's 40\.4 V"):
        load_bench(wide)
    raw["instruments"]["smu1"]["model"] = "2612B"
    assert load_bench(raw).instruments["smu1"].channels["a"].settings["v_max"] == 100.0


def test_settings_the_instruments_cannot_take_are_refused_with_their_path():
    """Bounds that exclude 0 V (outputs start and end there), a source range below the bounds, an
    NPLC outside the model's, a scanner range or NPLC the DAQ does not have, a negative seed: each
    is one line with its dotted path, never a failure after the bench was opened."""
    raw = _raw("scpi-xor")
    b = raw["bench"]
    b["seed"] = -1
    for name, channel, change in (("smu_x", "1", {"v_min": 0.5}), ("smu_xn", "1", {"v_min": -1.0, "v_max": -0.5}),
                                  ("smu_rail", "1", {"voltage_range_v": 0.2}), ("smu_y2", "", {"nplc": 50.0})):
        b["instruments"][name]["channels"][channel] = {**b["instruments"][name]["channels"][channel], **change}
    b["instruments"]["daq"]["channels"]["101"] = {**b["instruments"]["daq"]["channels"]["101"], "range_v": 7.0,
                                                  "nplc": 5.0, "delay_s": 61.0}
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = "\n".join(info.value.problems)
    for expected in ("bench.seed: must be an integer >= 0",
                     "bench.instruments.smu_x.channels.1.v_min: must be <= 0 V",
                     "bench.instruments.smu_xn.channels.1.v_max: must be >= 0 V",
                     "bench.instruments.smu_rail.channels.1.voltage_range_v: 0.2 V cannot source",
                     "bench.instruments.smu_y2.channels..nplc: 50 is outside the 2450's 0.01..10 PLC",
                     "bench.instruments.daq.channels.101.range_v: 7 V is not a DC range",
                     "bench.instruments.daq.channels.101.nplc: 5 is not an integration time",
                     "bench.instruments.daq.channels.101.delay_s: must be <= 60 s"):
        assert expected in problems, problems
    assert len(info.value.problems) == 8, problems  # the other channels (shared YAML anchors) stay valid


def test_settings_the_driver_refuses_are_configuration_errors_of_the_bench_file():
    """A B2900 channel with autozero other than off (the bench timing's default is 'once') and
    scanner channels whose settings disagree used to load, then fail when the bench was opened."""
    raw = _raw("scpi-xor")
    raw["bench"]["timing"]["autozero"] = "once"
    daq = raw["bench"]["instruments"]["daq"]["channels"]
    daq["102"] = {**daq["102"], "nplc": 10.0}
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = info.value.problems
    assert ("bench.instruments.smu_x: channel '1': autozero 'once': no verified B2900 autozero command; use 'off'"
            in problems), problems
    assert ("bench.instruments.daq: every scanned channel needs the same range_v, nplc, autozero and delay_s"
            in problems), problems
    assert not any(p.startswith("bench.instruments.smu_y2") for p in problems)  # a 2450 takes autozero once


def test_instrument_options_of_the_wrong_shape_are_configuration_errors():
    """Options the drivers, emulators and timing model read: a wrong shape used to crash when the
    bench was opened (TypeError/ValueError: an internal error) or pass unnoticed (a negative relay
    time, require_interlock: 'no' read as true)."""
    raw = yaml.safe_load((bench_root() / "xor-bench.yaml").read_text())
    inst = raw["instruments"]
    inst["daq"].update(slots={1: "x"}, relay_s=-1)
    inst["matrix"].update(rows=5, relay_time_s="fast")
    inst["smu1"].update(require_interlock="no")
    with pytest.raises(ConfigError) as info:
        load_bench(raw)
    problems = "\n".join(info.value.problems)
    for key in ("daq.slots", "daq.relay_s", "matrix.rows", "matrix.relay_time_s", "smu1.require_interlock"):
        assert f"bench.instruments.{key}: expected" in problems, problems
