"""Fixture ``tsp_bench``: the emulators of ``tsp_bench_helpers`` started on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil.drivers.transport import ResourceManagers
from hil.emulate.clock import BenchClock
from hil.emulate.keithley2600 import Smu2600Emulator
from hil.emulate.keithley707b import Matrix707Emulator
from hil.emulate.world import World
from tsp_bench_helpers import LINE_HZ, TspBench, make_circuit


@pytest.fixture
def tsp_bench() -> Iterator[TspBench]:
    world = World(make_circuit(), {"smu.a": "x0", "smu.b": "x1", "out.a": "y0", "probe.a": "bus"},
                  crosspoints={"mx.1A01": ("bus", "h0")}, seed=1, line_frequency_hz=LINE_HZ)
    clock = BenchClock("virtual")
    smu = Smu2600Emulator("smu", "2602B", world=world, clock=clock, ports={"a": "smu.a", "b": "smu.b"})
    out = Smu2600Emulator("out", "2601B", world=world, clock=clock, ports={"a": "out.a"})
    probe = Smu2600Emulator("probe", "2601B", world=world, clock=clock, ports={"a": "probe.a"})
    mx = Matrix707Emulator("mx", "707B", world=world, clock=clock)
    emulators = [smu, out, probe, mx]
    for e in emulators:
        e.start()
    with ResourceManagers() as rms:
        bench = TspBench(world, clock, smu, out, probe, mx, rms.get("@py"))
        try:
            yield bench
        finally:
            for d in bench.drivers:
                try:
                    d.close()
                except Exception:
                    pass
            for e in emulators:
                e.stop()
