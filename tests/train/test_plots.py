"""The run's PNGs say what they show: quantity and unit on every axis, bounds on the maps."""

from __future__ import annotations

import numpy as np
import pytest

from hil.train import plots


@pytest.fixture
def captured(monkeypatch):
    """The figure each plot function saves, kept open for inspection instead of written."""
    figures = []
    plt = plots._plt()
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    yield figures
    monkeypatch.undo()
    plt.close("all")


def _metrics(losses):
    return [{"epoch": i + 1, "train_loss": loss, "train_acc": 0.5, "test_acc": 0.4, "val_acc": float("nan")}
            for i, loss in enumerate(losses)]


def test_curves_name_the_loss_and_keep_a_negative_loss_visible(tmp_path, captured):
    plots.plot_curves(_metrics([0.5, 0.2, 0.1]), tmp_path / "a.png", "t", "cross_entropy")
    plots.plot_curves(_metrics([-0.1, -0.4, -0.9]), tmp_path / "b.png", "t", "linear", best_epoch=2)
    (loss_a, acc_a), (loss_b, _) = (fig.axes for fig in captured)
    assert loss_a.get_ylabel() == "cross_entropy (mean per training sample)" and loss_a.get_yscale() == "log"
    assert loss_b.get_yscale() == "linear"  # a log axis would silently drop every (negative) point
    assert acc_a.get_ylabel() == "accuracy (%)"
    legend = [t.get_text() for t in captured[1].axes[1].get_legend().get_texts()]
    assert "best checkpoint (epoch 2)" in legend
    assert not any("best" in t.get_text() for t in acc_a.get_legend().get_texts())
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0


def test_conductance_maps_share_the_programmable_range_and_count_pinned_values(tmp_path, captured):
    g_min, g_max = 1e-8, 1e-4
    g_in = np.array([[g_min, g_max, 5e-5, g_max]])
    groups = {"g_in": g_in, "g_hh": np.zeros(0), "g_leak": np.full(3, g_min), "g_out": np.array([[2e-5, 3e-5]])}
    plots.plot_conductances(groups, tmp_path / "c.png", "t", (g_min, g_max))
    axes = [ax for ax in captured[0].axes if ax.get_title()]  # colour bars carry no title
    titles = [ax.get_title() for ax in axes]
    assert titles[0] == "g_in (sources → hidden)\n25 % at g_min, 50 % at g_max"
    assert titles[1].endswith("100 % at g_min, 0 % at g_max")
    assert axes[1].get_ylabel() == "conductance (µS)"
    image = axes[0].images[0]
    assert image.get_clim() == pytest.approx((g_min * 1e6, g_max * 1e6))
    assert image.colorbar.ax.get_ylabel() == "conductance (µS)"


def test_short_runs_show_every_epoch_as_a_point_on_whole_epoch_ticks(tmp_path, captured):
    """`--set train.epochs=1` must not give an empty plot (one point of a line draws nothing), and
    two epochs must not be labelled 1.2, 1.4, …"""
    plots.plot_curves(_metrics([0.5]), tmp_path / "one.png", "t", "cross_entropy")
    plots.plot_curves(_metrics([0.5, 0.2]), tmp_path / "two.png", "t", "cross_entropy")
    for fig in captured:
        for ax in fig.axes:
            assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines()
                       if line.get_label() != "_nolegend_" and len(line.get_xdata()) > 0)
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
