"""Measurement chain: source DAC and reading ADC errors.

Sources: u' = (1 + γ_d)·Q(u) + o_d per source (static γ_d ~ N(0, dac_gain_std²),
o_d ~ N(0, dac_offset_std²) in V; Q quantises to ``dac_bits`` over ±``dac_range`` V).
Readings (one family for currents in A, one for node voltages in V):
m = Q(clip((1 + γ_a)x + o_a + σξ, ±adc_range)) with static per-channel γ_a, o_a and a
fresh σ = ``adc_noise_std`` draw per reading; Q(x) = Δ·round(x/Δ), Δ = 2·range/(2^bits − 1).
bits = 0 means no quantisation.  Rails are sources too and get their own offset/gain.
A reading at full scale (within one step of ±range) is over range, and a commanded source
voltage beyond ±``dac_range`` is not applied as asked: :meth:`ReadingChain.over_range` and
:meth:`SourceChain.out_of_range` say which, so the board can mark those samples invalid, as an
instrument's overflow reading would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devices.base import Family, non_neg


def quantise(x: np.ndarray, bits: int, full_range: float) -> np.ndarray:
    if bits <= 0:
        return x
    d = 2.0 * full_range / (2 ** bits - 1)
    return d * np.round(x / d)


@dataclass(frozen=True)
class SourceChain(Family):
    dac_bits: int = 0
    dac_range: float = 10.0
    dac_offset_std: float = 0.0
    dac_gain_std: float = 0.0
    key = "dac"

    def check(self):
        out = non_neg(dac_offset_std=self.dac_offset_std, dac_gain_std=self.dac_gain_std, dac_bits=self.dac_bits)
        if not self.dac_range > 0:
            out.append(("dac_range", "must be > 0 V"))
        return out

    def draw(self, rng: np.random.Generator, p: int) -> np.ndarray:
        """(2, p): gain errors and offsets (V) per source."""
        xi = rng.standard_normal((2, p))
        return np.stack([self.dac_gain_std * xi[0], self.dac_offset_std * xi[1]]) if self.enabled else 0 * xi

    def out_of_range(self, u: np.ndarray) -> np.ndarray:
        """(B,) samples with a commanded source voltage beyond ±dac_range (applied clipped)."""
        if not self.enabled:
            return np.zeros(u.shape[0], bool)
        return np.any(np.abs(u) > self.dac_range, axis=1)

    def apply(self, u: np.ndarray, static: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return u
        uq = quantise(np.clip(u, -self.dac_range, self.dac_range), self.dac_bits, self.dac_range)
        return (1.0 + static[0]) * uq + static[1]


@dataclass(frozen=True)
class ReadingChain(Family):
    adc_bits: int = 0
    adc_range: float = 1.0
    adc_noise_std: float = 0.0
    adc_offset_std: float = 0.0
    adc_gain_std: float = 0.0

    def check(self):
        out = non_neg(adc_noise_std=self.adc_noise_std, adc_offset_std=self.adc_offset_std,
                      adc_gain_std=self.adc_gain_std, adc_bits=self.adc_bits)
        if not self.adc_range > 0:
            out.append(("adc_range", "must be > 0"))
        return out

    def draw(self, rng: np.random.Generator, channels: int) -> np.ndarray:
        """(2, channels): gain errors and offsets per channel."""
        xi = rng.standard_normal((2, channels))
        return np.stack([self.adc_gain_std * xi[0], self.adc_offset_std * xi[1]]) if self.enabled else 0 * xi

    def noise_sigma(self) -> float:
        """Standard deviation of one reading about its mean: noise and quantisation (Δ²/12)."""
        if not self.enabled:
            return 0.0
        lsb = 2.0 * self.adc_range / (2 ** self.adc_bits - 1) if self.adc_bits > 0 else 0.0
        return float(np.sqrt(self.adc_noise_std ** 2 + lsb ** 2 / 12.0))

    def over_range(self, m: np.ndarray) -> np.ndarray:
        """(B,) samples with a reading of ``m`` (B, channels) at full scale: within one step of ±range."""
        if not self.enabled or m.shape[1] == 0:
            return np.zeros(m.shape[0], bool)
        lsb = 2.0 * self.adc_range / (2 ** self.adc_bits - 1) if self.adc_bits > 0 else 0.0
        return np.any(np.abs(m) >= self.adc_range - lsb, axis=1)

    def read(self, rng: np.random.Generator, x: np.ndarray, static: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return x
        m = (1.0 + static[0]) * x + static[1]
        if self.adc_noise_std > 0:
            m = m + self.adc_noise_std * rng.standard_normal(x.shape)
        return quantise(np.clip(m, -self.adc_range, self.adc_range), self.adc_bits, self.adc_range)


@dataclass(frozen=True)
class CurrentReadings(ReadingChain):
    adc_range: float = 1e-3
    key = "adc_current"


@dataclass(frozen=True)
class VoltageReadings(ReadingChain):
    adc_range: float = 10.0
    key = "adc_voltage"
