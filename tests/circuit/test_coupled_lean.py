"""The lean measurement path of coupled ideal diodes (hil.circuit.coupled_lean) against the general
equilibrium solver: the same kernel on the same right-hand sides and starts (bit for bit), and the
general active-set solver (dense LU per step) within 1e-12 relative."""

import dataclasses

import numpy as np
import pytest

import hil.circuit.coupled_lean as lean_module
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.report import SolveError
from hil.circuit.solve import EquilibriumSolver
from hil.train.estimators import estimate
from hil.train.losses import Loss


def _circuit(seed=0, n=40, inputs=6, q=4, port_v=0.0, v_ref=0.0, mixed=False):
    c = random_circuit(n, inputs, q, seed=seed, coupling_degree=4, g_range=(1e-6, 1e-4), mixed_orientation=mixed)
    rng = np.random.default_rng(seed)
    if port_v:
        c = dataclasses.replace(c, output_voltage=rng.uniform(-port_v, port_v, q))
    if v_ref:
        c = dataclasses.replace(c, diodes=dataclasses.replace(c.diodes, v_ref=rng.uniform(-v_ref, v_ref, n)))
    return c


def _boards(c):
    """The lean board and one on the general solve path (the code path before the lean module)."""
    lean = SimulatedBoard(c, g_min=1e-8, g_max=1e-4)
    general = SimulatedBoard(c, g_min=1e-8, g_max=1e-4)
    general._coupled = None
    assert lean._coupled is not None
    return lean, general


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.abs(b).max(), 1e-300)


def _dense_reference(c, u, w=None):
    """The general active-set solver with dense LU per step (no compiled kernel)."""
    solver = EquilibriumSolver(c)
    solver.compiled_coupled = False
    return solver.solve(u, w)


def _same(m, r):
    assert np.array_equal(m.e, r.e) and np.array_equal(m.on, r.on) and np.array_equal(m.u, r.u)
    assert np.array_equal(m.w, r.w) and np.array_equal(m.y, r.y) and np.array_equal(m.i_src, r.i_src)


@pytest.mark.parametrize("port_v, v_ref, mixed", [(0.0, 0.0, False), (0.3, 0.2, True)])
def test_operating_point_and_phases_equal_the_general_solve(port_v, v_ref, mixed):
    c = _circuit(seed=1, port_v=port_v, v_ref=v_ref, mixed=mixed)
    lean, general = _boards(c)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (7, 6))
    m, r = lean.measure(x), general.measure(x)
    _same(m, r)
    assert m.on.any() and not m.on.all() and m.info["report"].converged and m.info["report"].method == "pdas"
    ref = _dense_reference(c, c.source_voltages(x))
    assert np.array_equal(m.on, ref.on) and _rel(m.e, ref.e) <= 1e-12 and _rel(m.y, ref.y) <= 1e-12
    # ± phases of the held inputs (stacked twice), a single re-measurement with new ports
    dw = rng.normal(0, 1e-3, (7, 4))
    w_both = np.concatenate([m.w + dw, m.w - dw])
    both, r_both = lean.measure(np.concatenate([x, x]), w_both), general.measure(np.concatenate([x, x]), w_both)
    _same(both, r_both)
    assert both.info["report"].method.startswith("held-set") and both.info["report"].converged
    ref = _dense_reference(c, c.source_voltages(np.concatenate([x, x])), w_both)
    assert np.array_equal(both.on, ref.on) and _rel(both.e, ref.e) <= 1e-12 and _rel(both.y, ref.y) <= 1e-12
    once = lean.measure(x, m.w + dw)
    _same(once, general.measure(x, m.w + dw))
    # an operating point with given port voltages (not held)
    w = rng.uniform(-0.2, 0.2, (7, 4))
    x2 = rng.uniform(-1, 1, (7, 6))
    _same(lean.measure(x2, w), general.measure(x2, w))
    ref = _dense_reference(c, c.source_voltages(x2), w)
    assert _rel(lean.measure(x2, w).e, ref.e) <= 1e-12


def test_phases_that_change_the_active_set_go_on_with_pdas_and_equal_the_general_solve():
    c = _circuit(seed=2)
    lean, general = _boards(c)
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (9, 6))
    op = lean.measure(x)
    general.measure(x)
    w_both = np.concatenate([op.w + 0.5, op.w - 0.5])  # a large drive: diodes flip
    both = lean.measure(np.concatenate([x, x]), w_both)
    _same(both, general.measure(np.concatenate([x, x]), w_both))
    assert np.any(both.on != np.concatenate([op.on, op.on]))
    assert both.info["report"].method == "held-set→pdas" and both.info["report"].converged
    ref = _dense_reference(c, c.source_voltages(np.concatenate([x, x])), w_both)
    assert np.array_equal(both.on, ref.on) and _rel(both.e, ref.e) <= 1e-12


def test_re_measured_held_samples_start_from_their_held_points():
    c = _circuit(seed=3)
    lean, _ = _boards(c)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (6, 6))
    lean.measure(x)
    rows = np.array([4, 1, 1])
    w = rng.normal(0, 0.05, (6, 4))
    sub = lean.measure(np.concatenate([x[rows], x[rows]]), w)
    assert sub.info["report"].method.startswith("held-set")
    ref = _dense_reference(c, c.source_voltages(np.concatenate([x[rows], x[rows]])), w)
    assert np.array_equal(sub.on, ref.on) and _rel(sub.e, ref.e) <= 1e-12 and _rel(sub.y, ref.y) <= 1e-12


_COUNTS = ("flipped_samples", "flips_from_response", "retries", "one_sided", "unresolvable", "unresolved_flips")


def test_hl_gradients_equal_the_general_path_bit_for_bit_and_flips_are_detected():
    c = _circuit(seed=4, n=30, inputs=5, q=4)
    loss = Loss("cross_entropy", 1e5, c.differential_matrix())
    rng = np.random.default_rng(4)
    for batch, delta_v in ((1, 1e-3), (16, 1e-3), (16, 0.2)):
        lean, general = _boards(c)
        x, t = rng.uniform(-1, 1, (batch, 5)), rng.integers(0, 2, batch)
        a = estimate("hl", lean, x, t, loss, {"delta_v": delta_v})
        b = estimate("hl", general, x, t, loss, {"delta_v": delta_v})
        if delta_v > 0.1:  # flips: detected, re-measured with smaller drives (lean: warm from the held rows)
            assert a.stats["flipped_samples"] > 0 and a.stats["retries"] > 0
            assert _rel(a.grad, b.grad) <= 1e-12  # measured 3e-13: warm vs cold starts of the retries
        else:
            assert np.array_equal(a.grad, b.grad)
        assert all(a.stats[k] == b.stats[k] for k in _COUNTS)


def test_programming_invalidates_the_held_point_and_the_stale_one_only_warm_starts():
    c = _circuit(seed=5)
    lean, general = _boards(c)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (5, 6))
    before = lean.measure(x)
    general.measure(x)
    g = lean.read_conductances() * rng.uniform(0.7, 1.3, lean.read_conductances().size)
    lean.program(g)
    general.program(g)
    after = lean.measure(x)
    _same(after, general.measure(x))
    assert not np.array_equal(after.e, before.e)
    ref = _dense_reference(lean.circuit, c.source_voltages(x))
    assert _rel(after.e, ref.e) <= 1e-12
    # phases after programming use the new conductances and the new held point
    w_both = np.concatenate([after.w + 1e-3, after.w - 1e-3])
    both = lean.measure(np.concatenate([x, x]), w_both)
    ref = _dense_reference(lean.circuit, c.source_voltages(np.concatenate([x, x])), w_both)
    assert _rel(both.e, ref.e) <= 1e-12 and _rel(both.y, ref.y) <= 1e-12
    lean.safe_state()
    assert lean._last is None


def test_samples_the_kernel_cannot_settle_go_to_the_general_solver(monkeypatch):
    c = _circuit(seed=6)
    lean, general = _boards(c)
    x = np.random.default_rng(6).uniform(-1, 1, (4, 6))
    monkeypatch.setattr(lean_module, "MAX_PDAS", 0)  # the kernel settles nothing
    m = lean.measure(x)
    r = general.measure(x)
    assert "→pdas" in m.info["report"].method and m.info["report"].converged
    assert np.array_equal(m.on, r.on) and _rel(m.e, r.e) <= 1e-12
    both = lean.measure(np.concatenate([x, x]), np.full((8, 4), 1e-3))
    assert both.info["report"].method.startswith("held-set→") and both.info["report"].converged


def test_an_uncertifiable_solve_raises():
    c = _circuit(seed=7)
    lean, _ = _boards(c)
    x = np.random.default_rng(7).uniform(-1, 1, (3, 6))
    lean._solver.kkt_tol = 0.0  # no path can meet a zero tolerance: the general fallback raises
    with pytest.raises(SolveError, match="not certified"):
        lean.measure(x)
    lean._solver.kkt_tol = 1e-12
    assert lean.measure(x).info["report"].converged  # held now: its phases are the next solve
    lean._solver.kkt_tol = 0.0
    with pytest.raises(SolveError):
        lean.measure(np.concatenate([x, x]), np.full((6, 4), 1e-3))


def test_bad_inputs_raise_one_line_errors_and_empty_batches_solve():
    c = _circuit(seed=8)
    lean, _ = _boards(c)
    x = np.zeros((3, 6))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        lean.measure(x)
    lean.measure(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="finite"):
        lean.measure(np.zeros((6, 6)), np.full((6, 4), np.inf))
    with pytest.raises(ValueError, match="shape"):
        lean.measure(np.zeros((6, 6)), np.zeros((6, 3)))
    empty = lean.measure(np.zeros((0, 6)))
    assert empty.e.shape == (0, 40) and empty.y.shape == (0, 4)


def test_phases_started_from_the_held_k_e_equal_phases_without_it():
    c = _circuit(seed=9)
    lean, _ = _boards(c)
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (6, 6))
    op = lean.measure(x)
    held = lean._last[1]
    k_e = lean._solver.nodal.k_csr @ op.e.T
    assert _rel(held.__dict__["_ke"], k_e.T) <= 1e-14  # K e of the answer, from the kernel's last pass
    w_both = np.concatenate([op.w + 1e-3, op.w - 1e-3])
    carried = lean._coupled.phases(held, 2, w_both)
    del held.__dict__["_ke"]
    again = lean._coupled.phases(held, 2, w_both)
    assert np.array_equal(carried.e, again.e) and np.array_equal(carried.on, again.on)
    assert carried.report.iterations == again.report.iterations


def _phases_through_the_general_conclusion(lean_solves, held, k, w):
    """The phases as the lean path formed them before the one-call kernel: held_phases_kernel, then
    conclude_coupled (its certificate and report at once)."""
    from hil.circuit.coupled import CG_RTOL, conclude_coupled
    from hil.circuit.coupled_kernels import held_phases_kernel

    sv = lean_solves._solver
    nd, kk = sv.nodal, sv.nodal.k_csr
    R, n = w.shape[0], nd.n
    b, on, e = np.empty((R, n)), np.empty((R, n), dtype=np.bool_), np.empty((R, n))
    status, z, mu = np.empty(R, dtype=np.int64), np.empty((R, n)), np.empty((R, n))
    reductions, counts = held_phases_kernel(kk.indptr, kk.indices, kk.data, nd.diag, held.b_src, held.e, held.on,
                                            held.__dict__.get("_ke", lean_module._NO_KE), lean_module._ALL_ROWS,
                                            w @ nd.g_out, sv._s_float, sv._h_float, CG_RTOL, lean_solves._max_cg,
                                            lean_module.MAX_PDAS, b, on, e, status, z, mu)
    scale_v = max(np.abs(held.u).max(), np.abs(w).max(), sv._vref_max, 1e-300)
    return conclude_coupled(kk, nd.diag, b, sv._s_float, sv._h_float, scale_v, sv.kkt_tol, on, e, z, mu, status,
                            reductions, counts, True, None, None, None, 0.0)


@pytest.mark.parametrize("port_v, v_ref, mixed, drive", [(0.0, 0.0, False, 1e-3), (0.3, 0.2, True, 1e-3),
                                                         (0.0, 0.0, False, 0.5)])
def test_one_call_phases_certify_and_report_as_the_general_conclusion(port_v, v_ref, mixed, drive):
    c = _circuit(seed=10, port_v=port_v, v_ref=v_ref, mixed=mixed)
    lean, _ = _boards(c)
    rng = np.random.default_rng(10)
    x = rng.uniform(-1, 1, (5, 6))
    op = lean.measure(x)
    held = lean._last[1]
    dw = rng.normal(0, drive, (5, 4))
    w_both = np.concatenate([op.w + dw, op.w - dw])
    st = lean._coupled.phases(held, 2, w_both)
    assert st.__dict__["_report"] is None  # accepted at solve time, the report not formed yet
    ref = _phases_through_the_general_conclusion(lean._coupled, held, 2, w_both)
    assert np.array_equal(st.e, ref.e) and np.array_equal(st.on, ref.on)
    got, want = st.report, ref.report
    for name in ("converged", "method", "iterations", "batch", "kcl_residual_a", "kcl_residual_rel", "kkt_primal",
                 "kkt_dual", "kkt_complementarity", "n_on_mean", "min_margin", "degenerate", "failed_samples"):
        assert getattr(got, name) == getattr(want, name), name
    assert got is st.report and got.wall_time_s > 0.0
    # port voltages given as another dtype or layout are converted and give the same answer
    for given in (w_both.tolist(), np.asfortranarray(w_both)):
        assert np.array_equal(lean._coupled.phases(held, 2, given).e, st.e)


def test_a_phase_batch_whose_kernel_certificate_fails_is_solved_again_by_the_general_solver(monkeypatch):
    from hil.circuit.coupled_kernels import STAT_KCL, STAT_WORST, held_phases_certified

    c = _circuit(seed=11)
    lean, general = _boards(c)
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (4, 6))
    op = lean.measure(x)
    general.measure(x)
    w_both = np.concatenate([op.w + 1e-3, op.w - 1e-3])
    calls = []

    def corrupted(*args):  # the kernel settles every row, but its KCL residual reads 1 A
        held_phases_certified(*args)
        args[-1][STAT_KCL] = 1.0
        args[-1][STAT_WORST] = 1.0
        calls.append(True)

    monkeypatch.setattr(lean_module, "held_phases_certified", corrupted)
    both = lean.measure(np.concatenate([x, x]), w_both)
    assert calls and both.info["report"].converged
    assert both.info["report"].method.startswith("held-set→")  # the general solver answered the batch
    r = general.measure(np.concatenate([x, x]), w_both)
    assert np.array_equal(both.on, r.on) and _rel(both.e, r.e) <= 1e-12
    lean._solver.kkt_tol = 0.0  # and when nothing certifies, the phases raise
    with pytest.raises(SolveError):
        lean.measure(np.concatenate([x, x]), w_both)


def test_a_phase_row_the_kernel_cannot_settle_falls_back_to_the_general_solver():
    c = _circuit(seed=12)
    lean, general = _boards(c)
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, (4, 6))
    op = lean.measure(x)
    general.measure(x)
    lean._coupled._max_cg = 0  # every row that needs a CG iteration is handed to the general solver
    w_both = np.concatenate([op.w + 1e-3, op.w - 1e-3])
    both = lean.measure(np.concatenate([x, x]), w_both)
    rep = both.info["report"]
    # one kernel step (CG failed in it), then the general solver's PDAS for those rows
    assert rep.converged and rep.method == "held-set→pdas" and rep.iterations["pdas"] == 1
    r = general.measure(np.concatenate([x, x]), w_both)
    assert np.array_equal(both.on, r.on) and _rel(both.e, r.e) <= 1e-12


def test_the_board_sends_held_phases_straight_to_the_lean_phases_and_forms_the_report_when_read():
    c = _circuit(seed=13)
    lean, general = _boards(c)
    x = np.random.default_rng(13).uniform(-1, 1, (3, 6))
    op = lean.measure(x)
    general.measure(x)
    w_both = np.concatenate([op.w + 1e-3, op.w - 1e-3])
    m = lean.measure(np.concatenate([x, x]), w_both)
    st = m.__dict__["_state"]
    assert isinstance(st, lean_module._HeldPhasesState) and st.__dict__["_report"] is None
    _same(m, general.measure(np.concatenate([x, x]), w_both))
    assert m.info["report"].converged and m.info["report"].method.startswith("held-set")
    assert lean._solve_coupled(np.concatenate([x, x[::-1]]), w_both, True) is None  # not the held inputs
    lean._solver.compiled_coupled = False  # the direct route only for the compiled coupled path
    assert lean._solve_coupled(np.concatenate([x, x]), w_both, True) is None
