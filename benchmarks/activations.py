"""Every built-in element's activation measured on the circuit, against its closed form, in one figure.

    PYTHONPATH=$PWD python benchmarks/activations.py [--plot docs/activations.png]

For each element (with the parameters used in ``benchmarks/elements_digits.py``) the one-node
circuit of ``hil activation`` — a source x driving the element through a resistance a — is
solved by the simulated board over x in [-2, 2] V; the node voltage it reports is drawn as dots
over the element's closed-form σ_a(x) (line).  Prints the largest deviation per element.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hil.activation_cli import measure_activation

# (panel title, hidden.element, a in Ω): the elements as trained in benchmarks/elements_digits.py, each
# driven through about the 1/Σg of a hidden node of its network at initialisation (130 inputs at
# 50 µS mean: 150 Ω in the 1 V network; at 5 µS: 1.5 kΩ in the 10 V Shockley network)
PANELS = [
    ("ideal (ReLU)", {"model": "ideal"}, 150.0),
    ("shockley 1N4148 (diode ReLU)", {"model": "shockley", "preset": "1N4148", "temperature_c": 27}, 1500.0),
    ("leaky, r_s 200 Ω", {"model": "leaky", "r_s": 200.0}, 150.0),
    ("clip [0, 0.3 V]", {"model": "clip", "v_lo": 0.0, "v_hi": 0.3}, 150.0),
    ("antiparallel ±0.3 V", {"model": "antiparallel", "v_b": 0.3}, 150.0),
    ("antiparallel_shockley 1N4148", {"model": "antiparallel_shockley", "preset": "1N4148", "temperature_c": 27},
     1500.0),
    ("linear, 1 mS", {"model": "linear", "g_lin": 1.0e-3}, 150.0),
    ("none (no element)", {"model": "none"}, 150.0),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plot", default="docs/activations.png", help="PNG to write")
    ap.add_argument("--points", type=int, default=81)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.linspace(-2.0, 2.0, args.points)
    fig, axes = plt.subplots(2, 4, figsize=(12, 5.4), sharex=True)
    print("| element | a (Ω) | max \\|measured − σ_a\\| (V) |")
    print("|---|---|---|")
    for ax, (title, element, a_ohm) in zip(axes.ravel(), PANELS):
        res = measure_activation(element, a_ohm, x)
        ax.plot(x, x, ":", lw=1, color="0.75")
        ax.plot(x, res["closed_form"], "-", lw=2.2, color="0.65", label="closed form σ_a")
        ax.plot(x, res["measured"], ".", ms=3.5, color="C0", label="measured on the circuit")
        ax.set_title(f"{title}, a = {a_ohm:g} Ω", fontsize=8.5)
        ax.grid(alpha=0.3)
        ax.text(0.03, 0.97, f"max dev {res['max_abs_dev_v']:.0e} V", transform=ax.transAxes, fontsize=7.5,
                va="top")
        print(f"| `{element['model']}` ({title}) | {a_ohm:g} | {res['max_abs_dev_v']:.1e} |")
    for ax in axes[1]:
        ax.set_xlabel("drive x (V)")
    for ax in axes[:, 0]:
        ax.set_ylabel("node voltage (V)")
    axes[0, 0].legend(fontsize=7.5, loc="lower right")
    fig.suptitle("Node activation σ_a(x): one node driven by a source x through a resistance a, "
                 "solved by the simulated board (dots) vs closed form (line)", fontsize=10)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=90)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
