"""Resistive devices programmed by voltage pulses: the response family and an array of devices.

``PulseResponse`` (config key ``pulse``) is the shape of one device's response to one pulse of
amplitude V and width t: nothing at or below ``v_threshold``; above it the conductance moves up
(V > 0) or down (V < 0) by a nominal step

    Δg↑ = rate_up   · (g_hi − g_lo) · (1 − x)^gamma_up   · (|V| − v_threshold) · t / width_ref_s
    Δg↓ = rate_down · (g_hi − g_lo) ·  x^gamma_down      · (|V| − v_threshold) · t / width_ref_s

with x = (g − g_lo)/(g_hi − g_lo) the position in the device's window: the step shrinks as the
device approaches the bound it moves towards (nonlinear), with different rates and exponents up
and down (asymmetric), and the result is clipped to the window (bounded).

``PulsedArray`` applies it to m devices together with the non-ideality families of
:class:`~hil.devices.model.DeviceModel` (one physics engine for the simulated board and the
emulated bench):

* device-to-device variation (``dtod``): each device's step is scaled by its static factor;
* programming noise (``prog_noise``): the cycle-to-cycle noise of every pulse, a fresh normal
  draw per pulse with σ = ``prog_noise_scale``·|Δg| (``proportional``: relative to the step) or
  σ_p(g) of the family for ``constant`` / ``poly`` (state dependent);
* quantised levels (``levels``): the device settles on the nearest of its discrete levels;
* stuck-on / stuck-off / open devices (``faults``): they ignore pulses and keep g_max, g_min, 0 S;
* read noise (``read_noise``): every read sees the conductances with a fresh fluctuation.

Static draws and the dynamic stream come from the ``DeviceModel`` (seeded), so presets and seeds
mean the same thing on both backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from hil.devices.base import Family, non_neg
from hil.devices.faults import HEALTHY, Faults

__all__ = ["PulseResponse", "PulsedArray", "parse_pulsed_devices"]


@dataclass(frozen=True)
class PulseResponse(Family):
    """Pulse response of a resistive device (SI units; see the module docstring).

    Attributes:
        v_threshold: pulses with |V| at or below it leave the device unchanged, V.
        rate_up, rate_down: relative step (of the window) per volt of overdrive at ``width_ref_s``.
        gamma_up, gamma_down: nonlinearity exponents (0: linear response).
        width_ref_s: pulse width at which the rates apply, s (the step scales with the width).
        window_low, window_high: the device window [window_low·g_min, window_high·g_max] around the
            board's programmable range (a device approaches its window's bounds ever more slowly,
            so the window must reach past the range for the range's ends to be programmable).
    """

    enabled: bool = True
    v_threshold: float = 0.5
    rate_up: float = 0.02
    rate_down: float = 0.03
    gamma_up: float = 1.0
    gamma_down: float = 0.5
    width_ref_s: float = 1e-4
    window_low: float = 0.5
    window_high: float = 1.3
    key = "pulse"

    def check(self):
        out = non_neg(v_threshold=self.v_threshold, rate_up=self.rate_up, rate_down=self.rate_down,
                      gamma_up=self.gamma_up, gamma_down=self.gamma_down)
        if not self.width_ref_s > 0:
            out.append(("width_ref_s", "must be > 0 s"))
        if not 0 <= self.window_low <= 1:
            out.append(("window_low", "must be in [0, 1]"))
        if not self.window_high >= 1:
            out.append(("window_high", "must be >= 1"))
        return out

    def step(self, g: float, amplitude_v: float, width_s: float, g_lo: float, g_hi: float) -> float:
        """Nominal conductance change (S) of a device at ``g`` (S) in window [g_lo, g_hi] (S) for one
        pulse of ``amplitude_v`` (V) and ``width_s`` (s)."""
        over = abs(amplitude_v) - self.v_threshold
        if over <= 0 or width_s <= 0 or g_hi <= g_lo:
            return 0.0
        span = g_hi - g_lo
        x = min(max((g - g_lo) / span, 0.0), 1.0)
        drive = over * width_s / self.width_ref_s
        if amplitude_v > 0:
            return self.rate_up * span * (1.0 - x) ** self.gamma_up * drive
        return -self.rate_down * span * x ** self.gamma_down * drive


class PulsedArray:
    """m resistive devices: their true conductances and how pulses and reads act on them.

    Args:
        response: the pulse response.
        model: a :class:`~hil.devices.model.DeviceModel` (static draws, dynamic stream, families).
        g0: (m,) initial conductances, S (faulty devices start at their fixed value).
        window: (g_lo, g_hi) conductance window of every device, S (default: the response's
            window around the model's range).
    """

    def __init__(self, response: PulseResponse, model: Any, g0: np.ndarray,
                 window: Optional[tuple[float, float]] = None) -> None:
        self.response = response
        self.model = model
        if window is None:
            window = (response.window_low * model.g_min, response.window_high * model.g_max)
        self.g_lo, self.g_hi = window
        if not 0 <= self.g_lo < self.g_hi:
            raise ValueError("device window: need 0 <= g_lo < g_hi (S)")
        g0 = np.asarray(g0, float)
        self.faults = np.asarray(model.fault_codes)
        self.g = Faults.apply(self.faults, self._settle(np.clip(g0, self.g_lo, self.g_hi)), model.g_min, model.g_max)
        self.pulses = 0

    @property
    def m(self) -> int:
        return int(self.g.size)

    @property
    def stuck(self) -> np.ndarray:
        """(m,) True for devices that ignore pulses (stuck-on, stuck-off, open)."""
        return self.faults != HEALTHY

    def _settle(self, g: np.ndarray) -> np.ndarray:
        spec = self.model.spec
        return spec.levels.quantise(g, self.g_lo, self.g_hi) if spec.levels.enabled else g

    def pulse(self, k: int, amplitude_v: float, width_s: float) -> float:
        """Apply one pulse across device ``k``; returns its new conductance, S."""
        self.pulses += 1
        if self.faults[k] != HEALTHY:
            return float(self.g[k])
        g = float(self.g[k])
        dg = self.response.step(g, amplitude_v, width_s, self.g_lo, self.g_hi)
        if dg == 0.0:
            return g
        dg *= float(self.model.dtod_factor[k])
        pn = self.model.spec.prog_noise
        if pn.enabled and pn.prog_noise_model != "none" and pn.prog_noise_scale > 0:
            basis = abs(dg) if pn.prog_noise_model == "proportional" else g + dg
            sigma = float(pn.sigma(np.array([basis]), self.model.g_max)[0])
            dg += sigma * float(self.model.rng.standard_normal())
        g_new = float(self._settle(np.array([min(max(g + dg, self.g_lo), self.g_hi)]))[0])
        self.g[k] = g_new
        return g_new

    def seen(self) -> np.ndarray:
        """Conductances (m,) S one read sees (read noise drawn afresh; faulty devices fixed)."""
        spec = self.model.spec
        if not spec.read_noise.active:
            return self.g.copy()
        g = spec.read_noise.read(self.model.rng, self.g, self.model.g_max)
        return Faults.apply(self.faults, g, self.model.g_min, self.model.g_max)

    @property
    def dynamic_reads(self) -> bool:
        """True when every read sees different conductances."""
        return bool(self.model.spec.read_noise.active)


def parse_pulsed_devices(data: Optional[dict], m: int, n_hidden: int, n_sources: int, n_outputs: int,
                         g_min: float, g_max: float, g0: np.ndarray, path: str = "board.devices") -> PulsedArray:
    """A :class:`PulsedArray` from a ``board.devices`` mapping (families, ``preset``, ``seed`` and an
    optional ``pulse`` section); raises ``ConfigError`` with dotted paths."""
    from hil.config import ConfigError, Section
    from hil.devices.model import DeviceModel, parse_devices

    data = dict(data or {})
    raw_pulse = data.pop("pulse", None)
    problems: list[str] = []
    try:
        spec = parse_devices(data, path)
    except ConfigError as exc:
        problems.extend(exc.problems if hasattr(exc, "problems") else [str(exc)])
        spec = None
    if raw_pulse is not None and not isinstance(raw_pulse, dict):
        problems.append(f"{path}.pulse: expected a mapping")
        raw_pulse = {}
    sec = Section(raw_pulse or {}, f"{path}.pulse", problems)
    response = PulseResponse.from_config(sec, {})
    if problems:
        raise ConfigError(problems)
    model = DeviceModel(spec, m, n_hidden, n_sources, n_outputs, g_min, g_max)
    return PulsedArray(response, model, g0)
