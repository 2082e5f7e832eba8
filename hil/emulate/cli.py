"""``hil emulate BENCH``: run a bench's instruments on loopback in the foreground.

Prints one line per instrument with its loopback VISA resource, then serves until Ctrl-C (or
SIGTERM, or ``--duration``), stops every server and reports what the clients left behind
(outputs still on). ``--write-bench PATH`` writes a copy of the bench file whose resources point
at the emulators, so another process can run against it; ``--config CONFIG`` emulates a training
config's bench and models its resistive devices (``board.programming``, ``board.devices``), so
that such a run can program them. Exit status: 0 after a clean stop,
2 for a bench-file problem (one line per problem, never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
import threading
from typing import Any, Optional, TextIO
from hil.cli_help import command_help

__all__ = ["add_parser", "cmd_emulate"]


def add_parser(subparsers: Any) -> None:
    """Register ``emulate`` on the ``hil`` argparse subparsers object."""
    p = subparsers.add_parser(
        "emulate", help="run a bench file's instruments as loopback emulators (one simulated circuit)",
        **command_help("Start every instrument of BENCH as an emulator on 127.0.0.1, all answering from one "
                       "simulated circuit, print their VISA resources and serve until Ctrl-C or SIGTERM (the normal "
                       "stop: exit 0) or for --duration S.",
                       "hil emulate scpi-xor", "hil emulate scpi-xor --write-bench rehearsal.yaml --duration 60",
                       "hil emulate demo-xor --time realtime --readings exact",
                       "hil emulate --config bench-xor --write-bench loopback.yaml"))
    p.add_argument("bench", nargs="?", default=None,
                   help="bench file (YAML) or the name of a shipped bench (configs/benches); "
                        "optional with --config (then the config's bench)")
    p.add_argument("--config", metavar="CONFIG", default=None,
                   help="a training config of this bench (board.backend: instruments): its board.programming and "
                        "board.devices model the array's resistive devices, so a run in another process can program "
                        "them, as hil train --emulate does (without it, programming pulses change nothing)")
    p.add_argument("--time", dest="time_mode", choices=("instant", "virtual", "realtime"), default="instant",
                   help="instant (default): answer at once; virtual: same, bench time is modelled; "
                        "realtime: sleep the modelled duration of every operation")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="with --time realtime: wall seconds per modelled second, > 0 (default 1; 0.1 runs ten times faster "
                        "than the bench would)")
    p.add_argument("--seed", type=int, default=None, help="reading-noise seed (default: the bench file's)")
    p.add_argument("--readings", choices=("noisy", "quantised", "exact"), default="noisy",
                   help="noisy (default): realistic noise, resolution and reply formats; quantised: noise off; "
                        "exact: ideal instruments replying with 17 significant digits")
    p.add_argument("--write-bench", metavar="PATH", default=None,
                   help="write a copy of the bench with the loopback resources to PATH")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds instead of waiting for Ctrl-C")
    p.set_defaults(func=cmd_emulate)


def cmd_emulate(args: argparse.Namespace, *, out: Optional[TextIO] = None,
                stop_event: Optional[threading.Event] = None) -> int:
    """Run the emulated bench until interrupted; returns the exit status."""
    stop = stop_event or threading.Event()
    with _stop_on_signals(stop):
        return _serve(args, out or sys.stdout, stop)


def _serve(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    from hil.bench.schema import load_bench
    from hil.config import ConfigError, load_yaml
    from hil.emulate.bench import EmulatedBench, EmulationError

    if args.time_scale is not None and not 0 < args.time_scale < float("inf"):
        raise ConfigError([f"--time-scale {args.time_scale:g}: must be a finite number of wall seconds per modelled "
                           "second > 0 (--time virtual models bench time without waiting)"])
    if args.time_scale not in (None, 1.0) and args.time_mode != "realtime":
        raise ConfigError([f"--time-scale {args.time_scale:g}: only with --time realtime (--time {args.time_mode} "
                           "never waits, so a scale would change nothing)"])
    if args.seed is not None and args.seed < 0:
        raise ConfigError([f"--seed {args.seed}: must be an integer >= 0"])
    if args.duration is not None and not 0 <= args.duration < float("inf"):
        raise ConfigError([f"--duration {args.duration}: must be a finite number of seconds >= 0"])
    if args.write_bench:
        from hil.cli import _output_path

        _output_path(args.write_bench, "--write-bench")  # a missing folder is refused before serving
    device_options: dict = {}
    config = getattr(args, "config", None)  # (a Namespace built by a caller may not carry it)
    if config is not None:
        bench, device_options = _bench_of_config(config, args.bench)
    elif args.bench is None:
        raise ConfigError(["give a bench file or shipped bench name (hil configs lists them), or --config "
                           "TRAINING_CONFIG for that config's bench"])
    else:
        try:
            bench = load_bench(args.bench)
        except ConfigError:
            hint = _training_config_hint(args.bench)
            if hint is None:
                raise
            raise ConfigError([hint]) from None
    if (args.write_bench and bench.source != "<mapping>"
            and Path(args.write_bench).resolve() == Path(bench.source).resolve()):
        raise ConfigError([f"--write-bench {args.write_bench}: that is the bench file itself; its real resources "
                           "would be replaced by loopback addresses (write the copy to another file)"])
    try:
        emulated = EmulatedBench(bench, time_mode=args.time_mode, time_scale=args.time_scale, seed=args.seed,
                                 readings=args.readings, **device_options)
    except EmulationError as exc:  # a bench-file problem: worded like every configuration error
        raise ConfigError([str(exc)], getattr(bench, "source", "")) from None
    with emulated:
        width = max(len(n) for n in bench.instruments)
        seed = bench.seed if args.seed is None else args.seed
        mode = "" if args.readings == "noisy" else f", readings {args.readings}"
        print(f"hil emulate: bench {bench.name} (circuit {bench.circuit_ref}), time {args.time_mode}, seed {seed}"
              f"{mode}", file=out)
        for name, spec in bench.instruments.items():
            print(f"  {name.ljust(width)}  {spec.driver:<15} {spec.model:<8} {emulated.emulators[name].resource}",
                  file=out)
        if emulated.world.devices is not None:  # (the bench decides: a config may program none)
            print(f"  resistive devices modelled from {config} (board.programming, board.devices): "
                  "write-verify pulses program them", file=out)
        elif config is None:
            print("  resistive devices not modelled: programming pulses change no conductance (to train against "
                  "this bench from another process, start it with --config TRAINING_CONFIG)", file=out)
        else:
            print(f"  resistive devices not modelled: {config} programs none (no board.programming, or scheme none)",
                  file=out)
        if args.write_bench:
            import yaml

            raw = load_yaml(bench.source) if bench.source != "<mapping>" else {}
            _absolute_circuit_path(raw, Path(bench.source).parent)
            with open(args.write_bench, "w", encoding="utf-8") as fh:
                yaml.safe_dump(emulated.loopback_mapping(raw), fh, sort_keys=False)
            print(f"  loopback bench written to {args.write_bench}", file=out)
        print("serving; Ctrl-C stops" if args.duration is None else f"serving for {args.duration:g} s", file=out)
        out.flush()
        # a duration beyond what a lock can wait (about 290 years) is as good as forever
        stop.wait(None if args.duration is None else min(args.duration, threading.TIMEOUT_MAX))
    received = sum(len(e.transcript.received()) for e in emulated.emulators.values())
    print(f"hil emulate: stopped; {received} commands received, bench time {emulated.clock.now_s:.3f} s", file=out)
    for line in _left_behind(emulated):
        print(f"hil emulate: warning: {line}", file=out)
    return 0


def _bench_of_config(ref: str, bench_ref: Optional[str]) -> tuple[Any, dict]:
    """(the bench of training config ``ref``, the EmulatedBench options that model its devices: the
    config's ``board.programming``, ``board.devices`` and conductance range in S); ConfigError when
    ``ref`` is not an instrument-bench config or ``bench_ref`` names another bench."""
    from hil import api
    from hil.bench.schema import load_bench
    from hil.config import ConfigError

    settings = api.parse_config(api.load_config(ref), ref)
    if settings.backend != "instruments":
        raise ConfigError([f"--config {ref}: not a bench config (board.backend is {settings.backend!r}; "
                           "--config takes a config with board.backend: instruments)"])
    spec = settings.instrument_board
    if bench_ref is not None:
        given = load_bench(bench_ref)
        if given.name != spec.bench.name:
            raise ConfigError([f"--config {ref}: its bench is {spec.bench.name!r}, not {given.name!r} "
                               f"({bench_ref}); give one of the two"])
    from hil.emulate_options import device_model

    return spec.bench, device_model(settings)


def _training_config_hint(ref: str) -> Optional[str]:
    """When ``ref`` (not a bench) is a training config, what to run instead; None otherwise."""
    from hil.config import ConfigError, embedded_config_names, load_yaml

    if not (Path(ref).is_file() or ref in embedded_config_names()):
        return None
    try:
        raw = load_yaml(ref)
    except ConfigError:
        return None
    board = raw.get("board") if isinstance(raw.get("board"), dict) else None
    if board is None:
        return None
    if board.get("backend") != "instruments":
        return f"{ref}: a training config of a simulated board, not a bench file (benches: hil configs)"
    bench = board.get("bench")
    which = f"its bench is {bench}: hil emulate {bench}" if isinstance(bench, str) else "its bench is inline in board.bench"
    return (f"{ref}: a training config, not a bench file; {which}, or rehearse the whole run with "
            f"hil train {ref} --emulate")


def _left_behind(emulated: Any) -> list[str]:
    """What the clients left unsafe: outputs on, outputs off with a non-zero programmed level (the
    next output-on applies it at once), closed matrix relays."""
    lines = []
    for port, state in sorted(emulated.output_states().items()):
        level = float(state.get("level_v", 0.0))
        if state.get("output_on"):
            lines.append(f"{port} was left ON at {level:g} V")
        elif abs(level) > 1e-9:
            lines.append(f"{port} is off but its level is programmed to {level:g} V")
    for name, emu in emulated.emulators.items():
        closed = getattr(emu, "closed_crosspoints", None)
        if closed is not None and closed():
            lines.append(f"{name} left relays closed: {', '.join(closed())}")
    return lines


def _absolute_circuit_path(raw: dict, base: Path) -> None:
    """Make a relative ``circuit:`` file path absolute, so the written copy works from anywhere."""
    root = raw.get("bench", raw) if isinstance(raw, dict) else {}
    ref = root.get("circuit") if isinstance(root, dict) else None
    if isinstance(ref, str) and not Path(ref).is_absolute() and (base / ref).is_file():
        root["circuit"] = str((base / ref).resolve())


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """Ctrl-C / SIGTERM set ``stop`` (no exception at a random point); handlers restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
