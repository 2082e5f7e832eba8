"""``hil instruments``: list the registered drivers and probe one instrument.

``add_parser(subparsers)`` registers the subcommand on the ``hil`` argparse root; every handler
returns a process exit code (0 ok, 1 instrument/link error or outputs not verified safe, 2 usage
or configuration error, 130/143 after Ctrl-C/SIGTERM) and reports failures as one line on
stderr, never as a traceback.

``probe`` ends with the driver's ``safe_shutdown()`` whatever happened (also on Ctrl-C and
SIGTERM, which raise ``KeyboardInterrupt`` during the probe so the shutdown runs) and prints
``safe: ...`` only when every output was read back off at 0 V; otherwise one line on stderr says
which outputs may still be live.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, TextIO

from hil.drivers.errors import InstrumentConfigError, InstrumentError
from hil.drivers.parsing import model_matches, parse_idn
from hil.drivers.protocols import ErrorEntry, SourceMeter
from hil.drivers.registry import DRIVERS, driver_info, driver_names, load_driver
from hil.drivers.signals import exit_code_for, termination_signals
from hil.drivers.transport import ResourceManagers, VisaTransport
from hil.cli_help import EXIT_STATUS, command_help

__all__ = ["add_parser", "cmd_list", "cmd_probe"]

_PROG = "hil instruments"


def add_parser(subparsers: Any) -> None:
    """Register ``instruments list`` and ``instruments probe`` on an argparse subparsers object."""
    parser = subparsers.add_parser("instruments", help="list instrument drivers, probe an instrument",
                                   **command_help("List the supported instrument drivers or probe one instrument.",
                                                  "hil instruments list",
                                                  "hil instruments probe TCPIP::192.168.10.21::5025::SOCKET --driver keithley2450",
                                                  exit_status=EXIT_STATUS + ", 143 probe stopped by SIGTERM "
                                                                            "(after its safe shutdown)"))
    sub = parser.add_subparsers(dest="instruments_command", metavar="{list,probe}")
    sub.required = True

    p_list = sub.add_parser("list", help="show the registered drivers, their models and descriptions")
    p_list.set_defaults(func=cmd_list)

    p_probe = sub.add_parser(
        "probe", help="connect to ADDRESS, identify it, print its state snapshot and error queue",
        description="Connect with the driver's connect() (this ramps enabled source outputs to 0 V, "
                    "0.1 V steps at 1 V/s, switches them off and opens matrix relays), print identity, "
                    "per-channel output state and level, snapshot, the errors the instrument held at "
                    "connect and the error queue afterwards, then close.")
    p_probe.add_argument("address", help="VISA resource, e.g. TCPIP::192.168.10.21::5025::SOCKET")
    p_probe.add_argument("--driver", choices=driver_names(), default=None,
                         help="registered driver name (default: chosen from the *IDN? model)")
    p_probe.add_argument("--visa-library", "--backend", dest="visa_library", default="@py",
                         help="VISA library: @py (default), @ivi, or <file>.yaml@sim for pyvisa-sim")
    p_probe.add_argument("--timeout", dest="timeout_s", type=float, default=5.0,
                         help="I/O timeout in s (default 5)")
    p_probe.set_defaults(func=cmd_probe)


def cmd_list(args: argparse.Namespace, *, out: Optional[TextIO] = None) -> int:
    """Print every registered driver: name, accepted models, description."""
    out = out or sys.stdout
    rows = [(info.name, ", ".join(info.models), info.description) for info in (DRIVERS[n] for n in driver_names())]
    width = max(len(r[0]) for r in rows)
    print(f"{'DRIVER'.ljust(width)}  MODELS / DESCRIPTION", file=out)
    for name, models, description in rows:
        print(f"{name.ljust(width)}  {models}", file=out)
        print(f"{' ' * width}  {description}", file=out)
    return 0


def _pick_driver(transport: VisaTransport) -> str:
    """Driver name whose models match the instrument's ``*IDN?`` model field."""
    identity = parse_idn(transport.query("*IDN?"))
    for name in driver_names():
        if model_matches(identity, driver_info(name).models):
            return name
    raise InstrumentConfigError(f"no registered driver for {identity.vendor} {identity.model}; "
                                f"use --driver (known: {', '.join(driver_names())})")


def _plural(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _print_entries(title: str, entries: list[ErrorEntry], out: TextIO) -> None:
    if not entries:
        print(f"{title}: none", file=out)
        return
    print(f"{title}: {_plural(len(entries))}", file=out)
    for entry in entries:
        print(f"  {entry.code}, {entry.message}", file=out)


def _fmt_state(output_on: Any, level_v: Any) -> str:
    state = "?" if output_on is None else ("ON" if output_on else "OFF")
    level = "?" if level_v is None else f"{level_v:.6g} V"
    return f"output {state}, source level {level}"


def _print_outputs(driver: Any, out: TextIO) -> None:
    """Per channel: output state and source level read now, and what connect() found."""
    if not isinstance(driver, SourceMeter):
        return
    print("outputs:", file=out)
    found = getattr(driver, "state_at_connect", {}) or {}
    for ch in driver.channels:
        now = _fmt_state(driver.output_enabled(ch), driver.voltage_setpoint(ch))
        line = f"  channel {ch or '-'}: {now}"
        before = found.get(ch)
        if before is not None:
            line += f" (at connect: {_fmt_state(before.get('output_on'), before.get('source_level_v'))}"
            line += "; ramped to 0 V and switched off)" if before.get("output_on") else ")"
        print(line, file=out)


def cmd_probe(args: argparse.Namespace, *, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Connect, identify, print output states, snapshot, errors found at connect and the error
    queue; then ``safe_shutdown()`` (verified) and close.

    Returns 0, 1 (instrument, or outputs not verified safe), 2 (config), 130/143 (signal).
    """
    out, err = out or sys.stdout, err or sys.stderr
    with termination_signals() as interrupts:
        try:
            return _probe(args, out, err, interrupts)
        except KeyboardInterrupt:  # a signal after the shutdown already ran (e.g. while closing)
            print(f"{_PROG} probe: interrupted ({interrupts.signal_name or 'SIGINT'})", file=err)
            return exit_code_for(interrupts.signal_name)


def _probe(args: argparse.Namespace, out: TextIO, err: TextIO, interrupts: Any) -> int:
    managers = ResourceManagers()
    driver: Optional[Any] = None
    transport: Optional[VisaTransport] = None
    code, message, warning = 0, "", ""
    try:
        if not args.timeout_s > 0:
            raise InstrumentConfigError(f"--timeout must be > 0 s, got {args.timeout_s}")
        manager = managers.get(args.visa_library)
        transport = VisaTransport(manager, args.address, name="probe", timeout_s=args.timeout_s)
        name = args.driver or _pick_driver(transport)
        driver = load_driver(name)(transport, name="probe")
        driver.connect()
        stale = list(getattr(driver, "stale_errors", []))
        print(f"driver:    {name}", file=out)
        print(f"resource:  {driver.transport.resource_name}", file=out)
        ident = driver.identity.as_dict() if driver.identity else {}
        print(f"identity:  {ident.get('vendor')} {ident.get('model')} serial {ident.get('serial')} "
              f"firmware {ident.get('firmware')}", file=out)
        _print_outputs(driver, out)
        entries = driver.drain_errors()
        snapshot = driver.snapshot()
        print("snapshot:", file=out)
        print(json.dumps(snapshot, indent=2, sort_keys=True, default=str), file=out)
        _print_entries("errors found at connect (cleared)", stale, out)
        if entries:
            print(f"error queue: {_plural(len(entries))}", file=out)
            for entry in entries:
                print(f"  {entry.code}, {entry.message}", file=out)
        else:
            print("error queue: empty", file=out)
    except InstrumentConfigError as exc:  # worded as every other command's configuration error
        message, code = f"{exc}", 2
    except InstrumentError as exc:
        message, code = f"{type(exc).__name__}: {exc}", 1
    except (OSError, ValueError) as exc:  # anything pyvisa/pyvisa-py raised unmapped
        message, code = f"{type(exc).__name__}: {exc}", 1
    except KeyboardInterrupt:
        message, code = f"interrupted ({interrupts.signal_name or 'SIGINT'}); shut down", \
            exit_code_for(interrupts.signal_name)
    finally:
        code, warning = _shutdown_and_close(driver, transport, out, code)
        managers.close_all()
    if message or warning:  # one line: what failed, and whether outputs may still be live
        prefix = "hil: invalid configuration: " if code == 2 and message else f"{_PROG} probe: "
        print(prefix + "; ".join(m for m in (message, warning) if m), file=err)
    return code


def _shutdown_and_close(driver: Optional[Any], transport: Optional[VisaTransport], out: TextIO,
                        code: int) -> tuple[int, str]:
    """Verified safe shutdown (if the instrument was identified), the ``safe:`` line, close.

    Returns the exit code and a warning ("" when safe or nothing was touched).
    """
    report = None
    warning = ""
    if driver is not None and getattr(driver, "_identified", False):
        try:
            report = driver.safe_shutdown()
        except KeyboardInterrupt:  # second signal: outputs were still switched off, ramps skipped
            report = driver.last_shutdown
            code = code if code >= 128 else 130
    if report is not None:
        if report.safe:
            names = ", ".join(repr(n) for n in report.verified)
            print(f"safe: outputs verified off at 0 V: {names}" if names else "safe: no outputs", file=out)
        else:
            warning = f"WARNING: {report.summary()}"
            code = code or 1
    try:
        if driver is not None:
            driver.close()
        elif transport is not None:
            transport.close()
    except Exception as exc:  # closing a dead link must not turn into a traceback
        warning = "; ".join(w for w in (warning, f"closing failed: {exc}") if w)
    return code, warning
