"""A small instrument board on the in-process bench, next to the simulated board of the same circuit."""

import numpy as np
import pytest

from hil.bench.inprocess import InProcessBench
from hil.boards.instrument import BoardTiming, BoardWiring, InstrumentBoard, Port
from hil.boards.simulated import SimulatedBoard
from hil.circuit.build import build_circuit
from hil.drivers.limits import SourceLimits

CIRCUIT = {
    "name": "bench-test", "seed": 3,
    "inputs": {"count": 2, "inverted": True, "rails": {"vb_p": 1.0, "vb_n": -1.0}},
    "hidden": {"count": 4, "element": {"model": "ideal"}},
    "outputs": {"count": 4, "voltage": 0.0, "differential": True},
    "conductances": {"g_in": {"uniform": [1.0e-5, 1.0e-4]}, "g_hh": "none", "g_leak": 1.0e-8,
                     "g_out": {"uniform": [1.0e-5, 1.0e-4]}},
}
LIMITS = SourceLimits(v_min=-1.5, v_max=1.5, i_compliance_a=1e-3, max_step_v=0.5, max_slew_v_per_s=1e4)


def wiring_for(circuit):
    """Two channels per SMU (a/b), hidden nodes on scanner channels 101…"""
    sources = list(circuit.source_names)
    outputs = list(circuit.output_names)
    wires = {"sources": {}, "outputs": {}, "hidden": {}}
    for k, node in enumerate(sources + outputs):
        kind = "sources" if node in sources else "outputs"
        wires[kind][node] = (f"smu{k // 2}", "ab"[k % 2])
    for k, node in enumerate(circuit.hidden_names):
        wires["hidden"][node] = ("daq", str(101 + k))
    return wires


def make_boards(circuit_dict=CIRCUIT, timing=None, noise=(0.0, 0.0), limits=LIMITS, programmer=None):
    c = build_circuit(circuit_dict, "circuit")
    wires = wiring_for(c)
    bench = InProcessBench(c, wires, {n: limits for n in {p[0] for k in ("sources", "outputs") for p in wires[k].values()}},
                           current_noise_a=noise[0], voltage_noise_v=noise[1])
    sim = SimulatedBoard(c, 1e-8, 1e-4)
    wiring = BoardWiring(**{k: {n: Port(*v) for n, v in wires[k].items()} for k in wires})
    steps = {f"{i}.{ch}": limits.max_step_v for k in ("sources", "outputs") for (i, ch) in wires[k].values()}
    prog = programmer(bench, c) if programmer else None
    board = InstrumentBoard(sim.topology, bench.instruments, wiring, timing or BoardTiming(), steps, prog,
                            g_bounds=(1e-8, 1e-4))
    return board, sim, bench


@pytest.fixture
def boards():
    board, sim, bench = make_boards()
    yield board, sim, bench
    board.close()
