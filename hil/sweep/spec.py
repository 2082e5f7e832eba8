"""Sweep files: YAML → validated :class:`SweepSpec` → one :class:`RunPoint` per (grid point, seed).

A sweep file names a base training config, fixed overrides, a grid of config keys and a list
of seeds (see ``docs/sweep.md``)::

    name: lr-width
    config: sim-digits                 # path (relative to this file or the current directory) or shipped name
    set: {train.epochs: 20}            # applied to every run
    grid:                              # every combination of these values ...
      board.circuit.hidden.count: [32, 64]
      train.optimizer.lr: [2.0e-6, 5.0e-6]
    seeds: [0, 1, 2]                   # ... times every seed
    seed_keys: [seed, board.circuit.seed]
    metric: test_acc                   # summarised and plotted
    output: sweeps/lr-width            # the sweep directory
    workers: auto                      # local process pool size
    cluster: null                      # a Dask scheduler address, or 'local'
    cluster_timeout_s: 20              # how long to try to reach the scheduler

The grid key ``config`` varies the base config itself.  Each run's identity is a hash of its
fully resolved training config, so a finished run is recognised (and skipped) when the sweep
is started again, and a run whose config changed is trained anew.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.config import ConfigError, Section, embedded_config_names, file_kind, load_yaml
from hil.train.settings import parse_settings

METRICS = ("test_acc", "val_acc", "train_acc")
DEFAULT_SEED_KEYS = ("seed", "board.circuit.seed")


@dataclass(frozen=True)
class SweepSpec:
    name: str
    source: str  # the sweep file
    configs: tuple[str, ...]  # base configs (one, or the values of grid key 'config')
    fixed: dict[str, Any]
    grid: dict[str, list]  # without 'config'
    vary_config: bool
    seeds: tuple[int, ...]
    seed_keys: tuple[str, ...]
    metric: str
    output: str
    workers: int | None  # None: sized to the machine
    cluster: str | None
    cluster_timeout_s: float
    plot_x: str | None


@dataclass(frozen=True)
class RunPoint:
    """One training run of a sweep."""

    run_id: str  # directory name: readable label + hash of the resolved config
    config: str  # base config name or path
    values: dict[str, Any]  # grid key -> value (without the seed)
    seed: int
    raw: dict  # fully resolved training config

    @property
    def label(self) -> str:
        parts = [f"{_short(k)}={_fmt(v)}" for k, v in self.values.items()]
        return ", ".join(parts) if parts else "(base)"


def _short(key: str) -> str:
    parts = key.split(".")
    index = next((p for p in reversed(parts[:-1]) if p.isdigit()), None)  # a list entry: board.stages.1.…
    return parts[-1] if index is None else f"{parts[-1]}{index}"


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def set_path(raw: dict, key: str, value: Any, where: str) -> None:
    """Set a dotted ``key`` in a nested config mapping (creating mappings on the way).

    A numeric part indexes an existing list entry (``board.stages.1.buffer_gain``).
    """
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                raise ConfigError([f"{where}: {key}: no list entry {part} in the training config"])
            if last:
                node[int(part)] = copy.deepcopy(value)
                return
            nxt = node[int(part)]
        else:
            if last:
                node[part] = copy.deepcopy(value)
                return
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
        if not isinstance(nxt, (dict, list)):
            raise ConfigError([f"{where}: {key}: {part} is not a mapping in the training config"])
        node = nxt


def _key_ok(k: Any) -> str | None:
    if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_][\w-]*(\.([A-Za-z_][\w-]*|\d+))*", k):
        return f"{k!r} is not a dotted config key like train.optimizer.lr"
    return None


def parse_sweep(data: dict, source: str = "") -> SweepSpec:
    """Validate a sweep file's mapping; every problem is reported with its dotted path."""
    kind = file_kind(data)
    if kind in ("training config", "bench file") and "config" not in data:
        how = (f"train it with hil train, or write a sweep file naming it (config: {source or 'CONFIG'})"
               if kind == "training config" else "a sweep's config is a training config")
        raise ConfigError([f"a {kind}, not a sweep file: {how}"], source)
    problems: list[str] = []
    top = Section(data, "", problems)
    stem = Path(source).stem if source else "sweep"
    name = top.get("name", str, stem, check=lambda s: None if s and "/" not in s else "must be a plain name")
    config = top.get("config", str, None)
    fixed = top.get("set", dict, {}) or {}
    for k in fixed:
        if (msg := _key_ok(k)) is not None:
            problems.append(f"set: {msg}")
    grid_raw = top.get("grid", dict, {}) or {}
    grid: dict[str, list] = {}
    for k, vals in grid_raw.items():
        if (msg := _key_ok(k)) is not None:
            problems.append(f"grid: {msg}")
            continue
        if not isinstance(vals, list) or not vals:
            problems.append(f"grid.{k}: expected a non-empty list of values")
            continue
        if len({json.dumps(v, sort_keys=True, default=str) for v in vals}) != len(vals):
            problems.append(f"grid.{k}: values repeat")
        grid[k] = vals
    configs: tuple[str, ...] = ()
    vary_config = "config" in grid
    if vary_config:
        if config is not None:
            problems.append("config: give either config or grid.config, not both")
        if not all(isinstance(c, str) for c in grid["config"]):
            problems.append("grid.config: expected config paths or shipped config names")
        configs = tuple(str(c) for c in grid.pop("config"))
    elif config is None:
        problems.append("config: required (a training config path or shipped name), or grid.config")
    else:
        configs = (config,)
    for k in grid:
        if k in fixed:
            problems.append(f"grid.{k}: also fixed under set")
    seeds = top.get("seeds", list, [0]) or [0]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        problems.append("seeds: expected a list of integers >= 0")
        seeds = [0]
    elif len(set(seeds)) != len(seeds):
        problems.append("seeds: values repeat")
    seed_keys = top.get("seed_keys", list, list(DEFAULT_SEED_KEYS))
    for k in seed_keys or []:
        if (msg := _key_ok(k)) is not None:
            problems.append(f"seed_keys: {msg}")
        elif k in grid or k in fixed:
            problems.append(f"seed_keys: {k} is also set by grid or set; seeds vary it")
    metric = top.get("metric", str, "test_acc", choices=METRICS)
    output = top.get("output", str, f"sweeps/{name}")
    workers = top.get("workers", (int, str), "auto",
                      check=lambda w: None if w == "auto" or (isinstance(w, int) and w >= 1)
                      else "must be 'auto' or an integer >= 1")
    cluster = top.get("cluster", str, None)
    timeout = top.get("cluster_timeout_s", float, 20.0, check=lambda t: None if t > 0 else "must be > 0")
    p = top.section("plot")
    plot_x = p.get("x", str, None)
    p.finish()
    if plot_x is not None and plot_x not in grid and plot_x != "config":
        problems.append(f"plot.x: {plot_x} is not a grid key ({', '.join(grid) or 'no grid'})")
    top.finish()
    if problems:
        raise ConfigError(problems, source)
    return SweepSpec(name, source, configs, dict(fixed), grid, vary_config, tuple(seeds), tuple(seed_keys), metric,
                     output, None if workers == "auto" else int(workers), cluster, timeout, plot_x)


def load_sweep(path: str) -> SweepSpec:
    """Read and validate a sweep file."""
    p = Path(path)
    if not p.is_file() and str(path) in embedded_config_names():
        raise ConfigError([f"{path}: a shipped training config, not a sweep file: train it with hil train {path}, "
                           f"or write a sweep file naming it (config: {path})"])
    if p.is_dir():
        raise ConfigError([f"{path}: is a directory, expected a sweep file (YAML)"])
    if not p.is_file():
        raise ConfigError([f"file not found: {path}"])
    return parse_sweep(load_yaml(p), str(p))


def _resolve_config(config: str, spec: SweepSpec) -> str:
    """A relative config path is looked up next to the sweep file first."""
    if spec.source:
        beside = Path(spec.source).parent / config
        if beside.is_file():
            return str(beside)
    return config


def config_hash(raw: dict) -> str:
    """Short stable hash of a resolved training config (its run identity)."""
    text = json.dumps(raw, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=._+-]+", "_", text).strip("_")[:80]


def _seed_targets(raw: dict, key: str) -> list[str]:
    """``board.circuit.seed`` on a cascade config (``board.stages``) means every stage's circuit seed."""
    board = raw.get("board")
    if key == "board.circuit.seed" and isinstance(board, dict) and board.get("backend") == "instruments":
        return []  # a bench's circuit is the physical array: no initial conductances to draw
    if key == "board.circuit.seed" and isinstance(board, dict) and "circuit" not in board \
            and isinstance(board.get("stages"), list):
        return [f"board.stages.{i}.circuit.seed" for i in range(len(board["stages"]))]
    return [key]


def _unmeasured_metric(metric: str, settings) -> str | None:
    """Why a run with ``settings`` would leave ``metric`` empty (NaN), or None when it measures it."""
    if metric == "test_acc" and not settings.eval_test:
        return "its train.evaluate_test is false; set it true or choose metric: val_acc or train_acc"
    if metric == "val_acc" and not settings.validation_fraction > 0:
        return "it has no validation split; give data.validation_fraction (e.g. 0.2) or choose another metric"
    return None


def _trainable_problem(settings, topologies: dict) -> str | None:
    """Why ``train.trainable`` selects no conductance of the point's board (as training would refuse
    it), else None.  Plain ``g_in`` or ``g_out`` always select some (with no stage name to check);
    otherwise the topology of a simulated board is built (once per distinct board spec, cached in
    ``topologies``); an instrument bench's groups are checked when its run starts (knowing them
    means opening the bench)."""
    from hil.train.optim import trainable_mask

    names = set(settings.trainable)
    if settings.backend != "simulated" or ({"g_in", "g_out"} & names and not any("." in str(t) for t in names)):
        return None
    key = json.dumps([settings.circuit, settings.devices], sort_keys=True, default=str)
    if key not in topologies:
        from hil.boards.factory import make_board

        topologies[key] = make_board("simulated", settings.circuit, settings.g_min, settings.g_max,
                                     devices=settings.devices).topology
    try:
        trainable_mask(topologies[key], settings.trainable)
    except ValueError as exc:
        return str(exc)
    return None


def expand(spec: SweepSpec) -> list[RunPoint]:
    """Every (config, grid combination, seed) as a validated training config.

    Each resolved config is checked with the training config parser first, so a bad grid
    value stops the sweep before any run starts (``grid.<key>=<value>: <problem>``).
    """
    base_by_config = {}
    for c in spec.configs:
        try:
            base_by_config[c] = load_yaml(_resolve_config(c, spec))
        except ConfigError as exc:
            key = "grid.config" if spec.vary_config else "config"
            raise ConfigError([f"{key}: {c}: {p}" for p in exc.problems], spec.source) from None
    keys = list(spec.grid)
    points: list[RunPoint] = []
    problems: list[str] = []
    failing: dict[str, dict[str, list[int]]] = {}  # problem -> grid point -> seeds (reported once each)
    unmeasured_in: dict[str, list[str]] = {}  # why the metric stays empty -> the runs it concerns
    groups_of: dict[str, Any] = {}  # simulated board spec -> its topology (built once per distinct board)
    for config in spec.configs:
        for combo in itertools.product(*(spec.grid[k] for k in keys)):
            values = dict(zip(keys, combo))
            if spec.vary_config:
                values = {"config": config, **values}
            for seed in spec.seeds:
                raw = copy.deepcopy(base_by_config[config])
                try:
                    for k, v in spec.fixed.items():
                        set_path(raw, k, v, "set")
                    for k, v in zip(keys, combo):
                        set_path(raw, k, v, f"grid.{k}")
                    for k in spec.seed_keys:
                        for key in _seed_targets(raw, k):
                            set_path(raw, key, seed, "seed_keys")
                except ConfigError as exc:  # a key the config cannot hold: name the sweep file
                    raise ConfigError(exc.problems, spec.source) from None
                raw.setdefault("output", {})
                if isinstance(raw["output"], dict):
                    raw["output"].pop("runs_dir", None)
                where = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()) or config
                try:
                    settings = parse_settings(copy.deepcopy(raw))
                except ConfigError as exc:
                    for p in exc.problems:
                        failing.setdefault(p, {}).setdefault(where, []).append(seed)
                    continue
                if (problem := _trainable_problem(settings, groups_of)) is not None:
                    failing.setdefault(problem, {}).setdefault(where, []).append(seed)
                    continue
                if (unmeasured := _unmeasured_metric(spec.metric, settings)) is not None:
                    unmeasured_in.setdefault(unmeasured, []).append(f"{where}, seed {seed}")
                    continue
                label = "-".join(f"{_short(k)}={Path(str(v)).stem if k == 'config' else _fmt(v)}"
                                 for k, v in values.items())
                run_id = _slug(f"{label + '-' if label else ''}seed={seed}") + "-" + config_hash(raw)
                points.append(RunPoint(run_id, config, values, seed, raw))
    n_runs = len(spec.configs) * len(spec.seeds) * len(list(itertools.product(*(spec.grid[k] for k in keys))))
    problems += [_runs_with(problem, seeds_at, n_runs) for problem, seeds_at in failing.items()]
    for why, runs in unmeasured_in.items():
        which = "every run" if len(runs) == n_runs else f"{len(runs)} of {n_runs} runs (e.g. {runs[0]})"
        problems.append(f"metric: {spec.metric} would stay empty in {which}: {why}")
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)), spec.source)
    return points


def _runs_with(problem: str, seeds_at: dict[str, list[int]], n_runs: int, shown: int = 3) -> str:
    """One line for a config problem and the runs it concerns: ``every run: …`` when it is in all of
    them, else its grid points with their seeds (the first ``shown`` points, then a count)."""
    count = sum(map(len, seeds_at.values()))
    if count == n_runs and n_runs > 1:
        return f"every run: {problem}"
    parts = [f"{where} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
             for where, seeds in seeds_at.items()]
    rest = count - sum(len(seeds) for seeds in list(seeds_at.values())[:shown])
    more = f" and {rest} more run{'s' if rest > 1 else ''}" if rest else ""
    return f"{'; '.join(parts[:shown])}{more}: {problem}"
