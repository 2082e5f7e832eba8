"""``hil activation``: the activation of a node element measured on a circuit, against its closed form.

The measurement circuit is one hidden node carrying the element, driven by a source x through a
resistance a (Ω) — exactly the circuit whose node voltage defines σ_a(x) (physics: the MON
activation is the resolvent (I + aF)⁻¹).  It is solved by the simulated board (``measure``), so
what is plotted is what the board reports, and compared with the element's own σ_a.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import numpy as np

from hil.config import ConfigError, embedded_config_names, embedded_config_path
from hil.cli_help import command_help

__all__ = ["add_parser", "measure_activation", "cmd_activation"]

#: Most sweep points one command measures (a few MB; far more than a plot can show).
MAX_POINTS = 100_000


def add_parser(subparsers: Any) -> None:
    """Register ``hil activation`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "activation", help="measure an element's activation on a one-node circuit and compare with σ_a",
        **command_help("Sweep a source x driving one node through a resistance a; the node voltage is the "
                       "element's activation σ_a(x). SUBJECT is an element name (see --list) or a config "
                       "(YAML path or shipped name) whose hidden.element is used (parameters of node 0).",
                       "hil activation --list", "hil activation shockley --plot shockley.png",
                       "hil activation clip --param v_hi=0.5 --json"))
    p.add_argument("subject", nargs="?", help="element name or config")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="element parameter (e.g. v_hi=0.5, r_s=2e4); numbers or strings")
    p.add_argument("--a", dest="a_ohm", type=float, default=10e3, help="series resistance a, Ω (default 10 kΩ)")
    p.add_argument("--range", dest="x_range", default="-2,2", help="sweep range LO,HI in volts (default -2,2)")
    p.add_argument("--points", type=int, default=201, help="number of sweep points (default 201)")
    p.add_argument("--plot", metavar="PNG", help="write measured vs closed-form σ_a and σ'_a to this file")
    p.add_argument("--json", action="store_true", help="print the sweep as JSON")
    p.add_argument("--list", action="store_true", help="list the registered elements and exit")
    p.set_defaults(func=cmd_activation)


def _closest_subject(subject: str, elements) -> str:
    """'did you mean …? ' for the element or shipped config name closest to ``subject``, else ''."""
    kinds = {name: "element" for name in elements}
    kinds.update({name: "config" for name in embedded_config_names() if name not in kinds})
    close = difflib.get_close_matches(subject, list(kinds), n=1)
    return f"did you mean the {kinds[close[0]]} {close[0]!r}? " if close else ""


def _element_config(subject: str, params: list[str]) -> dict:
    from hil.circuit.laws import ELEMENTS

    if subject in ELEMENTS:
        cfg: dict = {"model": subject}
    elif not Path(subject).exists() and embedded_config_path(subject) is None:
        raise ConfigError([f"{subject}: neither an element nor a config file or shipped config "
                           f"({_closest_subject(subject, ELEMENTS)}'hil activation --list' lists the elements, "
                           "'hil configs' the configs)"])
    else:
        from hil.api import load_config

        raw = load_config(subject)
        board = raw.get("board") or {}
        if "circuit" not in board and "circuit" not in raw and "bench" in board:
            raw = _bench_circuit_config(subject, board["bench"])
        stages = (raw.get("board") or {}).get("stages")
        if isinstance(stages, list):  # a cascade: one element per stage, no single answer
            models = [str((((st or {}).get("circuit") or {}).get("hidden") or {}).get("element", {}).get("model", "ideal"))
                      if isinstance(st, dict) else "?" for st in stages]
            listed = ", ".join(f"stage {k}: {m}" for k, m in enumerate(models))
            raise ConfigError([f"board.stages: a cascade has one element per stage ({listed}); give the element, "
                               f"e.g. hil activation {models[-1] if models else 'ideal'} --param KEY=VALUE"], subject)
        circ = (raw.get("board") or {}).get("circuit") or raw.get("circuit") or {}
        cfg = dict(((circ.get("hidden") or {}).get("element")) or {"model": "ideal"})
        for key, val in list(cfg.items()):  # per-node lists: node 0
            if isinstance(val, list):
                cfg[key] = val[0]
    for item in params:
        if "=" not in item:
            raise ConfigError([f"--param {item!r}: expected KEY=VALUE"])
        key, val = item.split("=", 1)
        try:
            cfg[key.strip()] = int(val) if val.strip().lstrip("+-").isdigit() else float(val)
        except ValueError:
            cfg[key.strip()] = {"true": True, "false": False}.get(val.strip().lower(), val.strip())
    return cfg


def _bench_circuit_config(subject: str, bench: Any) -> dict:
    """A bench config's circuit: the config its bench file names (``circuit:``), as a raw mapping."""
    from hil.api import load_config
    from hil.bench.schema import load_bench

    ref = load_bench(bench).circuit_ref
    if ref != "<inline>":
        try:
            return load_config(ref)
        except ConfigError:
            pass
    raise ConfigError([f"{subject}: a bench config whose bench circuit ({ref}) cannot be read as a config; give "
                       "the circuit's config or an element name with --param (hil activation --list)"])


def measure_activation(config: dict, a_ohm: float, x: np.ndarray) -> dict:
    """Node voltage of the one-node circuit measured through the simulated board, and σ_a, σ'_a.

    Returns {x, measured, closed_form, slope, max_abs_dev_v} (volts).  ``config`` is a
    ``hidden.element`` mapping.
    """
    from hil.boards.simulated import SimulatedBoard
    from hil.circuit.laws import element_bank
    from hil.circuit.model import Circuit, make_sources

    if not a_ohm > 0:
        raise ConfigError([f"--a: must be > 0 Ω, got {a_ohm:g}"])
    bank = element_bank(config, 1, "element")
    circuit = Circuit(make_sources(1, False, []), ("node",), ("port",), np.array([[1.0 / a_ohm]]),
                      np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), bank, np.zeros(1), name="activation")
    board = SimulatedBoard(circuit)
    with board:
        m = board.measure(x[:, None])
    sigma, slope = bank.law.activation(x[:, None], a_ohm)
    measured = m.e[:, 0]
    return {"x": x, "measured": measured, "closed_form": sigma[:, 0], "slope": slope[:, 0],
            "max_abs_dev_v": float(np.max(np.abs(measured - sigma[:, 0])))}


def cmd_activation(args) -> int:
    from hil.circuit.laws import ELEMENTS

    if args.list or not args.subject:
        for name, cls in ELEMENTS.items():
            keys = ", ".join(cls.keys) or {"antiparallel_shockley": "diode keys without r_s (preset, i_s, n, "
                                                                    "temperature_c, …)",
                                           "none": "–"}.get(name, "diode keys (preset, i_s, n, r_s, temperature_c, …)")
            print(f"{name:22s} {cls.summary}\n{'':22s} keys: {keys}")
        return 0
    try:
        lo, hi = (float(v) for v in args.x_range.split(","))
    except ValueError:
        raise ConfigError([f"--range {args.x_range!r}: expected LO,HI in volts"]) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi) or args.points < 2:
        raise ConfigError(["--range/--points: need LO < HI and at least 2 points"])
    if args.points > MAX_POINTS:
        raise ConfigError([f"--points: at most {MAX_POINTS} (got {args.points})"])
    if args.plot:
        from hil.cli import _output_path

        _output_path(args.plot, "--plot")  # a missing folder or unwritable file, before measuring
    cfg = _element_config(args.subject, args.param)
    res = measure_activation(cfg, args.a_ohm, np.linspace(lo, hi, args.points))
    if args.json:
        print(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in res.items()} | {"element": cfg}))
    else:
        print(f"element {cfg}, a = {args.a_ohm:g} Ω, {args.points} points in [{lo:g}, {hi:g}] V")
        print(f"max |measured − σ_a| = {res['max_abs_dev_v']:.2e} V")
    if args.plot:
        _plot(res, cfg, args.a_ohm, Path(args.plot))
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def _plot(res: dict, cfg: dict, a_ohm: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.plot(res["x"], res["closed_form"], "-", lw=2, color="0.7", label="closed form σ_a(x)")
    ax1.plot(res["x"], res["measured"], ".", ms=3, color="C0", label="measured node voltage")
    ax1.set_xlabel("drive x (V)")
    ax1.set_ylabel("node voltage (V)")
    ax1.legend(fontsize=8)
    ax1.set_title(f"{cfg.get('model')}, a = {a_ohm:g} Ω", fontsize=9)
    meas_slope = np.gradient(res["measured"], res["x"])
    ax2.plot(res["x"], res["slope"], "-", lw=2, color="0.7", label="closed form σ'_a")
    ax2.plot(res["x"], meas_slope, ".", ms=3, color="C1", label="slope of measurement")
    ax2.set_xlabel("drive x (V)")
    ax2.set_ylabel("slope")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
