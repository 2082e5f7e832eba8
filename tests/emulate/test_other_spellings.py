"""Another well-known open-source driver (PyMeasure) spells the same commands differently but
legally; the emulators must behave identically. Each test runs the real hil driver on one bench
and PyMeasure's command strings (Keithley2450, KeysightB2900A channel, Agilent34970A, plus the
long forms of the same headers) on a second bench with the same seed, then compares instrument
state and every reading.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hil.bench.instruments import make_driver


def _no_sleep(_s: float) -> None:
    return None


def _session(bench, managers, name):
    return managers.get("@py").open_resource(bench.resources[name], read_termination="\n",
                                             write_termination="\n", timeout=3000)


def _run(res, commands):
    replies = []
    for c in commands:
        if "?" in c.split(" ")[0] or c.endswith("?"):
            replies.append(res.query(c))
        else:
            res.write(c)
    return replies


def _state(channel) -> dict:
    fields = ("func", "level_v", "v_range", "v_autorange", "i_limit_a", "i_range_a", "i_autorange", "output_on",
              "off_mode", "nplc", "autozero", "source_delay_s", "voltage_mode", "list_v", "protection")
    d = dataclasses.asdict(channel)
    return {k: d[k] for k in fields}


def test_keithley2450_pymeasure_spellings(emulated_bench_factory, visa_resource_managers):
    a = emulated_bench_factory("scpi-xor", seed=5)
    b = emulated_bench_factory("scpi-xor", seed=5)
    drv = make_driver(a.loopback_bench.instruments["smu_y2"], visa_resource_managers, sleep=_no_sleep)
    drv.connect()
    drv.output("", True)
    drv.set_voltage("", 0.1)
    spot = drv.measure_current("")
    levels = np.array([0.1, 0.05, 0.0, 0.05, 0.1])
    sweep = drv.list_sweep({"": levels}, 0.0)

    res = _session(b, visa_resource_managers, "smu_y2")
    try:
        _run(res, [
            ":SOUR:FUNC VOLT",
            ":SOUR:VOLT:RANG:AUTO 0;:SOUR:VOLT:RANG 0.5",
            ":SOUR:VOLT:ILIM 0.001",
            ":SOUR:VOLT:DEL 0.001",
            ":SOUR:VOLT:READ:BACK 1",
            ":SENS:FUNC 'CURR';:SENS:CURR:NPLC 1.000000;",
            ":SENS:CURR:RANG:AUTO 0;:SENS:CURR:RANG 0.001",
            ":SENS:CURR:AZER 0",
            ":SENS:CURR:RSENSE 0",
            ":SENS:COUNT 1",
            ":OUTP:VOLT:SMOD ZERO",
            "OUTPUT ON",
            ":SOUR:VOLT:LEV 0.1",
        ])
        current = float(_run(res, [":READ?"])[0])
        _run(res, [
            ':TRACe:CLEar "defbuffer1"',
            ":SOUR:LIST:VOLT " + ", ".join(f"{v:.3g}" for v in levels),
            ":SOUR:SWE:VOLT:LIST 1, 0, 1",
            ":INITiate",
            "*WAI",
        ])
        end = int(_run(res, [':TRACe:ACTual:END? "defbuffer1"'])[0])
        data = np.array(_run(res, [f':TRAce:DATA? 1, {end}, "defbuffer1", RELative, SOURce, READing'])[0]
                        .split(","), dtype=float).reshape(-1, 3)
        assert _run(res, ["OUTPUT?", ":SOUR:VOLT:ILIM?", ":SENS:CURR:NPLC?"]) == ["1", "1.000000E-03", "1.000000E+00"]
    finally:
        res.close()
    assert current == spot.value
    np.testing.assert_array_equal(data[:, 1], sweep.v_source[:, 0])
    np.testing.assert_array_equal(data[:, 2], sweep.i_meas[:, 0])
    assert _state(a.emulators["smu_y2"].ch) == _state(b.emulators["smu_y2"].ch)
    for bench in (a, b):
        assert bench.emulators["smu_y2"].errors.entries() == []
    drv.safe_shutdown()
    drv.close()


def test_keysight_b2900_pymeasure_spellings(emulated_bench_factory, visa_resource_managers):
    a = emulated_bench_factory("scpi-xor", seed=7)
    b = emulated_bench_factory("scpi-xor", seed=7)
    drv = make_driver(a.loopback_bench.instruments["smu_y01"], visa_resource_managers, sleep=_no_sleep)
    drv.connect()
    drv.output("1", True)
    drv.set_voltage("1", 0.1)
    spot = drv.measure_current("1")
    levels = np.array([0.1, 0.05, 0.0, 0.05, 0.1])
    sweep = drv.list_sweep({"1": levels}, 0.0)

    res = _session(b, visa_resource_managers, "smu_y01")
    try:
        _run(res, [
            ":FORMat:ELEMents:SENSe CURRent,STATus,SOURce",
            ":outp1:on:auto 0", ":outp1:off:auto 0", ":outp2:on:auto 0", ":outp2:off:auto 0",
            ":sour1:func:mode VOLT",
            ":source1:voltage:mode fixed",
            ":source1:voltage:range:auto 0",
            ":source1:voltage:range 0.5",
            ':sense1:function:on "CURR"',
            ":sens1:curr:range:auto 0.0",
            ":sens1:curr:range 0.001",
            ":sens1:curr:nplc 1",
            ":sens1:curr:prot 0.001",
            ":sense1:remote off",
            ":output1:off:mode zero",
            ":outp1:prot 1.0",
            ":trig1:sour AINT",
            ":trigger1:all:count 1",
            ":trig1:tran:del 0",
            ":trig1:acq:del 0.001",
            # channel 2 as the driver configures it (it holds y1 at 0 V while off)
            ":SOURce2:FUNCtion:MODE VOLTage", ":SOURce2:VOLTage:RANGe:AUTO OFF", ":SOURce2:VOLTage:RANGe 0.5",
            ":SENSe2:CURRent:DC:RANGe:AUTO OFF", ":SENSe2:CURRent:DC:RANGe:UPPer 1e-3",
            ":SENSe2:CURRent:DC:NPLCycles 1", ":SENSe2:CURRent:DC:PROTection:LEVel 1E-3", ":OUTPut2:OFF:MODE ZERO",
            ":OUTPut2:PROTection:STATe ON", ":TRIGger2:ACQuire:DELay 1e-3",
            ":outp1 1.0",
            ":sour1:volt 0.1",
        ])
        current = float(_run(res, [":meas:curr? (@1)"])[0])
        _run(res, [
            ":source1:list:voltage " + ",".join(f"{v:g}" for v in levels),
            ":trig1:tran:coun 5", ":trig1:acq:coun 5",
            ":trigger1:acquire:delay 0.001",
            ":source1:voltage:mode list",
            ":INIT (@1)",
        ])
        assert _run(res, [":idle1:all?"]) == ["1"]
        old = _run(res, [":form?"])[0]
        res.write(":form REAL,64")
        currents = np.array(res.query_binary_values(":fetc:arr:curr? (@1)", datatype="d", is_big_endian=True))
        res.write(f":form {old}")
        _run(res, [":source1:voltage:mode fix", ":trig1:coun 1", ":trig1:acq:del 0.001"])
        assert _run(res, [":outp1?", ":sour1:volt?", "SYST:ERR?"]) == ["1", "+1.000000E-01", '+0,"No error"']
    finally:
        res.close()
    assert current == spot.value
    np.testing.assert_array_equal(currents, sweep.i_meas[:, 0])
    for ch in ("1", "2"):
        assert _state(a.emulators["smu_y01"].chans[ch]) == _state(b.emulators["smu_y01"].chans[ch])
    drv.safe_shutdown()
    drv.close()


def test_34970a_pymeasure_spellings(emulated_bench_factory, visa_resource_managers):
    a = emulated_bench_factory("scpi-xor", seed=9)
    b = emulated_bench_factory("scpi-xor", seed=9)
    for bench in (a, b):   # something to measure: one input at 0.5 V
        bench.world.set_source("smu_x.1", "voltage", 0.5, 1e-3)
    drv = make_driver(a.loopback_bench.instruments["daq"], visa_resource_managers)
    drv.connect()
    scan = drv.read_scan()
    res = _session(b, visa_resource_managers, "daq")
    try:
        _run(res, [
            "FORMat:READing:CHANnel OFF", "FORMat:READing:TIME OFF",
            "TRIGger:SOURce IMMediate", "TRIG:COUNT 1",
            "CONFigure:VOLTage:DC 10,DEFault,(@101:108)",
            "SENSe:VOLTage:DC:NPLCycles 1,(@101:108)",
            "SENSe:ZERO:AUTO OFF,(@101:108)",
            "INPut:IMPedance:AUTO ON,(@101:108)",        # the driver selects > 10 GOhm as well
            "ROUTe:CHANnel:DELay 0.002,(@101:108)",
            "ROUT:SCAN (@101:108)",                      # PyMeasure Agilent34970A.set_scan
            "INITiate",
        ])
        values = np.array(_run(res, ["FETCh?"])[0].split(","), dtype=float)
        assert _run(res, ["ROUT:SCAN?", "DATA:POINts?", "SYST:ERR?"]) == [
            "(@101,102,103,104,105,106,107,108)", "8", '+0,"No error"']
    finally:
        res.close()
    np.testing.assert_array_equal(values, scan)
    assert a.emulators["daq"].chans == b.emulators["daq"].chans
    assert a.clock.now_s == pytest.approx(b.clock.now_s)
    drv.close()
