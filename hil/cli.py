"""The ``hil`` command.

    hil train [CONFIG] [--resume RUN_DIR] [--set key.path=value ...] [-q]
    hil eval RUN_DIR [--checkpoint best|last] [--data train|validation|test]
    hil solve CONFIG|RUN_DIR [--input V,V,...] [--json]
    hil netlist CONFIG|RUN_DIR -o net.cir [--input V,V,...] [--all-inputs]
    hil configs
    hil instruments list | probe ADDRESS
    hil emulate BENCH [--time instant|virtual|realtime] [--write-bench PATH]
    hil estimate CONFIG [--json]

CONFIG is a YAML path or the name of a shipped config (``hil configs`` lists them);
``hil train`` without CONFIG runs the embedded default ``sim-digits``.  Every failure is one
line on stderr: configuration mistakes exit with status 2, runtime failures with 1, an
interrupt with 130 — never a traceback (set ``HIL_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np

from hil import __version__, api
from hil.config import ConfigError
from hil.cli_help import command_help
from hil.emulate_options import emulated_board_options

DEFAULT_TRAIN_CONFIG = "sim-digits"
EXIT_RUNTIME = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader closed


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so that every ``finally`` and ``__exit__`` runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


_config_phase = api.config_phase
_RUN: dict = {}  # the run directory a training command is writing (for the interrupt message)


def _resume_command(run) -> str:
    """The command that continues ``run`` the way it was started (an emulated rehearsal stays emulated)."""
    return f"hil train --resume {run.path}" + (" --emulate" if _RUN.get("emulate") else "")


def note_interrupt(message: str) -> None:
    """What a command other than ``hil train`` wants said after Ctrl-C (e.g. what a sweep kept)."""
    _RUN["interrupt_note"] = message


def _interrupt_message(exc: BaseException | None = None) -> str:
    """What an interrupted command leaves behind, stated only as far as it is true (an instrument
    board's outputs as read back: ``exc.unverified``, set by :mod:`hil.api`)."""
    if "interrupt_note" in _RUN:
        return _RUN["interrupt_note"]
    unverified = getattr(exc, "unverified", None)
    state = ("the board is in its safe state and" if unverified is None
             else _outputs_state(unverified, getattr(exc, "shutdown_trouble", None)) + ";")
    run = _RUN.get("run")
    if run is None:
        return "interrupted" if unverified is None else f"interrupted; {state[:-1]}"
    for tag in ("last", "best"):
        epoch = run.checkpoint_epoch(tag)
        if epoch is None:
            continue
        which = "checkpoint" if tag == "last" else "best checkpoint (the last one is damaged)"
        return (f"interrupted; {state} {run.path} keeps the {which} of epoch "
                f"{epoch}: continue with '{_resume_command(run)}'")
    done = "" if unverified is None else f" {state}"
    return f"interrupted before the first epoch completed;{done} {run.path} holds no checkpoint to resume from"


def _instrument_message(exc) -> str:
    """One line for an instrument fault: what happened, whether the outputs were verified off, what
    the run directory keeps (``exc.phase`` / ``exc.unverified`` are set by :mod:`hil.api`)."""
    what = f"{type(exc).__name__}: {_one_line(exc)}"
    from hil.emulate_options import emulator_failure

    if cause := emulator_failure():  # a rehearsal: the emulator failed, not the instrument it models
        what += f" (the emulated bench failed first: {cause}; an emulator limitation, not the instrument's behaviour)"
    if getattr(exc, "phase", None) == "open":
        return (f"cannot open the bench: {what} (nothing was switched on; check the resources in board.bench, "
                "or rehearse with --emulate)")
    unverified = getattr(exc, "unverified", None)
    state = ("the board's safe shutdown ran" if unverified is None
             else _outputs_state(unverified, getattr(exc, "shutdown_trouble", None)))
    return f"instrument fault: {what}; {state}{_run_tail()}"


def _run_tail() -> str:
    """``"; <run> keeps epoch N: continue with ..."`` for the run being written, else ``""``."""
    run = _RUN.get("run")
    if run is None:
        return ""
    epoch = run.checkpoint_epoch()
    if epoch is None:
        return f"; {run.path} holds no completed epoch"
    return f"; {run.path} keeps epoch {epoch}: continue with '{_resume_command(run)}'"


def _outputs_state(unverified: list, trouble: str | None = None) -> str:
    """The bench after a failure: how its safe shutdown went (``exc.shutdown_trouble``: None, a signal
    during it, or what broke it off) and what its outputs read back (``exc.unverified``)."""
    if trouble is None:
        shutdown = "safe shutdown ran"
    elif trouble == "interrupted":
        shutdown = "safe shutdown ran (a Ctrl-C or SIGTERM came during it)"
    else:
        shutdown = f"safe shutdown failed ({trouble})"
    if unverified:
        return (f"{shutdown}, CHECK THE BENCH: outputs not verified off: " + ", ".join(unverified)
                + " (once the instrument answers again, 'hil instruments probe RESOURCE --driver DRIVER' reads "
                "its outputs back, ramps them to 0 V and switches them off)")
    return f"{shutdown}, every output read back off"


def _progress(args) -> bool | str:
    return False if getattr(args, "quiet", False) else True


# ---- train -----------------------------------------------------------------------------
def cmd_train(args) -> int:
    with contextlib.ExitStack() as stack:
        return _cmd_train(args, stack)


def _cmd_train(args, stack) -> int:
    from hil.train.rundir import RunDirError, prepare_runs_dir

    quiet = args.quiet
    # before any board is built (building one compiles some kernels already)
    _RUN["compiling"] = not quiet and _kernels_not_compiled_yet()
    _RUN["emulate"] = bool(getattr(args, "emulate", False))
    if args.resume:
        if args.config:
            raise ConfigError([f"give either CONFIG ({args.config}) or --resume, not both"])
        if args.runs_dir is not None:
            raise ConfigError(["--runs-dir: not used with --resume (the run directory is given)"])
        board_options = {}
        if getattr(args, "emulate", False):
            resolved = Path(args.resume) / "config.resolved.yaml"
            if not resolved.is_file():
                raise ConfigError([f"--resume {args.resume}: not a run directory (no config.resolved.yaml)"])
            board_options = emulated_board_options(args, stack, api.load_config(str(resolved), args.set or []), str(resolved))
        result = api.resume(args.resume, overrides=args.set or [], progress=_progress(args),
                            started=lambda run: _RUN.update(run=run), board_options=board_options,
                            restored=lambda trainer: _resume_started(trainer, args),
                            argument_names=("--resume", "--set"))
        if result is None:
            print(f"run {args.resume} already finished its epochs; raise train.epochs with --set to continue")
            return 0
    else:
        source = args.config or DEFAULT_TRAIN_CONFIG
        config = api.load_config(source, args.set or [])
        settings = api.parse_config(config, source)
        if args.runs_dir is not None:
            settings.runs_dir = args.runs_dir
        try:
            prepare_runs_dir(settings.runs_dir)
        except RunDirError as exc:
            where = "--runs-dir" if args.runs_dir is not None else "output.runs_dir"
            raise ConfigError([f"{where}: {exc}"], source) from None

        def started(run):
            _RUN["run"] = run
            if not quiet:
                print(f"hil train: {settings.name} ({settings.dataset}, estimator {settings.estimator}) → {run.path}",
                      flush=True)
                if _RUN.get("compiling"):
                    print(_COMPILING_NOTE, flush=True)

        result = api.train(config, runs_dir=settings.runs_dir, progress=_progress(args), source=source,
                           started=started, board_options=emulated_board_options(args, stack, config, source))
    _print_summary(result)
    return 0


_COMPILING_NOTE = ("hil train: first run of this installation: compiling the numeric kernels once "
                   "(about 20 s on 2 cores; cached on disk for every later run)")


def _kernel_cache_indexes() -> list:
    """numba's cache index of every compiled kernel of :mod:`hil.kernels` (numba internals: an
    index reads as empty when missing, or stale for the kernels' current source or numba version)."""
    from numba.core.registry import CPUDispatcher

    from hil import kernels

    return [f._cache._cache_file for f in vars(kernels).values()
            if isinstance(f, CPUDispatcher) and hasattr(getattr(f, "_cache", None), "_cache_file")]


def _kernels_not_compiled_yet() -> bool:
    """True when no kernel of :mod:`hil.kernels` has machine code cached for its current source (a
    first run, or the first after an upgrade): the first training step will compile them (tens of
    seconds) and the user should know why nothing moves."""
    try:
        indexes = _kernel_cache_indexes()
        return bool(indexes) and not any(index._load_index() for index in indexes)
    except Exception:  # the cache is numba's business: when unsure, say nothing
        return False


def _epoch_time_text(r) -> str:
    """Seconds per epoch for the summary: the median over the run's epochs (a mean would carry the
    first epoch's one-time kernel compilation), naming epoch 1 when it took far (3×, and 1 s) longer."""
    from hil.train.rundir import RunDir

    times = [row["epoch_time_s"] for row in RunDir(Path(r.run_dir)).read_metrics()
             if np.isfinite(row.get("epoch_time_s", np.nan))]
    if not times:
        return f"{r.seconds_per_epoch:.3g} s per epoch"
    median = float(np.median(times))
    slow_first = f", epoch 1: {times[0]:.3g} s" if len(times) > 1 and times[0] > max(3 * median, median + 1.0) else ""
    return f"median {median:.3g} s per epoch{slow_first}"


def _resume_started(trainer, args) -> None:
    """Unless quiet, say what is continued from where (once the checkpoint is loaded and the
    overrides accepted, so a refused resume never announces itself)."""
    if args.quiet:
        return
    print(f"hil train: continuing {trainer.run.path} from epoch {trainer.epoch} (of {trainer.s.epochs})", flush=True)
    if _RUN.get("compiling"):
        print(_COMPILING_NOTE, flush=True)


def _print_summary(r) -> None:
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f} %"
    print("\nsummary")
    print(f"  run directory     {r.run_dir}")
    print(f"  epochs            {r.epochs_done} ({_epoch_time_text(r)})")
    print(f"  train accuracy    {pct(r.train_acc)}")
    print(f"  validation        {pct(r.val_acc)}")
    print(f"  test accuracy     {pct(r.test_acc)}")
    print(f"  best checkpoint   epoch {r.best_epoch} (chosen on {r.best_on}, {pct(r.best_score)})")
    if _without_diodes(Path(r.run_dir) / "config.resolved.yaml"):
        print("  diodes            none (a linear network: hidden.element.model none)")
    elif r.conduction_fraction == r.conduction_fraction:  # not NaN: the board reports diode states
        print(f"  diodes conducting {100 * r.conduction_fraction:.1f} % of hidden nodes (training samples)")
    plots = Path(r.run_dir) / "plots"
    print(f"  plots             {plots if any(plots.glob('*.png')) else 'none written'}")


def _without_diodes(config_path: Path) -> bool:
    """True when every circuit of a run's config has no hidden elements (``model: none``), so a
    fraction of conducting diodes would read 0 % of diodes that do not exist."""
    try:
        board = api.load_config(str(config_path)).get("board") or {}
        stages = board.get("stages") if isinstance(board.get("stages"), list) else [board]
        models = [((st.get("circuit") or {}).get("hidden") or {}).get("element", {}).get("model", "ideal")
                  for st in stages]
    except Exception:  # an unreadable config was reported elsewhere; say what the board reported
        return False
    return bool(models) and all(m == "none" for m in models)


# ---- circuits ------------------------------------------------------------------------------
def _parse_input_option(texts: list[str] | str, n_inputs: int) -> np.ndarray:
    """The ``--input`` vectors (V), one row per occurrence of the option."""
    rows = []
    for text in [texts] if isinstance(texts, str) else texts:
        try:
            rows.append([float(v) for v in text.split(",")])
        except ValueError:
            raise ConfigError([f"--input {text!r}: expected comma-separated voltages"]) from None
        if len(rows[-1]) != n_inputs:
            raise ConfigError([f"--input {text!r}: {len(rows[-1])} values, the circuit has {n_inputs} inputs"])
    return np.array(rows)


#: the top-level keys of a circuit-only config (a ``circuit:`` section, for ``hil solve`` / ``hil netlist``)
_CIRCUIT_CONFIG_KEYS = ("circuit", "inputs")


def _check_solve_config(raw: dict, source: str) -> None:
    """Every key of a config given to ``hil solve`` / ``hil netlist`` checked, as ``hil train`` checks
    them (ConfigError naming each unknown key or bad value): a circuit-only config may hold
    ``circuit`` and ``inputs``; a training config is validated whole (its ``inputs`` aside)."""
    training = any(k in raw for k in ("board", "train", "data"))
    if "circuit" in raw and not training:
        from hil.config import Section

        problems: list[str] = []
        top = Section(raw, "", problems)
        top.used.update(_CIRCUIT_CONFIG_KEYS)
        top.finish()  # unknown keys, with the config's "did you mean" hint
        if problems:
            raise ConfigError([p if "did you mean" in p else f"{p} (a circuit config holds only 'circuit' and 'inputs')"
                               for p in problems], source)
        return
    if training and "circuit" not in raw:  # (with both, build_circuit says where the circuit belongs)
        api.parse_config({k: v for k, v in raw.items() if k != "inputs"}, source)


def _check_inputs(x: np.ndarray, n_inputs: int, where: str, source: str = "") -> np.ndarray:
    from hil.config import MAX_ABS_VOLTAGE_V

    if x.ndim != 2 or x.shape[1] != n_inputs:
        raise ConfigError([f"{where}: {x.shape[-1]} values per vector, the circuit has {n_inputs} inputs"], source)
    if not np.all(np.isfinite(x)):
        raise ConfigError([f"{where}: input voltages must be finite numbers"], source)
    if np.max(np.abs(x), initial=0.0) > MAX_ABS_VOLTAGE_V:
        raise ConfigError([f"{where}: input voltages must be within ±{MAX_ABS_VOLTAGE_V:g} V "
                           f"(got {np.max(np.abs(x)):.3g} V)"], source)
    return x


def _nominal_trained_circuit(run):
    """The config's circuit with the conductances (S) the checkpoint programmed (a non-ideal board's own
    circuit holds the devices' draws, which the simulator keeps to itself)."""
    from hil.train.rundir import RunDir

    _, ck = RunDir(run.path).load_checkpoint_with_fallback(run.checkpoint)
    g = np.clip(np.asarray(ck["conductances_s"], float), run.settings.g_min, run.settings.g_max)
    return api.build_circuit(RunDir(run.path).read_config(), str(run.path)).with_conductances(g)


def _circuit_and_inputs(args):
    """(circuit, inputs (B, n_inputs) V, description) from a config, a run directory or a checkpoint.

    For a run the circuit carries the checkpoint's trained conductances, and the default
    inputs are the first sample of the run's test split.
    """
    target = args.config
    if api.is_run_reference(target):
        if args.set:
            raise ConfigError(["--set: not accepted with a run directory (the trained circuit is fixed)"])
        run = api.load_run(target, args.checkpoint, simulated_twin=True)
        circuit = getattr(run.board, "circuit", None)
        what = f"run {run.path} ({run.checkpoint} checkpoint, epoch {run.epoch})"
        if circuit is None:  # a non-ideal simulated board (board.devices): its nominal circuit, trained targets
            circuit = _nominal_trained_circuit(run)
            what += ", nominal circuit (the board's device non-idealities are not in it)"
        if run.settings.backend == "instruments":
            what += ", the bench's circuit simulated"
        if args.input is not None:
            x = _parse_input_option(args.input, circuit.n_inputs)
            where = "--input"
        else:
            test = api.load_data(run.settings).test.x
            x, where = (test, "test split") if getattr(args, "all_inputs", False) else (test[:1], "test sample 0")
        return circuit, _check_inputs(x, circuit.n_inputs, where), what
    if args.checkpoint != "best":
        raise ConfigError(["--checkpoint: only for a run directory"])
    raw = api.load_config(target, getattr(args, "set", None) or [])
    _check_solve_config(raw, target)
    circuit = api.build_circuit(raw, target)
    if args.input is not None:
        x, where = _parse_input_option(args.input, circuit.n_inputs), "--input"
    elif "inputs" in raw:
        try:
            x = np.atleast_2d(np.asarray(raw["inputs"], dtype=float))
        except (TypeError, ValueError):
            raise ConfigError(["inputs: expected a list of input vectors (lists of voltages)"], target) from None
        where = "inputs"
    else:
        x = np.zeros((1, circuit.n_inputs))
        where = "inputs"
    return circuit, _check_inputs(x, circuit.n_inputs, where), f"config {target}"


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
    circuit, x, what = _circuit_and_inputs(args)
    out = solve_json(circuit, x)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"circuit {out['circuit']} from {what}: {circuit.n_sources} sources, {circuit.n_hidden} hidden nodes "
          f"({circuit.diodes.kind} diodes), {circuit.n_outputs} output ports")
    for s in out["samples"]:
        print(f"inputs {s['inputs']}")
        for name, v in s["nodes"].items():
            print(f"  V({name}) = {v: .9e} V")
        for name, i in s["sources"].items():
            print(f"  I({name}) = {i: .9e} A   (delivered by the source)")
        for name, i in s["ports"].items():
            print(f"  I({name}) = {i: .9e} A   (into the output port)")
        if s["diodes"]:
            on = sum(d["conducting"] for d in s["diodes"].values())
            print(f"  diodes conducting: {on} of {len(s['diodes'])}")
    print(out_report_line(out["report"]))
    return 0


def out_report_line(rep: dict) -> str:
    its = ", ".join(f"{k} {v}" for k, v in rep["iterations"].items())
    return (f"solve: {'converged' if rep['converged'] else 'NOT converged'} via {rep['method']} ({its}), "
            f"KCL residual {rep['kcl_residual_a']:.2e} A")


def _output_path(text: str, option: str = "-o") -> Path:
    """A writable output file path (ConfigError naming ``option`` otherwise)."""
    if "\0" in text or "\n" in text:
        raise ConfigError([f"{option} {text!r}: not a valid file name"])
    p = Path(text)
    if p.is_dir():
        raise ConfigError([f"{option} {text}: is a directory, expected a file name"])
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError([f"{option} {text}: the folder {parent} does not exist"])
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ConfigError([f"{option} {text}: not writable"])
    return p


def cmd_netlist(args) -> int:
    from hil.circuit.spice import write_netlist
    from hil.train.rundir import atomic_write

    if args.input is not None and len(args.input) > 1 and not args.all_inputs:
        raise ConfigError([f"--input given {len(args.input)} times: add --all-inputs for one deck per vector "
                           "(without it the deck is for the first vector only)"])
    circuit, x, what = _circuit_and_inputs(args)
    rows = range(x.shape[0]) if args.all_inputs else range(1)
    with _config_phase(args.config):
        decks = [write_netlist(circuit, x[k], title=f"{circuit.name}, input vector {k}: {x[k].tolist()}")
                 for k in rows]
    if args.output == "-":
        sys.stdout.write("".join(decks))
        return 0
    out = _output_path(args.output)
    if len(decks) == 1:
        paths = [out]
    else:
        paths = [out.with_name(f"{out.stem}_{k}{out.suffix}") for k in rows]
    for path, deck in zip(paths, decks):
        atomic_write(path, deck.encode())
    listed = paths[0] if len(paths) == 1 else f"{paths[0]} … {paths[-1]}"
    print(f"wrote {listed} ({len(paths)} deck(s), {circuit.n_hidden} hidden nodes, conductances of {what})")
    return 0


# ---- eval -------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from hil.train.plots import plot_confusion

    chosen_png = _output_path(args.plot, "--plot") if args.plot else None
    run = api.load_run(args.run, args.checkpoint)
    ev = api.evaluate_run(run, args.data, argument_name="--data")
    png = chosen_png or run.path / "plots" / f"confusion_{ev.split}_{run.checkpoint}.png"
    try:
        png.parent.mkdir(exist_ok=True)
        plot_confusion(ev.confusion, png, f"{run.settings.name}: {ev.split} split, {run.checkpoint} checkpoint "
                                          f"(epoch {run.epoch}), accuracy {100 * ev.accuracy:.2f} %")
    except OSError as exc:  # e.g. a read-only run directory: the evaluation itself is still reported
        if chosen_png is not None:
            raise
        print(f"hil eval: warning: confusion matrix not written to {png} ({exc.strerror or _one_line(exc)}); "
              "give another place with --plot PNG", file=sys.stderr)
        png = None
    if args.json:
        print(json.dumps({"run": str(run.path), "checkpoint": run.checkpoint, "epoch": run.epoch, "split": ev.split,
                          "samples": ev.samples, "accuracy": ev.accuracy, "loss": ev.loss,
                          "confusion": ev.confusion.tolist(),
                          "conduction_fraction": None if _without_diodes(run.path / "config.resolved.yaml")
                          else ev.conduction_fraction,
                          "confusion_png": None if png is None else str(png)}, indent=2))
        return 0
    print(f"run         {run.path}")
    print(f"checkpoint  {run.checkpoint} (epoch {run.epoch})")
    print(f"split       {ev.split} ({ev.samples} samples)")
    print(f"accuracy    {100 * ev.accuracy:.2f} % ({int(np.trace(ev.confusion))} of {ev.samples})")
    print(f"loss        {ev.loss:.4f} (mean {run.settings.loss})")
    if _without_diodes(run.path / "config.resolved.yaml"):
        print("diodes      none (a linear network)")
    else:
        print(f"diodes      {100 * ev.conduction_fraction:.1f} % conducting")
    calibration = getattr(getattr(run.board, "cal", None), "path", None)
    if calibration is not None:
        print(f"calibration {calibration} (the one the run trained with)")
    if not args.quiet:
        k = ev.confusion.shape[0]
        print("confusion   rows: true class, columns: predicted")
        print("      " + "".join(f"{j:>5d}" for j in range(k)))
        for i in range(k):
            print(f"  {i:>3d} " + "".join(f"{v:>5d}" for v in ev.confusion[i]))
    print(f"plot        {png if png is not None else 'not written'}")
    return 0


def cmd_configs(args) -> int:
    from hil.config import embedded_config_names, embedded_config_path

    from hil.bench.schema import bench_root, shipped_bench_names

    if args.name:  # the shipped file itself, to read or to start a config of one's own from
        path = embedded_config_path(args.name)
        if path is None and args.name.removesuffix(".yaml") in shipped_bench_names():
            path = bench_root() / f"{args.name.removesuffix('.yaml')}.yaml"
        if path is None:
            import difflib

            close = difflib.get_close_matches(args.name.removesuffix(".yaml"),
                                              [*embedded_config_names(), *shipped_bench_names()], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError([f"{args.name}: no shipped config or bench of that name ({hint}'hil configs' lists them)"])
        sys.stdout.write(path.read_text())
        return 0

    def describe(path) -> str:
        """The file's first comment line; when the comment goes on, the comment up to its first colon
        outside parentheses."""
        lines = path.read_text().splitlines()
        first = next((i for i, line in enumerate(lines) if line.startswith("#")), None)
        if first is None:
            return ""
        block = [lines[first]] + list(itertools.takewhile(lambda l: l.startswith("#"), lines[first + 1:]))
        text = " ".join(line.lstrip("# ").strip() for line in block)
        return _head_before_colon(text).strip() if len(block) > 1 else text

    rows = [(n, describe(embedded_config_path(n))) for n in embedded_config_names()]
    benches = [(n, describe(bench_root() / f"{n}.yaml")) for n in shipped_bench_names()]
    width = max(len(n) for n, _ in rows + benches)
    for name, desc in rows:
        print(f"  {name:{width}s}  {desc}")
    if benches:
        print("benches (hil emulate BENCH):")
        for name, desc in benches:
            print(f"  {name:{width}s}  {desc}")
    return 0


def _head_before_colon(text: str) -> str:
    """``text`` up to its first ':' that is not inside parentheses (all of it when there is none)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ":" and depth <= 0:
            return text[:i]
    return text


# ---- entry point ----------------------------------------------------------------------------
class _OneLineErrors(argparse.ArgumentParser):
    """argparse, with a usage mistake reported on one line (no usage block) that names --help."""

    def error(self, message: str):
        message = " ".join(message.split())
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if wrong:  # a mistyped command or choice: name the closest one instead of listing them all
            import difflib

            close = difflib.get_close_matches(wrong.group(1), re.findall(r"'([^']*)'", wrong.group(2)), n=1)
            if close:
                message = message[:wrong.start()] + f"invalid choice: {wrong.group(1)!r} (did you mean {close[0]!r}?)"
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineErrors(prog="hil", description="Train resistor–diode networks in their own hardware.",
                                epilog="Every failure is one line on stderr: exit 2 for configuration, "
                                       "1 for runtime errors, 130 when interrupted.")
    p.add_argument("--version", action="version", version=f"hil {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    t = sub.add_parser("train", help="train a board (default: the embedded sim-digits config)", **command_help(
        "Train a board in a new run directory RUNS_DIR/<UTC time>_<name>/ (metrics.csv, checkpoints/, "
        "events.jsonl, plots/), or continue one with --resume. Ctrl-C keeps the last completed epoch.",
        "hil train", "hil train sim-xor --set train.epochs=100 --set train.estimator=ep",
        "hil train --resume runs/<run> --set train.epochs=80"))
    t.add_argument("config", nargs="?", help="YAML path or shipped config name (see 'hil configs')")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (read as YAML), e.g. train.epochs=5; repeatable")
    t.add_argument("--runs-dir", help="where run directories are created (default from config: runs)")
    t.add_argument("-q", "--quiet", action="store_true", help="print only the summary (no progress)")
    t.add_argument("--emulate", action="store_true",
                   help="instrument benches: run against the bench's emulators on 127.0.0.1 (a rehearsal)")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="accuracy, loss and confusion matrix of a trained run", **command_help(
        "Program a checkpoint of a run into a fresh board and evaluate one split of the run's data set; "
        "writes the confusion matrix as a PNG.", "hil eval runs/<run>",
        "hil eval runs/<run> --checkpoint last --data train --json"))
    e.add_argument("run", metavar="RUN_DIR", help="a run directory (or one of its checkpoints/*.npz)")
    e.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint (default best)")
    e.add_argument("--data", choices=("train", "validation", "test"), default="test",
                   help="which split of the run's data set (default test)")
    e.add_argument("--plot", metavar="PNG", help="where to write the confusion matrix "
                                                   "(default RUN_DIR/plots/confusion_<split>_<checkpoint>.png)")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("-q", "--quiet", action="store_true", help="no confusion table on the terminal")
    e.set_defaults(func=cmd_eval)
    for name, helptext, func in (("solve", "solve a circuit: node voltages, currents, diode states, solve report",
                                  cmd_solve),
                                 ("netlist", "write an ngspice netlist of a circuit", cmd_netlist)):
        s = sub.add_parser(name, help=helptext, **command_help(
            helptext[0].upper() + helptext[1:] + " from a config, or with the trained conductances of a run.",
            *(("hil solve sim-xor --input 0.5,-0.3", "hil solve runs/<run> --json > op.json") if name == "solve"
              else ("hil netlist runs/<run> -o trained.cir", "hil netlist spice-shockley -o deck.cir --all-inputs"))))
        s.add_argument("config", metavar="CONFIG|RUN_DIR",
                       help="YAML path, shipped config name, run directory or checkpoint file (trained conductances)")
        s.add_argument("--input", metavar="V,V,...", action="append",
                       help="comma-separated input voltages; repeat for several vectors (default: the config's "
                            "'inputs', zeros if it has none, or for a run its first test sample)")
        s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value; repeatable")
        s.add_argument("--checkpoint", choices=("best", "last"), default="best",
                       help="for a run directory: which checkpoint (default best)")
        if name == "solve":
            s.add_argument("--json", action="store_true", help="print JSON")
        else:
            s.add_argument("-o", "--output", required=True, help="output file ('-' for stdout)")
            s.add_argument("--all-inputs", action="store_true",
                           help="one deck per input vector (the config's 'inputs', or a run's whole test split): "
                                "OUT_0.cir, OUT_1.cir, ... (default: the first vector only)")
        s.set_defaults(func=func)
    c = sub.add_parser("configs", help="list the shipped configs and benches, or print one", **command_help(
        "List the configs shipped with hil (usable by name wherever CONFIG is accepted) and the shipped "
        "benches (usable by name with hil emulate); with NAME, print that file (to start a config of your own).",
        "hil configs", "hil configs sim-xor > my.yaml"))
    c.add_argument("name", nargs="?", metavar="NAME", help="a shipped config or bench: print its YAML")
    c.set_defaults(func=cmd_configs)
    try:
        from hil import instruments_cli
    except ImportError:
        instruments_cli = None
    if instruments_cli is not None:
        instruments_cli.add_parser(sub)
    from hil import estimate_cli
    from hil.emulate import cli as emulate_cli

    estimate_cli.add_parser(sub)
    emulate_cli.add_parser(sub)
    from hil import calibrate_cli

    calibrate_cli.add_parser(sub)
    from hil import activation_cli

    activation_cli.add_parser(sub)
    from hil import sweep_cli

    sweep_cli.add_parser(sub)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the ``hil`` command on ``argv`` (default: the process arguments); returns the exit status."""
    parser = parser or build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors (2), --help / --version (0)
        return int(exc.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    _RUN.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    debug = bool(os.environ.get("HIL_DEBUG"))
    from hil.circuit.report import SolveError
    from hil.compile_signals import signals_wait_for_compiles
    from hil.drivers.errors import InstrumentError
    from hil.train.loop import TooManyInvalidSamples
    from hil.train.rundir import RunDirError

    try:
        with signals_wait_for_compiles():  # a Ctrl-C never lands inside a numba compile
            return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"hil: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt as exc:
        print(f"\nhil: {_interrupt_message(exc)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except SolveError as exc:
        if debug:
            raise
        print(f"hil {args.command}: solve failed: {_one_line(exc)}", file=sys.stderr)
        return EXIT_RUNTIME
    except (RunDirError, OSError, MemoryError) as exc:
        if debug:
            raise
        kind = ("out of memory: " if isinstance(exc, MemoryError) else
                "" if isinstance(exc, RunDirError) else f"{type(exc).__name__}: ")
        print(f"hil {args.command}: {kind}{_one_line(exc)}", file=sys.stderr)
        return EXIT_RUNTIME
    except InstrumentError as exc:
        if debug:
            raise
        print(f"hil {args.command}: {_instrument_message(exc)}", file=sys.stderr)
        return EXIT_RUNTIME
    except TooManyInvalidSamples as exc:  # the board answered, but mostly with invalid samples
        unverified = getattr(exc, "unverified", None)
        bench = "" if unverified is None else f"; {_outputs_state(unverified, getattr(exc, 'shutdown_trouble', None))}"
        print(f"hil {args.command}: {_one_line(exc)}{bench}{_run_tail()}", file=sys.stderr)
        return EXIT_RUNTIME
    except Exception as exc:  # a bug: still one line, the traceback on request
        if debug:
            raise
        unverified = getattr(exc, "unverified", None)  # an instrument board's outputs, read back by hil.api
        trouble = getattr(exc, "shutdown_trouble", None)
        bench = "" if unverified is None else f"; {_outputs_state(unverified, trouble)}{_run_tail()}"
        print(f"hil {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(run with HIL_DEBUG=1 for the traceback){bench}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        signal.signal(signal.SIGTERM, previous)
        run = _RUN.pop("run", None)
        if run is not None:
            run.close()


if __name__ == "__main__":
    sys.exit(main())
