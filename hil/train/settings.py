"""The training configuration: YAML → validated :class:`TrainSettings`.

Top-level keys: ``name``, ``seed``, ``board`` (``backend: simulated``, ``g_min``,
``g_max``, ``circuit``), ``data``, ``train``, ``output``.  See ``configs/*.yaml``.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field

from hil.config import (MAX_CONDUCTANCE_S, ConfigError, Section, file_kind, in_range, non_negative,
                        plain_name, positive)
from hil.train.data import DataSpec, parse_data_section
from hil.train.estimators import ESTIMATORS
from hil.train.losses import LOSSES
from hil.train.optim import OPTIMIZERS, SCHEDULES

GROUPS = ("g_in", "g_hh", "g_leak", "g_out")
BACKENDS = ("simulated", "instruments")
#: ``train.epochs`` when a config does not give it
DEFAULT_EPOCHS = 10


@dataclass
class TrainSettings:
    name: str
    seed: int
    backend: str
    g_min: float
    g_max: float
    circuit: dict
    dataset: str
    input_scale_v: float
    validation_fraction: float
    estimator: str
    estimator_options: dict
    loss: str
    gain_per_a: float
    optimizer: str
    lr: float
    momentum: float
    schedule: str
    lr_final_fraction: float
    batch_size: int
    epochs: int
    trainable: tuple[str, ...]
    eval_test: bool
    runs_dir: str
    plots: bool
    raw: dict = field(default_factory=dict)
    instrument_board: object = None  # hil.boards.bench_config.InstrumentBoardSpec for backend: instruments
    blas_threads: int | str | None = None  # None: $HIL_BLAS_THREADS or 1 (see hil.threads)
    devices: dict | None = None  # board.devices: non-idealities (hil.devices)
    calibration: dict | None = None  # board.calibration: calibration and compensation (hil.calibrate)
    data_spec: DataSpec | None = None  # the whole data section (name, files, scaling, splits)
    max_invalid_fraction: float = 0.5  # the run stops when more of an epoch's samples are invalid


def _drive_v(v: float) -> str | None:
    """Perturbation / nudge amplitude check, volts."""
    return positive(v) or in_range(0, 10.0, "V")(v)


def parse_settings(data: dict, source: str = "") -> TrainSettings:
    """Validate a whole training config; every problem is reported at once."""
    kind = file_kind(data)
    if kind in ("sweep file", "bench file"):  # one line, not a list of every key it lacks
        how = "run it with hil sweep" if kind == "sweep file" else \
            "train with a config whose board.bench names it (e.g. bench-xor), or start its emulators with hil emulate"
        raise ConfigError([f"a {kind}, not a training config: {how}"], source)
    problems: list[str] = []
    top = Section(data, "", problems)
    name = top.get("name", str, "run", check=plain_name)
    seed = top.get("seed", int, 0, check=non_negative)
    b = top.section("board", required=True)
    backend = b.get("backend", str, "simulated", choices=BACKENDS)
    g_min = b.get("g_min", float, 0.0, check=non_negative)
    g_max = b.get("g_max", float, 1e-4, check=lambda v: positive(v) or in_range(0, MAX_CONDUCTANCE_S, "S")(v))
    circuit = b.get("circuit", dict, None)
    stages = b.get("stages", list, None)  # a buffered cascade (boards/cascade.py) instead of one circuit
    if stages is not None:
        if circuit is not None:
            b.error("stages", "give either board.circuit or board.stages, not both")
        circuit = {"stages": stages}
    instrument_board = None
    if backend == "instruments":
        from hil.boards.bench_config import parse_instrument_board

        instrument_board = parse_instrument_board(b)
        if circuit is not None:
            b.error("circuit", "the instruments backend takes its circuit from board.bench")
    devices = b.get("devices", dict, None)
    calibration = b.get("calibration", dict, None)
    b.finish()
    spec = parse_data_section(top.section("data", required=True))
    dataset, scale, vfrac = (spec.name, spec.input_scale_v, spec.validation_fraction) if spec else (None, 1.0, 0.0)
    t = top.section("train", required=True)
    est = t.get("estimator", str, "hl", choices=ESTIMATORS)
    # Options of every estimator are validated; only the chosen one's are used, so
    # ``--set train.estimator=ep`` works on a config that carries ``hl:`` options.
    options: dict[str, dict] = {}
    s = t.section("hl")
    options["hl"] = {"delta_v": s.get("delta_v", float, 0.01, check=_drive_v),
                     "central": s.get("central", bool, True),
                     "max_retries": s.get("max_retries", int, 3, check=non_negative),
                     "flip_rel_tol": s.get("flip_rel_tol", float, 1e-3, check=positive)}
    one_sweep = s.get("one_sweep", bool, None)
    if one_sweep is not None:
        options["hl"]["one_sweep"] = one_sweep
    s.finish()
    s = t.section("ep")
    options["ep"] = {"beta": s.get("beta", float, None, check=positive), "centred": s.get("centred", bool, True),
                     "delta_v": s.get("delta_v", float, 0.01, check=_drive_v),
                     "max_retries": s.get("max_retries", int, 3, check=non_negative)}
    s.finish()
    s = t.section("fd")
    options["fd"] = {"rel_step": s.get("rel_step", float, None,
                                       check=lambda v: None if 0 < v < 0.5 else "must be in (0, 0.5)")}
    s.finish()
    est_opts = options.get(est, {}) if est else {}
    loss = t.get("loss", str, "cross_entropy", choices=LOSSES)
    gain = t.get("gain_per_a", float, 1e5, check=lambda v: positive(v) or in_range(0, 1e15, "1/A")(v))
    o = t.section("optimizer")
    opt = o.get("name", str, "adam", choices=OPTIMIZERS)
    lr = o.get("lr", float, 2e-6, check=lambda v: positive(v) or in_range(0, MAX_CONDUCTANCE_S, "S per step")(v))
    mom = o.get("momentum", float, 0.0, check=lambda m: None if 0 <= m < 1 else "must be in [0, 1)")
    sched = o.get("schedule", str, "constant", choices=SCHEDULES)
    lr_final = o.get("lr_final_fraction", float, 0.0, check=lambda m: None if 0 <= m <= 1 else "must be in [0, 1]")
    o.finish()
    bs = t.get("batch_size", int, 32, check=positive)
    epochs = t.get("epochs", int, DEFAULT_EPOCHS, check=positive)
    trainable = t.get("trainable", list, list(GROUPS))
    if trainable is not None:
        bad = [g for g in trainable if str(g).split(".", 1)[-1] not in GROUPS
               or ("." in str(g) and not re.fullmatch(r"s\d+", str(g).split(".", 1)[0]))]
        if bad:
            t.error("trainable", f"unknown group(s) {bad}; choose from {', '.join(GROUPS)}")
        elif not trainable:
            t.error("trainable", f"empty: the optimizer would move nothing; name at least one of {', '.join(GROUPS)}")
    eval_test = t.get("evaluate_test", bool, True)
    blas_threads = t.get("blas_threads", (int, str), None, check=_threads_check)
    max_invalid = t.get("max_invalid_fraction", float, 0.5,
                        check=lambda v: None if 0 <= v <= 1 else "must be in [0, 1] (1: never stop)")
    t.finish()
    out = top.section("output")
    runs_dir = out.get("runs_dir", str, "runs",
                       check=lambda v: None if v and "\0" not in v and "\n" not in v else "must be a directory path")
    plots = out.get("plots", bool, True)
    out.finish()
    top.finish()
    if g_min is not None and g_max is not None and g_min >= g_max:
        problems.append("board.g_min: must be below board.g_max")
    if problems:
        raise ConfigError(problems, source)
    return TrainSettings(name, seed, backend, g_min, g_max, circuit, dataset, scale, vfrac, est, est_opts, loss, gain,
                         opt, lr, mom, sched, lr_final, bs, epochs, tuple(trainable), eval_test, runs_dir, plots, data,
                         instrument_board, blas_threads, devices, calibration, spec, max_invalid)


def _threads_check(val) -> str | None:
    from hil.threads import requested_threads

    try:
        requested_threads(val)
    except ValueError:
        return "must be a positive integer or 'auto'"
    return None
