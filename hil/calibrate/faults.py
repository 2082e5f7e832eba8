"""Faulty-device map and programming response from two programmed states.

Every device is programmed to a low and then a high level and read out in circuit
(:mod:`.conductances`) after each.  The low levels are drawn per device (uniform in
``low_fraction`` ± 0.1 of the range, seeded) and the high level is the low one plus
``high_fraction − low_fraction`` of the range: identical levels would make the hidden nodes
indistinguishable and the in-circuit regression ill-conditioned.  The response slope of a
device is s = (ĝ_high − ĝ_low)/(t_high − t_low); its standard error σ_s follows from the two
read-outs' least-squares standard errors (read and reading noise, and any misfit of the port
model such as wire drops, all enter through the fit residual).

Classification is a two-hypothesis test per device, per group (``g_in``, ``g_out``):

* stuck: the device ignores programming, so s ~ N(0, σ_s²);
* healthy: s ~ N(μ, τ² + σ_s²), μ the median slope of the device's line (the devices of one
  hidden node's row of ``g_in``, of one output's row of ``g_out``: wire drops along a line
  scale the in-circuit response of all its devices alike), τ the device-to-device scatter of
  the gain (programming noise and spread, and what the wires leave), estimated robustly per
  line as the MAD scatter about the line median with the median estimation variance removed;
  the stuck hypothesis gets the same τ² (with wires, a stuck device's read-out moves with its
  neighbours).  A line whose median is off the group median by more than half is read out too
  poorly to judge: its devices keep the prior (unresolved, never flagged).

A device is flagged when the posterior of "stuck" exceeds 1/2 with prior ``prior_faulty``.
Where the read-out is too noisy to tell the two apart (σ_s comparable to μ) the posterior
stays near the prior and the device is *not* flagged: a stuck mask then freezes only devices
that are more likely faulty than not.  Devices that are not flagged but whose posterior is 1 %
or more are counted as unresolved, and so are devices that cannot be read out in circuit at all
(their slope and posterior are NaN): :meth:`FaultMap.counts` splits every device into healthy,
stuck high, stuck low, unresolved and not characterised, never counting a device twice.  A
flagged device is *stuck high* if it reads above mid-range, *stuck low* (stuck-off or open)
otherwise.  The slope of each healthy device is its
programming gain and the scatter of ĝ/t around it measures programming noise: both are stored
for write-verify.  Afterwards the board is programmed back to a read-back of its original
state (the protocol exposes no commanded targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.calibrate.conductances import ConductanceEstimate, estimate_conductances
from hil.calibrate.offsets import ChannelOffsets

HEALTHY, STUCK_HIGH, STUCK_LOW = 0, 1, 2
FAULT_LABELS = {HEALTHY: "healthy", STUCK_HIGH: "stuck high", STUCK_LOW: "stuck low / open"}


@dataclass
class FaultMap:
    """Per-device fault code (0 healthy, 1 stuck high, 2 stuck low/open), fixed value (S),
    programming gain (ĝ per unit target) and the relative programming scatter."""

    code: np.ndarray
    fixed_value: np.ndarray  # S, the read value of faulty devices (0 for healthy ones)
    gain: np.ndarray  # slope of the programming response per device
    prog_scatter: float  # robust relative std of ĝ_high/(gain·t_high) over healthy devices
    low: ConductanceEstimate
    high: ConductanceEstimate
    levels: tuple[float, float]  # mean targets of the two states, S
    posterior: np.ndarray | None = None  # (m,) probability that each device is faulty (nan outside the groups)
    slope: np.ndarray | None = None  # (m,) response slope per device
    slope_stderr: np.ndarray | None = None  # (m,) its standard error
    judged: np.ndarray | None = None  # (m,) bool, the devices of the characterised groups

    @property
    def unresolved(self) -> int:
        """Devices of the characterised groups that are not flagged and not healthy beyond doubt:
        fault posterior of 1 % or more (the read-out cannot tell), or NaN (cannot be read out at all)."""
        return int(np.sum(self._unresolved_mask()))

    def unresolved_devices(self) -> np.ndarray:
        """Which devices :attr:`unresolved` counts, bool (m,)."""
        return self._unresolved_mask()

    @property
    def faulty(self) -> np.ndarray:
        return self.code != HEALTHY

    def counts(self) -> dict[str, int]:
        """Disjoint device counts that add up to every conductance of the board: ``healthy``
        (characterised, fault posterior below 1 %), ``stuck high``, ``stuck low / open`` (flagged),
        ``unresolved`` (characterised, neither) and ``not characterised`` (groups outside the map,
        such as g_leak and g_hh)."""
        judged = self._judged()
        unresolved = self._unresolved_mask()
        out = {FAULT_LABELS[HEALTHY]: int(np.sum(judged & (self.code == HEALTHY) & ~unresolved))}
        out.update({FAULT_LABELS[c]: int(np.sum(self.code == c)) for c in (STUCK_HIGH, STUCK_LOW)})
        out["unresolved"] = int(np.sum(unresolved))
        out["not characterised"] = int(np.sum(~judged & (self.code == HEALTHY)))
        return out

    def _judged(self) -> np.ndarray:
        if self.judged is not None:
            return np.asarray(self.judged, bool)
        return np.ones(self.code.shape, bool) if self.posterior is None else np.isfinite(self.posterior)

    def _unresolved_mask(self) -> np.ndarray:
        if self.posterior is None:
            return np.zeros(self.code.shape, bool)
        sure_healthy = np.isfinite(self.posterior) & (self.posterior < 0.01)
        return self._judged() & (self.code == HEALTHY) & ~sure_healthy


def characterise(board, offsets: ChannelOffsets, groups: tuple[str, ...] = ("g_in", "g_out"),
                 low_fraction: float = 0.25, high_fraction: float = 0.75, prior_faulty: float = 0.01,
                 repeats: int = 32, amplitude_v: float = 0.5, seed: int = 0,
                 own_state: np.ndarray | None = None) -> FaultMap:
    """Program low/high levels, read out in circuit, classify every device of ``groups``.

    ``own_state``: the conductances (S) read out in circuit at the board's own state (before this
    step).  A flagged device's fixed value is its reading there, clipped to the programmable range:
    the two programmed states move every other device of its lines, and with wire resistance that
    shifts a stuck device's effective read-out (on sim-digits-mismatch up to 10 % of g_max, and
    below 0 S).  Without it, the mean of the two states' readings, clipped."""
    topo = board.topology
    g_min, g_max = board.conductance_bounds
    g_max_eff = g_max if np.isfinite(g_max) else 1e-3
    span = g_max_eff - g_min
    rng = np.random.default_rng(seed)
    t_low = g_min + span * (low_fraction + rng.uniform(-0.1, 0.1, topo.n_conductances))
    t_high = t_low + span * (high_fraction - low_fraction)
    sel = np.zeros(topo.n_conductances, bool)
    for gname in groups:
        sel[topo.groups[gname]] = True
    original = board.read_conductances()
    base = original.copy()
    try:
        base[sel] = t_low[sel]
        board.program(base, rel_tol=0.0)
        low = estimate_conductances(board, offsets, amplitude_v, repeats)
        base[sel] = t_high[sel]
        board.program(base, rel_tol=0.0)
        high = estimate_conductances(board, offsets, amplitude_v, repeats)
    finally:
        board.program(original, rel_tol=0.0)
    slope = (high.g - low.g) / (t_high - t_low)
    slope_se = np.sqrt(_se(low) ** 2 + _se(high) ** 2) / (t_high - t_low)
    posterior = np.full(topo.n_conductances, np.nan)
    line_length = {"g_in": topo.n_sources, "g_out": topo.n_hidden}  # row-major (n, p) and (q, n) blocks
    for gname in groups:
        sl = topo.groups[gname]
        lines = np.arange(sl.stop - sl.start) // line_length[gname] if gname in line_length else None
        posterior[sl] = stuck_posterior(slope[sl], slope_se[sl], prior_faulty, lines)
    code = np.zeros(topo.n_conductances, np.int8)
    stuck = sel & (posterior > 0.5)
    mid = g_min + 0.5 * span
    code[stuck & (high.g >= mid)] = STUCK_HIGH
    code[stuck & (high.g < mid)] = STUCK_LOW
    read = 0.5 * (low.g + high.g)
    if own_state is not None:
        read = np.where(np.isfinite(own_state), own_state, read)
    fixed = np.where(stuck, np.clip(read, g_min, g_max_eff), 0.0)
    healthy = sel & ~stuck
    gain = np.where(healthy, high.g / t_high, np.nan)
    healthy &= np.isfinite(gain)  # (a device that cannot be read out in circuit is not counted)
    ratio = (low.g / t_low)[healthy] / np.where(gain[healthy] > 0, gain[healthy], 1.0)
    mad = float(np.median(np.abs(ratio - np.median(ratio)))) * 1.4826 if ratio.size else float("nan")
    return FaultMap(code, fixed, gain, mad / np.sqrt(2.0), low, high, (float(np.mean(t_low[sel])), float(np.mean(t_high[sel]))),
                    posterior, slope, slope_se, sel)


def stuck_posterior(slope: np.ndarray, se: np.ndarray, prior: float, lines: np.ndarray | None = None) -> np.ndarray:
    """P(stuck | slope) for one group of devices (see the module docstring).

    slope, se: (k,) response slopes and their standard errors; prior: fault probability.
    lines: (k,) index of the line each device sits on (a hidden node's row of ``g_in``, an
    output's row of ``g_out``), or None.  With lines, the healthy mean μ is each line's median
    slope (lines of fewer than 8 devices use the group median): wire drops along a line scale
    the in-circuit response of all its devices alike, so a whole line reading low is not a
    line of stuck devices.  τ is then the scatter about the line medians."""
    known = np.isfinite(slope)  # a device whose in-circuit read-out is not identifiable keeps no posterior
    if not known.all():
        post = np.full(slope.shape, np.nan)
        if known.any():
            post[known] = stuck_posterior(slope[known], se[known], prior, None if lines is None else lines[known])
        return post
    se = np.maximum(np.where(np.isfinite(se), se, np.inf), 1e-12)
    mu = np.full(slope.shape, float(np.median(slope)))
    scatter = np.full(slope.shape, 1.4826 * float(np.median(np.abs(slope - mu))))
    noise2 = np.full(slope.shape, float(np.median(se ** 2)))
    if lines is not None:
        for line in np.unique(lines):
            on = lines == line
            if on.sum() >= 8:
                mu[on] = np.median(slope[on])
                scatter[on] = 1.4826 * np.median(np.abs(slope[on] - mu[on]))
                noise2[on] = np.median(se[on] ** 2)
    tau2 = np.maximum(np.maximum(scatter ** 2 - noise2, 1e-12), (0.01 * np.abs(mu)) ** 2)
    var_h = tau2 + se ** 2
    var_s = se ** 2 + (tau2 if lines is not None else 0.0)
    ll_stuck = -0.5 * slope ** 2 / var_s - 0.5 * np.log(var_s)
    ll_healthy = -0.5 * (slope - mu) ** 2 / var_h - 0.5 * np.log(var_h)
    logit = np.log(prior / (1.0 - prior)) + ll_stuck - ll_healthy
    post = 1.0 / (1.0 + np.exp(-np.clip(logit, -700.0, 700.0)))
    # a line whose median response is off the group's by more than half (wire drops distort
    # its in-circuit read-out) is read out too poorly to judge its devices: keep the prior
    group_mu = float(np.median(slope))
    distorted = np.abs(mu - group_mu) > 0.5 * abs(group_mu)
    return np.where(distorted, prior, post)


def _se(est: ConductanceEstimate) -> np.ndarray:
    return est.g_stderr if est.g_stderr is not None else np.zeros_like(est.g)
