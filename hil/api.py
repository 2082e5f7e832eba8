"""The public Python API of hil; the ``hil`` command is built on these functions.

Typical use (SI units throughout: V, A, S)::

    import hil.api as hil

    cfg = hil.load_config("sim-xor", overrides=["train.epochs=50"])
    board = hil.build_board(cfg)                       # a simulated crossbar
    m = hil.measure(board, [[0.0, 1.0]])               # port currents m.y (A)
    loss = hil.make_loss(cfg, board)
    grad = hil.gradient(board, [[0.0, 1.0]], [1], loss, estimator="hl")
    print(hil.named_conductances(board, grad.grad)["g_out"].shape, grad.stats["may_be_biased"])
    result = hil.train(cfg, runs_dir="runs", progress=False)
    run = hil.load_run(result.run_dir, checkpoint="best")
    print(hil.evaluate_run(run, split="test").accuracy)

Every function checks its arguments first: a value of the wrong kind is a ``TypeError``, a wrong
shape or a NaN a ``ValueError``, each naming the argument and what was expected.
Functions raise :class:`hil.config.ConfigError` for bad input (the CLI exits 2) and
:class:`hil.train.rundir.RunDirError`, :class:`hil.circuit.report.SolveError` or
``OSError`` for runtime failures (the CLI exits 1).
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from hil.board import Board, Measurement
from hil.config import ConfigError, apply_overrides, embedded_config_names, file_kind, load_yaml, show_path
from hil.train.estimators import ESTIMATORS, GradientResult, estimate
from hil.train.losses import Loss
from hil.train.rundir import CHECKPOINT_TAGS, RunDir, RunDirError
from hil.train.settings import TrainSettings, parse_settings

if TYPE_CHECKING:
    from hil.circuit.model import Circuit
    from hil.train.data import Dataset
    from hil.train.loop import TrainResult

__all__ = [
    "load_config", "parse_config", "build_board", "build_circuit", "measure", "make_loss", "gradient",
    "named_conductances", "train_steps", "train", "resume", "load_run", "LoadedRun", "evaluate_run", "Evaluation",
    "load_data", "ESTIMATORS", "ConfigError", "RunDirError", "Board", "Measurement", "GradientResult", "Loss",
    "TrainSettings", "calibrate", "apply_calibration",
]


@contextlib.contextmanager
def config_phase(source: str):
    """Turn value errors raised while building objects from a config into a ConfigError."""
    try:
        yield
    except ConfigError as exc:
        if exc.source or not source:
            raise
        raise ConfigError(exc.problems, source) from None  # say which config the problem is in
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError([f"{type(exc).__name__}: {exc}"], source) from exc


# ---- configs and boards -------------------------------------------------------------------
def load_config(source: str | Path, overrides: Sequence[str] = ()) -> dict:
    """A config as a dict: a YAML path or a shipped config name, with ``key.path=value`` overrides
    (e.g. ``["train.epochs=50", "board.g_max=1e-4"]``; values in the config's units: V, A, S, s)."""
    if not isinstance(source, (str, Path)):
        raise TypeError(f"source: expected a YAML path or a shipped config name, got {type(source).__name__}")
    return apply_overrides(load_yaml(source), _override_list(overrides))


def _override_list(overrides: Sequence[str]) -> list[str]:
    """``overrides`` as a list; a lone string (read character by character otherwise) is a TypeError."""
    if isinstance(overrides, (str, bytes)):
        raise TypeError(f"overrides: expected a list of 'key.path=value' strings, got one string "
                        f"(write overrides=[{overrides!r}])")
    if isinstance(overrides, dict):  # its keys alone would be read as overrides without values
        example = [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in list(overrides.items())[:2]]
        raise TypeError(f"overrides: expected a list of 'key.path=value' strings, got a dict (write overrides={example})")
    bad = [o for o in overrides if not isinstance(o, str)]
    if bad:
        raise TypeError(f"overrides: expected 'key.path=value' strings, got {type(bad[0]).__name__} {bad[0]!r}")
    return list(overrides)


def _config(config: dict | TrainSettings | str | Path, source: str = "") -> tuple[dict | TrainSettings, str]:
    """(config dict or settings, source) of what a config function was given: a shipped name or a YAML
    path is loaded (as :func:`train` does); anything else is a TypeError."""
    if isinstance(config, (dict, TrainSettings)):
        return config, source
    if isinstance(config, (str, Path)):
        return load_config(config), source or str(config)
    raise TypeError(f"config: expected a config dict (from load_config), TrainSettings, a YAML path or a shipped "
                    f"config name; got {type(config).__name__}")


def parse_config(config: dict | TrainSettings | str | Path, source: str = "") -> TrainSettings:
    """Validated training settings of a config dict, a YAML path or a shipped name (ConfigError lists
    every problem with its dotted path)."""
    config, source = _config(config, source)
    if isinstance(config, TrainSettings):
        return config
    return parse_settings(config, source)


def build_circuit(config: dict | str | Path, source: str = "") -> Circuit:
    """The :class:`~hil.circuit.model.Circuit` of a config's ``circuit:`` or ``board.circuit:`` section
    (conductances in S, diode parameters in V and A)."""
    from hil.circuit.build import build_circuit as _build

    config, source = _config(config, source)
    if isinstance(config, TrainSettings):
        raise TypeError("config: expected a config dict, a YAML path or a shipped config name (TrainSettings holds "
                        "no circuit section); got TrainSettings")
    in_board = isinstance(config.get("board"), dict) and "circuit" in config["board"]
    if "circuit" in config and in_board:  # e.g. `--set circuit.x=…` on a training config
        raise ConfigError(["circuit: this config's circuit is under 'board.circuit' (write board.circuit.… "
                           "instead of circuit.…)"], source)
    if "circuit" in config:
        cdata, path = config["circuit"], "circuit"
    elif isinstance(config.get("board"), dict) and "circuit" in config["board"]:
        cdata, path = config["board"]["circuit"], "board.circuit"
    elif isinstance(config.get("board"), dict) and "stages" in config["board"]:
        raise ConfigError(["board.stages: a cascade has one circuit per stage; this command takes one circuit "
                           "(for a cascade deck use hil.circuit.spice_cascade.write_cascade_netlist)"], source)
    elif isinstance(config.get("board"), dict) and "bench" in config["board"]:  # a bench config: the bench's circuit
        return parse_config(config, source).instrument_board.bench.circuit
    else:
        raise ConfigError(["circuit: required (a 'circuit:' section, 'board.circuit:' or a 'board.bench:' whose "
                           "bench file names the circuit)"], source)
    with config_phase(source):
        return _build(cdata, path)


def build_board(config: dict | TrainSettings | str | Path, source: str = "", simulated_twin: bool = False) -> Board:
    """The board a training config describes (its initial, untrained conductances, S).

    A bench config (``board.backend: instruments``) is connected only by :func:`train`, which owns the
    instruments' safe state; here it is refused, or with ``simulated_twin`` its circuit (the bench
    file's ``circuit``) is built as a simulated board.
    """
    from hil.boards.factory import make_board

    config, source = _config(config, source)
    s = parse_config(config, source)
    if s.backend == "instruments":
        if not simulated_twin:
            raise ConfigError(["board.backend: instruments: the bench is connected only by hil train (which owns "
                               "the instruments' safe state); a bench run's metrics.csv holds the accuracies measured "
                               "on the bench, and hil solve / hil netlist RUN_DIR give its trained circuit (in Python: "
                               "simulated_twin=True builds the bench's circuit as a simulated board)"], source)
        from hil.boards.simulated import SimulatedBoard

        return SimulatedBoard(s.instrument_board.bench.circuit, g_min=s.g_min, g_max=s.g_max)
    with config_phase(source):
        return make_board(s.backend, s.circuit, s.g_min, s.g_max, devices=s.devices)


def load_data(config: dict | TrainSettings | str | Path, source: str = "") -> Dataset:
    """The config's data set as voltages (:class:`hil.train.data.Dataset`): ``.train``, ``.val``
    (or None), ``.test``, each with ``.x`` (samples, inputs) in V and ``.y`` class labels."""
    from hil.train.data import load_dataset

    config, source = _config(config, source)
    s = parse_config(config, source)
    with config_phase(source):
        return load_dataset(s.data_spec)


# ---- measuring and gradients -------------------------------------------------------------------
def measure(board: Board, x: ArrayLike, w: ArrayLike | None = None) -> Measurement:
    """Apply inputs ``x`` (B, n_inputs) in V (one sample may be a flat list) and optionally
    output-port voltages ``w`` (B, q) or (q,) in V; return the measurement: port currents ``y``
    (B, q) in A, source currents ``i_src`` in A, hidden-node voltages ``e`` in V, ``on``.

    Its arrays are the caller's own copies: a board may keep the arrays it returns as its held
    operating point and hand them out again for the same inputs, so changing a board's
    measurement in place would change its later answers; changing this one cannot."""
    _check_board(board)
    x = _input_voltages(board, x)
    m = board.measure(x, None if w is None else _port_voltages(board, w, len(x)))
    return Measurement(u=_own(m.u), w=_own(m.w), y=_own(m.y), i_src=_own(m.i_src), e=_own(m.e), on=_own(m.on),
                       piecewise_linear=m.piecewise_linear, valid=_own(m.valid), noise_v=m.noise_v, info=dict(m.info))


def _own(a):
    """A copy of an array (None stays None)."""
    return None if a is None else np.array(a)


def _check_board(board: Any) -> None:
    """A TypeError naming ``board`` when it is not a board (a config dict, a path, None)."""
    if not isinstance(board, Board):
        raise TypeError(f"board: expected a hil board (hil.board.Board, e.g. from build_board), "
                        f"got {type(board).__name__}")


def _numbers(value: Any, name: str, what: str, shape: str) -> np.ndarray:
    """``value`` as a float array, or one error naming ``name`` (a TypeError for something that is not
    numbers at all, a ValueError for a ragged list)."""
    if value is None or isinstance(value, (str, bytes, dict)):
        raise TypeError(f"{name}: expected {what} (numbers), got {type(value).__name__}")
    try:
        kind = np.asarray(value).dtype.kind
    except ValueError:  # a ragged list: reported below
        kind = "f"
    if kind in "cUS":  # complex values would lose their imaginary part; text is no voltage
        raise TypeError(f"{name}: expected {what} (real numbers), got {'complex numbers' if kind == 'c' else 'text'}")
    try:
        return np.asarray(value, dtype=float)
    except ValueError as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise ValueError(f"{name}: expected {what} of shape {shape} in V (a ragged list: every sample needs "
                             "the same number of values)") from None
        raise TypeError(f"{name}: expected {what} (numbers); {exc}") from None
    except TypeError as exc:
        raise TypeError(f"{name}: expected {what} (numbers), got {type(value).__name__} ({exc})") from None


def _finite(a: np.ndarray, name: str, what: str) -> None:
    """A ValueError naming the first sample holding NaN or ±inf."""
    bad = ~np.isfinite(a)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise ValueError(f"{name}: {what} must be finite; sample {i[0]} holds {a[tuple(i)]:g}")


def _input_voltages(board: Board, x: ArrayLike, name: str = "x", empty_ok: bool = True) -> np.ndarray:
    """Inputs (B, n_inputs) in V as a float array; a flat list of n_inputs values is one sample."""
    n = board.topology.n_inputs
    shape = f"(batch, {n})"
    a = _numbers(x, name, "input voltages", shape)
    if a.ndim == 1 and a.shape[0] == n:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != n:
        raise ValueError(f"{name}: expected input voltages of shape {shape} in V, got shape {a.shape}")
    if not empty_ok and a.shape[0] == 0:
        raise ValueError(f"{name}: an empty batch (0 samples); give at least one sample")
    _finite(a, name, "input voltages")
    return a


def _port_voltages(board: Board, w: ArrayLike, batch: int) -> np.ndarray:
    """Output-port voltages (B, q) in V; one flat set of q values applies to every sample."""
    q = board.topology.n_outputs
    a = _numbers(w, "w", "output-port voltages", f"({batch}, {q})")
    if a.ndim == 1 and a.shape[0] == q:
        a = np.broadcast_to(a, (batch, q)).copy()
    if a.shape != (batch, q):
        raise ValueError(f"w: expected output-port voltages of shape ({batch}, {q}) in V, got shape {a.shape}")
    _finite(a, "w", "output-port voltages")
    return a


def make_loss(config: dict | TrainSettings | str | Path | None, board: Board, name: str | None = None,
              gain_per_a: float | None = None) -> Loss:
    """The loss a config trains with (or ``name``: ``cross_entropy``, ``mse``, ``linear``) on
    ``board``'s output ports; logits are ``gain_per_a`` (1/A) × the (differential) port currents (A).
    Use it only with this board (or one of the same outputs): :func:`gradient` checks."""
    from hil.train.losses import LOSSES

    _check_board(board)
    s = parse_config(config) if config is not None else None
    name = name or (s.loss if s else "cross_entropy")
    gain = gain_per_a if gain_per_a is not None else (s.gain_per_a if s else 1e5)
    if name not in LOSSES:
        raise ConfigError([f"loss: must be one of {', '.join(LOSSES)}; got {name!r}"])
    try:
        if isinstance(gain, (bool, np.bool_, str)):  # True is not a gain of 1/A; "1e5" is not a number
            raise TypeError
        gain = float(gain)
    except (TypeError, ValueError):
        raise ConfigError([f"gain_per_a: expected a number (1/A), got {gain!r}"]) from None
    if not (np.isfinite(gain) and gain > 0):
        raise ConfigError([f"gain_per_a: must be a finite number > 0 (1/A), got {gain:g}"])
    return Loss(name, gain, board.topology.differential)


def gradient(board: Board, x: ArrayLike, target: ArrayLike, loss: Loss, estimator: str = "hl",
             **options: Any) -> GradientResult:
    """∂ℓ/∂g (1/S per unit loss) for every conductance, measured with ``estimator``.

    ``x`` (B, n_inputs) in V; ``target`` one class label per sample (B,), or what ``loss`` takes
    (``mse``: logit-space targets (B, k); ``linear``: coefficients (B, q) in 1/A).
    ``options`` are the estimator's (``delta_v`` in V, ``central``, ``max_retries`` for ``hl``;
    ``beta``/``delta_v``/``centred`` for ``ep``; ``rel_step`` for ``fd``).  Inputs, target and
    loss are checked before anything is measured.  The result's ``stats`` say whether the
    answer may be biased (``may_be_biased``, ``bias_note``); ``named_conductances(board,
    result.grad)`` splits it by group.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError([f"estimator: must be one of {', '.join(ESTIMATORS)}; got {estimator!r}"])
    _check_estimator_options(estimator, options)
    _check_board(board)
    x = _input_voltages(board, x, empty_ok=False)
    _check_loss(loss, board)
    return estimate(estimator, board, x, _target(loss, board, target, len(x)), loss, options)


def _pairs(d: np.ndarray, q: int | str) -> str:
    """'6 output ports (3 differential pairs)' for a differential matrix (k, q) (or single-ended)."""
    return f"{q} output ports" + (f" ({d.shape[0]} differential pairs)" if d.size else " (single-ended)")


def _check_loss(loss: Any, board: Board) -> None:
    """A Loss made for this board's outputs (its differential pairs), else one error naming ``loss``."""
    if not isinstance(loss, Loss):
        raise TypeError(f"loss: expected a Loss (from make_loss(config, board)), got {type(loss).__name__}")
    mine, theirs = np.asarray(board.topology.differential), np.asarray(loss.differential)
    if not mine.size and not theirs.size:
        return
    if mine.shape != theirs.shape or not np.array_equal(mine, theirs):
        q_theirs = theirs.shape[-1] if theirs.size else "?"
        here = _pairs(mine, board.topology.n_outputs)
        raise ValueError(f"loss: made for a board with {_pairs(theirs, q_theirs)}; this board has "
                         f"{here.replace(' output ports', '', 1)}: make the loss with make_loss(config, board) "
                         "for this board")


def _target(loss: Loss, board: Board, target: ArrayLike, batch: int) -> np.ndarray:
    """``target`` checked against the loss on a zero reading before anything is measured: one
    error naming ``target`` and what this loss takes (not an IndexError after the measurement,
    and never a table of labels read as labels)."""
    t = np.asarray(target)
    if t.dtype.kind not in "biuf":
        raise TypeError(f"target: expected numbers (class labels or values), got an array of "
                        f"{'str' if t.dtype.kind in 'US' else t.dtype}")
    if t.dtype.kind == "f" and not np.isfinite(t).all():
        raise ValueError(f"target: must be finite, got {t[~np.isfinite(t)].flat[0]:g}")
    q = board.topology.n_outputs
    d = np.asarray(loss.differential)
    k = d.shape[0] if d.size else q
    wants = {"cross_entropy": f"one class label 0 … {k - 1} per sample, shape ({batch},)",
             "mse": f"class labels ({batch},) or logit-space targets ({batch}, {k})",
             "linear": f"class labels ({batch},) or coefficients ({batch}, {q}) or ({q},) in 1/A"}
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            loss.value_and_grad(np.zeros((batch, q)), t)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"target: {exc}; {loss.name} takes {wants.get(loss.name, 'one target per sample')}, "
                         f"got shape {t.shape}") from None
    return t


def _check_estimator_options(estimator: str, options: dict) -> None:
    """An option the estimator does not take is a ConfigError naming it (not a TypeError from inside)."""
    import difflib
    import inspect

    from hil.train import estimators

    fn = getattr(estimators, estimator.replace("-", "_") + "_gradient", None)
    if fn is None:
        return
    params = inspect.signature(fn).parameters
    accepted = list(params)[4:]  # after board, x, target, loss
    problems = []
    for key, value in options.items():
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{estimator}.{key}: unknown option{hint}; {estimator} takes {', '.join(accepted)}")
        else:
            problem = _option_problem(key, params[key].default, value)
            if problem:
                problems.append(f"{estimator}.{key}: {problem}")
    if problems:
        raise ConfigError(problems)


#: Ranges of estimator options, as the config checks them (``train.hl.*``, ``train.ep.*``, ``train.fd.*``).
_OPTION_RANGES = {"delta_v": (lambda v: 0 < v <= 10.0, "must be in (0, 10] V"),
                  "flip_rel_tol": (lambda v: v > 0, "must be > 0"),
                  "g_floor": (lambda v: v >= 0, "must be ≥ 0 S"),
                  "rel_step": (lambda v: 0 < v < 0.5, "must be in (0, 0.5)"),
                  "beta": (lambda v: v > 0, "must be > 0")}


def _option_problem(key: str, default: Any, value: Any) -> str | None:
    """What is wrong with an estimator option's value, judged by the kind of its default (a flag, a whole
    number of retries, a finite number) and the config's range for it; None when it is fine."""
    got = f"got {type(value).__name__} {value!r}"
    if isinstance(default, bool) or key == "one_sweep":
        if not isinstance(value, (bool, np.bool_)) and not (value is None and default is None):
            return f"expected true or false, {got}"
        return None
    if isinstance(default, int):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
            return f"expected a whole number ≥ 0, {got}"
        return None
    if value is None and default is None:
        return None
    if isinstance(default, float) or key in _OPTION_RANGES or key == "beta":
        unit = " (V)" if key.endswith("_v") else ""
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            return f"expected a number{unit}, {got}"
        if key in _OPTION_RANGES and math.isfinite(value) and not _OPTION_RANGES[key][0](value):
            return f"{_OPTION_RANGES[key][1]}, got {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number{unit}, got {value!r}"
    return None


def named_conductances(board: Board, values: ArrayLike | None = None, by: str = "group") -> dict[str, Any]:
    """A flat per-conductance vector (default: the programmed conductances, S) by name.

    ``by="group"``: split by group and reshaped to each group's matrix shape (``g_in``:
    hidden × sources, ...).  ``by="element"``: one float per conductance, keyed by its element
    name (``R_h3_x5`` connects hidden node h3 and source x5), as in netlists and checkpoints.
    """
    _check_board(board)
    topo = board.topology
    if isinstance(values, GradientResult):
        raise TypeError("values: expected a per-conductance vector, got a GradientResult (pass result.grad)")
    v = board.read_conductances() if values is None else np.asarray(values)
    if v.shape != (topo.n_conductances,):
        raise ValueError(f"values: expected one value per conductance, shape ({topo.n_conductances},), "
                         f"got shape {v.shape}")
    if by == "element":
        return dict(zip(topo.edge_names, v.tolist()))
    if by != "group":
        raise ValueError(f"by must be 'group' or 'element', got {by!r}")
    return {k: v[sl].reshape(topo.group_shapes.get(k, (-1,))) for k, sl in topo.groups.items()}


# ---- training ----------------------------------------------------------------------------------
def calibrate(board: Board, config: dict | TrainSettings | str | Path, directory: str | Path | None = None,
              progress: bool = False, source: str = "") -> tuple[Path, dict]:
    """Calibrate ``board`` (a simulated non-ideal board from :func:`build_board` of the same config)
    as ``hil calibrate CONFIG`` does: through the board protocol only, into ``directory`` (default
    ``board.calibration.dir``) under the folder :func:`train` looks in.  Returns the calibration
    folder and its summary (``fault_counts`` add up to every conductance).  A board that cannot
    set its sources (the ideal simulated board) is a ConfigError."""
    from hil.calibrate.apply import calibration_identity
    from hil.calibrate.run import calibrate as run_calibration
    from hil.calibrate.settings import parse_calibration

    _check_board(board)
    config, source = _config(config, source)
    s = parse_config(config, source)
    with config_phase(source):
        cs = parse_calibration(s.calibration)
    if directory is not None:
        cs.dir = str(directory)
    if not hasattr(board, "measure_sources"):
        raise ConfigError(["board: calibration sets every source (rails included) and this board cannot; "
                           "give the config board.devices to model a real board"], source)
    _check_board_is_the_configs(board, s, source)
    name, temperature, diode_kind = calibration_identity(s)
    say = (lambda line: print(f"hil calibrate: {line}", flush=True)) if progress else (lambda line: None)
    path, summary = run_calibration(board, cs, name, temperature, diode_kind, progress=say, devices=s.devices)
    return Path(path).resolve(), summary  # (absolute, as apply_calibration's)


def _check_board_is_the_configs(board: Board, s: TrainSettings, source: str) -> None:
    """ConfigError unless ``board`` could be the board of settings ``s``: the same devices section
    (a non-ideal simulated board knows its own) and the same numbers of sources, hidden nodes,
    ports and conductances.  A calibration is filed under the config's board and applied to it by
    :func:`train`: another board's calibration would be applied to it without a word."""
    from hil.devices.model import parse_devices

    spec = getattr(board, "spec", None)
    if spec is not None and s.devices is not None:
        with config_phase(source):
            wanted = parse_devices(s.devices, "board.devices")
        if wanted != spec:
            raise ConfigError([f"board: its devices (preset {spec.preset!r}, seed {spec.seed}) are not the config's "
                               f"board.devices (preset {wanted.preset!r}, seed {wanted.seed}); calibrate the board "
                               "built from this config (build_board(config))"], source)
    if s.backend == "simulated" and isinstance(s.circuit, dict):
        from hil.circuit.build import build_circuit as _build

        topo = board.topology
        with config_phase(source):  # (the circuit alone: no board, no device draws)
            expected = _build(s.circuit, "board.circuit")
        have = (topo.n_sources, topo.n_hidden, topo.n_outputs, topo.n_conductances)
        want = (expected.n_sources, expected.n_hidden, expected.n_outputs, expected.topology().n_conductances)
        if have != want:
            raise ConfigError([f"board: {have[0]} sources, {have[1]} hidden nodes, {have[2]} ports and {have[3]} "
                               f"conductances, the config's board has {want[0]}, {want[1]}, {want[2]} and {want[3]}; "
                               "calibrate the board built from this config (build_board(config))"], source)


def apply_calibration(board: Board, config: dict | TrainSettings | str | Path,
                      source: str = "") -> tuple[Board, Path | None]:
    """``board`` wrapped with the compensations of ``board.calibration`` and the newest calibration of
    the config's board, as :func:`train` does (``board.calibration.dir``); (board, calibration folder), or
    the board unchanged and None when there is none.  A calibration of another board size or an
    unreadable one is a ConfigError naming its folder."""
    from hil.calibrate.apply import wrap_with_calibration

    _check_board(board)
    config, source = _config(config, source)
    s = parse_config(config, source)
    with config_phase(source):
        wrapped, meta = wrap_with_calibration(board, s)
    cal = meta.get("calibration")
    return wrapped, (Path(cal["path"]) if cal else None)


def train_steps(board: Board, config: dict | TrainSettings | str | Path, x: ArrayLike, target: ArrayLike,
                steps: int = 1, loss: Loss | None = None) -> list[float]:
    """A few optimizer steps on one batch, without a run directory (for experiments).

    ``x`` (B, n_inputs) in V, ``target`` as for :func:`gradient`.  Uses the config's estimator
    (and options), optimizer, learning rate (no schedule) and trainable groups; programs the
    board (conductances in S, within its bounds) after every step.  Returns the batch-mean loss
    measured at the operating point before each step.
    """
    from hil.train.optim import Optimizer, trainable_mask

    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise (TypeError if not isinstance(steps, numbers.Real) else ValueError)(
            f"steps: expected a whole number ≥ 0, got {steps!r}")
    _check_board(board)
    s = parse_config(config)
    loss = loss or make_loss(s, board)
    x = _input_voltages(board, x, empty_ok=False)
    _check_loss(loss, board)
    target = _target(loss, board, target, len(x))
    mask = trainable_mask(board.topology, s.trainable)
    g_min, g_max = board.conductance_bounds
    opt = Optimizer(s.optimizer, s.lr, g_min, g_max, mask, momentum=s.momentum)
    g = board.read_conductances()
    losses = []
    for _ in range(int(steps)):
        r = estimate(s.estimator, board, x, target, loss, s.estimator_options)
        losses.append(float(r.loss.mean()))
        g = board.program(opt.step(g, r.grad), rel_tol=0.0)
    return losses


def train(config: dict | str | Path, *, overrides: Sequence[str] = (), runs_dir: str | Path | None = None,
          progress: bool | str = False, epochs: int | None = None, source: str = "",
          started: Callable[[RunDir], Any] | None = None, board_options: dict | None = None) -> TrainResult:
    """Train a config in a new run directory; returns :class:`hil.train.loop.TrainResult`.

    ``epochs`` replaces ``train.epochs`` (a whole number > 0); ``runs_dir`` replaces
    ``output.runs_dir``; ``progress``: False (silent), True (a bar on a terminal, else one line
    per epoch), ``"bar"`` or ``"lines"``.

    ``started(run)`` is called with the :class:`RunDir` once it exists (the CLI uses it to
    say what an interrupted run left behind).  ``board_options`` go to the board factory
    (instrument benches: ``resources``, ``clock``, ``rehearsal_world`` of an emulated bench).
    """
    from hil.calibrate.apply import record_from_run
    from hil.train.loop import Trainer

    _check_progress(progress)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1):
        raise ConfigError([f"epochs: must be a whole number > 0, got {epochs!r}"], source)
    if not isinstance(config, (dict, str, Path)):
        raise TypeError(f"config: expected a config dict (from load_config), a YAML path or a shipped config name; "
                        f"got {type(config).__name__}")
    if not isinstance(config, dict):
        source = source or str(config)
        config = load_config(config, overrides)
    elif overrides:
        config = apply_overrides(json.loads(json.dumps(config)), _override_list(overrides))
    s = parse_config(config, source)
    if epochs is not None:
        s.epochs = int(epochs)
    if runs_dir is not None:
        s.runs_dir = str(runs_dir)
    board, data, cal_meta = _board_and_data(s, source, board_options)
    blas = _blas_threads(s, source)
    run = RunDir.create(s.runs_dir, s.name)
    if started is not None:
        started(run)
    try:
        run.write_config(config)
        _attach_events(board, run)
        with board:
            meta = {"config_source": source, "estimator": s.estimator, "data": data.describe(), **blas,
                    **record_from_run(cal_meta, run.path)}
            if hasattr(board, "snapshots"):  # an instrument board: every instrument's identity and settings
                with outputs_read_back(board):
                    board.connect()
                meta["instruments"] = board.snapshots()
            run.write_metadata(meta)
            if progress and cal_meta.get("calibration"):
                print(f"hil train: {_calibration_line(cal_meta['calibration'])}", flush=True)
            elif progress and cal_meta.get("calibration_searched"):
                print(f"hil train: no calibration found in {cal_meta['calibration_searched']} ('hil calibrate' writes "
                      "one): training on the readings as measured, no stuck mask", flush=True)
            return _fit(board, Trainer(board, s, data, run, progress=progress))
    finally:
        run.close()


def _check_progress(progress: bool | str) -> None:
    """``progress`` is True (a bar on a terminal, else lines), False, "bar" or "lines"."""
    if not (isinstance(progress, bool) or progress in ("bar", "lines")):
        raise ValueError(f"progress: expected True, False, 'bar' or 'lines', got {progress!r}")


def _calibration_line(cal: dict) -> str:
    """'applying calibration PATH (offsets, gains, …)' from the calibration metadata of a run."""
    used = [name for key, name in (("offsets", "offsets"), ("gains", "gains"), ("stuck_mask", "stuck mask"))
            if cal.get(key)]
    if cal.get("write_verify_rel_tol"):
        used.append(f"write-verify to {cal['write_verify_rel_tol']:g}")
    if cal.get("drift") not in (None, "none"):
        used.append(f"{cal['drift']} drift correction")
    return f"applying calibration {cal['path']} ({', '.join(used) or 'readings as measured'})"


def _blas_threads(s: TrainSettings, source: str) -> dict:
    """Apply the BLAS thread count (config, else $HIL_BLAS_THREADS, else 1); returns it for the metadata."""
    from hil.threads import configure_blas_threads

    try:
        return configure_blas_threads(s.blas_threads)
    except ValueError as exc:
        raise ConfigError([str(exc)], source) from None


def _attach_events(board: Board, run: RunDir) -> None:
    """An instrument board's evidence (compliance, write-verify, abort) goes to the run's event log."""
    if hasattr(board, "event_sink"):
        board.event_sink = lambda kind, **data: run.event(kind, **data)


def _fit(board: Board, trainer):
    """``trainer.fit()`` inside :func:`outputs_read_back`."""
    with outputs_read_back(board):
        return trainer.fit()


@contextlib.contextmanager
def outputs_read_back(board: Board):
    """On any failure inside the block (an instrument fault, a bug, Ctrl-C or SIGTERM), an
    instrument board is made safe and its outputs read back (``exc.unverified``: channels not
    confirmed off, ``[]`` when every output answered off) before the exception propagates; the
    command line reports it.  The failure that leaves is the one from inside the block, also when
    the safe state or the read-back fails as well
    (:func:`hil.boards.instrument.record_read_back`)."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:
        if hasattr(board, "verify_safe"):
            from hil.boards.instrument import record_read_back

            record_read_back(board, exc)
        raise


def _board_and_data(s: TrainSettings, source: str, board_options: dict | None = None,
                    resume_dir: str | Path | None = None):
    """(board, data, calibration metadata): the board wrapped with the newest calibration
    (``board.calibration``; a resumed run uses the one its metadata recorded)."""
    from hil.boards.factory import make_board
    from hil.calibrate.apply import wrap_with_calibration
    from hil.drivers.errors import InstrumentError
    from hil.train.data import compatibility_problems, load_dataset
    from hil.train.optim import trainable_mask

    spec = s.instrument_board
    if spec is not None and spec.programming.get("scheme") == "none":
        raise ConfigError(["board.programming: a fixed array cannot be trained; configure a programming "
                           "scheme (e.g. write_verify)"], source)
    with config_phase(source):
        try:
            data = load_dataset(s.data_spec)
        except ConfigError as exc:
            raise ConfigError(exc.problems, source) from None
        if spec is not None and spec.bench.circuit is not None:  # before any instrument is opened
            _check_bench_levels(s, spec, data, source)
        try:
            board = make_board(s.backend, s.circuit, s.g_min, s.g_max, spec, **(board_options or {}),
                               devices=s.devices)
        except InstrumentError as exc:
            exc.phase = "open"  # transports only: nothing was switched on
            raise
        board, cal_meta = wrap_with_calibration(board, s, None if resume_dir is None else str(resume_dir),
                                                emulated="resources" in (board_options or {}))
    if getattr(board, "needs_backward_order", False) and s.estimator == "ep":
        raise ConfigError(["train.estimator: 'ep' cannot reach the earlier stages of a cascade; "
                           "use hl or hl-exact (backward order) or fd"], source)
    if getattr(board, "needs_backward_order", False) and s.estimator == "hl" and s.estimator_options.get("one_sweep"):
        raise ConfigError(["train.hl.one_sweep: a cascade is measured stage by stage (each stage's drive comes "
                           "from the stage after it); leave it unset or false"], source)
    try:  # the groups to train exist on this board (not only g_hh on a network without it)
        trainable_mask(board.topology, s.trainable)
    except ValueError as exc:
        raise ConfigError([str(exc)], source) from None
    if problems := compatibility_problems(data, board.topology):
        if getattr(board, "needs_backward_order", False):
            problems = [q.replace("board.circuit.inputs", "board.stages[0].circuit.inputs", 1) for q in problems]
        raise ConfigError(problems, source)
    return board, data, cal_meta


def _check_bench_levels(s: TrainSettings, spec: Any, data: Any, source: str) -> None:
    """Refuse (``ConfigError``) inputs, rails or drives beyond a bench channel's limits: the board
    would refuse the first batch after the bench was opened."""
    from hil.boards.bench_config import level_problems
    from hil.boards.simulated import board_topology

    splits = [d.x for d in (data.train, data.val, data.test) if d is not None]
    topology = board_topology(spec.bench.circuit)
    if topology.n_inputs != splits[0].shape[1]:
        return  # the data do not fit the circuit: compatibility_problems names that
    if problems := level_problems(spec, topology, np.concatenate(splits), s.estimator, s.estimator_options):
        raise ConfigError(problems, source)


def resume(run_dir: str | Path, *, overrides: Sequence[str] = (), progress: bool | str = False,
           started: Callable[[RunDir], Any] | None = None, board_options: dict | None = None,
           restored: Callable[[Any], Any] | None = None,
           argument_names: tuple[str, str] = ("run_dir", "overrides")) -> TrainResult | None:
    """Continue a run from its last checkpoint (exactly: conductances, optimizer, RNG).

    Returns the :class:`~hil.train.loop.TrainResult`, or None when the run had already done
    ``train.epochs`` epochs.  The run directory is locked while it runs.  ``started(run)`` is
    called once the run is locked, ``restored(trainer)`` once its checkpoint is loaded and the
    overrides are accepted (just before training goes on).  ``argument_names``: how error messages
    name ``run_dir`` and ``overrides`` (``hil train`` passes its options, ``--resume`` and ``--set``).
    """
    from hil.train.loop import ShapeMismatch, Trainer

    overrides = _override_list(overrides)
    _check_progress(progress)
    path = Path(run_dir)
    if not (path / "config.resolved.yaml").is_file():
        raise ConfigError([f"{argument_names[0]} {show_path(run_dir)}: {_why_not_a_run(Path(run_dir))}"])
    ckdir = path / "checkpoints"
    if not any((ckdir / f"{t}.npz").is_file() for t in CHECKPOINT_TAGS):
        raise ConfigError([f"{argument_names[0]} {show_path(run_dir)}: the run has no completed epoch to resume from; "
                           "start it again"])
    run = RunDir.resume(path)
    if started is not None:
        started(run)
    try:
        source = str(path / "config.resolved.yaml")  # and the overrides, which a problem may come from
        source += f" with {argument_names[1]} {' '.join(overrides)}" if overrides else ""
        before = run.read_config()
        config = apply_overrides(json.loads(json.dumps(before)), list(overrides))
        s = parse_config(config, source)
        done = run.checkpoint_epoch()  # None: the resume falls back to the best checkpoint or reports the damage
        if done is not None and s.epochs < done:  # would rewrite the config and warn, then train nothing
            raise ConfigError([f"train.epochs: {s.epochs} is fewer than the {done} epochs the run has completed; "
                               f"give more than {done} to continue it"], source)
        if done is not None and done >= s.epochs and not overrides:  # finished: no board to build (or bench to open)
            return None
        board, data, cal_meta = _board_and_data(s, source, board_options, path)
        if progress and cal_meta.get("calibration"):  # the one its metadata recorded
            print(f"hil train: {_calibration_line(cal_meta['calibration'])}", flush=True)
        _attach_events(board, run)
        run.event("blas_threads", **_blas_threads(s, source))
        with board:
            trainer = Trainer(board, s, data, run, progress=progress)
            try:
                with outputs_read_back(board):  # restoring programs the bench
                    trainer.restore("last", overrides=list(overrides))
            except ShapeMismatch as exc:
                raise ConfigError([f"{argument_names[1]} {' '.join(overrides) or '(none)'}: {exc}"], source) from None
            if overrides:
                run.write_config(config)  # the resolved config records what the run now uses
            _warn_cosine_extension(trainer, before, s, run)
            if trainer.epoch >= s.epochs:
                return None
            if restored is not None:
                restored(trainer)
            return _fit(board, trainer)
    finally:
        run.close()


def _warn_cosine_extension(trainer, before: dict, s: TrainSettings, run: RunDir) -> None:
    """Raising ``train.epochs`` of a cosine schedule restarts its decay: say so."""
    try:
        old_epochs = int(before["train"]["epochs"])
    except (KeyError, TypeError, ValueError):
        return
    if s.schedule != "cosine" or s.epochs == old_epochs:
        return
    old_total = max(old_epochs * trainer.steps_per_epoch, 1)
    step = trainer.opt.state["step"]
    frac = min(step / old_total, 1.0)
    lo = s.lr_final_fraction
    old_lr = s.lr * (lo + (1 - lo) * 0.5 * (1 + np.cos(np.pi * frac)))
    new_lr = trainer.opt.current_lr()
    if np.isclose(old_lr, new_lr, rtol=1e-6, atol=0.0):  # e.g. a run that had already decayed to 0
        return
    msg = (f"train.epochs changed from {old_epochs} to {s.epochs} on a cosine schedule: the learning rate "
           f"at step {step} goes from {old_lr:.3g} to {new_lr:.3g} (the decay is stretched over the new length)")
    print(f"hil: warning: {msg}", file=sys.stderr)
    run.event("warning", step=step, message=msg)


# ---- trained runs ---------------------------------------------------------------------------------
@dataclass
class LoadedRun:
    """A trained network: its settings, a board programmed with the checkpoint's conductances."""

    path: Path
    settings: TrainSettings
    board: Board
    checkpoint: str  # "best" or "last" (the one actually loaded)
    epoch: int
    warnings: list[str] = field(default_factory=list)

    def conductances(self) -> dict[str, np.ndarray]:
        """Trained conductances (S) by group, in matrix shape."""
        return named_conductances(self.board)


def _why_not_a_run(path: Path) -> str:
    """Why ``path`` is not usable as a run directory, in the words a user can act on."""
    shipped = not path.exists() and str(path) in embedded_config_names()
    if (path.suffix in (".yaml", ".yml") and path.is_file()) or shipped:
        kind = _yaml_kind(path)
        if kind != "training config":
            return f"{kind}, not a run directory (give the run directory hil train wrote: RUNS_DIR/<time>_<name>)"
        how = f"hil train {path}" + (" on the bench, or rehearse with --emulate" if _is_bench_config(path) else "")
        return f"a training config, not a run directory: train it first ({how}) and give the run directory it writes"
    if not path.exists():
        return "not a run directory (no such file or directory)"
    runs = sorted(p for p in path.iterdir() if (p / "config.resolved.yaml").is_file()) if path.is_dir() else []
    if runs:  # the runs directory itself (output.runs_dir): name the newest run (names start with the UTC time)
        return (f"a runs directory holding {len(runs)} run{'s' if len(runs) > 1 else ''}, not a run directory: "
                f"give one of them (the newest is {show_path(runs[-1])})")
    return "not a run directory (no config.resolved.yaml)"


def _yaml_kind(path: Path) -> str:
    """What a YAML file given where a run directory was expected is, in a user's words."""
    if not path.exists():
        return "training config"  # a shipped config name
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        blank = all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())
        data = None if blank else load_config(str(path))
    except ConfigError:
        return "a YAML file that does not read as a config"
    if data is None:
        return "an empty file"
    return {"training config": "training config", "sweep file": "a sweep file (run it with hil sweep)",
            "bench file": "a bench file"}.get(file_kind(data), "a YAML file that is not a training config")


def _is_bench_config(path: Path) -> bool:
    try:
        board = load_config(str(path)).get("board")
    except ConfigError:
        return False
    return isinstance(board, dict) and board.get("backend") == "instruments"


def load_run(run_dir: str | Path, checkpoint: str = "best", simulated_twin: bool = False) -> LoadedRun:
    """Rebuild a run's board and program it with a checkpoint (``best`` or ``last``).

    A simulated board with device non-idealities then gets its devices back as the checkpoint saved
    them (conductances with their programming noise, write times, drift clock, random stream), so
    it measures the devices that trained rather than a new programming of the same targets.

    A simulated board that trained with a calibration is wrapped with the same one (recorded in the
    run's metadata), so it reads and masks as during training.

    Also accepts a checkpoint file (``…/checkpoints/last.npz``).  A damaged checkpoint falls
    back to the other one with a warning.  A run on an instrument bench is refused, or with
    ``simulated_twin`` loaded into a simulated board of the bench's circuit (see :func:`build_board`).
    """
    from hil.train.loop import check_checkpoint_fits, restore_device_state

    path = Path(run_dir)
    if path.suffix == ".npz" and path.parent.name == "checkpoints":
        checkpoint, path = path.stem, path.parent.parent
    elif path.name == "config.resolved.yaml":
        path = path.parent
    if checkpoint not in CHECKPOINT_TAGS:
        raise ConfigError([f"checkpoint: must be one of {', '.join(CHECKPOINT_TAGS)}; got {checkpoint!r}"])
    if not (path / "config.resolved.yaml").is_file():
        raise ConfigError([f"{show_path(run_dir)}: {_why_not_a_run(Path(run_dir))}"])
    if not any((path / "checkpoints" / f"{t}.npz").is_file() for t in CHECKPOINT_TAGS):
        raise ConfigError([f"{show_path(run_dir)}: the run has no completed epoch (no checkpoint; it was stopped "
                           "during its first epoch): train it again"])
    run = RunDir(path)
    source = str(path / "config.resolved.yaml")
    s = parse_config(run.read_config(), source)
    board = build_board(s, source, simulated_twin=simulated_twin)
    if s.backend != "instruments":  # the calibration the run trained with (its metadata): same readings, same mask
        from hil.calibrate.apply import wrap_with_calibration

        with config_phase(source):
            board, _ = wrap_with_calibration(board, s, str(path), warn=False)
    used, ck = run.load_checkpoint_with_fallback(checkpoint)
    check_checkpoint_fits(ck, board.topology, f"checkpoint {used} of {path}")
    board.program(ck["conductances_s"], rel_tol=0.0)
    restore_device_state(board, ck)  # the trained devices (drift clock, programming noise), not a new programming
    return LoadedRun(path, s, board, used, int(ck["epoch"]), list(run.warnings))


def is_run_reference(text: str) -> bool:
    """True when ``text`` names a trained run rather than a plain config: a run directory, one of
    its checkpoints, or its ``config.resolved.yaml`` once a checkpoint exists (exporting that
    file must not silently give the untrained conductances)."""
    p = Path(text)
    if p.suffix == ".npz" and p.parent.name == "checkpoints":
        return True
    if p.name == "config.resolved.yaml":
        return any((p.parent / "checkpoints" / f"{t}.npz").is_file() for t in CHECKPOINT_TAGS)
    return p.is_dir() and (p / "config.resolved.yaml").is_file()


@dataclass
class Evaluation:
    """Accuracy, mean loss and confusion matrix of a trained network on one split."""

    split: str
    samples: int
    accuracy: float
    loss: float
    confusion: np.ndarray  # (classes, classes): rows true class, columns predicted
    conduction_fraction: float


def evaluate_run(run: LoadedRun | str | Path, split: str = "test", argument_name: str = "split") -> Evaluation:
    """Evaluate a loaded run (or a run directory: its best checkpoint) on ``train``,
    ``validation`` or ``test`` (the run's own data split); the loss is the config's, currents in A.
    ``argument_name``: how errors name ``split`` (the command line passes ``--data``)."""
    if isinstance(run, (str, Path)):
        run = load_run(run)
    if not isinstance(run, LoadedRun):
        raise TypeError(f"run: expected a LoadedRun (from load_run) or a run directory, got {type(run).__name__}")
    if split not in ("train", "validation", "test"):
        raise ConfigError([f"{argument_name}: must be one of train, validation, test; got {split!r}"])
    data = load_data(run.settings)
    part = {"train": data.train, "validation": data.val, "test": data.test}[split]
    if part is None:
        raise ConfigError([f"{argument_name} validation: the run has no validation split (data.validation_fraction "
                           "is 0)"])
    loss = make_loss(run.settings, run.board)
    pred, total, on = [], 0.0, 0.0
    for i in range(0, len(part.y), 2048):
        m = run.board.measure(part.x[i:i + 2048])
        pred.append(loss.predict(m.y))
        total += float(loss.value_and_grad(m.y, part.y[i:i + 2048])[0].sum())
        if m.on is not None:
            on += float(m.on.mean()) * len(m.y)
    p = np.concatenate(pred)
    k = data.n_classes
    conf = np.zeros((k, k), dtype=int)
    np.add.at(conf, (part.y.astype(int), p), 1)
    n = len(part.y)
    return Evaluation(split, n, float(np.mean(p == part.y)), total / n, conf, on / n)
