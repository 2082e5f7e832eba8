"""Fault matrix: every injectable fault × every instrument family, through real sockets.

For each cell a fresh emulator starts on 127.0.0.1 and the real driver (through pyvisa-py)
brings it into a live state: an SMU channel on at 0.5 V, a matrix crosspoint closed, a scanner
configured. The fault is armed for the next operation (SMU: a spot reading, or the level
read-back for ``misreport_level``; scanner: a scan; matrix: closing a crosspoint, whose
verification queries the closed set), the operation runs, then ``safe_shutdown()``. When the
shutdown report says outputs may still be live (the link is gone), the caller's documented
recovery runs: a new connection, ``connect()`` (which ramps outputs found on down and switches
them off) and a verified shutdown.

Columns:

* outcome — the typed error the operation raised (or the flag a reading carried);
* detect — wall time from the start of the operation to that error, ms (I/O timeout 300 ms);
* report — what ``safe_shutdown()`` reported (``safe`` = read back off at 0 V / relays open);
* off @ 0 V — read from the EMULATOR's own state after the shutdown (and the recovery, if one
  was needed): every SMU output off with the programmed level 0 V, every relay of the slot open;
  ``—`` for the scanner, which has no outputs;
* ≤ limits — every source level the emulator received lies within ``[v_min, v_max]``;
* pass — the outcome is the expected one and the two safety columns hold.

Usage::

    PYTHONPATH=$PWD python benchmarks/fault_matrix.py            # Markdown table on stdout
    PYTHONPATH=$PWD python benchmarks/fault_matrix.py --family 2450 --fault late_reply

Exit status 0 when every cell passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from hil.drivers.daq970a import Daq970a
from hil.drivers.errors import InstrumentError
from hil.drivers.keithley2450 import Keithley2450
from hil.drivers.keithley2600 import Keithley2600
from hil.drivers.keithley707b import Keithley707B
from hil.drivers.keysight_b2900 import KeysightB2900
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig
from hil.drivers.transport import ResourceManagers, VisaTransport
from hil.emulate.b2900 import SmuB2900Emulator
from hil.emulate.daq970 import Daq970Emulator
from hil.emulate.keithley2600 import Smu2600Emulator
from hil.emulate.keithley707b import Matrix707Emulator
from hil.emulate.smu2450 import Smu2450Emulator

TIMEOUT_S = 0.3
LATE_S = 0.6
ENDLESS_S = 1.0
LIMITS = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-3, max_step_v=0.25, max_slew_v_per_s=1000.0)
LEVEL_V = 0.5

FAULTS = ("no_reply", "late_reply", "drop_connection", "refuse", "endless_reply", "garbage_reply", "push_error",
          "force_compliance", "sentinel", "interlock_open", "misreport_level")


def smu_config() -> SmuChannelConfig:
    return SmuChannelConfig(limits=LIMITS, nplc=1.0, current_range_a=1e-3, voltage_range_v=2.0, autozero="off")


@dataclass
class Family:
    """How to run one instrument family in the matrix."""

    name: str
    emulator: Callable[[], Any]
    driver: Callable[[Any], Any]          # transport -> driver (not connected)
    kind: str                             # "smu", "scanner", "matrix"
    channel: str = ""
    op_match: str = ""                    # regex of the operation's query (for link faults)
    level_write: str = ""                 # regex capturing written source levels
    level_query: str = ""                 # regex of the level query (for misreport_level)


def _smu(cls: type, ch: str) -> Callable[[Any], Any]:
    return lambda t: cls(t, configs={ch: smu_config()}, sleep=lambda s: None, shutdown_timeout_s=TIMEOUT_S)


FAMILIES = {
    "2450": Family("2450", lambda: Smu2450Emulator("smu", "2450"), _smu(Keithley2450, ""), "smu", "",
                   r"^:READ\?", r"^:SOUR:VOLT (\S+)$"),
    "B2900": Family("B2900", lambda: SmuB2900Emulator("smu", "B2902A"), _smu(KeysightB2900, "1"), "smu", "1",
                    r"^:MEAS\? \(@1\)", r"^:SOUR1:VOLT (\S+)$"),
    "2600B": Family("2600B", lambda: Smu2600Emulator("smu", "2602B"), _smu(Keithley2600, "a"), "smu", "a",
                    r"measure\.i\(\)", r"^smua\.source\.levelv = (\S+)$"),
    "DAQ970A": Family("DAQ970A", lambda: Daq970Emulator("daq", "DAQ970A"),
                      lambda t: Daq970a(t, sleep=lambda s: None, shutdown_timeout_s=TIMEOUT_S,
                                        scan={"channels": [101, 102], "nplc": 1, "range_v": 10, "autozero": "off",
                                              "delay_s": 0.001}),
                      "scanner", op_match=r"^READ\?"),
    "707B": Family("707B", lambda: Matrix707Emulator("mx", "707B"),
                   lambda t: Keithley707B(t, sleep=lambda s: None, shutdown_timeout_s=TIMEOUT_S), "matrix",
                   op_match=r"getclose"),
}

#: expected outcome per (fault, kind); ``None`` = not applicable to that family
EXPECTED: dict[str, dict[str, Optional[str]]] = {
    "no_reply": dict(smu="InstrumentTimeout", scanner="InstrumentTimeout", matrix="InstrumentTimeout"),
    "late_reply": dict(smu="InstrumentTimeout", scanner="InstrumentTimeout", matrix="InstrumentTimeout"),
    "drop_connection": dict(smu="InstrumentConnectionError", scanner="InstrumentConnectionError",
                            matrix="InstrumentConnectionError"),
    "refuse": dict(smu="InstrumentConnectionError", scanner="InstrumentConnectionError",
                   matrix="InstrumentConnectionError"),
    "endless_reply": dict(smu="InstrumentTimeout", scanner="InstrumentTimeout", matrix="InstrumentTimeout"),
    "garbage_reply": dict(smu="InstrumentProtocolError", scanner="InstrumentProtocolError",
                          matrix="InstrumentProtocolError"),
    "push_error": dict(smu="InstrumentReportedError", scanner="InstrumentReportedError",
                       matrix="InstrumentReportedError"),
    "force_compliance": dict(smu="compliance flag", scanner=None, matrix=None),
    "sentinel": dict(smu="overflow → inf, flagged", scanner="overflow → inf", matrix=None),
    "interlock_open": dict(smu="InterlockError", scanner=None, matrix=None),
    "misreport_level": dict(smu="ImplausibleReadbackError", scanner=None, matrix=None),
}
#: B2900 specifics: output protection switches the output off at compliance; no verified
#: interlock query in the driver (so the emulated interlock does not apply)
OVERRIDES = {("force_compliance", "B2900"): "OutputTrippedError", ("interlock_open", "B2900"): None,
             ("interlock_open", "2600B"): None}


@dataclass
class Cell:
    fault: str
    family: str
    expected: str
    outcome: str = ""
    detect_s: float = math.nan
    report: str = ""
    off_at_zero: Optional[bool] = None
    within_limits: Optional[bool] = None
    passed: bool = False
    note: str = ""


def _open(rm: Any, fam: Family, emu: Any, name: str = "dut") -> Any:
    return fam.driver(VisaTransport(rm, emu.resource, name=name, timeout_s=TIMEOUT_S, open_timeout_s=1.0))


def _bring_live(drv: Any, fam: Family) -> None:
    drv.connect()
    if fam.kind == "smu":
        drv.output(fam.channel, True)
        drv.set_voltage(fam.channel, LEVEL_V)
    elif fam.kind == "matrix":
        drv.connect(["1A01"])


def _operation(drv: Any, fam: Family, fault: str) -> str:
    """Run the operation; return a description of a flagged result (or raise)."""
    if fam.kind == "smu":
        if fault == "misreport_level":
            drv.voltage_setpoint(fam.channel)
            return "no error"
        if fault == "interlock_open":
            drv.output(fam.channel, False)
            drv.output(fam.channel, True)
            return "no error"
        reading = drv.measure_current(fam.channel)
        drv.check_errors()
        if fault == "sentinel":
            return "overflow → inf, flagged" if math.isinf(reading.value) and reading.compliance else repr(reading)
        return "compliance flag" if reading.compliance else f"reading {reading.value:.3g} A"
    if fam.kind == "scanner":
        values = drv.read_scan()
        drv.check_errors()
        return "overflow → inf" if any(math.isinf(v) for v in values) else "no error"
    drv.connect(["1B02"])  # close a crosspoint; verification queries the closed set, then errors
    return "no error"


def _arm(emu: Any, fam: Family, fault: str) -> None:
    f = emu.faults
    if fault == "no_reply":
        f.no_reply(match=fam.op_match)
    elif fault == "late_reply":
        f.late_reply(LATE_S, match=fam.op_match)
    elif fault == "drop_connection":
        f.drop_connection(match=fam.op_match)
    elif fault == "endless_reply":
        f.endless_reply(match=fam.op_match, max_s=ENDLESS_S)
    elif fault == "garbage_reply":
        f.garbage_reply(match=fam.op_match)
    elif fault == "push_error":
        emu.push_error(-222, "Data out of range")
    elif fault == "force_compliance":
        f.force_compliance(fam.channel or None, count=1)
    elif fault == "sentinel":
        f.sentinel("overflow", count=1 if fam.kind == "smu" else 2)
    elif fault == "interlock_open":
        f.interlock_open()
    elif fault == "misreport_level":
        f.misreport_level(25.0, count=1)


def _emulator_safe(emu: Any, fam: Family) -> Optional[bool]:
    if fam.kind == "scanner":
        return None
    if fam.kind == "matrix":
        return not emu.closed
    ok = True
    channels = [fam.channel] if fam.name != "B2900" else ["1", "2"]
    if fam.name == "2600B":
        channels = ["a", "b"]
    for ch in channels:
        history = emu.output_history(ch)
        if history:
            last = history[-1]
            ok = ok and not last["output_on"] and last["level_v"] == 0.0
    return ok


def _within_limits(emu: Any, fam: Family) -> Optional[bool]:
    if fam.kind != "smu":
        return None
    values = [float(m.group(1)) for m in (re.match(fam.level_write, x.strip()) for x in emu.transcript.received())
              if m]
    return all(LIMITS.v_min <= v <= LIMITS.v_max for v in values)


def run_cell(rm: Any, fam: Family, fault: str) -> Optional[Cell]:
    expected = OVERRIDES.get((fault, fam.name), EXPECTED[fault][fam.kind])
    if expected is None:
        return None
    cell = Cell(fault, fam.name, expected)
    emu = fam.emulator()
    emu.start()
    try:
        drv = _open(rm, fam, emu)
        _bring_live(drv, fam)
        t0 = time.monotonic()
        try:
            if fault == "refuse":
                drv.close()  # the program restarts while the instrument refuses connections
                emu.refuse_connections(True)
                drv = _open(rm, fam, emu)
                t0 = time.monotonic()
                drv.connect()
                cell.outcome = "no error"
            else:
                _arm(emu, fam, fault)
                cell.outcome = _operation(drv, fam, fault)
        except InstrumentError as exc:
            cell.outcome = type(exc).__name__
        cell.detect_s = time.monotonic() - t0
        report = drv.safe_shutdown()
        cell.report = "safe" if report.safe else "may be live"
        drv.close()
        if fault == "endless_reply":
            time.sleep(ENDLESS_S)  # the emulator finishes streaming, then executes what it was sent
        if not report.safe:  # documented recovery: reconnect, connect() makes it safe, verify
            if fault == "refuse":
                emu.refuse_connections(False)
            emu.faults.clear()
            again = _open(rm, fam, emu, "recovery")
            again.connect()
            recovered = again.safe_shutdown()
            again.close()
            cell.report += " → reconnect: " + ("safe" if recovered.safe else "NOT SAFE")
        cell.off_at_zero = _emulator_safe(emu, fam)
        cell.within_limits = _within_limits(emu, fam)
    except Exception as exc:  # a scenario bug shows as a failing cell, not a crash
        cell.note = f"{type(exc).__name__}: {exc}"[:120]
    finally:
        emu.stop()
    cell.passed = (cell.outcome == cell.expected and cell.off_at_zero is not False
                   and cell.within_limits is not False and not cell.note)
    return cell


def markdown(cells: list[Cell]) -> str:
    def flag(v: Optional[bool]) -> str:
        return "—" if v is None else ("yes" if v else "**NO**")

    rows = ["| fault | family | outcome (expected) | detect (ms) | shutdown report | off @ 0 V (emulator) "
            "| ≤ limits | pass |", "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        outcome = c.outcome if c.outcome == c.expected else f"{c.outcome or c.note} (expected {c.expected})"
        rows.append(f"| {c.fault} | {c.family} | {outcome} | {c.detect_s * 1e3:.0f} | {c.report} | {flag(c.off_at_zero)} "
                    f"| {flag(c.within_limits)} | {'✓' if c.passed else '**✗**'} |")
    return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these families")
    parser.add_argument("--fault", action="append", choices=FAULTS, help="only these faults")
    args = parser.parse_args(argv)
    cells: list[Cell] = []
    t0 = time.monotonic()
    with ResourceManagers() as managers:
        rm = managers.get("@py")
        for fault in args.fault or FAULTS:
            for name in args.family or FAMILIES:
                cell = run_cell(rm, FAMILIES[name], fault)
                if cell is not None:
                    cells.append(cell)
                    print(f"{fault:16s} {name:8s} {'pass' if cell.passed else 'FAIL'}", file=sys.stderr)
    print(markdown(cells))
    failed = [c for c in cells if not c.passed]
    print(f"\n{len(cells) - len(failed)}/{len(cells)} cells pass ({time.monotonic() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
