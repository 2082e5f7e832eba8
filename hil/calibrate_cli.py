"""``hil calibrate CONFIG``: calibrate the configured board and write a versioned calibration.

Uses only the board protocol (plus the ``measure_sources`` capability), so the same command
runs on simulated, emulated and real benches.  Output: ``<board.calibration.dir>/<board>/<time>/``
with ``calibration.json``, ``calibration.npz``, ``report.md`` and ``report.png``.  Configuration
errors exit 2, runtime failures exit 1 with one line on stderr.
"""

from __future__ import annotations

import contextlib
import sys

from hil.config import ConfigError, apply_overrides, load_yaml
from hil.cli_help import command_help
from hil.progress import StageProgress


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="calibrate a board: offsets, conductances, faults, diodes, drift reference",
        **command_help("Measure a board through its own ports (channel offsets, conductances from probe patterns, "
                       "stuck-device map, diode I-V fits, programming response, drift reference) and write a "
                       "versioned calibration file with a report and plots; hil train applies the newest one.",
                       "hil calibrate sim-digits-mismatch",
                       "hil calibrate sim-digits-mismatch --dir calibrations --set board.devices.seed=3",
                       "hil calibrate bench-xor --emulate"))
    p.add_argument("config", help="YAML path or shipped config name")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--dir", help="calibration root folder (default board.calibration.dir)")
    p.add_argument("--emulate", action="store_true",
                   help="instrument benches: calibrate the bench's emulators on 127.0.0.1 instead of the instruments")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    with contextlib.ExitStack() as stack:
        return _cmd_calibrate(args, stack)


def _cmd_calibrate(args, stack: contextlib.ExitStack) -> int:
    from hil.api import outputs_read_back
    from hil.boards.factory import make_board
    from hil.emulate_options import emulated_board_options
    from hil.calibrate import store
    from hil.calibrate.apply import calibration_identity
    from hil.calibrate.run import calibrate
    from hil.calibrate.settings import parse_calibration
    from hil.train.rundir import RunDirError, prepare_runs_dir
    from hil.train.settings import parse_settings

    raw = apply_overrides(load_yaml(args.config), args.set or [])
    settings = parse_settings(raw, args.config)
    try:
        cs = parse_calibration(settings.calibration)
    except ConfigError as exc:  # say which config the bad key is in
        raise ConfigError(exc.problems, args.config) from None
    if args.dir is not None:
        cs.dir = args.dir
    try:  # before anything is measured: a calibration that cannot be saved is lost work
        prepare_runs_dir(cs.dir, "calibration directory")
    except RunDirError as exc:
        raise ConfigError([f"{'--dir' if args.dir is not None else 'board.calibration.dir'}: {exc}"], args.config) from None
    try:
        board = make_board(settings.backend, settings.circuit, settings.g_min, settings.g_max,
                           settings.instrument_board, devices=settings.devices,
                           **emulated_board_options(args, stack, raw, args.config, "hil calibrate"))
    except ConfigError as exc:  # already worded as a configuration problem
        raise ConfigError(exc.problems, args.config) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"{type(exc).__name__}: {exc}"], args.config) from exc
    name, temperature, diode_kind = calibration_identity(settings, bool(args.emulate))
    if not hasattr(board, "measure_sources"):
        why = ("a cascade's stages are exact simulated networks (board.devices is not available on cascades), so "
               "there is nothing to calibrate" if getattr(board, "needs_backward_order", False)
               else "an ideal simulated board needs no calibration (give it board.devices to model a real one)")
        raise ConfigError([f"board: calibration sets every source (rails included) and this board cannot; {why}"],
                          args.config)
    if settings.instrument_board is not None:  # before anything is switched on: a probe beyond a limit
        _check_probe_amplitude(settings.instrument_board, board.topology, cs.amplitude_v, args.config)
    earlier = _newest_path(store, cs.dir, name)
    stats = getattr(board, "stats", None)  # an instrument board counts the points it has measured
    counter = (lambda: stats.measured_points) if hasattr(stats, "measured_points") else None
    try:
        with board, outputs_read_back(board), StageProgress("hil calibrate", counter) as stages:
            path, summary = calibrate(board, cs, name, temperature, diode_kind,
                                      progress=stages.stage, devices=settings.devices)
    except RuntimeError as exc:
        print(f"hil calibrate: calibration failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # the board's context has run its safe shutdown by now
        from hil.cli import _outputs_state, note_interrupt

        unverified = getattr(exc, "unverified", None)  # an instrument board's outputs, as read back
        state = ("the board is in its safe state" if unverified is None
                 else _outputs_state(unverified, getattr(exc, "shutdown_trouble", None)))
        saved = _newest_path(store, cs.dir, name)
        if saved is not None and saved != earlier:  # stopped while the report was being drawn
            note_interrupt(f"interrupted; {state}, and the calibration was saved to {saved} "
                           "(its report may be incomplete); hil train applies it")
        else:
            note_interrupt(f"interrupted; {state}, and no calibration was written "
                           "(hil train goes on applying the newest earlier one, if any)")
        raise
    c = summary["fault_counts"]
    judged = sum(v for k, v in c.items() if k != "not characterised")
    print(f"hil calibrate: wrote {path} ({summary['seconds']:.1f} s): of {judged} devices mapped, {c['healthy']} healthy, "
          f"{summary['faulty_devices']} faulty, {summary['fault_map_unresolved']} unresolved; max port residual "
          f"{summary['max_port_residual_rel']:.2e}, report {path / 'report.md'}")
    return 0


def _check_probe_amplitude(spec, topology, amplitude_v: float, source: str) -> None:
    """The probe patterns drive every source to ±amplitude_v and every output port to 0 or
    +amplitude_v (V): refuse (exit 2) an amplitude a channel's bench limits do not allow, which
    would stop the calibration minutes in, at its second stage."""
    from hil.boards.bench_config import levels_beyond_bounds

    wanted = [(node, -amplitude_v if kind == "source" else 0.0, amplitude_v, "board.calibration.amplitude_v")
              for node, kind in zip(topology.node_names, topology.node_kinds) if kind in ("source", "output")]
    problems = [f"{key}: {amplitude_v:g} V probes {node} at {lo_v:g} .. {hi_v:g} V, beyond {where}'s limits "
                f"{lo:g} .. {hi:g} V in the bench file"
                for node, lo_v, hi_v, key, lo, hi, where in levels_beyond_bounds(spec, topology, wanted)]
    if problems:
        raise ConfigError(problems, source)


def _newest_path(store, root, name):
    """Path of the newest complete calibration of board ``name`` under ``root`` (None: none or unreadable)."""
    try:
        cal = store.newest(root, name)
    except Exception:
        return None
    return None if cal is None else cal.path
