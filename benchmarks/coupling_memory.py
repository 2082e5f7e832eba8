"""Memory of a coupled network from config to SPICE export, and the config size check's estimate.

Usage: python benchmarks/coupling_memory.py [--sizes 1024 4096] [--degree 4] [--batch 32]
                                            [--tree PATH]

For every width H (each in its own process) the digits network of configs/sim-digits.yaml
(130 sources, 20 ports) gets H hidden nodes with random hidden↔hidden coupling of the given
degree, trained too.  Python's allocation tracer (tracemalloc, numpy arrays included) records
the peak bytes above the start of each stage, cumulative (what is built stays alive):

  build    the circuit from the config (build_circuit)
  board    + the simulated board (nodal system, solver structure)
  step     + one training step (hl gradient through the board protocol, Adam, programming)
  circuit  + reading board.circuit (the programmed circuit description)
  spice    + the SPICE netlist of the programmed circuit (write_netlist)

and the bytes one (n × n) float64 array would take, for comparison.  ``--tree`` runs the
same stages on another checkout (e.g. an older commit unpacked with ``git archive``) to
compare before/after; the estimate column is printed only where the checkout has it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stages(n_hidden: int, degree: int, batch: int) -> dict:
    """Run the stages in this process; returns peak traced MiB per stage (cumulative)."""
    import numpy as np

    import hil.api as api
    from hil.circuit.spice import write_netlist
    from hil.threads import configure_blas_threads

    configure_blas_threads()
    cfg = api.load_config("sim-digits", [
        f"board.circuit.hidden.count={n_hidden}",
        f"board.circuit.conductances.g_hh={{random: {{degree: {degree}, low: 1.0e-6, high: 1.0e-5}}}}",
        "train.trainable=[g_in, g_hh, g_out]", f"train.batch_size={batch}", f"train.gain_per_a={1e5 * 64 / n_hidden}"])
    data = api.load_data(cfg)
    x, t = data.train.x[:batch], data.train.y[:batch]
    out: dict = {"hidden": n_hidden}
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]

    def mark(name):
        out[name] = (tracemalloc.get_traced_memory()[1] - base) / 2**20

    circuit = api.build_circuit(cfg)
    mark("build")
    board = api.build_board(cfg)
    mark("board")
    api.train_steps(board, cfg, x, t, steps=1)
    mark("step")
    programmed = board.circuit
    mark("circuit")
    netlist = write_netlist(programmed, np.zeros(programmed.n_inputs))
    mark("spice")
    tracemalloc.stop()
    out["pairs"] = int(programmed.topology().groups["g_hh"].stop - programmed.topology().groups["g_hh"].start)
    out["dense_nn_mib"] = 8 * n_hidden**2 / 2**20
    out["netlist_lines"] = netlist.count("\n")
    try:
        from hil.circuit.build import estimated_memory_bytes

        out["estimate_mib"] = estimated_memory_bytes(n_hidden, circuit.n_sources, circuit.n_outputs,
                                                     n_pairs=out["pairs"]) / 2**20
    except TypeError:  # a checkout with the older signature
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--degree", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose hil is measured (default: this one)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        sys.path.insert(0, str(a.tree.resolve()))
        print(json.dumps(stages(a.one, a.degree, a.batch)))
        return
    cols = ["build", "board", "step", "circuit", "spice"]
    print(f"checkout {a.tree.resolve()}; degree {a.degree}, batch {a.batch}; peak traced MiB above the start, cumulative")
    print("hidden  pairs  " + "  ".join(f"{c:>8s}" for c in cols) + "  estimate  one n×n float64")
    for n in a.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--degree", str(a.degree), "--batch", str(a.batch),
               "--tree", str(a.tree)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                      env={"PYTHONPATH": str(a.tree.resolve()), "PATH": "/usr/bin:/bin",
                                           "HOME": str(Path.home())}).stdout.strip().splitlines()[-1])
        est = f"{r['estimate_mib']:8.1f}" if "estimate_mib" in r else "       —"
        print(f"{n:6d}  {r['pairs']:5d}  " + "  ".join(f"{r[c]:8.1f}" for c in cols)
              + f"  {est}  {r['dense_nn_mib']:8.1f}")


if __name__ == "__main__":
    main()
