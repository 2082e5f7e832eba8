"""The real drivers through real pyvisa-py against the emulated bench (scpi-xor, one world).

Assertions use what reached the instruments (transcripts, emulator state) and the world as the
physics oracle.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from hil.bench.instruments import make_driver

pytestmark = pytest.mark.hil_bench("scpi-xor")


def _no_sleep(_s: float) -> None:
    return None


@pytest.fixture
def drivers(emulated_bench, visa_resource_managers):
    """Connected drivers of every instrument; safe shutdown and close at teardown."""
    bench = emulated_bench.loopback_bench
    made = {}
    for name, spec in bench.instruments.items():
        drv = make_driver(spec, visa_resource_managers, sleep=_no_sleep)
        drv.connect()
        made[name] = drv
    yield made
    for drv in made.values():
        drv.safe_shutdown()
        drv.close()


def _on(drv, *channels):
    for ch in channels:
        drv.output(ch, True)


def test_a_level_on_one_smu_changes_what_the_daq_and_other_smus_read(emulated_bench, drivers):
    world = emulated_bench.world
    _on(drivers["smu_y01"], "1", "2")
    _on(drivers["smu_y2"], "")
    _on(drivers["smu_x"], "1")
    before_daq = drivers["daq"].read_scan()
    before_y = drivers["smu_y2"].measure_current("").value
    drivers["smu_x"].set_voltage("1", 1.0)          # a different instrument ...
    after_daq = drivers["daq"].read_scan()          # ... changes what the DAQ reads next
    after_y = drivers["smu_y2"].measure_current("").value
    truth = np.array([world.line_voltage(f"h{k}") for k in range(8)])
    assert np.max(np.abs(after_daq - before_daq)) > 0.05
    # the DAQ's 10 MOhm input loads each node slightly while it is read: 1e-3 relative
    np.testing.assert_allclose(after_daq, truth, rtol=2e-3, atol=2e-5)
    assert abs(after_y - before_y) > 1e-6
    assert after_y == pytest.approx(world.port_current("smu_y2"), rel=1e-3, abs=5e-9)


def test_compliance_clamps_and_is_reported(emulated_bench, drivers):
    smu = drivers["smu_y2"]
    _on(drivers["smu_x"], "1", "2")
    drivers["smu_x"].set_voltage("1", 1.0)
    drivers["smu_x"].set_voltage("2", 1.0)
    _on(smu, "")
    smu.set_current_limit("", 1e-6)
    reading = smu.measure_current("")
    assert reading.compliance
    assert abs(reading.value) == pytest.approx(1e-6, rel=1e-2)
    assert smu.compliance_tripped("")
    assert emulated_bench.world.clamped("smu_y2")
    # the clamped port no longer holds 0 V: the network pulls it
    assert abs(emulated_bench.world.line_voltage("y2")) > 1e-3


def test_b2900_list_sweep_fills_the_buffer_with_world_values(emulated_bench, drivers):
    smu = drivers["smu_y01"]
    _on(drivers["smu_x"], "1")
    drivers["smu_x"].set_voltage("1", 0.5)
    _on(smu, "1", "2")
    levels = np.array([0.0, 0.05, 0.1, 0.05, 0.0])
    result = smu.list_sweep({"1": levels, "2": -levels}, 0.0)
    assert result.i_meas.shape == (5, 2)
    assert np.all(np.isfinite(result.i_meas))
    np.testing.assert_allclose(result.v_source[:, 0], levels, atol=1e-12)
    # oracle: the world at each point's levels (sweep leaves the last point, 0 V, programmed)
    world = emulated_bench.world
    expected = []
    for v in levels:
        world.set_source("smu_y01.1", "voltage", v, 1e-3)
        world.set_source("smu_y01.2", "voltage", -v, 1e-3)
        expected.append([world.port_current("smu_y01.1"), world.port_current("smu_y01.2")])
    np.testing.assert_allclose(result.i_meas, np.array(expected), rtol=1e-3, atol=5e-9)
    received = emulated_bench.emulators["smu_y01"].transcript.received()
    assert ":INIT (@1,2)" in received and any(r.startswith(":FETC:ARR? (@1,2)") for r in received)


def test_2450_list_sweep_and_buffer(emulated_bench, drivers):
    smu = drivers["smu_y2"]
    _on(drivers["smu_x"], "1")
    drivers["smu_x"].set_voltage("1", 0.5)
    _on(smu, "")
    levels = np.linspace(0.0, 0.1, 3).tolist() + [0.05, 0.0]
    result = smu.list_sweep({"": np.array(levels)}, 0.0)
    np.testing.assert_allclose(result.v_source[:, 0], levels, atol=1e-9)
    emu = emulated_bench.emulators["smu_y2"]
    assert len(emu.buffers["defbuffer1"]) == len(levels)
    assert all(np.isfinite(result.i_meas[:, 0]))


def test_b2900_output_protection_switches_off_at_compliance(emulated_bench, drivers):
    smu = drivers["smu_y01"]
    emu = emulated_bench.emulators["smu_y01"]
    _on(smu, "1", "2")
    smu.set_current_limit("1", 1e-5)
    assert smu.output_enabled("1")
    # another instrument pushes y0 over the limit: the next measurement trips the protection
    _on(drivers["smu_x"], "1", "2")
    drivers["smu_x"].set_voltage("1", 1.0)
    drivers["smu_x"].set_voltage("2", 1.0)
    from hil.drivers.errors import OutputTrippedError

    with pytest.raises(OutputTrippedError) as info:  # the driver reads the output back and reports the trip
        smu.measure_current("1")
    assert abs(info.value.value) == pytest.approx(1e-5, rel=1e-2)
    assert not smu.output_enabled("1")
    states = emu.output_history("1")
    assert states[-1]["output_on"] is False and states[-1]["mode"] == "open"
    # a limit programmed below the present current trips it at once (before any measurement)
    assert smu.output_enabled("2")
    smu.set_current_limit("2", 1e-6)
    assert not smu.output_enabled("2")
    events = [e.text for e in emu.transcript.entries("event") if "protection" in e.text]
    assert len(events) == 2


def test_error_codes_through_pyvisa(emulated_bench, visa_resource_managers):
    rm = visa_resource_managers.get("@py")
    res = rm.open_resource(emulated_bench.resources["smu_y01"], read_termination="\n", write_termination="\n",
                           timeout=2000)
    try:
        for command in (":SOUR1:VOLT 500", ":SOUR:FOO 1", ":SOUR1:VOLT abc", ":SOUR3:VOLT 0", ":SOUR1:VOLT",
                        ":SENS1:CURR:PROT 1,2", ":SOUR1:VOLT:MODE LIST", ":INIT (@1)"):
            res.write(command)
        codes = []
        while True:
            code = int(res.query(":SYST:ERR?").split(",")[0])
            if code == 0:
                break
            codes.append(code)
        assert codes == [-222, -113, -104, -114, -109, -108, -221]
    finally:
        res.close()


def test_state_persists_across_connections(emulated_bench, visa_resource_managers):
    rm = visa_resource_managers.get("@py")
    resource = emulated_bench.resources["daq"]
    first = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=2000)
    first.write("ROUT:SCAN (@101:103)")
    first.write("BOGUS")
    assert first.query("*OPC?") == "1"    # both commands executed before this connection hangs up
    first.close()
    second = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=2000)
    try:
        assert second.query("ROUT:SCAN?") == "(@101,102,103)"
        assert second.query("SYST:ERR?").startswith("-113")
    finally:
        second.close()


def test_virtual_clock_advances_by_modelled_durations(emulated_bench, drivers):
    clock = emulated_bench.clock
    daq = drivers["daq"]
    t0 = clock.now_s
    daq.read_scan()
    # 8 channels x (2.2 ms relay, the figure hil estimate uses + 2 ms channel delay + 1 PLC at 50 Hz, autozero off)
    assert clock.now_s - t0 == pytest.approx(8 * (0.0022 + 0.002 + 0.02), rel=1e-9)
    smu = drivers["smu_y01"]
    _on(smu, "1")
    t1 = clock.now_s
    smu.list_sweep({"1": np.zeros(10)}, 0.0)
    # 10 points x (1 ms acquire delay + 1 PLC + 50 us trigger overhead)
    assert clock.now_s - t1 == pytest.approx(10 * (0.001 + 0.02 + 50e-6), rel=1e-9)
    # both channels of the B2902A integrate at the same time: a two-channel sweep takes as long
    _on(smu, "2")
    t2 = clock.now_s
    smu.list_sweep({"1": np.zeros(10), "2": np.zeros(10)}, 0.0)
    assert clock.now_s - t2 == pytest.approx(10 * (0.001 + 0.02 + 50e-6), rel=1e-9)


def test_realtime_mode_sleeps_the_modelled_time(emulated_bench_factory, visa_resource_managers):
    bench = emulated_bench_factory("scpi-xor", time_mode="realtime", time_scale=0.5)
    rm = visa_resource_managers.get("@py")
    res = rm.open_resource(bench.resources["daq"], read_termination="\n", write_termination="\n", timeout=5000)
    try:
        res.write("CONF:VOLT:DC 10,DEF,(@101:104)")
        res.write("VOLT:DC:NPLC 1,(@101:104)")
        res.write("ZERO:AUTO OFF,(@101:104)")
        t = time.monotonic()
        assert len(res.query("READ?").split(",")) == 4
        wall = time.monotonic() - t
        modelled = 4 * (0.004 + 0.002 + 0.02)
        assert wall >= 0.5 * modelled * 0.95
    finally:
        res.close()


def test_safe_shutdown_leaves_every_output_off_at_zero_volts(emulated_bench, visa_resource_managers):
    bench = emulated_bench.loopback_bench
    drivers = {}
    for name, spec in bench.instruments.items():
        drv = make_driver(spec, visa_resource_managers, sleep=_no_sleep)
        drv.connect()
        drivers[name] = drv
    for name in ("smu_x", "smu_xn", "smu_rail"):
        for ch in ("1", "2"):
            drivers[name].output(ch, True)
            drivers[name].set_voltage(ch, 0.75)
    assert not emulated_bench.all_outputs_safe()
    for drv in drivers.values():
        drv.safe_shutdown()
        drv.close()
    assert emulated_bench.all_outputs_safe()
    # every ramp step that reached the instrument respected max_step_v (0.25 V)
    for name in ("smu_x", "smu_xn", "smu_rail"):
        for ch in ("1", "2"):
            levels = [s["level_v"] for s in emulated_bench.emulators[name].output_history(ch) if s["output_on"]]
            assert max(abs(b - a) for a, b in zip(levels, levels[1:])) <= 0.25 + 1e-12
