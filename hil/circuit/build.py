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
        g_hh: {random: {degree: 2, low: 1.0e-6, high: 1.0e-5}}   # or none / pairs / matrix / number
        g_leak: 1.0e-7
        g_out: {uniform: [1.0e-6, 1.0e-5]}

Conductances are in siemens, voltages in volts, temperatures in °C.
"""

from __future__ import annotations

from typing import Any

from dataclasses import replace

import numpy as np

from hil.circuit.coupling import Coupling, CouplingError, random_coupling
from hil.circuit.elements import DIODE_KINDS, DIODE_PRESETS, DiodeBank, SPICE_GMIN_S
from hil.circuit.model import Circuit, CircuitError, make_sources
from hil.config import (MAX_ABS_VOLTAGE_V, MAX_CONDUCTANCE_S, ConfigError, Section, in_range, non_negative,
                        plain_name, positive)

#: Refuse circuits whose conductances would need more than this fraction of the RAM.
MEMORY_FRACTION = 0.5


def _available_memory_bytes() -> int:
    """Physical memory of this machine in bytes (a generous 16 GiB when it cannot be read)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


#: Bytes a training board holds per conductance: its two node indices in the topology (16), its
#: name ``R_<a>_<b>`` as a Python string (about 72), and float64 copies in the circuit, the nodal
#: system, the board's read-back, the optimizer's two moments and the gradient (6 × 8).
BYTES_PER_CONDUCTANCE = 16 + 72 + 6 * 8
#: Bytes per coupling resistor beyond that: the pair and value (24), its two entries of the
#: sparse nodal matrix (2 × 12) and of the per-node adjacency (2 × 8).
BYTES_PER_PAIR = 24 + 2 * 12 + 2 * 8
#: Bytes per hidden node: diode parameters, diagonal and row sums, solver and step vectors.
BYTES_PER_NODE = 256


def estimated_memory_bytes(n_hidden: int, n_sources: int, n_outputs: int, n_pairs: int = 0) -> int:
    """Bytes a board of this size holds while it trains, before batch-dependent work (float64).

    ``n_pairs`` is the number of hidden↔hidden coupling resistors.  Everything grows with the
    number of conductances, n·p + n_pairs + n + q·n (the coupling is sparse: no n × n term);
    a training step adds working memory that grows with the batch (0.3–0.9× this figure at
    batch 32 on the digits network with 256–4096 hidden nodes, see docs/performance.md).
    """
    n, p, q = n_hidden, n_sources, n_outputs
    conductances = n * p + n_pairs + n + q * n
    return int(conductances * BYTES_PER_CONDUCTANCE + n_pairs * BYTES_PER_PAIR + n * BYTES_PER_NODE)


def coupling_pairs_bound(g_hh: Any, n: int) -> int:
    """Most coupling resistors a raw ``conductances.g_hh`` value can create among n hidden nodes
    (a matrix given in the config counts as all pairs)."""
    all_pairs = n * (n - 1) // 2
    if g_hh is None or g_hh == "none" or (isinstance(g_hh, (int, float)) and not isinstance(g_hh, bool) and g_hh == 0):
        return 0
    if isinstance(g_hh, dict) and isinstance(g_hh.get("random"), dict):
        degree = g_hh["random"].get("degree", 2)
        degree = degree if isinstance(degree, int) and not isinstance(degree, bool) and degree > 0 else 2
        return min(n * degree, all_pairs)
    if isinstance(g_hh, dict) and isinstance(g_hh.get("pairs"), list):
        return min(len(g_hh["pairs"]), all_pairs)
    return all_pairs


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
    return _check_size(sec, count("hidden"), p, count("outputs"), _raw_coupling(data))


def _raw_coupling(data: Any) -> Any:
    g_spec = data.get("conductances") if isinstance(data, dict) else None
    return g_spec.get("g_hh") if isinstance(g_spec, dict) else None


def _check_size(sec: Section, n: int, p: int, q: int, g_hh: Any) -> bool:
    need = estimated_memory_bytes(n, p, q, coupling_pairs_bound(g_hh, n))
    have = _available_memory_bytes()
    if need > MEMORY_FRACTION * have:
        sec.problems.append(f"{sec.path}: {n} hidden nodes, {p} sources and {q} outputs need about "
                            f"{need / 2**30:.3g} GiB for the conductances; this machine has "
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
    from hil.circuit.laws import ELEMENTS

    kind = sec.get("model", str, "ideal", choices=tuple(ELEMENTS))
    if kind not in DIODE_KINDS and not getattr(ELEMENTS.get(kind), "uses_diode_bank", False):
        return _registry_element(sec, kind, n)
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
    if kind == "antiparallel_shockley" and sec.has("r_s") and np.any(bank.r_s > 0):
        sec.error("r_s", "antiparallel_shockley has no series resistance (it would be ignored); remove the key "
                  "or use model: shockley")
    sec.finish()
    if kind not in DIODE_KINDS:  # a registry element built on the diode-bank parameters
        return replace(bank, element=ELEMENTS[kind](bank))
    return bank


def _registry_element(sec: Section, kind: str, n: int) -> DiodeBank:
    """A node element from :mod:`hil.circuit.laws` (its own keys), wrapped in a diode bank."""
    from hil.circuit.laws import ELEMENTS

    element = ELEMENTS[kind].from_config(sec, n)
    sec.finish()
    base = DIODE_PRESETS["1N4148"]
    return DiodeBank(kind=kind, orientation=np.ones(n, int), v_ref=np.zeros(n), i_s=np.full(n, base["i_s"]),
                     n=np.full(n, base["n"]), r_s=np.zeros(n), element=element)


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


def _coupling(sec: Section, n: int, hidden_names: list[str], rng: np.random.Generator) -> Coupling:
    """The ``g_hh`` coupling, built sparse (no (n, n) array except for the matrix form)."""
    val = sec.raw("g_hh", None)
    if val is None or val == "none" or (isinstance(val, (int, float)) and not isinstance(val, bool) and val == 0):
        return Coupling.none(n)
    if isinstance(val, dict) and "random" in val:
        return _random_coupling(sec, val["random"], n, rng)
    if isinstance(val, dict) and set(val) == {"pairs"}:
        return _listed_coupling(sec, val["pairs"], n, hidden_names)
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        if not 0 <= val <= MAX_CONDUCTANCE_S:
            sec.error("g_hh", f"conductance {val} S must be in [0, {MAX_CONDUCTANCE_S:g}] S")
            return Coupling.none(n)
        k, l = np.triu_indices(n, 1)  # every pair: all-to-all coupling
        return Coupling(n, np.stack([k, l], axis=1), np.full(k.size, float(val)))
    g = _matrix(sec, "g_hh", (n, n), rng, None)
    try:
        return Coupling.from_dense(g)
    except CouplingError as exc:
        sec.error("g_hh", str(exc))
        return Coupling.none(n)


def _random_coupling(sec: Section, data: Any, n: int, rng: np.random.Generator) -> Coupling:
    """``{random: {degree, low, high}}``: see :func:`hil.circuit.coupling.random_coupling`."""
    spec = Section(data, sec._p("g_hh.random"), sec.problems)
    before = len(sec.problems)
    degree = spec.get("degree", int, 2, check=positive)
    lo = spec.get("low", float, 1e-6, check=in_range(0, MAX_CONDUCTANCE_S, "S"))
    hi = spec.get("high", float, 1e-5, check=in_range(0, MAX_CONDUCTANCE_S, "S"))
    spec.finish()
    if len(sec.problems) == before and lo > hi:
        spec.error("high", "must be >= low")
    if len(sec.problems) > before:
        return Coupling.none(n)
    return random_coupling(n, degree, lo, hi, rng)


def _listed_coupling(sec: Section, items: Any, n: int, hidden_names: list[str]) -> Coupling:
    """``{pairs: [[a, b, g], ...]}``: a, b hidden-node names or 0-based indices, g in siemens."""
    key = "g_hh.pairs"
    if not isinstance(items, list):
        sec.error(key, "expected a list of [node, node, conductance_S] entries")
        return Coupling.none(n)
    index = {nm: i for i, nm in enumerate(hidden_names)}
    ends, vals = [], []
    for i, item in enumerate(items):
        if not (isinstance(item, list) and len(item) == 3):
            sec.error(f"{key}[{i}]", f"expected [node, node, conductance_S], got {item!r}")
            continue
        kl = []
        for node in item[:2]:
            if isinstance(node, str) and node in index:
                kl.append(index[node])
            elif isinstance(node, int) and not isinstance(node, bool) and 0 <= node < n:
                kl.append(node)
            else:
                sec.error(f"{key}[{i}]", f"{node!r} is not a hidden node (a name or an index 0..{n - 1})")
        g = item[2]
        if not (isinstance(g, (int, float)) and not isinstance(g, bool) and 0 <= g <= MAX_CONDUCTANCE_S):
            sec.error(f"{key}[{i}]", f"conductance {g!r} must be a number in [0, {MAX_CONDUCTANCE_S:g}] S")
        elif len(kl) == 2 and kl[0] == kl[1]:
            sec.error(f"{key}[{i}]", f"joins hidden node {item[0]!r} to itself (no self-loops)")
        elif len(kl) == 2:
            ends.append(kl)
            vals.append(float(g))
    try:
        return Coupling.from_pairs(n, np.array(ends, dtype=np.int64).reshape(-1, 2), vals)
    except CouplingError as exc:
        sec.error(key, str(exc))
        return Coupling.none(n)


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
    if not _check_size(sec, n, p, q, _raw_coupling(data)):
        raise ConfigError(problems)
    s_g = sec.section("conductances", required=True)
    for key in ("g_in", "g_out"):
        if s_g.data and key not in s_g.data:
            s_g.error(key, "required (a number, a matrix, or {uniform: [low, high]} in siemens)")
    g_in = _matrix(s_g, "g_in", (n, p), rng, None)
    g_hh = _coupling(s_g, n, h_names or [], rng)
    g_leak = _per_node(s_g, "g_leak", 0.0, n, in_range(0, MAX_CONDUCTANCE_S, "S"))
    g_out = _matrix(s_g, "g_out", (q, n), rng, None)
    s_g.finish()
    sec.finish()
    if problems:
        raise ConfigError(problems)
    try:
        return Circuit(
            sources=sources, hidden_names=tuple(h_names), output_names=tuple(o_names), g_in=g_in, g_hh=g_hh,
            g_leak=g_leak, g_out=g_out, diodes=diodes, output_voltage=out_v, differential_pairs=tuple(pairs),
            name=name,
        ).validate()
    except CircuitError as exc:
        field = f"{path}.{exc.field}" if not exc.field.startswith(path) else exc.field
        raise ConfigError([f"{field}: {str(exc).split(': ', 1)[1]}"]) from None
