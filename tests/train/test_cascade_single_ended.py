"""A cascade whose last stage is single-ended: its class scores are the last stage's port currents only.
Before, the board's differential matrix was empty, so the loss read every stage's ports as class
scores (stage 0's ports became classes 0 and 1 of a 3-class problem) although the docs say earlier
stages' ports are not read."""

import numpy as np

import hil.api as api
from hil.train.data import n_scores


def stage(seed, n_in, n, q):
    return {"name": f"s{seed}", "seed": seed, "inputs": {"count": n_in, "inverted": True, "rails": {"vp": 1.0}},
            "hidden": {"count": n, "element": {"model": "ideal"}}, "outputs": {"count": q},
            "conductances": {"g_in": {"uniform": [1e-6, 1e-4]}, "g_leak": 1e-7, "g_out": {"uniform": [1e-6, 1e-4]}}}


CFG = {"name": "se", "board": {"backend": "simulated", "g_min": 0.0, "g_max": 1e-3, "stages": [
    {"circuit": stage(0, 4, 5, 2)}, {"buffer_gain": 3.0, "circuit": stage(1, 5, 4, 3)}]},
    "data": {"name": "iris"}, "train": {"epochs": 1}}


def test_scores_are_the_last_stage_ports_and_gradients_match_central_differences():
    board = api.build_board(CFG)
    assert n_scores(board.topology) == 3
    loss = api.make_loss(None, board, gain_per_a=2e4)
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-1, 1, (4, 4)), np.array([0, 1, 2, 2])

    def my_loss():  # cross-entropy on gain × the last stage's three port currents, computed here
        z = 2e4 * board.measure(x).y[:, 2:]
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(4), t]))

    assert np.allclose(api.gradient(board, x, t, loss, estimator="hl-exact").loss.mean(), my_loss(), rtol=1e-12)
    g0 = board.read_conductances()
    h = 1e-5 * np.median(g0)
    ref = np.empty_like(g0)
    for k in range(g0.size):
        f = []
        for s in (1, -1):
            g = g0.copy()
            g[k] += s * h
            board.program(g, rel_tol=0.0)
            f.append(my_loss())
        ref[k] = (f[0] - f[1]) / (2 * h)
    board.program(g0, rel_tol=0.0)
    for est, opts in (("hl-exact", {}), ("hl", {"delta_v": 1e-4})):
        r = api.gradient(board, x, t, loss, estimator=est, **opts)
        assert np.max(np.abs(r.grad - ref)) <= 1e-6 * np.max(np.abs(ref)), est
        assert not r.stats["may_be_biased"]


def test_a_data_set_with_more_classes_than_last_stage_ports_is_refused(tmp_path):
    from hil.config import ConfigError

    cfg = {**CFG, "board": {**CFG["board"], "stages": [CFG["board"]["stages"][0],
                                                        {"buffer_gain": 3.0, "circuit": stage(1, 5, 4, 2)}]}}
    try:
        api.train(cfg, runs_dir=tmp_path / "runs")
    except ConfigError as exc:
        assert "need 3 class scores" in str(exc) and "2 output ports" in str(exc)
    else:
        raise AssertionError("a 3-class set on a cascade with 2 last-stage ports was accepted")
