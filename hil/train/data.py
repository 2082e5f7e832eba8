"""Data sets as input voltages: scikit-learn's bundled digits and iris (no download) and XOR.

Inputs are scaled to volts: ``x_volts = input_scale_v * x / x_max``.  The digits split
is ``train_test_split(test_size=0.25, random_state=0, stratify=y)`` as fixed by the
product; an optional validation split is carved from the training part only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("digits", "xor", "iris")


@dataclass
class DataSplit:
    x: np.ndarray  # (N, n_inputs) volts
    y: np.ndarray  # (N,) class labels


@dataclass
class Dataset:
    name: str
    train: DataSplit
    test: DataSplit
    val: DataSplit | None
    n_classes: int


def load_dataset(name: str, input_scale_v: float = 1.0, validation_fraction: float = 0.0,
                 test_size: float = 0.25, split_seed: int = 0, validation_seed: int = 1) -> Dataset:
    """Load ``digits``, ``iris`` or ``xor`` as voltages (see module docstring; iris features are
    scaled by their maximum over the training part, so training inputs lie in [0, input_scale_v])."""
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        x = d.data / 16.0 * input_scale_v
        xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=test_size, random_state=split_seed, stratify=d.target)
        val = None
        if validation_fraction > 0:
            xtr, xva, ytr, yva = train_test_split(xtr, ytr, test_size=validation_fraction,
                                                  random_state=validation_seed, stratify=ytr)
            val = DataSplit(xva, yva)
        return Dataset(name, DataSplit(xtr, ytr), DataSplit(xte, yte), val, 10)
    if name == "iris":  # 150 flowers, 4 features in cm; each feature scaled by its training maximum
        from sklearn.datasets import load_iris
        from sklearn.model_selection import train_test_split

        d = load_iris()
        xtr, xte, ytr, yte = train_test_split(d.data, d.target, test_size=test_size, random_state=split_seed,
                                              stratify=d.target)
        val = None
        if validation_fraction > 0:
            xtr, xva, ytr, yva = train_test_split(xtr, ytr, test_size=validation_fraction,
                                                  random_state=validation_seed, stratify=ytr)
        scale = input_scale_v / xtr.max(axis=0)
        if validation_fraction > 0:
            val = DataSplit(xva * scale, yva)
        return Dataset(name, DataSplit(xtr * scale, ytr), DataSplit(xte * scale, yte), val, 3)
    if name == "xor":
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float) * input_scale_v
        y = np.array([0, 1, 1, 0])
        return Dataset(name, DataSplit(x, y), DataSplit(x.copy(), y.copy()), None, 2)
    raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
