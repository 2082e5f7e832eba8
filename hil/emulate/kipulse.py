"""The 2600B's KIPulse factory-script functions used for programming pulses, on the emulator.

``ConfigPulseVMeasureI(smu, bias, level, limit, ton, toff, points, buffer, tag)`` checks a voltage
pulse train and stores it under ``tag``; ``InitiatePulseTest(tag)`` runs it. Both return
``true, message`` (``false, reason`` when the train cannot be produced), as the factory script
does. Running a train applies ``points`` pulses of ``level − bias`` volts for ``ton`` seconds,
each followed by ``toff`` seconds at ``bias``, to the world through the channel's port
(``World.pulse``: every device selected onto that line sees them, limited to the channel's
present current limit), advances the bench clock by
``points · (ton + toff)`` and records one ``pulse`` event in the transcript.

Refused (``false``): a channel whose output is off, ``ton``/``toff`` ≤ 0, ``points`` < 1, a
level beyond the channel's source range, a limit ≤ 0.
"""

from __future__ import annotations

from typing import Any

from hil.emulate.keithley2600 import OUTPUT_OFF
from hil.emulate.tsp import HostFunction, to_number

__all__ = ["install_kipulse"]


def install_kipulse(emu: Any) -> None:
    """Define the two KIPulse functions on a ``Smu2600Emulator``'s TSP machine."""
    trains: dict[float, dict[str, Any]] = {}

    def letter_of(smu: Any) -> Any:
        for letter, ch in emu.channels.items():
            if ch.table is smu:
                return letter
        return None

    def config(smu: Any = None, bias: Any = 0.0, level: Any = 0.0, limit: Any = 0.0, ton: Any = 0.0,
               toff: Any = 0.0, points: Any = 1, buffer: Any = None, tag: Any = 1, *rest: Any) -> tuple:
        letter = letter_of(smu)
        if letter is None:
            return False, "smu: not a channel of this instrument"
        try:
            b, v, i_lim = to_number(bias), to_number(level), to_number(limit)
            t_on, t_off, n = to_number(ton), to_number(toff), int(to_number(points))
        except Exception as exc:  # a non-numeric argument: the script reports it, nothing runs
            return False, str(exc)
        ch = emu.channels[letter]
        if not (t_on > 0 and t_off > 0):
            return False, "ton and toff must be > 0"
        if n < 1:
            return False, "points must be >= 1"
        if not i_lim > 0:
            return False, "limit must be > 0"
        top = ch._source_range_v()
        if max(abs(b), abs(v)) > top * 1.01:
            return False, f"level beyond the {top:g} V source range"
        trains[to_number(tag)] = {"letter": letter, "bias": b, "level": v, "limit": i_lim, "ton": t_on,
                                  "toff": t_off, "points": n}
        return True, "OK"

    def initiate(tag: Any = 1) -> tuple:
        train = trains.get(to_number(tag))
        if train is None:
            return False, f"no pulse train configured with tag {tag}"
        letter = train["letter"]
        ch = emu.channels[letter]
        if ch.output == OUTPUT_OFF:
            return False, f"{ch.name}: output is off"
        amplitude = train["level"] - train["bias"]
        port = emu.port(letter)
        pulsed = 0
        if port is not None and emu.world is not None:
            pulsed = emu.world.pulse(port, amplitude, train["ton"], train["points"])
        emu.transcript.record("event", f"{ch.name} pulse {amplitude:g} V x {train['points']} "
                              f"({train['ton']:g} s)", channel=letter, pulse_v=amplitude,
                              width_s=train["ton"], count=train["points"], devices=pulsed,
                              level_v=float(ch.levelv))
        emu.advance(train["points"] * (train["ton"] + train["toff"]))
        return True, "OK"

    emu.machine.define("ConfigPulseVMeasureI", HostFunction("ConfigPulseVMeasureI", config))
    emu.machine.define("InitiatePulseTest", HostFunction("InitiatePulseTest", initiate))
