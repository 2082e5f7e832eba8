"""A list sweep armed on the bench trigger line owns the source level until it is fetched: when
Ctrl-C / SIGTERM (or a fault on another instrument) stops the batch before this instrument's
``fetch_sweep``, its shutdown must read the level back and ramp from it, not trust the level it
had before the sweep. Proven from the emulated instrument's own state (127.0.0.1)."""

from __future__ import annotations

import numpy as np
import pytest

from hil.bench.instruments import make_driver
from hil.drivers.transport import ResourceManagers
from hil.emulate.bench import EmulatedBench


@pytest.mark.parametrize("bench_name, inst, ch, step_v", [("scpi-xor-triggered", "smu_x", "1", 0.25),
                                                          ("tsp-xor-triggered", "smu1", "a", 0.5)])
def test_shutdown_of_an_armed_unfetched_sweep_ramps_from_the_level_read_back(bench_name, inst, ch, step_v):
    with EmulatedBench(bench_name, time_mode="virtual") as bench, ResourceManagers() as rms:
        emu = bench.emulators[inst]
        smu = make_driver(bench.loopback_bench.instruments[inst], rms)
        with smu:
            smu.output(ch, True)
            smu.arm_sweep({ch: np.array([step_v])}, 0.0, lead=True)  # one point, one step above 0 V
            smu.start_sweep()
            bench.settle()
            # the batch stops here (an interrupt while the host fetched another instrument): no fetch
            report = smu.safe_shutdown()
        assert report.safe, report.summary()
        bench.settle()
        state = bench.output_states()[f"{inst}.{ch}"]
        assert not state["output_on"] and state["level_v"] == 0.0, state
        levels = [s["level_v"] for s in emu.output_history(ch) if s["output_on"]]
        assert max(levels) == pytest.approx(step_v)  # the sweep did leave its level behind
        steps = np.abs(np.diff([0.0, *levels, 0.0]))
        assert steps.max() <= step_v + 1e-9


def test_output_protection_trip_during_a_triggered_sweep_is_reported():
    """A B2900 channel switched off by its output protection in the middle of a triggered sweep must
    stop the batch with OutputTrippedError (as after a plain list sweep or a spot reading), not let
    the run measure on with that source off."""
    from hil.drivers.errors import OutputTrippedError

    with EmulatedBench("scpi-xor-triggered", time_mode="virtual") as bench, ResourceManagers() as rms:
        emu = bench.emulators["smu_x"]
        with make_driver(bench.loopback_bench.instruments["smu_x"], rms) as smu:
            smu.output("1", True)
            emu.faults.force_compliance("1")
            smu.arm_sweep({"1": np.array([0.25, 0.25, 0.0])}, 0.0, lead=True)
            smu.start_sweep()
            with pytest.raises(OutputTrippedError):
                smu.fetch_sweep()
            assert not smu._output_on["1"]
        bench.settle()
        assert bench.all_outputs_safe()
