"""Data sets as input voltages: built-in sets and the user's own CSV or NPZ files.

Built-in sets (nothing is downloaded):

* ``digits``, ``iris``, ``wine``, ``breast_cancer`` — scikit-learn's bundled copies, split
  ``train_test_split(test_size=test_fraction, random_state=split_seed, stratify=y)``
  (defaults 0.25 and 0: the digits split is 1347 train / 450 test);
* ``mnist1d`` — MNIST-1D (Greydanus 2020) generated offline by the ``mnist1d`` package
  with its default arguments: the standard 4000 train / 1000 test split, 40 features;
* ``xor`` — the four XOR points (train = test).

User data (``csv`` / ``npz``, see ``docs/data.md``): features and labels from ``path``,
an optional given test split (``test_path``, or ``x_test``/``y_test`` in the NPZ file),
otherwise a stratified random split as for the scikit-learn sets.

An optional validation split is carved from the training part only (stratified,
``validation_fraction``, ``validation_seed``); it never touches the test part.

Input scaling to volts (statistics always from the part used for fitting — the training
part without its validation carve-out):

* ``fixed``: ``x_V = input_scale_v · x / full_scale`` with the set's fixed full scale
  (digits 16, otherwise 1);
* ``max``: ``x_V = input_scale_v · x / max|x|`` per feature (training inputs within ±input_scale_v);
* ``standardize``: ``x_V = input_scale_v · (x − mean) / std`` per feature (volts per
  standard deviation; a constant feature maps to 0 V);
* ``minmax``: each feature's training range mapped linearly onto ``input_range_v``
  (default ``[0, input_scale_v]``); unseen values may fall outside it.

Without ``scaling`` each set uses its default: ``fixed`` for digits and xor, ``max`` for iris,
``standardize`` for every other set and for user files.

Every problem with a file or its contents is a :class:`hil.config.ConfigError` naming the
dotted config path (``data.path: line 7 has 3 fields, expected 5``).
"""

from __future__ import annotations

import csv
import functools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hil.config import MAX_ABS_VOLTAGE_V, ConfigError, Section, in_range, non_negative, positive

BUILTIN = ("digits", "xor", "iris", "wine", "breast_cancer", "mnist1d")
FILE_FORMATS = ("csv", "npz")
DATASETS = BUILTIN + FILE_FORMATS
SCALINGS = ("fixed", "max", "standardize", "minmax")
FULL_SCALE = {"digits": 16.0}
DEFAULT_SCALING = {"digits": "fixed", "xor": "fixed", "iris": "max"}  # every other set: standardize
MNIST1D_VERSION = "0.0.2.post1"


@dataclass
class DataSplit:
    x: np.ndarray  # (N, n_inputs) volts
    y: np.ndarray  # (N,) class labels 0..n_classes-1


@dataclass
class Dataset:
    name: str
    train: DataSplit
    test: DataSplit
    val: DataSplit | None
    n_classes: int
    class_names: tuple[str, ...] = ()
    scaling: dict = field(default_factory=dict)

    def describe(self) -> dict:
        """Sizes, classes and scaling, JSON-ready (for run metadata)."""
        return {"name": self.name, "n_features": int(self.train.x.shape[1]), "n_classes": self.n_classes,
                "train": len(self.train.y), "validation": 0 if self.val is None else len(self.val.y),
                "test": len(self.test.y), "class_names": list(self.class_names), "scaling": self.scaling}


@dataclass(frozen=True)
class DataSpec:
    """The ``data:`` section of a training config (see module docstring)."""

    name: str
    path: str | None = None
    test_path: str | None = None
    label_column: int | str = -1
    header: bool | None = None  # None: detect (first row has a non-numeric feature field)
    delimiter: str = ","
    scaling: str | None = None  # None: the data set's default (DEFAULT_SCALING, else standardize)
    input_scale_v: float = 1.0
    input_range_v: tuple[float, float] | None = None
    validation_fraction: float = 0.0
    test_fraction: float = 0.25
    split_seed: int = 0
    validation_seed: int = 1


def parse_data_section(d: Section) -> DataSpec | None:
    """Read and validate a ``data:`` section; problems are recorded on the section."""
    name = d.get("name", str, choices=DATASETS)
    is_file = name in FILE_FORMATS
    path = d.get("path", str, None)
    test_path = d.get("test_path", str, None)
    if is_file and path is None:
        d.error("path", f"required for data.name: {name}")
    if not is_file and name is not None:
        for key in ("path", "test_path"):
            if d.has(key):
                d.error(key, f"only for csv or npz data; {name!r} is built in")
    label_column = d.get("label_column", (int, str), -1)
    header = d.get("header", bool, None)
    delimiter = d.get("delimiter", str, ",", check=lambda s: None if len(s) == 1 else "must be one character")
    if name != "csv":
        for key in ("label_column", "header", "delimiter"):
            if d.has(key) and name is not None:
                d.error(key, "only for csv data")
    scaling = d.get("scaling", str, None, choices=SCALINGS)
    scale = d.get("input_scale_v", float, 1.0, check=lambda v: positive(v) or in_range(0, MAX_ABS_VOLTAGE_V, "V")(v))
    rng = d.get("input_range_v", list, None)
    if rng is not None:
        ok = (len(rng) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)
              and rng[0] < rng[1])
        if not ok:
            d.error("input_range_v", "expected [low, high] in volts with low < high")
            rng = None
        elif scaling != "minmax":
            d.error("input_range_v", "only with scaling: minmax")
        else:
            rng = (float(rng[0]), float(rng[1]))
    vfrac = d.get("validation_fraction", float, 0.0, check=lambda v: None if 0 <= v < 1 else "must be in [0, 1)")
    tfrac = d.get("test_fraction", float, 0.25, check=lambda v: None if 0 < v < 1 else "must be in (0, 1)")
    split_seed = d.get("split_seed", int, 0, check=non_negative)
    val_seed = d.get("validation_seed", int, 1, check=non_negative)
    d.finish()
    if name is None:
        return None
    return DataSpec(name, path, test_path, label_column, header, delimiter, scaling, scale, rng, vfrac, tfrac,
                    split_seed, val_seed)


# ---- raw sources ---------------------------------------------------------------------------------
@dataclass
class _Raw:
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None  # a given split
    y_test: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    full_scale: float = 1.0


def _sklearn(name: str) -> _Raw:
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "iris": datasets.load_iris, "wine": datasets.load_wine,
              "breast_cancer": datasets.load_breast_cancer}[name]
    d = loader()
    names = tuple(str(n) for n in d.target_names)
    return _Raw(d.data.astype(float), d.target.astype(int), class_names=names, full_scale=FULL_SCALE.get(name, 1.0))


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D from the package's generator (default arguments), never its downloader.

    The generator seeds NumPy's and Python's global random state; both are restored.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError([f"data.name: mnist1d needs the 'mnist1d' package ({exc})"]) from None
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _mnist1d() -> _Raw:
    x, y, xt, yt = (np.array(a) for a in _mnist1d_arrays())
    return _Raw(x.astype(float), y.astype(int), xt.astype(float), yt.astype(int),
                class_names=tuple(str(k) for k in range(10)))


def _xor() -> _Raw:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    y = np.array([0, 1, 1, 0])
    return _Raw(x, y, x.copy(), y.copy())


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _read_csv(path: Path, where: str, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, F) and raw labels (N,) from a CSV file; ``where`` is the dotted key."""
    try:
        with open(path, newline="") as f:
            rows = [(i + 1, r) for i, r in enumerate(csv.reader(f, delimiter=spec.delimiter))]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError([f"{where}: cannot read {path}: {exc}"]) from None
    rows = [(n, r) for n, r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise ConfigError([f"{where}: {path} has no data rows"])
    width = len(rows[0][1])
    names = None
    lc = spec.label_column
    if isinstance(lc, str):
        names = [c.strip() for c in rows[0][1]]
        if lc not in names:
            raise ConfigError([f"data.label_column: no column {lc!r} in the header of {path} ({', '.join(names)})"])
        lcol = names.index(lc)
    else:
        if not -width <= lc < width:
            raise ConfigError([f"data.label_column: {lc} is outside the {width} columns of {path}"])
        lcol = lc % width
    if width < 2:
        raise ConfigError([f"{where}: {path} needs at least one feature column and a label column"])
    header = spec.header
    if header is None:  # detect: a header row has a non-numeric field outside the label column
        header = names is not None or any(not _is_number(c) for j, c in enumerate(rows[0][1]) if j != lcol)
    body = rows[1:] if header else rows
    if not body:
        raise ConfigError([f"{where}: {path} has a header but no data rows"])
    feats, labels = [], []
    for n, r in body:
        if len(r) != width:
            raise ConfigError([f"{where}: line {n} of {path} has {len(r)} fields, expected {width} "
                               f"(ragged file)"])
        vals = []
        for j, c in enumerate(r):
            if j == lcol:
                labels.append(c.strip())
                continue
            try:
                vals.append(float(c))
            except ValueError:
                raise ConfigError([f"{where}: line {n}, column {j + 1} of {path}: {c.strip()!r} is not a number"]) \
                    from None
        feats.append(vals)
    return np.array(feats, float), np.array(labels, dtype=object)


def _read_npz(path: Path, where: str) -> dict[str, np.ndarray]:
    import zipfile

    if path.is_file() and not zipfile.is_zipfile(path):  # (numpy would suggest loading it with pickle)
        raise ConfigError([f"{where}: {path} is not an NPZ file (an NPZ is a zip of arrays, as numpy.savez writes "
                           "it; for a CSV use data.name: csv)"])
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ConfigError([f"{where}: cannot read {path} as NPZ: {exc}"]) from None
    if "x" in arrays and "y" in arrays:
        out = {"x": arrays["x"], "y": arrays["y"]}
    elif "x_train" in arrays and "y_train" in arrays:
        out = {"x": arrays["x_train"], "y": arrays["y_train"]}
    else:
        raise ConfigError([f"{where}: {path} must hold arrays x and y (or x_train, y_train); "
                           f"it has {', '.join(sorted(arrays)) or 'none'}"])
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ConfigError([f"{where}: {path} has only one of x_test and y_test"])
    if "x_test" in arrays:
        out["x_test"], out["y_test"] = arrays["x_test"], arrays["y_test"]
    for key in ("x", "x_test"):
        if key in out:
            if out[key].ndim != 2:
                raise ConfigError([f"{where}: {key} in {path} must be 2-D (samples, features), "
                                   f"got shape {out[key].shape}"])
            if not np.issubdtype(out[key].dtype, np.number) or np.issubdtype(out[key].dtype, np.complexfloating):
                raise ConfigError([f"{where}: {key} in {path} must be real numbers, got {out[key].dtype}"])
    return out


def _check_features(x: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ConfigError([f"{where}: {int(bad.sum())} feature value(s) are NaN or infinite "
                           f"(first at sample {int(r)}, feature {int(c)})"])


def _label_codes(y_train: np.ndarray, y_test: np.ndarray | None, where: str
                 ) -> tuple[np.ndarray, np.ndarray | None, int, tuple[str, ...]]:
    """Integer labels keep their values (class k is output score k); text labels are numbered in sorted order."""
    parts = [y_train] + ([y_test] if y_test is not None else [])
    flat = np.concatenate([np.asarray(p, dtype=object).ravel() for p in parts])
    as_num = []
    numeric = True
    for v in flat:
        if isinstance(v, (int, np.integer)):
            as_num.append(float(v))
            continue
        try:
            as_num.append(float(v))
        except (TypeError, ValueError):
            numeric = False
            break
    if numeric:
        vals = np.array(as_num)
        if not np.all(np.isfinite(vals)):
            raise ConfigError([f"{where}: labels must not be NaN or infinite"])
        if np.any(vals != np.round(vals)):
            bad = vals[vals != np.round(vals)][0]
            raise ConfigError([f"{where}: label {bad:g} is not an integer class index (use integers or text labels)"])
        if np.any(vals < 0):
            raise ConfigError([f"{where}: label {int(vals.min())} is negative; integer labels are class "
                               f"indices 0, 1, … (or use text labels)"])
        codes = vals.astype(int)
        n_classes = int(codes.max()) + 1
        names: tuple[str, ...] = tuple(str(k) for k in range(n_classes))
    else:
        texts = np.array([str(v).strip() for v in flat], dtype=object)
        names = tuple(sorted(set(texts)))
        index = {n: k for k, n in enumerate(names)}
        codes = np.array([index[t] for t in texts], int)
        n_classes = len(names)
    ytr = codes[:len(y_train)]
    yte = codes[len(y_train):] if y_test is not None else None
    if len(np.unique(ytr)) < 2:
        raise ConfigError([f"{where}: the training labels hold a single class ({names[int(ytr[0])]!r}); "
                           f"a classifier needs at least two"])
    if yte is not None:
        unseen = sorted(set(yte.tolist()) - set(ytr.tolist()))
        if unseen:
            raise ConfigError([f"{where}: test label(s) {[names[k] for k in unseen]} never occur in the training data"])
    return ytr, yte, n_classes, names


def _resolve(path: str, key: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError([f"data.{key}: file not found: {path} (relative paths are taken from the "
                           f"current directory {Path.cwd()})"])
    return p


def _user(spec: DataSpec) -> _Raw:
    path = _resolve(spec.path, "path")
    test = _resolve(spec.test_path, "test_path") if spec.test_path else None
    if spec.name == "csv":
        x, y = _read_csv(path, "data.path", spec)
        xt, yt = _read_csv(test, "data.test_path", spec) if test else (None, None)
    else:
        arr = _read_npz(path, "data.path")
        x, y, xt, yt = arr["x"], arr["y"], arr.get("x_test"), arr.get("y_test")
        if test is not None:
            if xt is not None:
                raise ConfigError([f"data.test_path: {path} already holds x_test and y_test"])
            tarr = _read_npz(test, "data.test_path")
            xt, yt = tarr["x"], tarr["y"]
    for xs, ys, where in ((x, y, "data.path"), (xt, yt, "data.test_path" if test else "data.path")):
        if xs is None:
            continue
        ys = np.asarray(ys)
        if ys.ndim != 1 or len(ys) != len(xs):
            raise ConfigError([f"{where}: {len(xs)} feature rows but labels of shape {ys.shape}"])
        _check_features(np.asarray(xs, float), where)
    if xt is not None and xt.shape[1] != x.shape[1]:
        raise ConfigError([f"data.test_path: the test data has {xt.shape[1]} features, the training data {x.shape[1]}"])
    ytr, yte, _, names = _label_codes(y, yt, "data.path")
    return _Raw(np.asarray(x, float), ytr, None if xt is None else np.asarray(xt, float), yte, class_names=names)


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Stratified split when every class has at least two samples, plain random otherwise."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    strat = y if np.all(counts[counts > 0] >= 2) else None
    try:
        return tuple(train_test_split(x, y, test_size=fraction, random_state=seed, stratify=strat))
    except ValueError:  # too few samples per class for the requested fraction
        return tuple(train_test_split(x, y, test_size=fraction, random_state=seed))


def _scaler(spec: DataSpec, x_fit: np.ndarray, full_scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-feature (offset, gain) with x_V = (x − offset) · gain, and a record of it."""
    f = x_fit.shape[1]
    method = spec.scaling or DEFAULT_SCALING.get(spec.name, "standardize")
    if method == "fixed":
        off, gain = np.zeros(f), np.full(f, spec.input_scale_v / full_scale)
        rec = {"method": "fixed", "full_scale": full_scale, "input_scale_v": spec.input_scale_v}
    elif method == "max":
        peak = np.abs(x_fit).max(axis=0)
        peak = np.where(peak > 0, peak, 1.0)
        off, gain = np.zeros(f), spec.input_scale_v / peak
        rec = {"method": "max", "input_scale_v": spec.input_scale_v, "max_abs": peak.tolist()}
    elif method == "standardize":
        mean, std = x_fit.mean(axis=0), x_fit.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        off, gain = mean, spec.input_scale_v / std
        rec = {"method": "standardize", "volts_per_std": spec.input_scale_v, "mean": mean.tolist(),
               "std": std.tolist()}
    else:
        lo_v, hi_v = spec.input_range_v or (0.0, spec.input_scale_v)
        lo, hi = x_fit.min(axis=0), x_fit.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        gain = (hi_v - lo_v) / span
        off = lo - lo_v / gain
        rec = {"method": "minmax", "range_v": [lo_v, hi_v], "min": lo.tolist(), "max": hi.tolist()}
    return off, gain, rec


def load_data(spec: DataSpec) -> Dataset:
    """Load, split and scale a data set as configured (see module docstring)."""
    if spec.name in ("digits", "iris", "wine", "breast_cancer"):
        raw = _sklearn(spec.name)
    elif spec.name == "mnist1d":
        raw = _mnist1d()
    elif spec.name == "xor":
        raw = _xor()
    elif spec.name in FILE_FORMATS:
        raw = _user(spec)
    else:
        raise ConfigError([f"data.name: unknown data set {spec.name!r}; choose from {', '.join(DATASETS)}"])
    if raw.x_test is not None:
        xtr, ytr, xte, yte = raw.x, raw.y, raw.x_test, raw.y_test
    else:
        if len(raw.y) < 4:
            raise ConfigError([f"data.path: {len(raw.y)} samples are too few to split off a test set"])
        xtr, xte, ytr, yte = _split(raw.x, raw.y, spec.test_fraction, spec.split_seed)
        if len(np.unique(ytr)) < 2:
            raise ConfigError(["data.test_fraction: the training part holds a single class"])
    val = None
    if spec.validation_fraction > 0:
        if len(ytr) < 4:
            raise ConfigError([f"data.validation_fraction: {len(ytr)} training samples are too few to split"])
        xtr, xva, ytr, yva = _split(xtr, ytr, spec.validation_fraction, spec.validation_seed)
        val = DataSplit(xva, yva)
    off, gain, rec = _scaler(spec, xtr, raw.full_scale)
    volts = lambda a: (a - off) * gain
    n_classes = max(int(max(ytr.max(), yte.max())) + 1, len(raw.class_names))
    return Dataset(spec.name, DataSplit(volts(xtr), ytr), DataSplit(volts(xte), yte),
                   None if val is None else DataSplit(volts(val.x), val.y), n_classes, raw.class_names, rec)


def load_dataset(name: str | DataSpec, input_scale_v: float = 1.0, validation_fraction: float = 0.0,
                 test_size: float = 0.25, split_seed: int = 0, validation_seed: int = 1, **options: Any) -> Dataset:
    """Load a data set by name (its default scaling unless ``scaling=`` says otherwise), or from a spec."""
    if isinstance(name, DataSpec):
        return load_data(name)
    return load_data(DataSpec(name, input_scale_v=input_scale_v, validation_fraction=validation_fraction,
                              test_fraction=test_size, split_seed=split_seed, validation_seed=validation_seed,
                              **options))


def n_scores(topology) -> int:
    """Number of class scores a board produces: differential pairs, or single-ended ports."""
    d = topology.differential
    return int(d.shape[0]) if d.size else int(topology.n_outputs)


def compatibility_problems(data: Dataset, topology) -> list[str]:
    """Mismatches between a data set and a circuit, as dotted-path config problems."""
    problems = []
    n_feat = data.train.x.shape[1]
    if topology.n_inputs != n_feat:
        problems.append(f"board.circuit.inputs: the circuit has {topology.n_inputs} inputs, "
                        f"the {data.name} data set has {n_feat} features")
    k = n_scores(topology)
    if data.n_classes > k:
        d = np.asarray(topology.differential)  # a cascade's single-ended scores: one port per row
        how = "differential output pairs" if d.size and not np.all((d != 0).sum(axis=1) == 1) else "output ports"
        problems.append(f"board.circuit.outputs: the {data.name} labels need {data.n_classes} class scores "
                        f"(classes 0…{data.n_classes - 1}), the circuit has {k} {how}")
    return problems
