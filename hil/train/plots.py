"""PNG plots of a run: loss/accuracy curves and conductance maps (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(metrics: list[dict], path: Path, title: str) -> Path:
    """Training loss and train/validation/test accuracy against epoch."""
    plt = _plt()
    ep = [r["epoch"] for r in metrics]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [r["train_loss"] for r in metrics], label="train loss")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a1.set_yscale("log")
    a1.grid(alpha=0.3)
    a1.legend()
    for key, lab in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        vals = [r.get(key) for r in metrics]
        if any(v is not None and not np.isnan(v) for v in vals):
            a2.plot(ep, [100 * v for v in vals], label=lab)
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy (%)")
    a2.grid(alpha=0.3)
    a2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


AXES = {"g_in": ("source", "hidden node"), "g_out": ("hidden node", "output port"),
        "g_hh": ("coupling resistor", "µS"), "g_leak": ("hidden node", "µS")}


def plot_conductances(groups: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Heat maps (µS) of the crossbar matrices as they sit in the array; 1-D groups as bar charts."""
    plt = _plt()
    items = [(k, v) for k, v in groups.items() if v.size]
    fig, axes = plt.subplots(1, len(items), figsize=(4.5 * len(items), 4), squeeze=False)
    for ax, (name, g) in zip(axes[0], items):
        xlabel, ylabel = AXES.get(name, ("index", ""))
        if g.ndim == 2:
            im = ax.imshow(g * 1e6, aspect="auto", cmap="viridis", interpolation="nearest")
            fig.colorbar(im, ax=ax, shrink=0.8, label="µS")
        else:
            ax.bar(np.arange(g.size), g * 1e6, width=1.0, color="tab:blue")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if g.ndim == 2:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, path: Path, title: str) -> Path:
    """Confusion matrix (rows: true class, columns: predicted), counts written in the cells."""
    plt = _plt()
    k = confusion.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * max(k, 4), 0.8 + 0.5 * max(k, 4)))
    im = ax.imshow(confusion, cmap="Blues", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="samples")
    top = confusion.max() if confusion.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if confusion[i, j] > 0.6 * top else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
