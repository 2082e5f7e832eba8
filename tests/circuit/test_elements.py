"""Every registered node element against independent oracles (physics.md §1.6, §6, §8.1):
the MON fixed point with the element's resolvent σ_a (two values of a), ngspice, and
`hl-exact` against central finite differences through the board."""

import shutil

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.laws import ELEMENTS, with_element
from hil.circuit.mon import forward_backward, mon_view, peaceman_rachford
from hil.circuit.report import SolveError
from hil.circuit.solve import EquilibriumSolver
from hil.circuit.spice import run_ngspice, write_netlist
from hil.train.estimators import estimate
from hil.train.losses import Loss

#: One configuration per built-in element (and the rail/reversed variant of the ideal diode).
CONFIGS = {
    "ideal": {"model": "ideal"},
    "ideal-rail-reversed": {"model": "ideal", "orientation": -1, "v_ref": 0.3},
    "shockley": {"model": "shockley", "spice_compat": True},
    "shockley-rs": {"model": "shockley", "preset": "BAT42", "spice_compat": True},
    "leaky": {"model": "leaky", "r_s": 20e3},
    "leaky-reversed": {"model": "leaky", "r_s": 5e3, "orientation": -1},
    "leaky-rail": {"model": "leaky", "r_s": 5e3, "v_ref": -0.2},
    "clip": {"model": "clip", "v_lo": 0.0, "v_hi": 0.4},
    "antiparallel": {"model": "antiparallel", "v_b": 0.3},
    "antiparallel_shockley": {"model": "antiparallel_shockley", "spice_compat": True},
    "linear": {"model": "linear", "g_lin": 1e-5},
    "none": {"model": "none"},
}
NGSPICE = shutil.which("ngspice")


def circuit(name, seed=1, n=8):
    return with_element(random_circuit(n, 3, 4, seed=seed, coupling_degree=3, g_range=(1e-5, 1e-4)), CONFIGS[name])


def inputs(c, seed=0, batch=5, amp=2.0):
    return c.source_voltages(np.random.default_rng(seed).uniform(-amp, amp, (batch, c.n_inputs)))


def z_to_e(c, z):
    d = c.diodes
    return z if d.element is not None else d.orientation * z + d.v_ref


def test_every_registered_element_is_covered():
    assert set(ELEMENTS) <= {c["model"] for c in CONFIGS.values()}


# Shockley with series resistance: the same check runs in test_solvers.py (1N4148 preset, r_s 0.568 Ω)
@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "shockley-rs"])
def test_circuit_equals_mon_fixed_point(name):
    c = circuit(name)
    u = inputs(c)
    st = EquilibriumSolver(c).solve(u)
    assert st.report.converged
    for alpha in (1e3, 2e4):
        view = mon_view(c, alpha)
        z_pr, _ = peaceman_rachford(view, u, tol=1e-14)
        assert np.max(np.abs(z_to_e(c, z_pr) - st.e)) <= 1e-9
    if c.diodes.law.piecewise_linear:  # (smooth laws: forward–backward is covered in test_solvers.py)
        z_fb, _ = forward_backward(mon_view(c, 5e3), u, tol=1e-14)
        assert np.max(np.abs(z_to_e(c, z_fb) - st.e)) <= 1e-9


@pytest.mark.parametrize("name", CONFIGS)
def test_activation_is_the_resolvent(name):
    """σ_a(x) + a F(σ_a(x)) = x, and σ'_a matches a central difference away from kinks."""
    el = circuit(name).diodes.law
    x = np.linspace(-1.5, 1.5, 301)[:, None] + np.zeros((1, el.n))
    for a in (1e3, 1e5):
        s, ds = el.activation(x, a)
        inside = np.ones_like(s, bool)
        if el.piecewise_linear:
            law = el.law()
            inside = (s > law.lo + 1e-12) & (s < law.hi - 1e-12)
        f, _ = el.current(s)
        assert np.max(np.abs(np.where(inside, s + a * f - x, 0.0))) <= 1e-9
        h = 1e-6
        fd = (el.activation(x + h, a)[0] - el.activation(x - h, a)[0]) / (2 * h)
        near_kink = el.activation(x + 2 * h, a)[1] != el.activation(x - 2 * h, a)[1] if el.piecewise_linear \
            else np.zeros_like(fd, bool)
        assert np.max(np.abs(np.where(near_kink, 0.0, fd - ds))) <= 1e-6


@pytest.mark.skipif(NGSPICE is None, reason="ngspice not installed: SPICE cross-checks skipped")
@pytest.mark.parametrize("name", CONFIGS)
def test_circuit_equals_ngspice(name):
    c = circuit(name)
    u = inputs(c, batch=2)
    st = EquilibriumSolver(c).solve(u)
    for i in range(u.shape[0]):
        res = run_ngspice(write_netlist(c, u=u[i]))
        dev = max(abs(res.node_voltages[nm] - st.e[i, k]) for k, nm in enumerate(c.hidden_names))
        assert dev <= 1e-7, (name, dev)


@pytest.mark.parametrize("name", CONFIGS)
def test_hl_exact_equals_central_finite_differences(name):
    c = circuit(name, seed=2)
    board = SimulatedBoard(c)
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (4, c.n_inputs))
    t = rng.integers(0, 2, 4)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    exact = estimate("hl-exact", board, x, t, loss)
    fd = estimate("fd", board, x, t, loss, {"rel_step": 1e-5})
    err = np.max(np.abs(exact.grad - fd.grad)) / np.max(np.abs(fd.grad))
    assert err <= 1e-7, (name, err)


@pytest.mark.parametrize("name", ["clip", "antiparallel", "leaky"])
def test_several_regions_are_used_and_certified(name):
    c = circuit(name, n=30)
    st = EquilibriumSolver(c).solve(inputs(c, batch=20, amp=3.0))
    assert st.report.kkt_primal <= 1e-12 and st.report.kkt_dual <= 1e-12 and st.report.kcl_residual_rel <= 1e-12
    assert len(np.unique(st.region)) >= 2


def test_piecewise_solver_raises_when_it_cannot_certify(monkeypatch):
    import hil.circuit.element_solve as es

    c = circuit("clip")
    monkeypatch.setattr(es, "_certificate", lambda *a, **k: {"primal": 1.0, "dual": 0.0, "kcl_abs": 0.0,
                                                              "kcl_rel": 0.0, "lam": None, "scale_i": 1.0})
    with pytest.raises(SolveError, match="not certified"):
        EquilibriumSolver(c).solve(inputs(c))


def test_bad_element_config_is_one_line_per_problem():
    from hil.circuit.laws import element_bank
    from hil.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        element_bank({"model": "clip", "v_lo": 1.0, "v_hi": 0.5, "vhi": 2}, 4, "board.circuit.hidden.element")
    text = str(exc.value)
    assert "board.circuit.hidden.element.v_hi" in text and "vhi: unknown key" in text
