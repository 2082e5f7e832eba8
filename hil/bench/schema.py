"""Load and validate a bench file (docs/bench.md describes the format).

    bench = load_bench("configs/benches/demo-xor.yaml")   # or a mapping, or a shipped bench name

Returns frozen dataclasses. Every mistake is collected and raised at once as
``hil.config.ConfigError`` with dotted paths (``bench.instruments.smu_in.channels.a.v_max: required``).

Instrument kinds follow the driver: SMUs (``keithley2450``, ``keithley2600``, ``keysight_b2900``)
need the six safety keys on every channel (``v_min``, ``v_max``, ``i_compliance_a`` -- alias
``i_limit_a`` --, ``max_step_v``, ``max_slew_v_per_s``, ``max_power_w`` which may be ``null``);
scanners (``daq970a``) list their DC-volt channels (``range_v``); matrices (``keithley707b``)
give their ``slot``. Channel names are the driver's: 2450 ``""`` (also written ``"1"``), B2900
``"1"``/``"2"``, 2600B ``"a"``/``"b"`` (``smua``/``smub`` accepted), scanners ``"101"`` …
Wiring endpoints are ``instrument.channel`` (a single-channel instrument may be named alone).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from hil.config import ConfigError, Section, load_yaml

__all__ = [
    "Bench", "InstrumentSpec", "ChannelSpec", "Wiring", "Timing", "load_bench", "bench_root", "shipped_bench_names",
    "SMU_DRIVERS", "SCANNER_DRIVERS", "MATRIX_DRIVERS", "port_name",
]

SMU_DRIVERS = ("keithley2450", "keithley2600", "keysight_b2900")
SCANNER_DRIVERS = ("daq970a",)
MATRIX_DRIVERS = ("keithley707b",)
LIMIT_KEYS = ("v_min", "v_max", "i_compliance_a", "max_step_v", "max_slew_v_per_s", "max_power_w")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_CROSSPOINT_RE = re.compile(r"^[1-6][A-Za-z]\d{2}$")
_AUTOZERO = ("off", "once", "on")
_OFF_MODES = ("zero", "himp", "normal")


@dataclass(frozen=True)
class ChannelSpec:
    """One configured channel.

    Attributes:
        name: driver channel name (``""``, ``"1"``, ``"a"``, ``"101"``).
        settings: validated values (SI units): SMUs the six limit keys plus ``nplc``,
            ``current_range_a``, ``voltage_range_v`` (or None), ``autozero``, ``source_delay_s``,
            ``off_mode``, ``four_wire``; scanners ``range_v``, ``nplc``, ``autozero``, ``delay_s``.
    """

    name: str
    settings: Mapping[str, Any]

    def smu_config(self) -> Any:
        """``hil.drivers.protocols.SmuChannelConfig`` of an SMU channel."""
        from hil.drivers.limits import SourceLimits
        from hil.drivers.protocols import SmuChannelConfig

        s = self.settings
        limits = SourceLimits(v_min=s["v_min"], v_max=s["v_max"], i_compliance_a=s["i_compliance_a"],
                              max_step_v=s["max_step_v"], max_slew_v_per_s=s["max_slew_v_per_s"],
                              max_power_w=s["max_power_w"])
        return SmuChannelConfig(limits=limits, nplc=s["nplc"], current_range_a=s["current_range_a"],
                                voltage_range_v=s["voltage_range_v"], autozero=s["autozero"],
                                source_delay_s=s["source_delay_s"], off_mode=s["off_mode"],
                                four_wire=s["four_wire"])


@dataclass(frozen=True)
class InstrumentSpec:
    """One instrument of the bench.

    Attributes:
        name: bench name (``[a-z][a-z0-9_]*``).
        driver: ``hil.drivers.registry`` name.
        kind: ``"smu"``, ``"scanner"`` or ``"matrix"``.
        model: model token the real instrument reports (and the emulator impersonates).
        resource: VISA resource of the real instrument.
        visa_library: pyvisa library (``"@py"``).
        timeout_s: I/O timeout in s.
        channels: ``{channel: ChannelSpec}``.
        options: other driver options (``slot``, ``slots``, ``require_interlock``, ``allowed_errors``,
            ``serial``, ``rows``, ``columns``, ``forbidden``, ``settle_s``).
    """

    name: str
    driver: str
    kind: str
    model: str
    resource: str
    visa_library: str = "@py"
    timeout_s: float = 5.0
    channels: Mapping[str, ChannelSpec] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wiring:
    """Which instrument channel sits on which line.

    Attributes:
        sources: circuit source node → ``(instrument, channel)`` driving it.
        outputs: circuit output port → SMU ``(instrument, channel)`` holding it and reading its current.
        hidden: hidden node → scanner ``(instrument, channel)`` sensing it.
        lines: extra line (not a circuit node) → the channels on it.
        crosspoints: ``(matrix instrument, "1A01")`` → ``(line_a, line_b)`` it joins.
    """

    sources: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    outputs: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    hidden: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    lines: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    crosspoints: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def connections(self) -> dict[str, str]:
        """``{port: line}`` for every wired channel; port = ``port_name(instrument, channel)``."""
        out: dict[str, str] = {}
        for group in (self.sources, self.outputs, self.hidden):
            for line, (inst, ch) in group.items():
                out[port_name(inst, ch)] = line
        for line, ends in self.lines.items():
            for inst, ch in ends:
                out[port_name(inst, ch)] = line
        return out


def port_name(instrument: str, channel: str) -> str:
    """World port of an instrument channel: ``"smu.1"``, or ``"smu"`` for the single channel ``""``."""
    return f"{instrument}.{channel}" if channel != "" else instrument


@dataclass(frozen=True)
class Timing:
    """Bench-wide defaults: ``nplc``, ``source_delay_s`` (s), ``autozero``."""

    nplc: float = 1.0
    source_delay_s: float = 1e-3
    autozero: str = "once"


@dataclass(frozen=True)
class Bench:
    """A validated bench file.

    Attributes:
        name: bench name.
        circuit: the ``hil.circuit.model.Circuit`` under test.
        circuit_ref: what ``circuit:`` said (config name, path, or ``"<inline>"``).
        line_frequency_hz: mains frequency, Hz.
        seed: emulator noise seed.
        instruments: ``{name: InstrumentSpec}`` in file order.
        wiring: :class:`Wiring`.
        timing: :class:`Timing`.
        source: where the bench came from (path or ``"<mapping>"``).
    """

    name: str
    circuit: Any
    circuit_ref: str
    line_frequency_hz: float
    seed: int
    instruments: Mapping[str, InstrumentSpec]
    wiring: Wiring
    timing: Timing
    source: str = "<mapping>"


def bench_root() -> Path:
    """Folder of the shipped bench files (``configs/benches``)."""
    import hil.configs

    return Path(hil.configs.__file__).resolve().parent / "benches"


def shipped_bench_names() -> list[str]:
    """Names of the shipped bench files."""
    root = bench_root()
    return sorted(p.stem for p in root.glob("*.yaml")) if root.is_dir() else []


def _resolve_path(ref: str) -> Path:
    """A bench file: the path itself when it exists, else the shipped bench of that name given bare
    (``scpi-xor``, ``scpi-xor.yaml``) or in the checkout's spelling (``configs/benches/scpi-xor.yaml``,
    from any folder); a path into any other folder is a file of the user's own, never replaced."""
    p = Path(ref)
    if p.is_file():
        return p
    if str(p.parent) in (".", "configs/benches"):
        cand = bench_root() / (p.name if p.name.endswith(".yaml") else f"{p.name}.yaml")
        if cand.is_file():
            return cand
    raise ConfigError([f"bench file not found: {ref} (shipped benches: {', '.join(shipped_bench_names()) or 'none'})"])


def _num(sec: Section, key: str, *, default: Any = None, positive: bool = False, non_negative: bool = False,
         required: bool = False) -> Optional[float]:
    if not sec.has(key):
        sec.used.add(key)
        if required:
            sec.error(key, "required")
        return default
    val = sec.raw(key)
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(float(val)):
        sec.error(key, f"expected a finite number, got {val!r}")
        return default
    val = float(val)
    if positive and not val > 0:
        sec.error(key, f"must be > 0, got {val:g}")
    if non_negative and not val >= 0:
        sec.error(key, f"must be >= 0, got {val:g}")
    return val


def _channel_name(driver: str, raw: Any) -> Optional[str]:
    text = str(raw).strip()
    if driver == "keithley2450":
        return "" if text in ("", "1", "smu") else None
    if driver == "keysight_b2900":
        return text if text in ("1", "2") else None
    if driver == "keithley2600":
        low = text.lower()
        low = low[3:] if low.startswith("smu") else low
        return low if low in ("a", "b") else None
    if driver in SCANNER_DRIVERS:
        return text if re.fullmatch(r"[1-3]\d{2}", text) and text[1:] != "00" else None
    return text


def _autozero(sec: Section, default: str) -> str:
    """``autozero``: ``off``/``once``/``on`` (YAML's bare ``off``/``on`` booleans accepted)."""
    if sec.has("autozero") and isinstance(sec.data["autozero"], bool):
        sec.used.add("autozero")
        return "on" if sec.data["autozero"] else "off"
    return sec.get("autozero", str, default, choices=_AUTOZERO) or default


def _smu_channel(sec: Section, timing: Timing) -> dict[str, Any]:
    s: dict[str, Any] = {}
    for key in ("v_min", "v_max", "max_step_v", "max_slew_v_per_s"):
        s[key] = _num(sec, key, required=True, positive=key in ("max_step_v", "max_slew_v_per_s"))
    if sec.has("i_limit_a") and not sec.has("i_compliance_a"):
        s["i_compliance_a"] = _num(sec, "i_limit_a", positive=True)
        sec.used.add("i_compliance_a")
    else:
        s["i_compliance_a"] = _num(sec, "i_compliance_a", required=True, positive=True)
        if sec.has("i_limit_a"):
            sec.used.add("i_limit_a")
            sec.error("i_limit_a", "give i_compliance_a or its alias i_limit_a, not both")
    if not sec.has("max_power_w"):
        sec.used.add("max_power_w")
        sec.error("max_power_w", "required (a power in W, or null for no power bound)")
        s["max_power_w"] = None
    elif sec.data.get("max_power_w") is None:
        sec.used.add("max_power_w")
        s["max_power_w"] = None
    else:
        s["max_power_w"] = _num(sec, "max_power_w", positive=True)
    if s["v_min"] is not None and s["v_max"] is not None and not s["v_min"] < s["v_max"]:
        sec.error("v_max", f"must be > v_min ({s['v_min']:g} V), got {s['v_max']:g} V")
    # every output is switched on at 0 V, returns to 0 V after every batch and is ramped to 0 V at
    # shutdown: a channel whose bounds exclude 0 V could never be driven within them
    if s["v_min"] is not None and s["v_min"] > 0:
        sec.error("v_min", f"must be <= 0 V (outputs start and end at 0 V), got {s['v_min']:g} V")
    if s["v_max"] is not None and s["v_max"] < 0:
        sec.error("v_max", f"must be >= 0 V (outputs start and end at 0 V), got {s['v_max']:g} V")
    s["nplc"] = _num(sec, "nplc", default=timing.nplc, positive=True)
    s["current_range_a"] = _num(sec, "current_range_a", default=s["i_compliance_a"], positive=True)
    if s["current_range_a"] is not None and s["i_compliance_a"] is not None and s["current_range_a"] < s["i_compliance_a"]:
        sec.error("current_range_a", f"below i_compliance_a ({s['i_compliance_a']:g} A)")
    s["voltage_range_v"] = _num(sec, "voltage_range_v", default=None, positive=True)
    span = max(abs(s["v_min"] or 0.0), abs(s["v_max"] or 0.0))
    if s["voltage_range_v"] is not None and s["voltage_range_v"] < span:
        # the instrument refuses a level beyond its fixed source range (error -222, level unchanged)
        sec.error("voltage_range_v", f"{s['voltage_range_v']:g} V cannot source the channel's bounds "
                                     f"(up to {span:g} V): give a range >= max(|v_min|, |v_max|) or leave it out")
    s["autozero"] = _autozero(sec, timing.autozero)
    s["source_delay_s"] = _num(sec, "source_delay_s", default=timing.source_delay_s, non_negative=True)
    s["off_mode"] = sec.get("off_mode", str, "zero", choices=_OFF_MODES)
    s["four_wire"] = sec.get("four_wire", bool, False)
    sec.finish()
    return s


def _check_source_range(sec: Section, settings: dict[str, Any], driver: str, model: Optional[str]) -> None:
    """``v_min`` / ``v_max`` / ``voltage_range_v`` within the largest source level (V), and
    ``i_compliance_a`` / ``current_range_a`` within the largest DC source current (A), of the model
    the bench names (of the driver's family without a model): a limit the instrument cannot even
    source is a typo, not a limit."""
    from hil.drivers.registry import load_driver

    cls = load_driver(driver)
    if not hasattr(cls, "max_source_v_of"):
        return
    top = cls.max_source_v_of(model)
    for key in ("v_min", "v_max", "voltage_range_v"):
        v = settings.get(key)
        if v is not None and abs(v) > top:
            sec.error(key, f"{v:g} V is beyond the {model or driver}'s {top:g} V source range")
    top_a = cls.max_source_a_of(model) if hasattr(cls, "max_source_a_of") else math.inf
    given = ("i_limit_a" if sec.has("i_limit_a") and not sec.has("i_compliance_a") else "i_compliance_a",
             *(("current_range_a",) if sec.has("current_range_a") else ()))  # (the range defaults to the limit)
    for key in given:
        i = settings.get("i_compliance_a" if key == "i_limit_a" else key)
        if isinstance(i, (int, float)) and abs(i) > top_a:
            sec.error(key, f"{i:g} A is beyond the {model or driver}'s {top_a:g} A source range")
    lo, hi = getattr(cls, "NPLC_RANGE", (0.0, math.inf))
    nplc = settings.get("nplc")
    if nplc is not None and not lo <= nplc <= hi:
        sec.error("nplc", f"{nplc:g} is outside the {model or driver}'s {lo:g}..{hi:g} PLC")


def _scanner_channel(sec: Section, timing: Timing) -> dict[str, Any]:
    from hil.drivers.daq970a import MAX_DELAY_S, NPLC_VALUES, RANGES_V

    listed = lambda values: ", ".join(f"{v:g}" for v in values)
    s: dict[str, Any] = {}
    s["range_v"] = _num(sec, "range_v", required=True, positive=True)
    if s["range_v"] is not None and s["range_v"] > 0 and not any(abs(s["range_v"] - r) < 1e-12 for r in RANGES_V):
        sec.error("range_v", f"{s['range_v']:g} V is not a DC range of the scanner ({listed(RANGES_V)} V)")
    s["nplc"] = _num(sec, "nplc", default=timing.nplc, positive=True)
    if s["nplc"] is not None and s["nplc"] > 0 and not any(abs(s["nplc"] - v) < 1e-9 for v in NPLC_VALUES):
        sec.error("nplc", f"{s['nplc']:g} is not an integration time of the scanner ({listed(NPLC_VALUES)} PLC)")
    s["autozero"] = _autozero(sec, timing.autozero)
    s["delay_s"] = _num(sec, "delay_s", default=timing.source_delay_s, non_negative=True)
    if s["delay_s"] is not None and s["delay_s"] > MAX_DELAY_S:
        sec.error("delay_s", f"must be <= {MAX_DELAY_S:g} s, got {s['delay_s']:g} s")
    sec.finish()
    return s


_OPTION_KEYS = {
    "smu": ("require_interlock", "allowed_errors", "serial", "firmware", "binary", "trigger_line"),
    "scanner": ("slots", "allowed_errors", "serial", "firmware", "input_impedance", "relay_s"),
    "matrix": ("slot", "slots", "rows", "columns", "forbidden", "settle_s", "allowed_errors", "serial", "firmware",
               "relay_time_s"),
}


def _instrument(sec: Section, name: str, timing: Timing, driver_names: list[str]) -> Optional[InstrumentSpec]:
    problems_at_start = len(sec.problems)
    if not _NAME_RE.match(name):
        sec.problems.append(f"{sec.path}: instrument name must match [a-z][a-z0-9_]*")
    driver = sec.get("driver", str)
    model = sec.get("model", str)
    resource = sec.get("resource", str)
    if resource is not None and (why := _resource_problem(resource)) is not None:
        sec.error("resource", why)
    visa_library = sec.get("visa_library", str, "@py")
    timeout_s = _num(sec, "timeout_s", default=5.0, positive=True)
    kind = None
    if driver is not None:
        if driver not in driver_names:
            sec.error("driver", f"unknown driver {driver!r}; known: {', '.join(driver_names)}")
        kind = ("smu" if driver in SMU_DRIVERS else "scanner" if driver in SCANNER_DRIVERS
                else "matrix" if driver in MATRIX_DRIVERS else None)
        if kind is None and driver in driver_names:
            sec.error("driver", f"driver {driver!r} has no bench role (smu, scanner or matrix)")
    if model is not None and driver in driver_names:
        from hil.drivers.registry import driver_info

        models = driver_info(driver).models
        if model not in models:
            sec.error("model", f"{model!r} is not a {driver} model ({', '.join(models)})")
    channels: dict[str, ChannelSpec] = {}
    ch_sec = sec.section("channels", required=kind in ("smu", "scanner"))
    for raw_ch in list(ch_sec.data):
        ch_sec.used.add(raw_ch)
        sub = Section(ch_sec.data[raw_ch], f"{ch_sec.path}.{raw_ch}", sec.problems)
        if kind is None:
            continue
        ch = _channel_name(driver, raw_ch)
        if ch is None or kind == "matrix":
            sec.problems.append(f"{ch_sec.path}.{raw_ch}: not a channel of {driver}")
            continue
        if ch in channels:
            sec.problems.append(f"{ch_sec.path}.{raw_ch}: channel given twice")
            continue
        settings = _smu_channel(sub, timing) if kind == "smu" else _scanner_channel(sub, timing)
        if kind == "smu":
            _check_source_range(sub, settings, driver, model)
        channels[ch] = ChannelSpec(ch, settings)
    if kind in ("smu", "scanner") and isinstance(ch_sec.data, dict) and not ch_sec.data and sec.has("channels"):
        sec.error("channels", "at least one channel")
    options: dict[str, Any] = {}
    for key in _OPTION_KEYS.get(kind or "", ()):
        if sec.has(key):
            options[key] = sec.raw(key)
    if kind == "matrix":
        slot = options.get("slot", 1)
        if isinstance(slot, bool) or not isinstance(slot, int) or not 1 <= slot <= 6:
            sec.error("slot", f"expected an integer 1..6, got {slot!r}")
        options["slot"] = slot
    if kind == "scanner" and "input_impedance" in options and options["input_impedance"] not in ("high", "10M"):
        sec.error("input_impedance", "one of 'high' (>10 GΩ on ranges ≤ 10 V) or '10M'")
    if "trigger_line" in options:
        line = options["trigger_line"]
        top = {"keithley2600": 14, "keithley2450": 6}.get(driver or "")
        if top is None:
            sec.error("trigger_line", f"only keithley2600 and keithley2450 SMUs take a digital I/O trigger line "
                      f"({driver} triggers on its own fixed input)")
        elif line is not None and (isinstance(line, bool) or not isinstance(line, int) or not 1 <= line <= top):
            sec.error("trigger_line", f"expected a digital I/O line 1..{top} or null, got {line!r}")
        elif line is not None and model in ("2604B", "2614B", "2634B"):
            sec.error("trigger_line", f"the {model} has no digital I/O port")
    if "allowed_errors" in options:
        ae = options["allowed_errors"]
        if not (isinstance(ae, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in ae)):
            sec.error("allowed_errors", "expected a list of integer error codes")
    _check_option_types(sec, options)
    sec.finish()
    if driver is None or model is None or resource is None or kind is None:
        return None
    spec = InstrumentSpec(name, driver, kind, model, resource, visa_library, timeout_s or 5.0, channels, options)
    if len(sec.problems) == problems_at_start:  # the rest is right: would the driver take it?
        _driver_accepts(sec, spec)
    return spec


def _check_option_types(sec: Section, options: dict[str, Any]) -> None:
    """Shapes of the instrument options the drivers, emulators and the timing model read."""
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
    slots = options.get("slots")
    if "slots" in options and not (isinstance(slots, dict) and slots
                                   and all(is_int(k) and is_int(v) and v > 0 for k, v in slots.items())):
        sec.error("slots", f"expected a mapping {{slot: number of channels}} of positive integers, got {slots!r}")
    for key in ("relay_s", "relay_time_s"):
        v = options.get(key)
        if key in options and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf):
            sec.error(key, f"expected a finite time in s >= 0, got {v!r}")
    for key in ("require_interlock", "binary"):
        if key in options and not isinstance(options[key], bool):
            sec.error(key, f"expected true or false, got {options[key]!r}")
    if "rows" in options and not isinstance(options["rows"], str):
        sec.error("rows", f"expected the row letters as a string (e.g. ABCDEFGH), got {options['rows']!r}")


def _driver_accepts(sec: Section, spec: InstrumentSpec) -> None:
    """Build the (unconnected, transport-less) driver once, so every setting its constructor refuses
    (e.g. a B2900 autozero other than off, scanner channels that disagree) is a configuration error
    with the instrument's path now, not an error when the bench is opened."""
    from hil.bench.instruments import message_without_name, offline_driver
    from hil.drivers.errors import InstrumentConfigError

    try:
        offline_driver(spec)
    except (InstrumentConfigError, TypeError, ValueError) as exc:
        sec.problems.append(f"{sec.path}: {message_without_name(exc, spec.name)}")


def _endpoint(text: Any, path: str, instruments: Mapping[str, InstrumentSpec], problems: list[str],
              kinds: tuple[str, ...]) -> Optional[tuple[str, str]]:
    if not isinstance(text, str):
        problems.append(f"{path}: expected 'instrument.channel', got {text!r}")
        return None
    inst, _, ch = text.partition(".")
    spec = instruments.get(inst)
    if spec is None:
        problems.append(f"{path}: unknown instrument {inst!r} (bench has {', '.join(instruments) or 'none'})")
        return None
    if spec.kind not in kinds:
        problems.append(f"{path}: {inst} is a {spec.kind}; expected a {' or '.join(kinds)}")
        return None
    if not _ and spec.driver == "keithley2450":
        ch = ""
    name = _channel_name(spec.driver, ch)
    if name is None or name not in spec.channels:
        problems.append(f"{path}: {inst} has no configured channel {ch!r} "
                        f"(configured: {', '.join(repr(c) for c in spec.channels) or 'none'})")
        return None
    return inst, name


def _wiring(sec: Section, circuit: Any, instruments: Mapping[str, InstrumentSpec]) -> Wiring:
    problems = sec.problems
    used: dict[tuple[str, str], str] = {}

    def group(key: str, names: tuple[str, ...], kinds: tuple[str, ...], what: str) -> dict[str, tuple[str, str]]:
        sub = sec.section(key)
        out: dict[str, tuple[str, str]] = {}
        for node, target in sub.data.items():
            sub.used.add(node)
            path = f"{sub.path}.{node}"
            if circuit is not None and node not in names:
                problems.append(f"{path}: the circuit has no {what} {node!r} ({', '.join(names)})")
                continue
            end = _endpoint(target, path, instruments, problems, kinds)
            if end is None:
                continue
            if end in used:
                problems.append(f"{path}: {port_name(*end)} is already wired to {used[end]}")
                continue
            used[end] = node
            out[str(node)] = end
        return out

    src_names = tuple(circuit.source_names) if circuit is not None else ()
    out_names = tuple(circuit.output_names) if circuit is not None else ()
    hid_names = tuple(circuit.hidden_names) if circuit is not None else ()
    sources = group("sources", src_names, ("smu",), "source node")
    outputs = group("outputs", out_names, ("smu",), "output port")
    hidden = group("hidden", hid_names, ("scanner", "smu"), "hidden node")
    circuit_nodes = set(src_names + out_names + hid_names + ("0",))
    lines: dict[str, tuple[tuple[str, str], ...]] = {}
    l_sec = sec.section("lines")
    for line, targets in l_sec.data.items():
        l_sec.used.add(line)
        path = f"{l_sec.path}.{line}"
        if line in circuit_nodes:
            problems.append(f"{path}: {line!r} is a circuit node; wire it under sources/outputs/hidden")
            continue
        items = targets if isinstance(targets, list) else [targets]
        ends = []
        for k, t in enumerate(items):
            end = _endpoint(t, f"{path}[{k}]" if isinstance(targets, list) else path, instruments, problems,
                            ("smu", "scanner"))
            if end is None:
                continue
            if end in used:
                problems.append(f"{path}: {port_name(*end)} is already wired to {used[end]}")
                continue
            used[end] = str(line)
            ends.append(end)
        lines[str(line)] = tuple(ends)
    matrices = [n for n, s in instruments.items() if s.kind == "matrix"]
    crosspoints: dict[tuple[str, str], tuple[str, str]] = {}
    matrix_drivers: dict[str, Any] = {}  # each matrix's offline driver, built once
    x_sec = sec.section("crosspoints")
    known_lines = circuit_nodes | set(lines)
    for key, pair in x_sec.data.items():
        x_sec.used.add(key)
        path = f"{x_sec.path}.{key}"
        inst, dot, spec = str(key).rpartition(".")
        if not dot:
            if len(matrices) != 1:
                problems.append(f"{path}: name the matrix ('matrix.{key}'); the bench has "
                                f"{len(matrices)} matrices")
                continue
            inst, spec = matrices[0], str(key)
        elif inst not in matrices:
            problems.append(f"{path}: {inst!r} is not a matrix of this bench ({', '.join(matrices) or 'none'})")
            continue
        if not _CROSSPOINT_RE.match(spec):
            problems.append(f"{path}: crosspoint must look like 1A01 (slot, row letter, two-digit column)")
            continue
        slot = instruments[inst].options.get("slot", 1)
        if int(spec[0]) != slot:
            problems.append(f"{path}: slot {spec[0]} but {inst} owns slot {slot}")
            continue
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair) and pair[0] != pair[1]):
            problems.append(f"{path}: expected [line_a, line_b], two different line names")
            continue
        for x in pair:
            if x not in known_lines:
                problems.append(f"{path}: unknown line {x!r} (circuit nodes or wiring.lines)")
        if sum(1 for x in pair if x in circuit_nodes) > 1:
            problems.append(f"{path}: joins two circuit nodes {pair[0]!r} and {pair[1]!r}; not supported")
        where = _crosspoint_problem(instruments[inst], spec, matrix_drivers)
        if where is not None:
            problems.append(f"{path}: not on {inst}: {where}")
            continue
        if (inst, spec.upper()) in crosspoints:  # ("1a04" and "1A04": one relay, two meanings)
            problems.append(f"{path}: the same crosspoint as {spec.upper()!r} above (keys are not case-sensitive)")
            continue
        crosspoints[(inst, spec.upper())] = (pair[0], pair[1])
    sec.finish()
    return Wiring(sources, outputs, hidden, lines, crosspoints)


def _crosspoint_problem(spec: InstrumentSpec, crosspoint: str, built: dict[str, Any]) -> Optional[str]:
    """Why ``crosspoint`` (e.g. "1A04") is not a relay of matrix ``spec`` (its rows and columns, as
    its driver knows them), or None; None too when the driver cannot be built (that problem is
    reported with the instrument).  ``built`` keeps each matrix's offline driver (or None)."""
    from hil.bench.instruments import matrix_crosspoint, offline_driver

    if spec.name not in built:
        try:
            built[spec.name] = offline_driver(spec)
        except Exception:  # (reported with the instrument's own settings)
            built[spec.name] = None
    matrix = built[spec.name]
    return None if matrix is None else matrix_crosspoint(matrix, crosspoint)[1]


def _resource_problem(resource: str) -> Optional[str]:
    """Why ``resource`` is not an address the bench could open (the check its connection makes later,
    after other instruments were already switched on: pyvisa's parser on the stripped string, and
    a SOCKET port from 1 to 65535), or None."""
    from hil.drivers.errors import InstrumentConfigError
    from hil.drivers.transport import parse_resource_name

    try:
        parse_resource_name(resource)
    except InstrumentConfigError as exc:
        if exc.__cause__ is None:  # empty, or a SOCKET port outside 1..65535: the transport's own words
            return str(exc)
        reason, name = str(exc.__cause__), resource.strip()
        for prefix in (f"Could not parse {name}: ", f"Could not parse {name!r}. "):
            reason = reason[len(prefix):] if reason.startswith(prefix) else reason
        if "syntax" not in reason:
            reason += "; for example TCPIP::192.0.2.10::5025::SOCKET, TCPIP::host::inst0::INSTR or GPIB0::5::INSTR"
        return f"{resource!r} is not a VISA resource name: {reason[:1].lower()}{reason[1:]}"
    return None


def _visa_address_key(resource: str) -> str:
    """A VISA resource name in a form that is equal for two spellings of one address: case-insensitive,
    and interface board 0 written or not (``GPIB0::5::INSTR`` is ``GPIB::5::INSTR``)."""
    return re.sub(r"^([A-Z]+)0::", r"\1::", resource.strip().upper())


def _circuit(ref: Any, path: str, base: Optional[Path], problems: list[str]) -> tuple[Any, str]:
    from hil.circuit.build import build_circuit

    if isinstance(ref, Mapping):
        try:
            return build_circuit(dict(ref), path), "<inline>"
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None, "<inline>"
    if not isinstance(ref, str):
        problems.append(f"{path}: expected a config name, a path or a circuit mapping, got {ref!r}")
        return None, str(ref)
    candidate = Path(ref)
    if base is not None and not candidate.is_absolute() and (base / ref).is_file():
        candidate = base / ref
    try:
        raw = load_yaml(candidate if candidate.is_file() else ref)
    except ConfigError as exc:
        problems.extend(f"{path}: {p}" for p in exc.problems)
        return None, ref
    circ = raw.get("board", {}).get("circuit") if isinstance(raw.get("board"), dict) else None
    if circ is None and "inputs" in raw and "hidden" in raw:
        circ = raw
    if not isinstance(circ, dict):
        problems.append(f"{path}: {ref} has no board.circuit mapping")
        return None, ref
    try:
        return build_circuit(circ, f"{path}({ref}).board.circuit"), ref
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None, ref


def load_bench(source: Union[str, Path, Mapping[str, Any]], field_path: str = "bench") -> Bench:
    """Read and validate a bench file, a shipped bench name, or an already-parsed mapping.

    The mapping may hold the bench at the top level or under a ``bench:`` key.

    Raises:
        ConfigError: every problem found, each ``dotted.path: message``.
    """
    from hil.drivers.registry import driver_names

    base: Optional[Path] = None
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        origin = "<mapping>"
    else:
        path = _resolve_path(str(source))
        raw = load_yaml(path)
        origin = str(path)
        base = path.parent
    if isinstance(raw, dict) and set(raw) == {"bench"}:
        raw = raw["bench"]
    problems: list[str] = []
    sec = Section(raw, field_path, problems)
    name = sec.get("name", str, "bench")
    circuit_ref = sec.raw("circuit")
    if circuit_ref is None:
        sec.error("circuit", "required (shipped config name, path, or a circuit mapping)")
        circuit, ref = None, ""
    else:
        circuit, ref = _circuit(circuit_ref, f"{field_path}.circuit", base, problems)
    f_line = _num(sec, "line_frequency_hz", default=50.0, positive=True)
    if f_line is not None and f_line not in (50.0, 60.0):
        sec.error("line_frequency_hz", f"50 or 60 Hz, got {f_line:g}")
    seed = sec.get("seed", int, 0)
    if seed is not None and seed < 0:
        sec.error("seed", f"must be an integer >= 0, got {seed}")
        seed = 0
    t_sec = sec.section("timing")
    nplc = _num(t_sec, "nplc", default=1.0, positive=True)
    delay = _num(t_sec, "source_delay_s", default=1e-3, non_negative=True)
    az = _autozero(t_sec, "once")
    t_sec.finish()
    timing = Timing(nplc or 1.0, delay if delay is not None else 1e-3, az or "once")
    instruments: dict[str, InstrumentSpec] = {}
    i_sec = sec.section("instruments", required=True)
    names = driver_names()
    for inst_name in i_sec.data:
        i_sec.used.add(inst_name)
        spec = _instrument(Section(i_sec.data[inst_name], f"{i_sec.path}.{inst_name}", problems),
                           str(inst_name), timing, names)
        if spec is not None:
            instruments[str(inst_name)] = spec
    if sec.has("instruments") and not i_sec.data:
        sec.error("instruments", "at least one instrument")
    first_at: dict[str, str] = {}
    for inst_name, spec in instruments.items():  # two entries for one instrument would drive its channels twice
        other = first_at.setdefault(_visa_address_key(spec.resource), inst_name)
        if other != inst_name:
            problems.append(f"{i_sec.path}.{inst_name}.resource: {spec.resource!r} is the address of "
                            f"{i_sec.path}.{other} too; every instrument needs its own")
    wiring = _wiring(sec.section("wiring"), circuit, instruments)
    sec.finish()
    if problems:
        raise ConfigError(problems, origin if origin != "<mapping>" else "")
    return Bench(name, circuit, ref, float(f_line or 50.0), int(seed or 0), instruments, wiring, timing, origin)
