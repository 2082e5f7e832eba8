"""Helpers for the TSP emulator tests: a small linear world, emulators on 127.0.0.1, real drivers.

The world is a resistor network (no diodes) so every expected value has a closed form::

    x0 --g-- h0 --g-- y0        g = 1e-4 S on every branch, g_leak = 1e-6 S from h0 to ground
    x1 --g--/  \\
               bus (a 707B crosspoint 1A01 joins the extra line "bus" to h0)

``smu`` (2602B) drives x0 (channel a) and x1 (channel b); ``out`` (2601B) holds y0 and reads its
current; ``probe`` (2601B) sits on ``bus``; ``mx`` (707B) switches ``1A01``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hil.circuit.build import build_circuit
from hil.drivers.keithley2600 import Keithley2600
from hil.drivers.keithley707b import Keithley707B
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig
from hil.drivers.transport import VisaTransport
from hil.emulate.clock import BenchClock
from hil.emulate.keithley2600 import Smu2600Emulator
from hil.emulate.keithley707b import Matrix707Emulator
from hil.emulate.world import World

G_S = 1e-4
G_LEAK_S = 1e-6
LINE_HZ = 50.0


def h0_voltage(x0: float, x1: float, y0: float = 0.0) -> float:
    """Node voltage of h0 in V with the bus crosspoint open."""
    return G_S * (x0 + x1 + y0) / (3 * G_S + G_LEAK_S)


def make_circuit() -> Any:
    return build_circuit({
        "name": "tsp-test", "inputs": {"count": 2}, "hidden": {"count": 1, "element": {"model": "none"}},
        "outputs": {"count": 1},
        "conductances": {"g_in": G_S, "g_hh": "none", "g_leak": G_LEAK_S, "g_out": G_S},
    })


def smu_config(i_limit_a: float = 1e-3, nplc: float = 1.0, **kw: Any) -> SmuChannelConfig:
    limits = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=i_limit_a, max_step_v=0.25,
                          max_slew_v_per_s=1000.0)
    return SmuChannelConfig(limits=limits, nplc=nplc, current_range_a=max(i_limit_a, 1e-3),
                            voltage_range_v=1.0, autozero="once", **kw)


@dataclass
class TspBench:
    """Emulators (started) on one world, and a helper to open drivers on them."""

    world: World
    clock: BenchClock
    smu: Smu2600Emulator
    out: Smu2600Emulator
    probe: Smu2600Emulator
    mx: Matrix707Emulator
    rm: Any
    drivers: list[Any] = field(default_factory=list)

    def transport(self, emulator: Any, timeout_s: float = 2.0) -> VisaTransport:
        return VisaTransport(self.rm, emulator.resource, name=emulator.name, timeout_s=timeout_s)

    def k2600(self, emulator: Smu2600Emulator, configs: Any = None, timeout_s: float = 2.0,
              **kw: Any) -> Keithley2600:
        d = Keithley2600(self.transport(emulator, timeout_s), configs=configs or {}, sleep=lambda s: None,
                         shutdown_timeout_s=1.0, **kw)
        self.drivers.append(d)
        return d

    def k707b(self, **kw: Any) -> Keithley707B:
        d = Keithley707B(self.transport(self.mx), sleep=lambda s: None, shutdown_timeout_s=1.0, **kw)
        self.drivers.append(d)
        return d

    def raw(self, emulator: Any, timeout_s: float = 1.0) -> Any:
        """A plain pyvisa resource on an emulator (for spelling and protocol checks)."""
        res = self.rm.open_resource(emulator.resource, read_termination="\n", write_termination="\n",
                                    timeout=int(timeout_s * 1000))
        self.drivers.append(res)
        return res
