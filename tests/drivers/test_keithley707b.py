"""Protocol tests for the Keithley 707B/708B matrix driver: exact TSP statements via ScriptedTransport."""

from __future__ import annotations

import pytest

from hil.drivers.errors import (
    InstrumentConfigError,
    InstrumentConnectionError,
    InstrumentProtocolError,
    InstrumentReportedError,
    LimitViolation,
)
from hil.drivers.keithley707b import Keithley707B, parse_closed
from hil.drivers.protocols import SwitchMatrix
from hil.drivers.transport import ScriptedTransport

IDN = "Keithley Instruments Inc., Model 707B, 04012345, 1.4.2"
EMPTY = ("print(errorqueue.next())", "0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00")
GETCLOSE = 'print(channel.getclose("slot1"))'
CONNECT = [("*IDN?", IDN), EMPTY, ("errorqueue.clear()", None),
           ("channel.connectrule = channel.BREAK_BEFORE_MAKE", None),
           ("channel.connectsequential = channel.ON", None), ('channel.open("slot1")', None)]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connected(extra, *, forbidden=(), **kwargs):
    script = list(CONNECT)
    if forbidden:
        script.append((f'channel.setforbidden("{",".join(sorted(forbidden))}")', None))
    script += [(GETCLOSE, "nil"), EMPTY] + extra
    t = ScriptedTransport(script, name="matrix")
    sleeps = Sleeps()
    drv = Keithley707B(t, forbidden=forbidden, sleep=sleeps, **kwargs)
    drv.connect()
    return drv, t, sleeps


def test_connect_sets_break_before_make_opens_all_and_loads_forbidden():
    drv, t, _ = connected([], forbidden=["1B01", "1A01"])
    assert isinstance(drv, SwitchMatrix)
    assert drv.forbidden == {("A", 1), ("B", 1)}
    assert drv.snapshot()["settings"]["forbidden"] == ["1A01", "1B01"]
    t.verify()


def test_connect_fails_when_relays_stay_closed():
    # connect fails part-way with a relay closed: the safe shutdown opens the slot and verifies
    script = list(CONNECT) + [(GETCLOSE, "1A01"), ('channel.open("slot1")', None), (GETCLOSE, "nil"), EMPTY]
    t = ScriptedTransport(script, name="matrix")
    with pytest.raises(InstrumentProtocolError, match="still closed") as info:
        Keithley707B(t).connect()
    t.verify()
    assert info.value.shutdown_report.safe


def test_connect_rejects_other_instrument():
    t = ScriptedTransport([("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2636B,1,2.2")], name="matrix")
    with pytest.raises(InstrumentProtocolError):
        Keithley707B(t).connect()
    t.verify()


def test_close_crosspoints_verifies_and_settles():
    extra = [('channel.close("1A01,1C12")', None), EMPTY, (GETCLOSE, "1A01;1B02;1C12")]
    drv, t, sleeps = connected(extra, settle_s=0.004)
    drv.connect(["1A01", ("c", 12)])
    assert sleeps == [0.004]
    t.verify()


def test_exclusive_close_is_break_before_make_and_checks_exact_set():
    # never exclusiveclose (it would open relays in other slots): open the unwanted closed
    # crosspoints of this slot, verify, then close
    extra = [(GETCLOSE, "nil"), ('channel.close("1A01,1B02")', None), EMPTY, (GETCLOSE, "1A01;1B02"),
             (GETCLOSE, "1A01;1B02"), ('channel.open("1B02")', None), EMPTY, (GETCLOSE, "1A01"),
             ('channel.close("1A01")', None), EMPTY, (GETCLOSE, "1A01,1H12")]
    drv, t, _ = connected(extra)
    drv.connect({("A", 1), ("B", 2)}, exclusive=True)
    with pytest.raises(InstrumentProtocolError, match="unexpectedly closed"):
        drv.connect("1A01", exclusive=True)
    t.verify()


def test_forbidden_and_invalid_crosspoints_refused_before_any_io():
    drv, t, _ = connected([], forbidden=["1A01"])
    with pytest.raises(LimitViolation, match="forbidden"):
        drv.connect(["1B02", "1A01"], exclusive=True)
    for bad in (["2A01"], ["1I01"], ["1A13"], ["A01"], [("A", 0)]):
        with pytest.raises(InstrumentConfigError):
            drv.connect(bad)
    t.verify()


def test_instrument_error_after_close_is_reported():
    extra = [('channel.close("1D04")', None), ("print(errorqueue.next())", "-2.86000e+02\tTSP Runtime error\t2.00000e+01\t0.00000e+00"),
             EMPTY]
    drv, t, _ = connected(extra)
    with pytest.raises(InstrumentReportedError) as info:
        drv.connect(["1D04"])
    assert info.value.code == -286
    t.verify()


def test_disconnect_open_all_and_closed():
    extra = [('channel.open("1A01")', None), EMPTY, (GETCLOSE, "1B02"),
             (GETCLOSE, "1B02"),
             ('channel.open("slot1")', None), EMPTY, (GETCLOSE, "nil"),
             ('channel.open("1B02")', None), EMPTY, (GETCLOSE, "1B02")]
    drv, t, _ = connected(extra)
    drv.disconnect(["1A01"])
    assert drv.closed() == {("B", 2)}
    drv.open_all()
    with pytest.raises(InstrumentProtocolError, match="still closed"):
        drv.disconnect([("B", 2)])
    drv.disconnect([])
    t.verify()


def test_closed_rejects_unknown_channel_in_reply():
    drv, t, _ = connected([(GETCLOSE, "1Z99")])
    with pytest.raises(InstrumentProtocolError):
        drv.closed()
    t.verify()


def test_interlock_ok_uses_software_interlocks():
    flags = {"fixture": True}

    def boom() -> bool:
        raise RuntimeError("sensor")

    drv, t, _ = connected([], interlocks=[lambda: flags["fixture"]])
    assert drv.interlock_ok() is True
    flags["fixture"] = False
    assert drv.interlock_ok() is False
    drv.interlocks = (boom,)
    assert drv.interlock_ok() is False
    t.verify()


def test_safe_shutdown_opens_all_and_never_raises():
    lost = InstrumentConnectionError("lost")
    extra = [('channel.open("slot1")', None), (GETCLOSE, "nil"), EMPTY,
             ('channel.open("slot1")', lost), (GETCLOSE, lost), ("print(errorqueue.next())", lost)]
    drv, t, _ = connected(extra)
    assert drv.safe_shutdown().safe
    report = drv.safe_shutdown()
    assert not report.safe and report.maybe_live == ("slot1",)
    t.verify()


def test_constructor_validation_and_parse_closed():
    t = ScriptedTransport([], name="m")
    for kwargs in (dict(slot=7), dict(rows="A1"), dict(columns=0), dict(settle_s=-1), dict(forbidden=["9A01"])):
        with pytest.raises(InstrumentConfigError):
            Keithley707B(t, **kwargs)
    assert parse_closed("nil") == [] and parse_closed("") == []
    assert parse_closed("1A01;1B02,1C03\n") == ["1A01", "1B02", "1C03"]
    drv = Keithley707B(t, slot=3, rows="ABCD", columns=32)
    assert drv.specifier(drv.to_crosspoint("3D32")) == "3D32"
    t.verify()


# -- review fixes: interlock before closing, empty exclusive set --


def test_connect_crosspoints_refused_when_interlock_open_nothing_sent():
    from hil.drivers.errors import InterlockError
    flags = {"fixture": False}
    drv, t, _ = connected([('channel.close("1A02")', None), EMPTY, (GETCLOSE, "1A02")],
                          interlocks=[lambda: flags["fixture"]])
    for exclusive in (False, True):
        with pytest.raises(InterlockError, match="1A02"):
            drv.connect(["1A02"], exclusive=exclusive)
    flags["fixture"] = True
    drv.connect(["1A02"])
    t.verify()


def test_connect_checks_forbidden_before_interlock():
    calls = []
    drv, t, _ = connected([], forbidden=["1A01"], interlocks=[lambda: calls.append(1) or True])
    with pytest.raises(LimitViolation):
        drv.connect(["1A01"])
    assert calls == []
    t.verify()


def test_empty_exclusive_set_opens_all_explicitly():
    drv, t, _ = connected([('channel.open("slot1")', None), EMPTY, (GETCLOSE, "nil")],
                          interlocks=[lambda: False])  # opening needs no interlock
    drv.connect([], exclusive=True)
    drv.connect([])  # non-exclusive empty set: nothing sent
    t.verify()
