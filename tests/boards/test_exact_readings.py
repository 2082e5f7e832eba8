"""The emulated bench's idealised reading modes, through real pyvisa-py sockets: with ``readings:
exact`` one ``hl`` gradient measured through the instruments equals the simulated board's to
float64 round-off; with ``readings: quantised`` (noise off, the instruments' resolution and reply
formats) it stays within the bound predicted from that resolution."""

import numpy as np
import pytest

from hil.board import Measurement
from hil.boards.simulated import SimulatedBoard
from hil.emulate.bench import EmulatedBench
from hil.emulate.world import World, WorldError
from hil.train.estimators import estimate
from hil.train.losses import Loss

from tests.boards.test_emulated_bench import DMM_LOAD_S, XOR, PhasedSim, node_conductance, open_board

DELTA_V = 0.01
DAQ_STEP_V = 3e-7 * 10.0  # DAQ970A resolution at NPLC >= 1 on the 10 V range (6½ digits)
SMU_STEP_A = 1e-6 * 1e-3  # SMU resolution on the 1 mA range (the emulators' 1e-6 of range)


def hl_pair(bench_name, readings, x, t):
    """(bench hl gradient, simulated hl gradient, simulated board, loss, whether outputs ended safe)."""
    with EmulatedBench(bench_name, time_mode="virtual", readings=readings) as eb:
        sim = SimulatedBoard(eb.bench.circuit, 1e-8, 1e-4)
        loss = Loss("cross_entropy", 1e5, sim.topology.differential)
        opts = {"delta_v": DELTA_V, "max_retries": 0}
        with open_board(eb, rehearsal=False) as board:
            bench_hl = estimate("hl", board, x, t, loss, opts)
        safe = eb.all_outputs_safe()
        circuit = eb.bench.circuit
    sim_hl = estimate("hl", PhasedSim(sim), x, t, loss, opts)
    return bench_hl, sim_hl, sim, loss, safe, circuit


@pytest.mark.parametrize("bench_name", ["scpi-xor", "xor-bench", "scpi-xor-triggered"])
def test_exact_readings_hl_gradient_equals_simulated(bench_name):
    """Ideal instruments, 17-digit replies: the gradient through sockets is the simulated board's."""
    x, t = XOR, np.array([0, 1, 1, 0])
    bench_hl, sim_hl, _, _, safe, _ = hl_pair(bench_name, "exact", x, t)
    assert safe
    assert bench_hl.stats["valid"].all()
    rel = np.abs(bench_hl.grad - sim_hl.grad).max() / np.abs(sim_hl.grad).max()
    print(f"{bench_name}: exact readings, max |Δ| / max |g| = {rel:.2e}")
    assert rel <= 1e-9, rel


def test_quantised_readings_hl_gradient_within_resolution_bound():
    """Noise off, the instruments' resolution and reply formats on: |Δg| within the worst case
    predicted from half a resolution step per reading (DAQ node voltages and SMU output currents,
    the latter moving ŵ through the loss), plus the DMM's 10 MΩ loading of the nodes."""
    x, t = XOR, np.array([0, 1, 1, 0])
    bench_hl, sim_hl, sim, loss, safe, c = hl_pair("scpi-xor", "quantised", x, t)
    assert safe
    topo, E, q = sim.topology, sim.topology.edges, sim.topology.n_outputs
    op = sim.measure(x)
    w_hat = -loss.value_and_grad(op.y, t)[1]
    e_hat, _ = sim.linearized_response(x, w_hat)
    n0 = topo.node_voltages(op)
    nh = topo.node_voltages(Measurement(u=0 * op.u, w=w_hat, y=0 * op.y, i_src=0 * op.i_src, e=e_hat))
    v, vh = n0[:, E[:, 0]] - n0[:, E[:, 1]], nh[:, E[:, 0]] - nh[:, E[:, 1]]
    p, n = c.n_sources, c.n_hidden
    hidden_ends = sum(((E[:, k] >= p) & (E[:, k] < p + n)).astype(float) for k in (0, 1))  # per branch
    # node readings: half a step each; v̂ from ± readings per port weighted by |ŵ_o| / (2δ)
    dv = hidden_ends * DAQ_STEP_V / 2
    dvh = (hidden_ends * DAQ_STEP_V / 2)[None, :] * (np.abs(w_hat).sum(1) / DELTA_V)[:, None]
    # output currents: half a step each moves ŵ; |Δŵ| ≤ |∂ŵ/∂y| · Δy (Jacobian by central differences)
    h = 1e-9
    jac = np.stack([(loss.value_and_grad(op.y + h * np.eye(q)[j], t)[1]
                     - loss.value_and_grad(op.y - h * np.eye(q)[j], t)[1]) / (2 * h) for j in range(q)], -1)
    dw = np.abs(jac).sum(-1) * SMU_STEP_A / 2  # (B, q)
    per_port = []
    for o in range(q):
        unit = np.zeros_like(w_hat)
        unit[:, o] = 1.0
        eo, _ = sim.linearized_response(x, unit)
        no = topo.node_voltages(Measurement(u=0 * op.u, w=unit, y=0 * op.y, i_src=0 * op.i_src, e=eo))
        per_port.append(np.abs(no[:, E[:, 0]] - no[:, E[:, 1]]))
    dvh_w = sum(dw[:, o:o + 1] * per_port[o] for o in range(q))
    resolution = (np.abs(v) * (dvh + dvh_w) + np.abs(vh) * dv + dv * (dvh + dvh_w)).mean(0)
    G = node_conductance(c)
    beta = (DMM_LOAD_S / (G + DMM_LOAD_S))[E[:, 0] - p]  # every branch starts at a hidden node
    loading = (beta * (np.abs(n0[:, E[:, 0]] * vh) + np.abs(v * vh))).mean(0)
    bound = resolution + loading
    ratio = np.abs(bench_hl.grad - sim_hl.grad) / bound
    print(f"scpi-xor quantised: max |Δ|/bound = {ratio.max():.3f}, max relative "
          f"{np.abs(bench_hl.grad - sim_hl.grad).max() / np.abs(sim_hl.grad).max():.2e}")
    assert ratio.max() <= 1.0, ratio.max()


def test_world_reading_modes():
    """quantised: no noise, on the resolution grid; exact: the true value; unknown mode refused."""
    from hil.circuit.build import build_circuit
    from tests.boards.conftest import CIRCUIT

    c = build_circuit(CIRCUIT, "circuit")
    noisy, quant, exact = (World(c, {}, readings=m) for m in ("noisy", "quantised", "exact"))
    true = 0.123456789012345678
    assert noisy.reading(true, 1.0, 1.0) != true
    assert quant.reading(true, 1.0, 1.0) == pytest.approx(0.123457, abs=1e-15)
    assert quant.reading(true, 1.0, 1.0) == quant.reading(true, 1.0, 1.0)
    assert exact.reading(true, 1.0, 1.0) == true
    assert exact.reply_digits(7) == 17 and quant.reply_digits(7) == 7
    with pytest.raises(WorldError, match="readings"):
        World(c, {}, readings="ideal")


def test_cli_emulate_exact_readings(capsys):
    from hil.cli import main

    assert main(["emulate", "scpi-xor", "--duration", "0.05", "--readings", "exact"]) == 0
    assert "readings exact" in capsys.readouterr().out
