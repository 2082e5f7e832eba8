"""``hil estimate CONFIG``: predicted bench time of a training run on an instrument bench.

Prints the time per list point, per training step, per epoch and for the whole run, measurement
and programming separately, from the bench's timing settings and the instruments' typical
figures (hil.bench.timing).  The number of list points is exact: the training batches of the
first epoch are built (same seed, same ramp points) as the board will build them.  Programming
depends on the devices and is estimated from a number of pulses per reprogrammed device and the
fraction of the trainable devices reprogrammed per step: by default the figures the config
declares (board.programming.expected, measured on an --emulate rehearsal of the shipped bench
configs), else 3 pulses on every device; --from-run RUN_DIR takes them from a previous run of the
config, --pulses-per-device and --touched set them. The output says which it used.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np
from hil.cli_help import command_help

__all__ = ["add_parser", "cmd_estimate", "estimate_run"]


def add_parser(subparsers: Any) -> None:
    """Register ``hil estimate`` on the ``hil`` argparse root."""
    p = subparsers.add_parser("estimate", help="predict the bench time of a training run (instrument benches)",
                              **command_help(" ".join(__doc__.split("\n\n")[1].split()),
                                             "hil estimate bench-xor", "hil estimate bench-iris --json",
                                             "hil estimate bench-xor --set train.batch_size=8"))
    p.add_argument("config", help="training config with board.backend: instruments (path or shipped name)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value; repeatable")
    p.add_argument("--pulses-per-device", type=float, default=None,
                   help="assumed write-verify pulses per touched device and step (default: "
                        "board.programming.expected, else 3)")
    p.add_argument("--touched", type=float, default=None,
                   help="assumed fraction of trainable devices reprogrammed per step (default: "
                        "board.programming.expected, else 1)")
    p.add_argument("--from-run", metavar="RUN_DIR", default=None,
                   help="take pulses per device and the touched fraction from a previous run's metrics.csv "
                        "(program_pulses, program_pulsed), e.g. an --emulate rehearsal")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_estimate)


#: Programming assumptions without any other source: every trainable device, 3 pulses, each step.
DEFAULT_PULSES_PER_DEVICE = 3.0
DEFAULT_TOUCHED_FRACTION = 1.0


def estimate_run(settings: Any, pulses_per_device: float | None = None, touched: float | None = None) -> dict:
    """Bench-time prediction (s) for a validated instruments-backend :class:`TrainSettings`.

    ``pulses_per_device`` (write-verify pulses per reprogrammed device and step) and ``touched``
    (fraction of the trainable devices reprogrammed per step) default to the config's
    ``board.programming.expected``, else to 3 and 1; ``assumptions.source`` in the result says which.
    """
    from hil.bench.timing import TimingModel, instrument_figures, program_step_s
    from hil.config import ConfigError
    from hil.boards.instrument import ramp_plan
    from hil.boards.simulated import board_topology
    from hil.train.data import load_dataset

    spec = settings.instrument_board
    bench = spec.bench
    topo = board_topology(bench.circuit)
    w = bench.wiring
    smus = sorted({i for group in (w.sources, w.outputs) for i, _ in group.values()})
    scanners = sorted({i for i, _ in w.hidden.values()})
    mode = spec.acquisition["acquisition"]
    if mode == "auto":
        from hil.boards.bench_config import _without_triggered

        mode = "stepwise" if _without_triggered(bench) else "triggered"
    fig = lambda name: instrument_figures(bench.instruments[name].driver, bench.instruments[name].options)
    chans = lambda i: [c for (j, c) in w.hidden.values() if j == i]
    hidden_settings = [bench.instruments[i].channels[c].settings for i, c in w.hidden.values()]
    smu_settings = [bench.instruments[i].channels[c].settings for g in (w.sources, w.outputs) for i, c in g.values()]
    n_ports = len(smu_settings)
    exchanges = (sum(len([1 for g in (w.sources, w.outputs) for i, _ in g.values() if i == s]) + 3 for s in smus)
                 + 3 * len(scanners)) if mode == "triggered" else 0
    model = TimingModel(
        line_frequency_hz=bench.line_frequency_hz,
        smu_nplc=max(s["nplc"] for s in smu_settings), smu_autozero=bench.timing.autozero,
        source_delay_s=max(s["source_delay_s"] for s in smu_settings), settle_s=spec.acquisition["settle_s"],
        scan_channels=[len(chans(i)) for i in scanners],
        scan_nplc=max((s["nplc"] for s in hidden_settings), default=bench.timing.nplc),
        scan_autozero=bench.timing.autozero,
        scan_delay_s=max((s["delay_s"] for s in hidden_settings), default=0.0),
        smu_figures=[fig(i) for i in smus], scanner_figures=[fig(i) for i in scanners],
        exchanges_per_sweep=exchanges + len(smus) + len(scanners))
    data = load_dataset(settings.dataset, settings.input_scale_v, settings.validation_fraction)
    from hil.boards.bench_config import level_problems

    splits = [d.x for d in (data.train, data.val, data.test) if d is not None]
    if problems := level_problems(spec, topo, np.concatenate(splits), settings.estimator, settings.estimator_options):
        raise ConfigError(problems, settings.name)  # the run would stop at its first batch
    q = topo.n_outputs
    est, opts = settings.estimator, settings.estimator_options
    central = opts.get("central", True)
    phases = {"hl": 1 + (2 if central else 1) * q, "ep": 3 if opts.get("centred", True) else 2,
              "hl-exact": 1, "fd": None}[est]
    if phases is None:
        raise ConfigError(["train.estimator: hil estimate predicts hl, ep and hl-exact steps; fd reprograms every "
                           "conductance twice per step, so its bench time is the programming time"], settings.name)
    step = np.array([s["max_step_v"] for s in smu_settings])
    rng = np.random.default_rng(settings.seed)
    n = len(data.train.y)
    perm = rng.permutation(n)
    points, sweeps = [], []
    max_pts = spec.acquisition["max_points"]
    for i in range(0, n, settings.batch_size):
        x = data.train.x[perm[i:i + settings.batch_size]]
        u = topo.source_voltages(x)
        w0 = np.broadcast_to(topo.output_voltage, (len(x), q))
        levels = np.concatenate([np.concatenate([u, w0], 1)] * phases, 0)
        if est == "hl" and opts.get("one_sweep", True) is not False:  # the per-port ± drives
            for o in range(q):
                for s in ((1, -1) if central else (1,)):
                    k = 1 + (o * (2 if central else 1)) + (0 if s > 0 else 1)
                    levels[k * len(x):(k + 1) * len(x), topo.n_sources + o] += s * opts.get("delta_v", 0.01)
        total = 0
        n_sweeps = 0
        for c0 in range(0, levels.shape[0], max_pts):
            chunk = levels[c0:c0 + max_pts]
            path, _ = ramp_plan(chunk, step, True) if mode == "triggered" else (chunk, None)
            total += path.shape[0]
            n_sweeps += 1
        points.append(total)
        sweeps.append(n_sweeps)
    pts = float(np.mean(points))
    if mode == "triggered":
        measure_step = float(np.mean([model.sweep_s(p) for p in points])) + (float(np.mean(sweeps)) - 1) * \
            model.exchanges_per_sweep * max(f.round_trip_s for f in model.smu_figures)
    else:  # every point: set and read each port, one scan per scanner, each a round trip
        rt = max(f.round_trip_s for f in model.smu_figures)
        per_point = model.t_point_s() + (2 * n_ports + len(scanners)) * rt + n_ports * model.t_smu_s()
        measure_step = pts * per_point
    eval_n = (len(data.val.y) if data.val is not None else 0) + (len(data.test.y) if settings.eval_test else 0)
    eval_levels = np.concatenate([topo.source_voltages(data.test.x), np.broadcast_to(topo.output_voltage,
                                                                                      (len(data.test.y), q))], 1)
    eval_pts = ramp_plan(eval_levels, step, True)[0].shape[0] * (eval_n / max(len(data.test.y), 1))
    evaluate_epoch = model.sweep_s(eval_pts) if eval_n else 0.0
    prog = spec.programming
    expected = prog.get("expected") or {}
    fallback = "board.programming.expected" if expected else "default"
    source = "given" if pulses_per_device is not None or touched is not None else fallback
    partial = (pulses_per_device is None) != (touched is None)
    if pulses_per_device is None:
        pulses_per_device = expected.get("pulses_per_device", DEFAULT_PULSES_PER_DEVICE)
    if touched is None:
        touched = expected.get("touched_fraction", DEFAULT_TOUCHED_FRACTION)
    program_step = 0.0
    trainable = sum(topo.groups[g].stop - topo.groups[g].start for g in settings.trainable)
    if prog.get("scheme") == "write_verify":
        ps = prog["settings"]
        inst = prog["smu"].partition(".")[0]
        t_read = model.t_smu_s() + model.source_delay_s
        program_step = program_step_s(touched * trainable, pulses_per_device, ps.reads, ps.width_s,
                                      fig(inst), fig(prog["matrix"]), t_read)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    ep_measure = steps_per_epoch * measure_step + evaluate_epoch
    ep_program = steps_per_epoch * program_step
    return {
        "config": settings.name, "bench": bench.name, "acquisition": mode, "estimator": est, "phases": phases,
        "t_point_s": model.t_point_s(), "t_smu_s": model.t_smu_s(), "t_scan_s": model.t_scan_s(),
        "points_per_step": pts, "sweeps_per_step": float(np.mean(sweeps)),
        "measure_step_s": measure_step, "program_step_s": program_step, "steps_per_epoch": steps_per_epoch,
        "evaluate_epoch_s": evaluate_epoch, "epoch_measure_s": ep_measure, "epoch_program_s": ep_program,
        "epochs": settings.epochs, "run_measure_s": settings.epochs * ep_measure,
        "run_program_s": settings.epochs * ep_program,
        "assumptions": {"pulses_per_device": pulses_per_device, "touched_fraction": touched,
                        "trainable_devices": trainable, "source": source,
                        **({"other_figure_from": fallback} if partial else {})},
    }


def programming_from_run(run_dir: str, settings: Any) -> tuple[float, float]:
    """(pulses per touched device, touched fraction) measured by a previous run of ``settings``:
    Σ program_pulses / Σ program_pulsed and Σ program_pulsed / (steps × trainable devices) over
    its epochs in ``metrics.csv``. Raises ``ConfigError`` (one line) when the run has no such columns."""
    from pathlib import Path

    from hil.config import ConfigError
    from hil.train.rundir import RunDir

    path = Path(run_dir)
    if not (path / "metrics.csv").is_file():
        raise ConfigError([f"--from-run {run_dir}: no metrics.csv there (not a run directory)"])
    _check_same_bench(run_dir, settings)
    rows = RunDir(path).read_metrics()
    if not rows or any(not math.isfinite(float(r.get("program_pulsed", float("nan")))) for r in rows):
        raise ConfigError([f"--from-run {run_dir}: metrics.csv has no program_pulses/program_pulsed columns "
                           "(a run on an instrument bench records them)"])
    pulses = sum(float(r["program_pulses"]) for r in rows)
    pulsed = sum(float(r["program_pulsed"]) for r in rows)
    steps = float(rows[-1]["step"])
    topo_groups = estimate_run(settings)["assumptions"]["trainable_devices"]
    touched = min(1.0, pulsed / max(steps * topo_groups, 1.0))
    return (pulses / pulsed if pulsed else 0.0), touched


def _check_same_bench(run_dir: str, settings: Any) -> None:
    """A run's programming figures describe its own bench's devices: refuse a run of another bench."""
    from pathlib import Path

    from hil.calibrate.apply import bench_name
    from hil.config import ConfigError, load_yaml
    from hil.train.settings import parse_settings

    resolved = Path(run_dir) / "config.resolved.yaml"
    if not resolved.is_file():
        return  # an older or partial run: its metrics are all there is to check
    try:
        theirs = bench_name(parse_settings(load_yaml(resolved), str(resolved)))
    except ConfigError:
        return
    ours = bench_name(settings)
    if theirs is not None and theirs != ours:  # not a bench run at all: the metrics check says so
        raise ConfigError([f"--from-run {run_dir}: a run on bench {theirs}; {settings.name} uses bench {ours}, "
                           "whose programming figures differ"])


def _assumption_source(a: dict, config: str) -> str:
    """Where the programming figures came from, for the last line of the report."""
    if "from_run" in a and a["source"] == "given":
        return f"measured in {a['from_run']} (with the command line's --pulses-per-device/--touched)"
    if "from_run" in a:
        return f"measured in {a['from_run']}"
    if a["source"] == "given":
        other = {"default": "the built-in default"}.get(a.get("other_figure_from"), a.get("other_figure_from"))
        return "as given on the command line" + (f" (the other figure from {other})" if other else "")
    if a["source"] == "board.programming.expected":
        return (f"from board.programming.expected of {config} (shipped configs: measured on an --emulate "
                "rehearsal; from one of yours: --from-run RUN_DIR)")
    return ("the built-in default (likely an overestimate: write-verify skips devices already within tolerance; "
            "declare board.programming.expected or use --from-run RUN_DIR of an --emulate rehearsal)")


def _fmt(t: float) -> str:
    if t < 1:
        return f"{1e3 * t:.3g} ms"
    if t < 120:
        return f"{t:.3g} s"
    if t < 7200:
        return f"{t / 60:.3g} min"
    return f"{t / 3600:.3g} h"


def cmd_estimate(args: argparse.Namespace) -> int:
    from hil.config import ConfigError, apply_overrides, load_yaml
    from hil.train.settings import parse_settings

    problems = []
    if args.pulses_per_device is not None and not (math.isfinite(args.pulses_per_device)
                                                   and 0 <= args.pulses_per_device <= 1e6):
        problems.append(f"--pulses-per-device: must be a finite number from 0 to 1e6, got {args.pulses_per_device:g}")
    if args.touched is not None and not (math.isfinite(args.touched) and 0 <= args.touched <= 1):
        problems.append(f"--touched: a fraction of the trainable devices, from 0 to 1, got {args.touched:g}")
    if problems:
        raise ConfigError(problems)  # options: named by their flag, like every command's
    raw = apply_overrides(load_yaml(args.config), args.set or [])
    settings = parse_settings(raw, args.config)
    if settings.backend != "instruments":
        raise ConfigError(["board.backend: hil estimate predicts bench time; this config uses the "
                           f"{settings.backend} backend (use board.backend: instruments)"], args.config)
    pulses, touched = args.pulses_per_device, args.touched
    if getattr(args, "from_run", None):
        run_pulses, run_touched = programming_from_run(args.from_run, settings)
        pulses = run_pulses if pulses is None else pulses
        touched = run_touched if touched is None else touched
    r = estimate_run(settings, pulses, touched)
    if getattr(args, "from_run", None):
        r["assumptions"]["from_run"] = str(args.from_run)
        r["assumptions"]["source"] = "given" if (args.pulses_per_device, args.touched) != (None, None) else "from_run"
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"hil estimate: {r['config']} on bench {r['bench']} ({r['acquisition']} acquisition, "
          f"estimator {r['estimator']}, {r['phases']} phases per sample)")
    print(f"  per list point   {_fmt(r['t_point_s'])}  (SMU reading {_fmt(r['t_smu_s'])}, "
          f"hidden-node scan {_fmt(r['t_scan_s'])})")
    print(f"  per step         {r['points_per_step']:.1f} points in {r['sweeps_per_step']:.3g} sweep(s): "
          f"measure {_fmt(r['measure_step_s'])}, program {_fmt(r['program_step_s'])}")
    steps = f"{r['steps_per_epoch']} step{'s' if r['steps_per_epoch'] != 1 else ''}"
    print(f"  per epoch        {steps} + evaluation {_fmt(r['evaluate_epoch_s'])}: "
          f"measure {_fmt(r['epoch_measure_s'])}, program {_fmt(r['epoch_program_s'])}")
    print(f"  whole run        {r['epochs']} epochs: measure {_fmt(r['run_measure_s'])}, "
          f"program {_fmt(r['run_program_s'])}, total {_fmt(r['run_measure_s'] + r['run_program_s'])}")
    a = r["assumptions"]
    if r["program_step_s"] or r["assumptions"]["source"] != "default":
        print(f"  programming assumes {a['pulses_per_device']:.3g} pulses on {100 * a['touched_fraction']:.0f} % "
              f"of the {a['trainable_devices']} trainable devices per step, {_assumption_source(a, args.config)}")
    return 0
