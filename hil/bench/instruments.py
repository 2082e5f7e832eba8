"""Build (unconnected) drivers for the instruments of a bench.

    with ResourceManagers() as rms:
        smu = make_driver(bench.instruments["smu_x"], rms)
        with smu:                       # connect() ... safe_shutdown() + close()
            smu.set_voltage("1", 0.1)

SMUs get their per-channel ``SmuChannelConfig`` from the bench, scanners one ``ScanConfig`` over
all configured channels (their range, NPLC, autozero and delay must agree), matrices their slot.
"""

from __future__ import annotations

from typing import Any, Optional

from hil.bench.schema import InstrumentSpec
from hil.drivers.errors import InstrumentConfigError
from hil.drivers.registry import load_driver
from hil.drivers.transport import ResourceManagers, VisaTransport

__all__ = ["make_driver", "driver_kwargs"]


def driver_kwargs(spec: InstrumentSpec) -> dict[str, Any]:
    """Keyword arguments for the driver class of ``spec`` (besides the transport)."""
    kwargs: dict[str, Any] = {"name": spec.name, "model": spec.model}
    if "allowed_errors" in spec.options:
        kwargs["allowed_errors"] = tuple(spec.options["allowed_errors"])
    if spec.kind == "smu":
        kwargs["configs"] = {ch: c.smu_config() for ch, c in spec.channels.items()}
        if "require_interlock" in spec.options:
            kwargs["require_interlock"] = bool(spec.options["require_interlock"])
        if spec.driver == "keysight_b2900" and "binary" in spec.options:
            kwargs["binary"] = bool(spec.options["binary"])
        if spec.driver in ("keithley2600", "keithley2450") and spec.options.get("trigger_line") is not None:
            kwargs["trigger_line"] = int(spec.options["trigger_line"])
    elif spec.kind == "scanner":
        chans = sorted(spec.channels, key=int)
        settings = {(c.settings["range_v"], c.settings["nplc"], c.settings["autozero"], c.settings["delay_s"])
                    for c in spec.channels.values()}
        if len(settings) != 1:
            raise InstrumentConfigError(f"{spec.name}: every scanned channel needs the same range_v, nplc, "
                                        "autozero and delay_s", instrument=spec.name)
        range_v, nplc, autozero, delay_s = settings.pop()
        kwargs["scan"] = {"channels": [int(c) for c in chans], "nplc": nplc, "range_v": range_v,
                          "autozero": autozero, "delay_s": delay_s}
        if "slots" in spec.options:
            kwargs["slots"] = {int(k): int(v) for k, v in dict(spec.options["slots"]).items()}
        if "input_impedance" in spec.options:
            kwargs["input_impedance"] = spec.options["input_impedance"]
    elif spec.kind == "matrix":
        for key in ("slot", "rows", "columns", "settle_s"):
            if key in spec.options:
                kwargs[key] = spec.options[key]
        if "forbidden" in spec.options:
            kwargs["forbidden"] = tuple(spec.options["forbidden"])
    return kwargs


def offline_driver(spec: InstrumentSpec) -> Any:
    """The driver of ``spec`` built without a transport (never connected): what its constructor
    refuses raises :class:`~hil.drivers.errors.InstrumentConfigError` (or TypeError/ValueError) here,
    so a bench file's settings can be checked before any instrument is reached."""
    return load_driver(spec.driver)(None, **driver_kwargs(spec))


def message_without_name(exc: BaseException, name: str) -> str:
    """``exc``'s message without the leading ``"name: "`` the driver put in front (once or more), for a
    problem line whose path names the instrument already."""
    text, prefix = str(exc), f"{name}: "
    while text.startswith(prefix):
        text = text[len(prefix):]
    return text


def matrix_crosspoint(matrix: Any, text: str) -> tuple[Any, Optional[str]]:
    """(the crosspoint ``text`` names on the offline matrix driver ``matrix``, None), or (None, why it is
    not one of that matrix's relays: slot, row, column), for a bench or config problem line."""
    try:
        return matrix.to_crosspoint(text), None
    except InstrumentConfigError as exc:
        return None, message_without_name(exc, matrix.name)


def make_driver(spec: InstrumentSpec, managers: ResourceManagers, **overrides: Any) -> Any:
    """Open the transport of ``spec`` and construct its driver (not connected).

    ``overrides`` replace driver keyword arguments (e.g. ``sleep=`` in tests).
    """
    cls = load_driver(spec.driver)
    kwargs = driver_kwargs(spec)
    kwargs.update(overrides)
    transport = VisaTransport(managers.get(spec.visa_library), spec.resource, name=spec.name, timeout_s=spec.timeout_s)
    try:
        return cls(transport, **kwargs)
    except BaseException:
        transport.close()
        raise
