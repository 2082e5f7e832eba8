"""The reading-noise retry guard (hil.train.estimators.resolvable) on the central paths of the
per-port sweep and of cascades: a central retry reads the ± difference of its phases, so the
guard must judge that difference (as _hl_central does), not the one-sided + response, which is
about half of it and would skip retries that stay well above the noise."""

import dataclasses

import numpy as np

import hil.train.cascade_hl as cascade_hl
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


class _ReportsNoise:
    """A simulated board measuring phases in one sweep that reports a reading noise ``sigma`` (V)
    without adding any, so which samples are retried is deterministic."""

    def __init__(self, inner, sigma):
        self.inner, self.sigma = inner, sigma

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def measure(self, x, w=None):
        return dataclasses.replace(self.inner.measure(x, w), noise_v=self.sigma)

    def measure_phases(self, x, w_phases):
        return [self.measure(x, w) for w in w_phases]


def test_sweep_retries_a_sample_whose_central_difference_stays_above_the_noise():
    c = random_circuit(9, 3, 4, seed=0, coupling_degree=2, mixed_orientation=True, g_range=(1e-5, 1e-4))
    board, loss = SimulatedBoard(c), Loss("cross_entropy", 1e4, c.differential_matrix())
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-2, 2, (40, 3))[3:4], rng.integers(0, 2, 40)[3:4]
    dv = 0.05
    opts = {"delta_v": dv, "one_sweep": True}
    assert estimate("hl", _ReportsNoise(board, 0.0), x, t, loss, dict(opts, max_retries=0)).stats["flipped_samples"]
    op = board.measure(x)
    one_sided = central = 0.0  # largest hidden-node response to one port's drive, V
    for o in range(board.topology.n_outputs):
        plus, minus = op.w.copy(), op.w.copy()
        plus[:, o] += dv
        minus[:, o] -= dv
        e_plus, e_minus = board.measure(x, plus).e, board.measure(x, minus).e
        one_sided = max(one_sided, np.abs(e_plus - op.e).max())
        central = max(central, np.abs(e_plus - e_minus).max())
    assert central > 1.5 * one_sided
    # a 10x smaller drive leaves a ± difference above 5·√2·σ, its + response alone below
    sigma = np.sqrt(one_sided * central) / (10 * 5 * np.sqrt(2))
    r = estimate("hl", _ReportsNoise(board, sigma), x, t, loss, opts)
    assert r.stats["unresolvable"] == 0 and r.stats["retries"] == 1, r.stats
    assert r.stats["unresolved_flips"] == 0, r.stats["bias_note"]


def test_cascade_guard_judges_the_central_difference(monkeypatch):
    from tests.train.test_cascade import batch, cascade

    b = cascade([{"model": "ideal"}] * 2)
    x, t = batch(b, size=6)
    loss = Loss("cross_entropy", 1e4, b.topology.differential)
    measured, judged = [], []
    measure_stage = b.measure_stage

    def noisy_stage(x, stage, w=None, injected=None):
        m = dataclasses.replace(measure_stage(x, stage, w, injected), noise_v=1e-6)
        measured.append(m)
        return m

    def spy(e_response, noise_v, shrink=10.0):
        judged.append(np.array(e_response))
        return np.ones(e_response.shape[0], bool)

    monkeypatch.setattr(b, "measure_stage", noisy_stage)
    monkeypatch.setattr(cascade_hl, "resolvable", spy)
    estimate("hl", b, x, t, loss, {"delta_v": 1e-3})
    assert len(judged) == len(measured) > 0
    for m, e_response in zip(measured, judged):
        k = m.e.shape[0] // 2
        np.testing.assert_array_equal(e_response, m.e[:k] - m.e[k:])


def test_the_bias_note_does_not_call_re_measured_samples_not_re_measured(monkeypatch):
    """A sample re-measured once and only then found unreadable was re-measured: the note must not
    count it among the samples "not re-measured"."""
    import re

    from tests.train.test_cascade_hl import IDEAL_3, batch, cascade, loss_for

    b = cascade(IDEAL_3)
    x, t = batch(b, size=16)
    rng = np.random.default_rng(0)
    calls = []  # (stage, samples) of every stage measurement
    measure, measure_stage = b.measure, b.measure_stage

    def read(m, sigma=1e-3):
        return dataclasses.replace(m, e=m.e + rng.normal(0.0, sigma, m.e.shape), noise_v=sigma)

    def noisy_stage(x, stage, w=None, injected=None):
        calls.append((stage, x.shape[0] // 2))  # central: ± phases stacked
        return read(measure_stage(x, stage, w, injected))

    monkeypatch.setattr(b, "measure", lambda x, w=None: read(measure(x, w)))
    monkeypatch.setattr(b, "measure_stage", noisy_stage)
    r = estimate("hl", b, x, t, loss_for(b), {"delta_v": 0.3})
    re_measured = {}  # samples measured again (the second measurement of a stage holds each once)
    for stage, k in calls:
        re_measured.setdefault(stage, []).append(k)
    re_measured = {s: (ks[1] if len(ks) > 1 else 0) for s, ks in re_measured.items()}
    claims = re.findall(r"stage (\d+): [^;]*?\((\d+) of them not re-measured( further)?:", r.stats["bias_note"])
    assert any(re_measured.values()) and claims  # some stage did re-measure; some samples were left unreadable
    unreadable = {st["stage"]: st["unresolvable"] for st in r.stats["stages"]}
    for s, n, further in claims:
        s, n = int(s), int(n)
        assert n == unreadable[s]
        if not further:  # "not re-measured" at all: only the samples never measured again
            assert n <= len(x) - re_measured[s], (s, n, re_measured[s], r.stats["bias_note"])
