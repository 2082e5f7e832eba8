"""The TSP personalities inside an ``EmulatedBench`` built from the shipped mixed bench file."""

from __future__ import annotations

import pytest

from hil.drivers.keithley2600 import Keithley2600
from hil.drivers.keithley707b import Keithley707B
from hil.drivers.transport import ResourceManagers, VisaTransport
from hil.emulate.bench import EmulatedBench
from hil.emulate.keithley2600 import Smu2600Emulator
from hil.emulate.keithley707b import Matrix707Emulator
from hil.emulate.world import World


def test_bench_file_picks_tsp_personalities_and_drivers_act_on_one_world():
    with EmulatedBench("demo-xor", time_mode="virtual") as bench, ResourceManagers() as rms:
        assert isinstance(bench.emulators["smu_rail"], Smu2600Emulator)
        assert isinstance(bench.emulators["matrix"], Matrix707Emulator)
        rm = rms.get("@py")
        specs = bench.loopback_bench.instruments

        def open_smu(name: str) -> Keithley2600:
            spec = specs[name]
            configs = {ch: c.smu_config() for ch, c in spec.channels.items()}
            return Keithley2600(VisaTransport(rm, spec.resource, name=name, timeout_s=2.0), configs=configs,
                                sleep=lambda s: None)

        rail, outs = open_smu("smu_rail"), open_smu("smu_y01")
        matrix = Keithley707B(VisaTransport(rm, specs["matrix"].resource, name="matrix", timeout_s=2.0),
                              slot=1, sleep=lambda s: None)
        try:
            for d in (rail, outs, matrix):
                d.connect()
            matrix.connect(["1A01"])                 # every line at 0 V: allowed
            assert bench.world.relay_closed("matrix.1A01")
            for ch in ("a", "b"):
                outs.output(ch, True)
                rail.output(ch, True)
            rail.set_voltage("a", 0.5)
            rail.set_voltage("b", -0.5)
            rail.voltage_setpoint("a")               # round trip: levels applied
            y0 = outs.measure_current("a").value
            # oracle: the same circuit with the rails and output ports set directly
            oracle = World(bench.bench.circuit, bench.bench.wiring.connections(),
                           crosspoints={"matrix.1A01": bench.world.crosspoints["matrix.1A01"]})
            for port in oracle.ports():
                src = bench.world.source(port)
                oracle.set_source(port, src.mode, src.level, src.limit_a)
                oracle.set_load(port, src.load_s)
            oracle.set_relay("matrix.1A01", True)
            assert y0 == pytest.approx(oracle.port_current("smu_y01.a"), abs=2e-8)
            assert abs(y0) > 1e-7
        finally:
            for d in (rail, outs, matrix):
                d.safe_shutdown()
                d.close()
        assert bench.emulators["matrix"].closed_crosspoints() == []
        for name in ("smu_rail", "smu_y01"):
            for ch in ("a", "b"):
                last = bench.emulators[name].output_history(ch)[-1]
                assert last["output_on"] is False and last["level_v"] == 0.0
        assert bench.emulators["matrix"].hot_switch_events == []
