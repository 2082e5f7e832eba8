"""PNG plots of a run: loss/accuracy curves and conductance maps (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(metrics: list[dict], path: Path, title: str, loss_name: str | None = None,
                best_epoch: int | None = None) -> Path:
    """Training loss (mean per sample over the epoch, log scale) and train/validation/test accuracy
    against epoch; ``loss_name`` (e.g. ``cross_entropy``) labels the loss axis, ``best_epoch``
    marks the epoch the best checkpoint holds."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in metrics]
    dots = {"marker": "o", "markersize": 3} if len(ep) <= 30 else {}  # a single epoch is a point, not a line
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax in (a1, a2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        if len(set(ep)) == 1:  # one epoch: one tick at it (the locator would subdivide a tiny range)
            ax.set_xticks(ep[:1])
            ax.set_xlim(ep[0] - 1, ep[0] + 1)
    a1.plot(ep, [r["train_loss"] for r in metrics], label="train loss", **dots)
    a1.set_xlabel("epoch")
    a1.set_ylabel(f"{loss_name or 'loss'} (mean per training sample)")
    losses = np.array([r["train_loss"] for r in metrics], dtype=float)
    if np.all(losses[np.isfinite(losses)] > 0):  # the `linear` loss goes negative: keep it on a linear axis
        a1.set_yscale("log")
    a1.grid(alpha=0.3)
    a1.legend()
    for key, lab in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        vals = [r.get(key) for r in metrics]
        if any(v is not None and not np.isnan(v) for v in vals):
            a2.plot(ep, [100 * v for v in vals], label=lab, **dots)
    if best_epoch:
        a2.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1,
                   label=f"best checkpoint (epoch {best_epoch})")
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
        "g_hh": ("coupling resistor", "conductance (µS)"), "g_leak": ("hidden node", "conductance (µS)")}
ROLES = {"g_in": "sources → hidden", "g_out": "hidden → output ports", "g_hh": "hidden ↔ hidden",
         "g_leak": "hidden → ground"}


def _at_bounds(g: np.ndarray, g_range: tuple[float, float]) -> str:
    """``"31 % at g_min, 40 % at g_max"``: the share of conductances pinned at the programmable
    bounds (within 0.1 % of the range), which the optimizer's projection cannot move further."""
    lo, hi = g_range
    tol = 1e-3 * (hi - lo)
    return (f"{100 * np.mean(g <= lo + tol):.0f} % at g_min, "
            f"{100 * np.mean(g >= hi - tol):.0f} % at g_max")


def plot_conductances(groups: dict[str, np.ndarray], path: Path, title: str,
                      g_range: tuple[float, float] | None = None) -> Path:
    """Heat maps (µS) of the crossbar matrices as they sit in the array; 1-D groups as bar charts.

    With ``g_range = (g_min, g_max)`` in S, every map shares that colour scale and each title
    says which share of the group sits at either bound.
    """
    plt = _plt()
    vmin, vmax = (None, None) if g_range is None else (g_range[0] * 1e6, g_range[1] * 1e6)
    items = [(k, v) for k, v in groups.items() if v.size]
    fig, axes = plt.subplots(1, len(items), figsize=(4.5 * len(items), 4), squeeze=False)
    for ax, (name, g) in zip(axes[0], items):
        xlabel, ylabel = AXES.get(name, ("index", ""))
        if g.ndim == 2:
            im = ax.imshow(g * 1e6, aspect="auto", cmap="viridis", interpolation="nearest", vmin=vmin, vmax=vmax)
            fig.colorbar(im, ax=ax, shrink=0.8, label="conductance (µS)")
        else:
            ax.bar(np.arange(g.size), g * 1e6, width=1.0, color="tab:blue")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if g.ndim == 2:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        head = f"{name} ({ROLES[name]})" if name in ROLES else name
        ax.set_title(head if g_range is None else f"{head}\n{_at_bounds(g, g_range)}", fontsize=10)
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
