"""``board.backend: instruments``: the board section of a training config, validated.

    board:
      backend: instruments
      g_min: 1.0e-8
      g_max: 1.0e-4
      bench: bench-xor            # shipped bench name, path, or the bench mapping inline
      acquisition: {mode: auto, settle_s: 0.0, ramp_points: true, max_points: 2000, noise_floor_v: 0.0}
      programming:
        scheme: write_verify      # or: none (a fixed array)
        smu: prog.a               # programming SMU channel
        matrix: matrix            # switch matrix selecting one device at a time
        devices: {g_in[h0,x0]: [1A01, 1B01], ...}   # conductance name → crosspoints that select it
        v_read: 0.1
        ...                       # any WriteVerifySettings field
        expected: {pulses_per_device: 2.0, touched_fraction: 0.3}   # hil estimate's programming figures

The bench itself (instruments, mandatory limits, wiring, timing) is validated by
:func:`hil.bench.schema.load_bench`; this module adds the wiring checks the board needs (every
source, output and hidden node of the circuit wired exactly once) and the acquisition and
programming sections.  Every problem is reported at once with its dotted path.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

from hil.config import ConfigError, Section, load_yaml

__all__ = ["InstrumentBoardSpec", "parse_instrument_board", "level_problems", "levels_beyond_bounds", "node_bounds",
           "ACQUISITION_MODES", "SCHEMES"]

ACQUISITION_MODES = ("auto", "triggered", "stepwise")
SCHEMES = ("write_verify", "none")


@dataclass(frozen=True)
class InstrumentBoardSpec:
    """A validated instrument board: the bench plus acquisition and programming settings."""

    bench: Any  # hil.bench.schema.Bench
    acquisition: dict
    programming: dict


def _bench(raw: Any, path: str, problems: list[str]) -> Any:
    from hil.bench.schema import load_bench

    if raw is None:
        problems.append(f"{path}: required for the instruments backend (a shipped bench name, a path or a mapping)")
        return None
    if not isinstance(raw, (str, dict)):
        problems.append(f"{path}: expected a bench name, a path or a mapping, got {raw!r}")
        return None
    try:
        return load_bench(raw, field_path=path)
    except ConfigError as exc:
        problems.extend(f"{path}: {q}" if q.startswith("bench file not found") else q for q in exc.problems)
        return None


def _raw_bench(raw: Any) -> tuple[Any, Any]:
    """(circuit, wiring mapping) of a bench that failed to load, for the board's own checks (best effort)."""
    from hil.bench import schema

    try:
        data = load_yaml(schema._resolve_path(raw)) if isinstance(raw, str) else raw
        if isinstance(data, dict) and set(data) == {"bench"}:
            data = data["bench"]
        circuit, _ = schema._circuit(data.get("circuit"), "bench.circuit", None, [])
        wiring = data.get("wiring") or {}
        return circuit, {k: dict(wiring.get(k) or {}) for k in ("sources", "outputs", "hidden")}
    except Exception:
        return None, None


def _board_wiring_problems(c: Any, w: Any, path: str) -> list[str]:
    """Every circuit source, output and hidden node wired (the schema checks channels and duplicates)."""
    out = []
    for label, names, wired in (("sources", c.source_names, w["sources"]), ("outputs", c.output_names, w["outputs"]),
                                ("hidden", c.hidden_names, w["hidden"])):
        missing = [n for n in names if n not in wired]
        if missing:
            out.append(f"{path}.wiring.{label}: not wired: {', '.join(missing)} (the board measures every "
                       f"{label[:-1] if label != 'hidden' else 'hidden'} node)")
    return out


def parse_instrument_board(b: Section) -> Optional[InstrumentBoardSpec]:
    """Read ``board.bench``, ``board.acquisition`` and ``board.programming`` (problems go to ``b``)."""
    from hil.boards.programmers import WriteVerifySettings

    problems = b.problems
    raw_bench = b.raw("bench")
    bench = _bench(raw_bench, b._p("bench"), problems)
    if bench is not None and bench.circuit is not None:
        w = bench.wiring
        problems.extend(_board_wiring_problems(bench.circuit, {"sources": w.sources, "outputs": w.outputs,
                                                               "hidden": w.hidden}, b._p("bench")))
        for node, (inst, _) in w.hidden.items():
            if bench.instruments[inst].kind != "scanner":
                problems.append(f"{b._p('bench')}.wiring.hidden.{node}: the instrument board senses hidden "
                                "nodes with a scanner")
    elif raw_bench is not None:
        circuit, wiring = _raw_bench(raw_bench)
        if circuit is not None:
            problems.extend(_board_wiring_problems(circuit, wiring, b._p("bench")))
    a = b.section("acquisition")
    acq = {
        "acquisition": a.get("mode", str, "auto", choices=ACQUISITION_MODES),
        "settle_s": a.get("settle_s", float, 0.0, check=lambda v: None if v >= 0 else "must be >= 0"),
        "ramp_points": a.get("ramp_points", bool, True),
        "max_points": a.get("max_points", int, 2000, check=lambda v: None if v >= 1 else "must be >= 1"),
        "noise_floor_v": a.get("noise_floor_v", float, 0.0, check=lambda v: None if v >= 0 else "must be >= 0"),
    }
    a.finish()
    if acq["acquisition"] == "triggered" and bench is not None:
        lacking = _without_triggered(bench)
        if lacking:
            a.error("mode", f"triggered acquisition needs triggered list sweeps/scans; {', '.join(lacking)} "
                            "cannot (use auto or stepwise)")
    p = b.section("programming")
    scheme = p.get("scheme", str, "write_verify" if b.has("programming") else "none", choices=SCHEMES)
    prog: dict = {"scheme": scheme}
    if scheme == "write_verify":
        prog["smu"] = p.get("smu", str)
        prog["matrix"] = p.get("matrix", str)
        devices = p.get("devices", dict)
        prog["devices"] = devices
        wv_keys = {f.name for f in fields(WriteVerifySettings)}
        settings = {k: p.raw(k) for k in list(p.data) if k in wv_keys}
        try:
            prog["settings"] = WriteVerifySettings(**settings)
        except (TypeError, ValueError) as exc:
            problems.append(f"{p.path}: {exc}")
        _check_programming(p, prog, bench, _raw_bench(raw_bench) if bench is None and raw_bench is not None else None)
        if p.raw("expected") is not None:  # null: not declared (hil estimate falls back to its default)
            prog["expected"] = _expected_programming(p.section("expected"))
    p.finish()
    if bench is None:
        return None
    return InstrumentBoardSpec(bench, acq, prog)


def _expected_programming(e: Section) -> dict:
    """``board.programming.expected``: the write-verify figures ``hil estimate`` assumes per training
    step (pulses per reprogrammed device, fraction of the trainable devices reprogrammed), typically
    measured on an ``--emulate`` rehearsal of the config; the programmer itself ignores them."""
    out = {
        "pulses_per_device": e.get("pulses_per_device", float, check=lambda v: None if 0 <= v <= 1e6
                                   else f"must be between 0 and 1e6 pulses, got {v:g}"),
        "touched_fraction": e.get("touched_fraction", float, check=lambda v: None if 0 <= v <= 1
                                  else f"a fraction of the trainable devices, from 0 to 1, got {v:g}"),
    }
    e.finish()
    return out


#: SMU drivers that join the bench trigger line only through a configured digital I/O line
TRIGGER_LINE_DRIVERS = ("keithley2600", "keithley2450")


def _without_triggered(bench: Any) -> list[str]:
    """Wired instruments whose driver lacks the triggered capability (``TriggeredSweeps``/``TriggeredScans``)."""
    from hil.drivers.registry import load_driver

    w = bench.wiring
    need = {i: ("arm_sweep", "fetch_sweep") for group in (w.sources, w.outputs) for i, _ in group.values()}
    need.update({i: ("arm_scan", "fetch_scan") for i, _ in w.hidden.values()})
    out = []
    for name, members in need.items():
        spec = bench.instruments[name]
        cls = load_driver(spec.driver)
        wired = spec.options.get("trigger_line") is not None if spec.driver in TRIGGER_LINE_DRIVERS else True
        if not all(hasattr(cls, m) for m in members):
            out.append(f"{name} ({spec.driver})")
        elif not wired:
            out.append(f"{name} ({spec.driver} without trigger_line)")
    smus = [i for group in (w.sources, w.outputs) for i, _ in group.values()]
    if not out and not any(getattr(load_driver(bench.instruments[i].driver), "leads_bench_trigger", True) for i in smus):
        out.append("every SMU (none can lead the bench trigger line)")
    return sorted(out)


def _check_programming(p: Section, prog: dict, bench: Any, fallback: Any = None) -> None:
    """Programming SMU, matrix and device map against the bench (or, if it failed to load, the device
    map against its circuit)."""
    if bench is None:
        circuit = fallback[0] if fallback else None
        if circuit is not None:
            _check_devices(p, prog.get("devices"), circuit)
        return
    smu = prog.get("smu")
    if isinstance(smu, str):
        inst, _, ch = smu.partition(".")
        spec = bench.instruments.get(inst)
        if spec is None or spec.kind != "smu":
            p.error("smu", f"{inst!r} is not an SMU of the bench")
        elif ch not in spec.channels and not (ch == "" and "" in spec.channels):
            p.error("smu", f"{inst} has no configured channel {ch!r}")
        else:
            used = {f"{i}.{c}" for group in (bench.wiring.sources, bench.wiring.outputs) for i, c in group.values()}
            if f"{inst}.{ch}" in used:
                p.error("smu", f"{smu} already drives a circuit node; programming needs its own channel")
            else:
                _check_pulse_levels(p, prog.get("settings"), smu, spec.channels[ch])
            _check_pulse_widths(p, prog.get("settings"), inst, spec.driver)
    matrix = prog.get("matrix")
    matrix_spec = None
    if isinstance(matrix, str):
        spec = bench.instruments.get(matrix)
        if spec is None or spec.kind != "matrix":
            p.error("matrix", f"{matrix!r} is not a switch matrix of the bench")
        else:
            matrix_spec = spec
    if bench.circuit is not None:
        _check_devices(p, prog.get("devices"), bench.circuit)
    if matrix_spec is not None and isinstance(prog.get("devices"), dict):
        _check_crosspoints_on_matrix(p, prog["devices"], matrix_spec)


def _check_crosspoints_on_matrix(p: Section, devices: dict, spec: Any) -> None:
    """Every device's crosspoints exist on the programming matrix (its slot, rows, columns) and are
    not forbidden: the matrix driver would refuse them only at the first selection, mid-run."""
    from hil.bench.instruments import matrix_crosspoint, offline_driver

    try:
        matrix = offline_driver(spec)
    except Exception:  # the bench schema has reported what is wrong with the matrix itself
        return
    forbidden = set(getattr(matrix, "forbidden", ()) or ())
    for name, xs in devices.items():
        if not (isinstance(xs, list) and all(isinstance(x, str) for x in xs)):
            continue  # reported by _check_devices
        for x in xs:
            xp, why = matrix_crosspoint(matrix, x)
            if why is not None:
                p.error(f"devices.{name}", f"not on {spec.name}: {why}")
                break
            if xp in forbidden:
                p.error(f"devices.{name}", f"{x}: a forbidden crosspoint of {spec.name}")
                break


def _check_pulse_widths(p: Section, settings: Any, inst: str, driver: str) -> None:
    """``width_s`` and ``min_width_s`` within the pulse widths the programming SMU's driver can
    produce (its ``PULSE_WIDTH_RANGE_S``, when it declares one)."""
    from hil.drivers.registry import load_driver

    if settings is None:
        return
    try:
        bounds = getattr(load_driver(driver), "PULSE_WIDTH_RANGE_S", None)
    except Exception:  # an unknown driver is reported where the bench is validated
        return
    if bounds is None:
        return
    lo, hi = bounds
    for key in ("width_s", "min_width_s"):
        value = getattr(settings, key)
        if not lo <= value <= hi:
            p.error(key, f"{value:g} s is outside the {lo:g}..{hi:g} s pulse widths of {inst} ({driver})")


def _check_pulse_levels(p: Section, settings: Any, smu: str, channel: Any) -> None:
    """Every level write-verify may apply (pulses up to ±``v_max``, ``set_v``, ``reset_v``,
    ``v_read``) within the programming channel's effective bounds (V, ``max_power_w`` included),
    and every pulse edge (from 0 V) within its ``max_step_v``: otherwise the driver would refuse
    the first such pulse in the middle of a run."""
    from hil.drivers.limits import effective_bounds

    if settings is None:
        return
    try:
        limits = channel.smu_config().limits
    except Exception:  # the channel's own problems are reported where the bench is validated
        return
    lo, hi = effective_bounds(limits)
    where = f"{smu}'s limits ({lo:g} .. {hi:g} V)"
    if settings.v_max > hi or -settings.v_max < lo:
        p.error("v_max", f"pulses up to {settings.v_max:g} V exceed {where}")
    for key in ("set_v", "reset_v", "v_read"):
        value = getattr(settings, key)
        if not lo <= value <= hi:
            p.error(key, f"{value:g} V exceeds {where}")
    if settings.v_max > limits.max_step_v * (1 + 1e-9):
        p.error("v_max", f"pulses up to {settings.v_max:g} V start from 0 V with an edge above {smu}'s "
                         f"max_step_v {limits.max_step_v:g} V")


def _check_devices(p: Section, devices: Any, circuit: Any) -> None:
    if isinstance(devices, dict):
        names = list(circuit.topology().edge_names)
        missing = [n for n in names if n not in devices]
        unknown = [n for n in devices if n not in names]
        if missing:
            p.error("devices", f"no crosspoints for {len(missing)} conductance(s), e.g. {missing[:3]}")
        if unknown:
            p.error("devices", f"unknown conductance name(s) {unknown[:3]} (see 'hil solve' / the circuit topology)")
        seen: dict[frozenset, str] = {}
        for name, xs in devices.items():
            if not (isinstance(xs, list) and xs and all(isinstance(x, str) for x in xs)):
                hint = " (quote them: 1E01 reads as a number)" if isinstance(xs, list) and any(
                    isinstance(x, (int, float)) for x in xs) else ""
                p.error(f"devices.{name}", f"expected a non-empty list of crosspoints like \"1A01\"{hint}")
                continue
            key = frozenset(x.upper() for x in xs)
            if key in seen:
                p.error(f"devices.{name}", f"selected by the same crosspoints as {seen[key]}")
            seen[key] = name


def node_bounds(spec: InstrumentBoardSpec, topology: Any) -> dict[str, tuple[float, float, str]]:
    """``{node: (lo, hi, channel)}`` for every wired source node and output port of ``topology``:
    the channel's effective source bounds in V (``v_min``/``v_max`` narrowed by ``max_power_w``),
    as the drivers enforce them, and its name (``"smu1.a"``, or ``"smu_y2"`` for a 2450)."""
    from hil.drivers.limits import effective_bounds

    bench = spec.bench
    out = {}
    for node, kind in zip(topology.node_names, topology.node_kinds):
        port = (bench.wiring.sources if kind == "source" else bench.wiring.outputs if kind == "output" else {}).get(node)
        if port is None:
            continue
        lo, hi = effective_bounds(bench.instruments[port[0]].channels[port[1]].smu_config().limits)
        out[node] = (lo, hi, f"{port[0]}.{port[1]}" if port[1] else port[0])
    return out


def levels_beyond_bounds(spec: InstrumentBoardSpec, topology: Any, wanted: list) -> list[tuple]:
    """The entries of ``wanted`` = [(node, lowest V, highest V, key), …] that a wired channel's bounds
    (:func:`node_bounds`, 1 pV of slack for rounding) do not allow, each with those bounds:
    [(node, lowest, highest, key, channel lo, channel hi, channel name), …]; unwired nodes are skipped."""
    bounds = node_bounds(spec, topology)
    out = []
    for node, lo_v, hi_v, key in wanted:
        if node in bounds:
            lo, hi, where = bounds[node]
            if lo_v < lo - 1e-12 or hi_v > hi + 1e-12:
                out.append((node, lo_v, hi_v, key, lo, hi, where))
    return out


def level_problems(spec: InstrumentBoardSpec, topology: Any, inputs: Any, estimator: str,
                   options: dict) -> list[str]:
    """Levels a training run will ask of an SMU channel beyond its bench limits, one line each.

    The source nodes carry every sample of ``inputs`` (logical inputs, mapped by the topology:
    inverted copies and rails included); the output ports their normal voltage, moved by the
    estimator's drive ``options["delta_v"]`` (V) in the perturbed phases. The board would refuse
    such a batch at run time (nothing applied, exit 1) after opening the bench; here it is a
    configuration mistake named before anything is opened.

    Args:
        spec: the validated instrument board.
        topology: the board's :class:`~hil.board.BoardTopology`.
        inputs: (N, n_inputs) every sample the run measures, V before the input map.
        estimator: the configured estimator name (for the dotted path of its drive).
        options: that estimator's options.
    """
    import numpy as np

    names = [n for n, k in zip(topology.node_names, topology.node_kinds) if k == "source"]
    ports = [n for n, k in zip(topology.node_names, topology.node_kinds) if k == "output"]
    x = np.asarray(inputs, dtype=float)
    u = topology.source_voltages(x.reshape(-1, topology.n_inputs)) if x.size else np.zeros((0, len(names)))
    drive = float(options.get("delta_v") or 0.0) if estimator == "hl" else 0.0  # hl's ± port drive
    # a bench measures hl in one sweep of per-port drives: +delta_v only when one-sided; otherwise the
    # drive follows the loss and may take either sign
    one_sided_ports = options.get("central", True) is False and options.get("one_sweep") is not False
    below = 0.0 if one_sided_ports else drive
    rest = np.asarray(topology.output_voltage, dtype=float)
    wanted = [(node, u[:, j].min(initial=0.0), u[:, j].max(initial=0.0),
               "data.input_scale_v" if np.any(topology.source_matrix[j]) else "board.bench.circuit (its rail)")
              for j, node in enumerate(names)]
    wanted += [(node, rest[j] - below, rest[j] + drive,
                f"train.{estimator}.delta_v" if drive else "board.bench.circuit (its output voltage)")
               for j, node in enumerate(ports)]
    return [f"{key}: {node} would reach {lo_v or 0.0:g} .. {hi_v or 0.0:g} V, beyond {where}'s limits "
            f"{lo:g} .. {hi:g} V in the bench file (a batch beyond them is refused)"
            for node, lo_v, hi_v, key, lo, hi, where in levels_beyond_bounds(spec, topology, wanted)]
