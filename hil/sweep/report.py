"""Sweep results: the per-run table (``results.csv``), the per-point summary over seeds
(``summary.csv``) and the summary plot (``summary.png``).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from hil.sweep.spec import RunPoint, SweepSpec

RESULT_COLUMNS = ("status", "epochs", "train_acc", "val_acc", "test_acc", "conduction_fraction",
                  "seconds_per_epoch", "wall_s", "host", "error")


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def results_rows(spec: SweepSpec, points: list[RunPoint], results: dict[str, dict]) -> list[dict]:
    """One row per point (in sweep order); points without a result are ``pending``."""
    keys = (["config"] if spec.vary_config else []) + list(spec.grid)
    rows = []
    for p in points:
        r = results.get(p.run_id, {})
        row = {"run_id": p.run_id, **{k: p.values.get(k) for k in keys}, "seed": p.seed}
        for c in RESULT_COLUMNS:
            row[c] = r.get(c, "pending" if c == "status" else "")
        row["error"] = str(row["error"]).splitlines()[0] if row["error"] else ""
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def summarise(spec: SweepSpec, rows: list[dict]) -> list[dict]:
    """Metric statistics over seeds for each grid point (finished runs only)."""
    keys = (["config"] if spec.vary_config else []) + list(spec.grid)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(str(r[k]) for k in keys), []).append(r)
    out = []
    for _, rs in groups.items():
        vals = np.array([_num(r[spec.metric]) for r in rs if r["status"] == "finished"])
        vals = vals[np.isfinite(vals)]
        spe = np.array([_num(r["seconds_per_epoch"]) for r in rs if r["status"] == "finished"])
        row = {k: rs[0][k] for k in keys}
        row.update({"runs": len(rs), "finished": int(sum(r["status"] == "finished" for r in rs)),
                    "failed": int(sum(r["status"] == "failed" for r in rs)),
                    f"{spec.metric}_mean": float(vals.mean()) if vals.size else math.nan,
                    f"{spec.metric}_min": float(vals.min()) if vals.size else math.nan,
                    f"{spec.metric}_max": float(vals.max()) if vals.size else math.nan,
                    f"{spec.metric}_std": float(vals.std(ddof=1)) if vals.size > 1 else math.nan,
                    "seconds_per_epoch_mean": float(np.nanmean(spe)) if spe.size and np.isfinite(spe).any()
                    else math.nan})
        out.append(row)
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def plot_summary(spec: SweepSpec, rows: list[dict], path: Path) -> None:
    """Metric against one grid key: every seed as a dot, the mean as a line, min–max as a band
    (for a non-numeric key: the mean as a marker, min–max as an error bar).

    The x key is ``plot.x`` or the grid key with the most values; each combination of the
    other grid keys is one line.  Numeric x spanning 8× or more uses a log axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (["config"] if spec.vary_config else []) + list(spec.grid)
    vary = {k: len({str(r[k]) for r in rows}) for k in keys}
    x_key = spec.plot_x or (max(keys, key=lambda k: vary[k]) if keys else None)
    others = [k for k in keys if k != x_key]
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    done = [r for r in rows if r["status"] == "finished" and math.isfinite(_num(r[spec.metric]))]

    def x_of(r: dict):  # a hashable x value: mappings and lists (a swept element or device family) by their text
        v = r[x_key] if x_key else "all"
        return v if _is_number(v) else str(v)

    x_vals: list = []
    for r in rows:
        if (v := x_of(r)) not in x_vals:
            x_vals.append(v)
    numeric = bool(x_key) and all(_is_number(v) for v in x_vals)
    pos = {v: (float(v) if numeric else i) for i, v in enumerate(x_vals)}
    lines: dict[tuple, list[dict]] = {}
    for r in done:
        lines.setdefault(tuple(str(r[k]) for k in others), []).append(r)
    for i, (lk, rs) in enumerate(sorted(lines.items())):
        color = f"C{i % 10}"
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(others, lk)) or None
        xs = sorted({x_of(r) for r in rs}, key=lambda v: pos[v])
        mean, lo, hi = [], [], []
        for xv in xs:
            vals = np.array([100 * _num(r[spec.metric]) for r in rs if x_of(r) == xv])
            ax.scatter([pos[xv]] * len(vals), vals, s=14, color=color, alpha=0.6, zorder=3)
            mean.append(vals.mean()), lo.append(vals.min()), hi.append(vals.max())
        px = [pos[v] for v in xs]
        if numeric:
            ax.plot(px, mean, "-o", color=color, label=label, zorder=4)
            ax.fill_between(px, lo, hi, color=color, alpha=0.15, linewidth=0)
        else:  # categories: no connecting line, min–max as an error bar
            m = np.array(mean)
            ax.errorbar(px, m, yerr=[m - np.array(lo), np.array(hi) - m], fmt="o", color=color, capsize=5,
                        markersize=7, label=label, zorder=4)
    if numeric:
        span = [float(v) for v in x_vals]
        if min(span) > 0 and max(span) / min(span) >= 8:
            ax.set_xscale("log")
    else:
        ax.set_xlim(-0.5, len(x_vals) - 0.5)
        ax.set_xticks(range(len(x_vals)))
        ax.set_xticklabels([Path(str(v)).stem if x_key == "config" else str(v) for v in x_vals],
                           rotation=20 if len(x_vals) > 4 else 0)
    ax.set_xlabel(x_key or "")
    ax.set_ylabel(f"{spec.metric} (%)")
    n_seeds = len(spec.seeds)
    ax.set_title(f"{spec.name}: {spec.metric}, {n_seeds} seed{'s' if n_seeds > 1 else ''} per point "
                 f"(dots), mean, min–max", fontsize=9)
    ax.grid(alpha=0.3)
    if lines and any(k for k in lines if k):
        ax.legend(fontsize=8)
    if len(done) < len(rows):
        ax.text(0.99, 0.01, f"{len(rows) - len(done)} of {len(rows)} runs not finished", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="crimson")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
