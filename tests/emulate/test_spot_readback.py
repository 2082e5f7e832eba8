"""A spot reading whose source level is implausible is not used (neither as a level nor for the
power check): the output is switched off at once and ``ImplausibleReadbackError`` raised.

Proven from the emulated instrument's own state (127.0.0.1, short timeouts).
"""

from __future__ import annotations

import pytest

from hil.bench.instruments import make_driver
from hil.drivers.errors import ImplausibleReadbackError, PowerLimitError
from hil.drivers.transport import ResourceManagers
from hil.emulate.bench import EmulatedBench
from tests.emulate.test_bench_model_channels import bench_mapping


@pytest.mark.parametrize("reported_v", [7.5, 1.0e30, float("nan")])
def test_spot_reading_with_an_implausible_source_level_switches_off(reported_v):
    mapping = bench_mapping("2602B")
    mapping["bench"]["instruments"]["smu"]["channels"]["a"]["max_power_w"] = 1.0e-3
    with EmulatedBench(mapping) as bench, ResourceManagers() as rms:
        emu = bench.emulators["smu"]
        with make_driver(bench.loopback_bench.instruments["smu"], rms) as smu:
            smu.output("a", True)
            smu.set_voltage("a", 0.5)
            smu.measure_current("a")  # a plausible reading is used
            emu.faults.misreport_level(reported_v, channel="a", count=None)
            with pytest.raises(ImplausibleReadbackError) as caught:
                smu.measure_current("a")
            assert not isinstance(caught.value, PowerLimitError)
            assert caught.value.output_off_verified
            bench.settle()
            state = bench.output_states()["smu.a"]
            assert not state["output_on"] and state["level_v"] == 0.0
            levels = [s["level_v"] for s in emu.output_history("a") if s["output_on"]]
            assert max(abs(v) for v in levels) <= 0.5  # no level beyond what the driver set was written
            emu.faults.clear()
        assert bench.all_outputs_safe()


def test_spot_current_far_beyond_the_measurement_range_is_not_used():
    """1e30 A from a 1 mA range is no measurement (over range reads +9.9E37): the channel is made
    safe and the reading refused, instead of a PowerLimitError computed from it."""
    from hil.drivers.errors import InstrumentProtocolError

    mapping = bench_mapping("2602B")
    with EmulatedBench(mapping) as bench, ResourceManagers() as rms:
        emu = bench.emulators["smu"]
        with make_driver(bench.loopback_bench.instruments["smu"], rms) as smu:
            smu.output("a", True)
            smu.set_voltage("a", 0.5)
            emu.faults.garbage_reply(match=r"measure", data=b"1.0e30\t0.5\tfalse\n")
            with pytest.raises(InstrumentProtocolError, match="implausible current") as caught:
                smu.measure_current("a")
            assert not isinstance(caught.value, PowerLimitError)
            bench.settle()
            state = bench.output_states()["smu.a"]
            assert not state["output_on"] and state["level_v"] == 0.0
        assert bench.all_outputs_safe()


def test_sweep_source_values_outside_the_limits_are_not_used():
    """A sweep buffer whose source values read 7.5 V on a ±1 V channel: refused (channel made safe),
    not fed to the power rule or returned."""
    mapping = bench_mapping("2602B")
    with EmulatedBench(mapping) as bench, ResourceManagers() as rms:
        emu = bench.emulators["smu"]
        with make_driver(bench.loopback_bench.instruments["smu"], rms) as smu:
            smu.output("a", True)
            emu.faults.garbage_reply(match=r"printbuffer", data=b"7.50000e+00, 1.00000e-06, 0.00000e+00\n")
            with pytest.raises(ImplausibleReadbackError):
                smu.list_sweep({"a": [0.25]}, 0.0)
            bench.settle()
            state = bench.output_states()["smu.a"]
            assert not state["output_on"] and state["level_v"] == 0.0
        assert bench.all_outputs_safe()
