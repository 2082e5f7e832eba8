"""Build a :class:`~hil.circuit.model.Circuit` from the ``circuit:`` section of a config.

Example::

    circuit:
      name: xor
      seed: 0                       # for generated conductances
      inputs: {count: 2, inverted: true, rails: {vb_p: 1.0, vb_n: -1.0}}
      hidden:
        count: 8
        element: {model: shockley, preset: 1N4148, temperature_c: 27}
      outputs: {count: 2, voltage: 0.0, differential: true}
      conductances:
        g_in: {uniform: [1.0e-6, 1.0e-5]}      # or an (n, p) list of lists, or a scalar
        g_hh: {random: {degree: 2, low: 1.0e-6, high: 1.0e-5}}   # or none / matrix
        g_leak: 1.0e-7
        g_out: {uniform: [1.0e-6, 1.0e-5]}

Conductances are in siemens, voltages in volts, temperatures in °C.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hil.circuit.elements import DIODE_KINDS, DIODE_PRESETS, DiodeBank, SPICE_GMIN_S
from hil.circuit.model import Circuit, CircuitError, make_sources
from hil.config import (MAX_ABS_VOLTAGE_V, MAX_CONDUCTANCE_S, ConfigError, Section, in_range, non_negative,
                        plain_name, positive)

#: Refuse circuits whose dense matrices would need more than this fraction of the RAM.
MEMORY_FRACTION = 0.5


def _available_memory_bytes() -> int:
    """Physical memory of this machine in bytes (a generous 16 GiB when it cannot be read)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def estimated_memory_bytes(n_hidden: int, n_sources: int, n_outputs: int, coupled: bool) -> int:
    """Bytes the circuit's conductance matrices and a solve's factorization need (float64)."""
    n, p, q = n_hidden, n_sources, n_outputs
    entries = n * p + n * n + q * n + 4 * n  # g_in, g_hh (dense), g_out, per-node vectors
    if coupled:
        entries += n * n  # a dense Laplacian / factorization
    return 8 * entries


def _early_size_check(sec: Section, data: Any) -> bool:
    """Refuse absurd sizes from the raw counts, before any per-node list is built."""
    def count(section: str) -> int:
        part = data.get(section) if isinstance(data, dict) else None
        c = part.get("count") if isinstance(part, dict) else None
        return c if isinstance(c, int) and not isinstance(c, bool) and c > 0 else 1

    inputs = data.get("inputs") if isinstance(data, dict) else None
    rails = inputs.get("rails") if isinstance(inputs, dict) else None
    n_in = count("inputs")
    p = n_in * (2 if isinstance(inputs, dict) and inputs.get("inverted") else 1) + (
        len(rails) if isinstance(rails, dict) else 0)
    g_spec = data.get("conductances") if isinstance(data, dict) else None
    coupled = isinstance(g_spec, dict) and g_spec.get("g_hh") not in (None, "none", 0)
    return _check_size(sec, count("hidden"), p, count("outputs"), coupled)


def _check_size(sec: Section, n: int, p: int, q: int, coupled: bool) -> bool:
    need = estimated_memory_bytes(n, p, q, coupled)
    have = _available_memory_bytes()
    if need > MEMORY_FRACTION * have:
        sec.problems.append(f"{sec.path}: {n} hidden nodes, {p} sources and {q} outputs need about "
                            f"{need / 2**30:.3g} GiB for the conductance matrices; this machine has "
                            f"{have / 2**30:.3g} GiB (at most {100 * MEMORY_FRACTION:.0f} % may be used)")
        return False
    return True


_voltage = in_range(-MAX_ABS_VOLTAGE_V, MAX_ABS_VOLTAGE_V, "V")


def _names(sec: Section, default_prefix: str) -> list[str] | None:
    if sec.has("names"):
        names = sec.get("names", list)
        if names is not None and (not names or not all(isinstance(x, str) and x for x in names)):
            sec.error("names", "must be a non-empty list of strings")
            return None
        bad = [(i, plain_name(x)) for i, x in enumerate(names or []) if plain_name(x)]
        if bad:
            sec.error(f"names[{bad[0][0]}]", bad[0][1])
            return None
        sec.get("count", int, None)
        return names
    count = sec.get("count", int, check=lambda v: positive(v) or (None if v <= 10**8 else "too large (at most 1e8)"))
    return [f"{default_prefix}{i}" for i in range(count)] if count else None


def _float_array(sec: Section, key: str, val: Any) -> np.ndarray | None:
    """``val`` as a finite float array, or None after recording a problem under ``key``."""
    try:
        arr = np.asarray(val, dtype=float)
    except (TypeError, ValueError):
        sec.error(key, "expected numbers (a number, or a list / list of lists of numbers)")
        return None
    if not np.all(np.isfinite(arr)):
        sec.error(key, "contains a non-finite value")
        return None
    return arr


def _per_node(sec: Section, key: str, default: float, n: int, check=None, what: str = "hidden nodes") -> np.ndarray:
    """A number (same for every entry) or a list of ``n`` numbers, as an (n,) array."""
    val = sec.get(key, (int, float, list), default)
    if isinstance(val, list):
        arr = _float_array(sec, key, val)
        if arr is None:
            return np.full(n, float(default))
        if arr.shape != (n,):
            sec.error(key, f"list of {arr.size} values for {n} {what}")
            return np.full(n, float(default))
    else:
        arr = np.full(n, float(val if val is not None else default))
    if check is not None and np.size(arr):
        msg = check(float(arr.min())) or check(float(arr.max()))
        if msg:
            sec.error(key, msg)
    return arr


def _temperature(t: float) -> str | None:
    return None if -273.15 < t <= 1000.0 else "must be above absolute zero and at most 1000 °C"


def _diodes(sec: Section, n: int) -> DiodeBank:
    kind = sec.get("model", str, "ideal", choices=DIODE_KINDS)
    preset = sec.get("preset", str, None, choices=tuple(DIODE_PRESETS))
    base = dict(DIODE_PRESETS["1N4148"])
    if preset:
        base.update(DIODE_PRESETS[preset])
    orient = sec.get("orientation", (int, list), 1)
    if isinstance(orient, list):
        arr = _float_array(sec, "orientation", orient)
        orientation = np.ones(n, int) if arr is None else arr.astype(int)
        if orientation.shape != (n,):
            sec.error("orientation", f"list of {orientation.size} values for {n} hidden nodes")
            orientation = np.ones(n, int)
    else:
        orientation = np.full(n, orient if orient is not None else 1, dtype=int)
    if not np.all(np.isin(orientation, (-1, 1))):
        sec.error("orientation", "must be +1 (anode at the reference) or -1 (anode at the node)")
    bank = DiodeBank(
        kind=kind or "ideal",
        orientation=orientation,
        v_ref=_per_node(sec, "v_ref", 0.0, n, _voltage),
        i_s=_per_node(sec, "i_s", base["i_s"], n, positive),
        n=_per_node(sec, "n", base["n"], n, positive),
        r_s=_per_node(sec, "r_s", base["r_s"], n, non_negative),
        temperature_c=sec.get("temperature_c", float, 27.0, check=_temperature),
        tnom_c=sec.get("tnom_c", float, 27.0, check=_temperature),
        xti=sec.get("xti", float, 3.0),
        eg_ev=sec.get("eg_ev", float, 1.11, check=positive),
        gmin_s=sec.get("gmin_s", float, SPICE_GMIN_S, check=non_negative),
        spice_compat=sec.get("spice_compat", bool, False),
    )
    sec.finish()
    return bank


def _matrix(sec: Section, key: str, shape: tuple[int, ...], rng: np.random.Generator, default: Any) -> np.ndarray:
    val = sec.raw(key, default)
    if val is None or val == "none" or val == 0:
        return np.zeros(shape)
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        if not 0 <= val <= MAX_CONDUCTANCE_S:
            sec.error(key, f"conductance {val} S must be in [0, {MAX_CONDUCTANCE_S:g}] S")
            return np.zeros(shape)
        return np.full(shape, float(val))
    if isinstance(val, dict):
        bounds = val.get("uniform") if set(val) == {"uniform"} else None
        if isinstance(bounds, list) and len(bounds) == 2 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in bounds):
            lo, hi = (float(x) for x in bounds)
            if not 0 <= lo <= hi <= MAX_CONDUCTANCE_S:
                sec.error(key, f"uniform: [low, high] needs 0 <= low <= high <= {MAX_CONDUCTANCE_S:g} (siemens)")
                return np.zeros(shape)
            return rng.uniform(lo, hi, size=shape)
        sec.error(key, "expected a number, a list, or {uniform: [low, high]}")
        return np.zeros(shape)
    arr = _float_array(sec, key, val)
    if arr is None:
        return np.zeros(shape)
    if arr.shape != shape:
        sec.error(key, f"shape {arr.shape} does not match the topology {shape}")
        return np.zeros(shape)
    if arr.size and not (arr.min() >= 0 and arr.max() <= MAX_CONDUCTANCE_S):
        sec.error(key, f"conductances must be in [0, {MAX_CONDUCTANCE_S:g}] S")
        return np.zeros(shape)
    return arr


def _coupling(sec: Section, n: int, rng: np.random.Generator) -> np.ndarray:
    val = sec.raw("g_hh", None)
    if isinstance(val, dict) and "random" in val:
        spec = Section(val["random"], sec._p("g_hh.random"), sec.problems)
        before = len(sec.problems)
        degree = spec.get("degree", int, 2, check=positive)
        lo = spec.get("low", float, 1e-6, check=in_range(0, MAX_CONDUCTANCE_S, "S"))
        hi = spec.get("high", float, 1e-5, check=in_range(0, MAX_CONDUCTANCE_S, "S"))
        spec.finish()
        g = np.zeros((n, n))
        if len(sec.problems) == before and lo > hi:
            spec.error("high", "must be >= low")
        if len(sec.problems) > before:
            return g
        for k in range(n):
            for l in rng.choice(n, size=min(degree, n - 1) if n > 1 else 0, replace=False):
                if l != k:
                    g[k, l] = g[l, k] = rng.uniform(lo, hi)
        return g
    g = _matrix(sec, "g_hh", (n, n), rng, None)
    if val is not None and isinstance(val, (int, float)) and not isinstance(val, bool):
        np.fill_diagonal(g, 0.0)
    return g


def build_circuit(data: dict, path: str = "circuit") -> Circuit:
    """Validate the ``circuit`` mapping and build the circuit; raises :class:`ConfigError`."""
    problems: list[str] = []
    sec = Section(data, path, problems)
    name = sec.get("name", str, "circuit", check=plain_name)
    seed = sec.get("seed", int, 0, check=non_negative)
    seed = seed if seed is not None and seed >= 0 else 0
    rng = np.random.default_rng(seed)
    if not _early_size_check(sec, data):
        raise ConfigError(problems)
    s_in = sec.section("inputs", required=True)
    in_names = _names(s_in, "x")
    inverted = s_in.get("inverted", bool, False)
    rails = s_in.get("rails", dict, {})
    rail_list = []
    for rn, rv in (rails or {}).items():
        if not isinstance(rv, (int, float)) or isinstance(rv, bool) or not np.isfinite(rv):
            s_in.error(f"rails.{rn}", f"expected a finite voltage in volts, got {rv!r}")
        elif _voltage(rv):
            s_in.error(f"rails.{rn}", _voltage(rv))
        elif plain_name(str(rn)):
            s_in.error(f"rails.{rn!r}", plain_name(str(rn)))
        else:
            rail_list.append((str(rn), float(rv)))
    s_in.finish()
    s_h = sec.section("hidden", required=True)
    h_names = _names(s_h, "h")
    n = len(h_names) if h_names else 1
    diodes = _diodes(s_h.section("element"), n)
    s_h.finish()
    s_o = sec.section("outputs", required=True)
    o_names = _names(s_o, "y")
    q = len(o_names) if o_names else 0
    out_v = _per_node(s_o, "voltage", 0.0, q, what="outputs")
    if q and np.max(np.abs(out_v)) > MAX_ABS_VOLTAGE_V:
        s_o.error("voltage", f"must be within ±{MAX_ABS_VOLTAGE_V:g} V")
    diff = s_o.get("differential", (bool, list), False)
    pairs: list[tuple[int, int]] = []
    if diff is True:
        if q % 2:
            s_o.error("differential", f"true needs an even number of outputs, got {q}")
        pairs = [(2 * i, 2 * i + 1) for i in range(q // 2)]
    elif isinstance(diff, list) and o_names:
        for i, pr in enumerate(diff):
            if not (isinstance(pr, list) and len(pr) == 2 and all(x in o_names for x in pr)):
                s_o.error(f"differential[{i}]", f"expected [plus_name, minus_name] of output names, got {pr!r}")
            else:
                pairs.append((o_names.index(pr[0]), o_names.index(pr[1])))
    s_o.finish()
    if problems:
        raise ConfigError(problems)
    sources = make_sources(len(in_names), inverted, rail_list, in_names)
    p = len(sources)
    g_spec = data.get("conductances") if isinstance(data, dict) else None
    coupled = isinstance(g_spec, dict) and g_spec.get("g_hh") not in (None, "none", 0)
    if not _check_size(sec, n, p, q, coupled):
        raise ConfigError(problems)
    s_g = sec.section("conductances", required=True)
    for key in ("g_in", "g_out"):
        if s_g.data and key not in s_g.data:
            s_g.error(key, "required (a number, a matrix, or {uniform: [low, high]} in siemens)")
    g_in = _matrix(s_g, "g_in", (n, p), rng, None)
    g_hh = _coupling(s_g, n, rng)
    g_leak = _per_node(s_g, "g_leak", 0.0, n, in_range(0, MAX_CONDUCTANCE_S, "S"))
    g_out = _matrix(s_g, "g_out", (q, n), rng, None)
    s_g.finish()
    sec.finish()
    if problems:
        raise ConfigError(problems)
    circuit = Circuit(
        sources=sources, hidden_names=tuple(h_names), output_names=tuple(o_names), g_in=g_in, g_hh=g_hh,
        g_leak=g_leak, g_out=g_out, diodes=diodes, output_voltage=out_v, differential_pairs=tuple(pairs),
        coupling_mask=g_hh > 0, name=name,
    )
    try:
        return circuit.validate()
    except CircuitError as exc:
        field = f"{path}.{exc.field}" if not exc.field.startswith(path) else exc.field
        raise ConfigError([f"{field}: {str(exc).split(': ', 1)[1]}"]) from None
