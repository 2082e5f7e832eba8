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


def hl_epoch_on_virtual_clock(config: str | dict, name: str, **emulation):
    """``hil estimate`` of a bench config (a path or an already loaded mapping) next to the
    emulators' virtual clock running exactly what it models for one epoch: one hl step of the four
    XOR samples in one sweep (operating point and the ± 0.01 V nudge of each output), then the
    evaluation of the test split.

    Returns ``(predicted, step_s, epoch_s, emulated_bench)``; ``emulation``: ``EmulatedBench`` options.
    """
    import dataclasses

    from hil.boards.bench_factory import make_instrument_board
    from hil.config import load_yaml
    from hil.emulate.bench import EmulatedBench
    from hil.estimate_cli import estimate_run
    from hil.train.settings import parse_settings

    xor = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    settings = parse_settings(load_yaml(config) if isinstance(config, str) else config, name)
    predicted = estimate_run(settings)
    with EmulatedBench(settings.instrument_board.bench, time_mode="virtual", **emulation) as eb:
        spec = dataclasses.replace(settings.instrument_board, bench=eb.loopback_bench)
        board = make_instrument_board(spec, (1e-8, 1e-4), clock=lambda: eb.clock.now_s, rehearsal_world=eb.world)
        with board:
            board.connect()
            q, B = board.topology.n_outputs, len(xor)
            w0 = np.broadcast_to(board.topology.output_voltage, (B, q))
            phases = [None]
            for o in range(q):
                for sign in (1.0, -1.0):
                    w = np.array(w0)
                    w[:, o] += sign * 0.01
                    phases.append(w)
            t0 = eb.clock.now_s
            board.measure_phases(xor, phases)
            t1 = eb.clock.now_s
            board.measure(xor)  # the evaluation of the test split
            t2 = eb.clock.now_s
    return predicted, t1 - t0, t2 - t0, eb


def readings_through_first_sample(board, x) -> int:
    """How many readings a triggered sweep of ``x`` takes up to and including its first sample:
    the ramp points the board puts before it, plus one."""
    from hil.boards.instrument import ramp_plan

    topo = board.topology
    levels = np.concatenate([topo.source_voltages(x), np.broadcast_to(topo.output_voltage, (len(x), topo.n_outputs))], 1)
    step = np.array([board._step[str(p)] for p in board.wiring.smu_ports()])
    _, keep = ramp_plan(levels, step, True)
    return int(np.flatnonzero(keep)[0]) + 1


def break_off_shutdown(board, error=KeyboardInterrupt, leave_on=None):
    """Make ``board.safe_state`` run as it does, then raise ``error`` (a KeyboardInterrupt: as the
    handler of a held SIGINT does at its end; another error: a shutdown that broke off);
    ``leave_on``: an (smu, channel) whose output the instrument then reports still on.  Returns
    the board's own ``safe_state``, to put back."""
    original = board.safe_state

    def safe_state():
        original()
        if leave_on is not None:
            smu, channel = leave_on
            smu._on[channel] = True
        raise error

    board.safe_state = safe_state
    return original
