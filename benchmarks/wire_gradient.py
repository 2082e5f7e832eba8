"""How far ``hl`` is from the device gradient on a board with crossbar wires (digits network).

Usage: nice -n 10 python benchmarks/wire_gradient.py [--levels 0.001 0.01 0.1 1] [--batches 4] [--epochs 20]

The board of the wire sweep (``benchmarks/robustness/wires.yaml``: ``sim-digits-mismatch`` with
every family ideal except wires of R Ω per segment, rows and columns, seed 0).  For the initial
conductances and for the conductances of the ideal board trained in situ (``--epochs``, seed 0,
what an in-situ run on a wired board heads for), on ``--batches`` training batches of the
config's batch size, it compares per group (``g_in``, ``g_out``):

* ``hl`` (the config's estimator: central, 10 mV), the gradient a bench measures;
* ``hl-exact``: the same line-terminal product v·v̂ from the exact adjoint of the terminal model;
* the exact gradient for the device conductances: v·v̂ across each device, the wire nodes
  solved from the terminal voltages of the operating point and of the adjoint
  (:func:`hil.circuit.wire_bias.device_gradient`; checked against central finite differences in
  ``tests/devices/test_wire_gradient.py``).

Prints cosines and norm ratios (mean over batches), the board's first-order IR drop, the
differential output currents' size against the ideal board with the same conductances (Σ|D y|
ratio on those batches) and whether ``hl`` flagged its answer as possibly biased.  Training batches only; no test data.

``--train R``: trains the sweep's board at R Ω (seed 0, ``--train-epochs``) in situ with the
estimator's gradient replaced by the exact device gradient (``exact``) and with ``hl``, next to the
ideal board, and prints each arm's final training loss and test accuracy, plus the training
loss of the ideal run's conductances written exactly onto the wired board: whether the in-situ
loss on wires comes from the gradient or from the wired board itself.  Test accuracy is
reported, never used to choose anything.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import numpy as np

from hil.api import named_conductances
from hil.boards.factory import make_board
from hil.circuit.wire_bias import device_gradient
from hil.circuit.wires import WireSpec
from hil.config import load_yaml
from hil.train.data import load_dataset
from hil.train.estimators import hl_exact_gradient, hl_gradient
from hil.train.loop import Trainer
from hil.train.losses import Loss
from hil.train.rundir import RunDir
from hil.train.settings import parse_settings


def settings(r_wire: float | None, epochs: int):
    raw = load_yaml("sim-digits-mismatch")
    raw["board"]["devices"] = {"preset": "ideal", "seed": 0}
    if r_wire is None:
        raw["board"].pop("devices")
    else:
        raw["board"]["devices"]["wires"] = {"r_wire_row": r_wire, "r_wire_col": r_wire}
    raw["board"]["calibration"] = {"apply": False}
    raw["output"]["plots"] = False
    raw["train"]["epochs"] = epochs
    return parse_settings(raw)


def build(s):
    return make_board(s.backend, s.circuit, s.g_min, s.g_max, devices=s.devices)


def cos(a, b) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


def compare(board, spec: WireSpec, loss: Loss, x, t, hl_options: dict) -> dict:
    """Cosines and norm ratios per group for one batch; hl's bias flag."""
    hl = hl_gradient(board, x, t, loss, **hl_options)
    hx = hl_exact_gradient(board, x, t, loss)
    op = hl.op
    w_hat = -loss.value_and_grad(op.y, t)[1]
    e_hat, _ = board.linearized_response(x, w_hat)
    g = named_conductances(board)
    exact = device_gradient(g["g_in"], g["g_out"], spec, op.u, op.e, op.w, e_hat, w_hat)
    nh, nx = named_conductances(board, hl.grad), named_conductances(board, hx.grad)
    out = {"biased": hl.stats["may_be_biased"], "drop": op.info.get("wire_ir_drop", 0.0)}
    for k in ("g_in", "g_out"):
        out[f"cos hl/exact {k}"] = cos(nh[k], exact[k])
        out[f"norm hl/exact {k}"] = float(np.linalg.norm(nh[k]) / np.linalg.norm(exact[k]))
        out[f"cos hl/hl-exact {k}"] = cos(nh[k], nx[k])
    return out


def exact_estimator(spec: WireSpec):
    """An ``estimate`` replacement: the exact device gradient of a wired simulated board."""
    from hil.train.estimators import GradientResult

    def estimate(name, board, x, target, loss, options=None):
        op = board.measure(x)
        val, dy = loss.value_and_grad(op.y, target)
        e_hat, _ = board.linearized_response(x, -dy)
        g = named_conductances(board)
        exact = device_gradient(g["g_in"], g["g_out"], spec, op.u, op.e, op.w, e_hat, -dy)
        grad = np.zeros(board.topology.n_conductances)
        for k, sl in board.topology.groups.items():
            if k in exact:
                grad[sl] = exact[k].ravel()
        return GradientResult(grad, val, op, stats={"may_be_biased": False, "bias_note": None})

    return estimate


def train_arms(r_wire: float, epochs: int, data, arms=("exact", "hl")) -> None:
    """Final training loss and test accuracy of in-situ runs on the wired board, by gradient."""
    import hil.train.loop as loop
    from hil.train.loop import evaluate

    s_ideal = settings(None, epochs)
    s = settings(r_wire, epochs)
    spec = WireSpec(r_wire, r_wire)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        ideal = build(s_ideal)
        tr = Trainer(ideal, s_ideal, data, RunDir.create(root, "ideal"), progress=False)
        tr.fit()
        loss = Loss(s.loss, s.gain_per_a, ideal.topology.differential)
        rows.append(("ideal board, hl", evaluate(ideal, loss, data.train), evaluate(ideal, loss, data.test)))
        wired = build(s)
        wired.program(ideal.read_conductances())
        rows.append((f"ideal run's conductances on the {r_wire:g} Ω board",
                     evaluate(wired, loss, data.train), evaluate(wired, loss, data.test)))
        original = loop.estimate
        for arm in arms:
            board = build(s)
            try:
                if arm == "exact":
                    loop.estimate = exact_estimator(spec)
                Trainer(board, s, data, RunDir.create(root, arm), progress=False).fit()
            finally:
                loop.estimate = original
            rows.append((f"{r_wire:g} Ω board, in situ, {arm} gradient", evaluate(board, loss, data.train),
                         evaluate(board, loss, data.test)))
            print(f"  {rows[-1][0]} done", flush=True)
    print(f"\n{r_wire:g} Ω per segment, seed 0, {epochs} epochs\n")
    print("| run | train loss | train acc. | test acc. |\n|---|---|---|---|")
    for label, (tr_acc, tr_loss, _), (te_acc, _, _) in rows:
        print(f"| {label} | {tr_loss:.4f} | {100 * tr_acc:.2f} % | {100 * te_acc:.2f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", type=float, nargs="+", default=[0.001, 0.01, 0.1, 1.0], help="Ω per segment")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=20, help="epochs of the ideal run whose conductances are 'trained'")
    ap.add_argument("--train", type=float, default=None, help="train in situ on this wire level (Ω) instead")
    ap.add_argument("--train-epochs", type=int, default=40)
    ap.add_argument("--arms", nargs="+", default=["exact", "hl"], choices=["exact", "hl"],
                    help="in-situ gradients to train with (hl at 40 epochs is the wire sweep's run)")
    args = ap.parse_args()
    s_ideal = settings(None, args.epochs)
    data = load_dataset("digits", 0.25, 0.0)
    if args.train is not None:
        train_arms(args.train, args.train_epochs, data, args.arms)
        return
    ideal = build(s_ideal)
    g_init = ideal.read_conductances()
    with tempfile.TemporaryDirectory() as root:
        Trainer(ideal, s_ideal, data, RunDir.create(root, "ideal"), progress=False).fit()
    g_trained = ideal.read_conductances()
    rng = np.random.default_rng(0)
    bs = s_ideal.batch_size
    batches = [rng.choice(len(data.train.y), bs, replace=False) for _ in range(args.batches)]
    keys = None
    print("| R per segment | conductances | IR drop (first order) | output scale vs ideal | hl flags bias | "
          "cos hl/exact g_in | g_out | norm hl/exact g_in | g_out | cos hl/hl-exact g_in | g_out |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    x_all = data.train.x[np.concatenate(batches)]
    for r in args.levels:
        s = settings(r, args.epochs)
        spec = WireSpec(r, r)
        loss = Loss(s.loss, s.gain_per_a, build(s).topology.differential)
        for label, g in (("initial", g_init), ("trained (ideal board)", g_trained)):
            board = build(s)
            board.program(copy.deepcopy(g))
            ideal.program(copy.deepcopy(g))
            y_ideal = ideal.measure(x_all).y @ ideal.topology.differential.T
            scale = np.sum(np.abs(board.measure(x_all).y @ board.topology.differential.T)) / np.sum(np.abs(y_ideal))
            rows = [compare(board, spec, loss, data.train.x[b], data.train.y[b], s.estimator_options) for b in batches]
            keys = [k for k in rows[0] if k.startswith(("cos", "norm"))]
            m = {k: np.mean([row[k] for row in rows]) for k in keys}
            print(f"| {r:g} Ω | {label} | {100 * rows[0]['drop']:.3g} % | {scale:.3f} | {'yes' if all(x['biased'] for x in rows) else 'no'} | "
                  f"{m['cos hl/exact g_in']:.3f} | {m['cos hl/exact g_out']:.3f} | {m['norm hl/exact g_in']:.3f} | "
                  f"{m['norm hl/exact g_out']:.3f} | {m['cos hl/hl-exact g_in']:.3f} | {m['cos hl/hl-exact g_out']:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
