"""The ``hil`` command.

    hil train [CONFIG] [--resume RUN_DIR] [--set key.path=value ...]
    hil solve CONFIG [--input V,V,...] [--json]
    hil netlist CONFIG -o net.cir [--input V,V,...]
    hil configs
    hil instruments list | probe ADDRESS

CONFIG is a YAML path or the name of a shipped config (``hil configs`` lists them);
``hil train`` without CONFIG runs the embedded default ``sim-digits``.  Configuration
mistakes print one line per problem and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from pathlib import Path

import numpy as np

from hil.config import ConfigError, apply_overrides, embedded_config_names, load_yaml

DEFAULT_TRAIN_CONFIG = "sim-digits"
EXIT_CONFIG = 2


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so that every ``finally`` and ``__exit__`` runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def _config_phase(source: str):
    """Turn value errors raised while building objects from a config into a ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError([f"{type(exc).__name__}: {exc}"], source) from exc


# ---- train -----------------------------------------------------------------------------
def cmd_train(args) -> int:
    from hil.boards.factory import make_board
    from hil.train.data import compatibility_problems, load_dataset
    from hil.train.loop import Trainer
    from hil.train.rundir import RunDir
    from hil.train.settings import parse_settings

    if args.resume:
        path = Path(args.resume)
        if not (path / "config.resolved.yaml").is_file():
            raise ConfigError([f"--resume {args.resume}: not a run directory (no config.resolved.yaml)"])
        if not (path / "checkpoints" / "last.npz").is_file():
            raise ConfigError([f"--resume {args.resume}: the run has no completed epoch to resume from; start it again"])
        run = RunDir(path)
        source = str(path / "config.resolved.yaml")
        raw = apply_overrides(load_yaml(source), args.set or [])
    else:
        source = args.config or DEFAULT_TRAIN_CONFIG
        raw = apply_overrides(load_yaml(source), args.set or [])
    with _config_phase(source):
        settings = parse_settings(raw, source)
        if args.runs_dir:
            settings.runs_dir = args.runs_dir
        try:
            data = load_dataset(settings.data_spec)
        except ConfigError as exc:
            raise ConfigError(exc.problems, source) from None
        board = make_board(settings.backend, settings.circuit, settings.g_min, settings.g_max)
        if problems := compatibility_problems(data, board.topology):
            raise ConfigError(problems, source)
    if not args.resume:
        run = RunDir.create(settings.runs_dir, settings.name)
        run.write_config(raw)
        run.write_metadata({"config_source": source, "estimator": settings.estimator, "data": data.describe()})
    with board:
        trainer = Trainer(board, settings, data, run, progress=not args.quiet)
        if args.resume:
            trainer.restore("last", overrides=args.set or [])
            if trainer.epoch >= settings.epochs:
                print(f"run {run.path} already finished {trainer.epoch} epochs; raise train.epochs with --set to continue")
                return 0
        print(f"hil train: {settings.name} ({settings.dataset}, estimator {settings.estimator}, "
              f"{board.topology.n_conductances} conductances) → {run.path}")
        result = trainer.fit()
    _print_summary(result)
    return 0


def _print_summary(r) -> None:
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f} %"
    print("\nsummary")
    print(f"  run directory     {r.run_dir}")
    print(f"  epochs            {r.epochs_done} ({r.seconds_per_epoch:.3g} s per epoch)")
    print(f"  train accuracy    {pct(r.train_acc)}")
    print(f"  validation        {pct(r.val_acc)}")
    print(f"  test accuracy     {pct(r.test_acc)}")
    print(f"  diodes conducting {100 * r.conduction_fraction:.1f} % of hidden nodes (training samples)")
    print(f"  plots             {Path(r.run_dir) / 'plots'}")


# ---- circuits ------------------------------------------------------------------------------
def _circuit_and_inputs(args):
    from hil.circuit.build import build_circuit

    raw = apply_overrides(load_yaml(args.config), getattr(args, "set", None) or [])
    if "circuit" in raw:
        cdata, path = raw["circuit"], "circuit"
    elif isinstance(raw.get("board"), dict) and "circuit" in raw["board"]:
        cdata, path = raw["board"]["circuit"], "board.circuit"
    else:
        raise ConfigError(["circuit: required (a 'circuit:' section or 'board.circuit:')"], args.config)
    with _config_phase(args.config):
        circuit = build_circuit(cdata, path)
    if args.input:
        try:
            x = np.array([[float(v) for v in args.input.split(",")]])
        except ValueError:
            raise ConfigError([f"--input {args.input!r}: expected comma-separated voltages"]) from None
        where = "--input"
    elif "inputs" in raw:
        try:
            x = np.atleast_2d(np.asarray(raw["inputs"], dtype=float))
        except (TypeError, ValueError):
            raise ConfigError(["inputs: expected a list of input vectors (lists of voltages)"], args.config) from None
        where = "inputs"
    else:
        x = np.zeros((1, circuit.n_inputs))
        where = "inputs"
    if x.ndim != 2 or x.shape[1] != circuit.n_inputs:
        raise ConfigError([f"{where}: {x.shape[-1]} values per vector, the circuit has {circuit.n_inputs} inputs"])
    if not np.all(np.isfinite(x)):
        raise ConfigError([f"{where}: input voltages must be finite numbers"])
    return circuit, x


def solve_json(circuit, x: np.ndarray) -> dict:
    """Solution of ``circuit`` for inputs ``x`` (B, n_inputs) as a JSON-ready dict.

    Node voltages (V) by node name; ``sources``: current delivered by each source into the
    network (A); ``ports``: current from the network into each output port (A);
    ``diodes``: forward current (A), conduction state and incremental conductance (S).
    """
    from hil.circuit.solve import EquilibriumSolver

    st = EquilibriumSolver(circuit).solve(circuit.source_voltages(x))
    names = circuit.element_names()
    samples = []
    d = circuit.diodes
    for b in range(x.shape[0]):
        nodes = dict(zip(circuit.source_names, st.u[b].tolist()))
        nodes.update(zip(circuit.hidden_names, st.e[b].tolist()))
        nodes.update(zip(circuit.output_names, st.w[b].tolist()))
        diodes = {}
        for k, dn in enumerate(names["diodes"] if not d.is_linear else ()):
            diodes[dn] = {"forward_current_a": float(-d.orientation[k] * st.diode_current[b, k]),
                          "conducting": bool(st.on[b, k])}
            if st.g_d is not None:
                diodes[dn]["g_d_s"] = float(st.g_d[b, k])
        samples.append({
            "inputs": x[b].tolist(),
            "nodes": nodes,
            "sources": dict(zip(names["sources"], st.i_src[b].tolist())),
            "ports": dict(zip(names["ports"], st.y[b].tolist())),
            "diodes": diodes,
        })
    return {"circuit": circuit.name, "units": {"voltage": "V", "current": "A", "conductance": "S"},
            "samples": samples, "report": st.report.to_dict()}


def cmd_solve(args) -> int:
    circuit, x = _circuit_and_inputs(args)
    out = solve_json(circuit, x)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for s in out["samples"]:
        print(f"inputs {s['inputs']}")
        for name, v in s["nodes"].items():
            print(f"  V({name}) = {v: .9e} V")
        for name, i in s["ports"].items():
            print(f"  I({name}) = {i: .9e} A")
    print(out_report_line(out["report"]))
    return 0


def out_report_line(rep: dict) -> str:
    its = ", ".join(f"{k} {v}" for k, v in rep["iterations"].items())
    return f"solve: {'converged' if rep['converged'] else 'NOT converged'} via {rep['method']} ({its}), KCL residual {rep['kcl_residual_a']:.2e} A"


def cmd_netlist(args) -> int:
    from hil.circuit.spice import write_netlist

    circuit, x = _circuit_and_inputs(args)
    deck = write_netlist(circuit, x[0])
    if args.output == "-":
        sys.stdout.write(deck)
    else:
        Path(args.output).write_text(deck)
        print(f"wrote {args.output} ({circuit.n_hidden} hidden nodes, inputs {x[0].tolist()})")
    return 0


def cmd_configs(args) -> int:
    from hil.config import embedded_config_path

    for name in embedded_config_names():
        first = embedded_config_path(name).read_text().splitlines()
        desc = next((l.lstrip("# ").strip() for l in first if l.startswith("#")), "")
        print(f"  {name:24s} {desc}")
    return 0


# ---- entry point ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hil", description="Train resistor–diode networks in their own hardware.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a board (default: the embedded sim-digits config)")
    t.add_argument("config", nargs="?", help="YAML path or shipped config name (see 'hil configs')")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.epochs=5")
    t.add_argument("--runs-dir", help="where run directories are created (default from config: runs)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    s = sub.add_parser("solve", help="solve a circuit and print node voltages, currents and the solve report")
    s.add_argument("config")
    s.add_argument("--input", help="comma-separated input voltages (default: the config's 'inputs' or zeros)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_solve)
    n = sub.add_parser("netlist", help="write an ngspice netlist of a circuit")
    n.add_argument("config")
    n.add_argument("-o", "--output", required=True, help="output file ('-' for stdout)")
    n.add_argument("--input", help="comma-separated input voltages")
    n.add_argument("--set", action="append", metavar="KEY=VALUE")
    n.set_defaults(func=cmd_netlist)
    c = sub.add_parser("configs", help="list the shipped configs")
    c.set_defaults(func=cmd_configs)
    try:
        from hil import instruments_cli
    except ImportError:
        instruments_cli = None
    if instruments_cli is not None:
        instruments_cli.add_parser(sub)
    from hil import sweep_cli

    sweep_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"hil: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("\nhil: interrupted; outputs are in the safe state and the last epoch's checkpoint is kept", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
