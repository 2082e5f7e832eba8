"""The device model: every non-ideality family, its static draws and its dynamic random stream.

    spec = parse_devices({"preset": "rram-crossbar", "faults": {"p_stuck_on": 0.01}}, "board.devices")
    model = DeviceModel(spec, m=..., n_hidden=..., n_sources=..., n_outputs=..., g_min=..., g_max=...)
    g_dev = model.write(target_s, previous_s, changed)     # programming (dynamic draw per write)
    g_eq = model.seen(g_dev, age_s)                        # drift, temperature, read noise (per read)

Independent of any board class, so the simulated board, the emulated bench and tests
can share it.  Static draws come from ``seed`` (one independent stream per family, so
switching one family on or off does not change the others); the dynamic stream's state
is exported by :meth:`DeviceModel.state_dict` for checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np

from hil.circuit.elements import DiodeBank
from hil.config import ConfigError, Section
from hil.devices.diodes import DiodeSpread
from hil.devices.drift import Drift
from hil.devices.faults import HEALTHY, Faults
from hil.devices.levels import Levels
from hil.devices.periphery import CurrentReadings, SourceChain, VoltageReadings
from hil.devices.presets import PRESETS
from hil.devices.programming import ProgrammingNoise
from hil.devices.read_noise import ReadNoise
from hil.devices.temperature import Temperature
from hil.devices.variation import DeviceVariation
from hil.devices.wires import Wires

FAMILIES = (Levels, DeviceVariation, ProgrammingNoise, ReadNoise, Faults, Drift, Wires, DiodeSpread,
            Temperature, SourceChain, CurrentReadings, VoltageReadings)


@dataclass(frozen=True)
class DeviceSpec:
    """All families (attribute = family key) plus the preset name and seed."""

    preset: str
    seed: int
    levels: Levels
    dtod: DeviceVariation
    prog_noise: ProgrammingNoise
    read_noise: ReadNoise
    faults: Faults
    drift: Drift
    wires: Wires
    diode_spread: DiodeSpread
    temperature: Temperature
    dac: SourceChain
    adc_current: CurrentReadings
    adc_voltage: VoltageReadings
    redraw: str = "never"  # "write": a new board instance (all static draws) at every programming event

    @property
    def is_ideal(self) -> bool:
        return not any(getattr(self, f.key).enabled for f in FAMILIES)

    def to_dict(self) -> dict:
        """Every parameter (for run metadata and calibration files)."""
        out = {"preset": self.preset, "seed": self.seed, "redraw": self.redraw}
        for fam in FAMILIES:
            obj = getattr(self, fam.key)
            out[fam.key] = {f.name: (list(v) if isinstance(v := getattr(obj, f.name), tuple) else v) for f in fields(obj)}
        return out


def parse_devices(data: dict | None, path: str = "board.devices") -> DeviceSpec:
    """Read ``board.devices`` ({preset, seed, <family>: {...}}); raises ConfigError with dotted paths."""
    problems: list[str] = []
    sec = Section(data or {}, path, problems)
    preset = sec.get("preset", str, "ideal", choices=tuple(PRESETS))
    seed = sec.get("seed", int, 0)
    redraw = sec.get("redraw", str, "never", choices=("never", "write"))
    base = PRESETS.get(preset or "ideal", {})
    fams = {}
    for fam in FAMILIES:
        sub = sec.section(fam.key)
        preset_vals = dict(base.get(fam.key, {}))
        if preset_vals:
            preset_vals.setdefault("enabled", True)
        fams[fam.key] = fam.from_config(sub, preset_vals)
    sec.finish()
    if problems:
        raise ConfigError(problems)
    return DeviceSpec(preset=preset or "ideal", seed=int(seed or 0), **fams, redraw=redraw or "never")


def _rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


class DeviceModel:
    """Static draws of one board instance and its dynamic random stream.

    Args:
        spec: the parameters.  m: number of conductances.  n_hidden, n_sources, n_outputs:
        sizes of the diode bank and of the source / reading channels.  g_min, g_max:
        programmable range (S).  instance: 0 for the board of ``seed``; k > 0 draws the k-th
        other board of the same distribution (noise-aware pre-training, ``redraw: write``).
    """

    def __init__(self, spec: DeviceSpec, m: int, n_hidden: int, n_sources: int, n_outputs: int,
                 g_min: float, g_max: float, instance: int = 0):
        self.spec = spec
        self.instance = int(instance)
        self.g_min, self.g_max = float(g_min), float(g_max)
        tail = [self.instance] if self.instance else []
        streams = {fam.key: np.random.default_rng([spec.seed, k, *tail]) for k, fam in enumerate(FAMILIES)}
        self.dtod_factor = spec.dtod.draw(streams["dtod"], m)
        self.fault_codes = spec.faults.draw(streams["faults"], m)
        self.nu = spec.drift.draw(streams["drift"], m)
        self.diode_xi = spec.diode_spread.draw(streams["diode_spread"], n_hidden)
        self.dac_static = spec.dac.draw(streams["dac"], n_sources)
        adc_i = streams["adc_current"]
        self.adc_y_static = spec.adc_current.draw(adc_i, n_outputs)
        self.adc_src_static = spec.adc_current.draw(adc_i, n_sources)
        self.adc_e_static = spec.adc_voltage.draw(streams["adc_voltage"], n_hidden)
        self.rng = np.random.default_rng([spec.seed, len(FAMILIES), *tail])  # dynamic draws

    # ---- conductances -----------------------------------------------------------------------
    @property
    def dynamic_conductances(self) -> bool:
        """True when every read sees different conductances (read noise or a running drift clock)."""
        s = self.spec
        return s.read_noise.active or (s.drift.enabled and s.drift.seconds_per_measure > 0 and np.any(self.nu > 0))

    def varying_note(self) -> str | None:
        """A sentence for estimators when every board call sees other conductances (read noise, a
        running drift clock), else None: the phases of one gradient then see different devices."""
        if not self.dynamic_conductances:
            return None
        s, why = self.spec, []
        if s.read_noise.active:
            why.append(f"{s.read_noise.read_noise_model} read noise {s.read_noise.read_noise_scale:.3g}")
        if s.drift.enabled and s.drift.seconds_per_measure > 0 and np.any(self.nu > 0):
            why.append(f"drift (ν up to {float(self.nu.max()):.3g}, {s.drift.seconds_per_measure:.3g} s per board call)")
        return (f"device conductances change from one board call to the next ({', '.join(why)}): "
                "the phases of one estimate see different devices")

    def reading_note(self) -> str | None:
        """A sentence for estimators when the reading or source chains are not exact, else None: the
        estimators form v·v̂ and ŵ = −∂ℓ/∂y from readings and commanded source voltages, so static
        reading offsets and gains, current-reading noise and quantisation, and source (DAC) errors
        all enter the gradient (node-voltage noise and quantisation are the board's ``noise_v``)."""
        s, why = self.spec, []
        chains = ((s.adc_current, "currents", ("adc_offset_std", "adc_gain_std", "adc_noise_std"), "adc_bits"),
                  (s.adc_voltage, "node voltages", ("adc_offset_std", "adc_gain_std"), None),
                  (s.dac, "sources", ("dac_offset_std", "dac_gain_std"), "dac_bits"))
        for fam, what, keys, bits in chains:
            if not fam.enabled:
                continue
            parts = [f"{k.split('_')[1]} σ {getattr(fam, k):.3g}" for k in keys if getattr(fam, k) > 0]
            if bits and getattr(fam, bits) > 0:
                parts.append(f"{getattr(fam, bits)} bit")
            if parts:
                why.append(f"{what}: {', '.join(parts)}")
        if not why:
            return None
        return (f"reading and source chains are not exact ({'; '.join(why)}): the gradient is formed from readings "
                "and commanded source voltages, not from the circuit's own currents and voltages")

    def write_subset(self, target: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Device conductances (S) after writing ``target`` (S) to devices ``idx``."""
        s = self.spec
        g = s.levels.quantise(target, self.g_min, self.g_max) * self.dtod_factor[idx]
        g = s.prog_noise.write(self.rng, g, self.g_max)
        return Faults.apply(self.fault_codes[idx], g, self.g_min, self.g_max)

    def seen(self, g_dev: np.ndarray, age_s: np.ndarray | float = 0.0, read: bool = True) -> np.ndarray:
        """Conductances (S) a read or a settle-and-measure sees: drift, temperature, read noise."""
        s = self.spec
        g = g_dev * s.drift.factor(self.nu, np.broadcast_to(age_s, g_dev.shape)) * s.temperature.conductance_factor()
        if read:
            g = s.read_noise.read(self.rng, g, self.g_max)
        return Faults.apply(self.fault_codes, g, self.g_min, self.g_max) if np.any(self.fault_codes != HEALTHY) else g

    # ---- diodes, sources, readings ----------------------------------------------------------
    def diodes(self, bank: DiodeBank) -> DiodeBank:
        """The bank with this instance's diode spread and the operating temperature; a registry
        element (clip, leaky, antiparallel, …) applies them to its own diodes
        (:meth:`~hil.circuit.laws.NodeElement.with_devices`)."""
        s = self.spec
        if bank.element is not None:
            from dataclasses import replace

            return replace(bank, element=bank.element.with_devices(s.diode_spread, self.diode_xi, s.temperature))
        return s.temperature.apply(s.diode_spread.apply(bank, self.diode_xi))

    def sources(self, u: np.ndarray) -> np.ndarray:
        """Source voltages (V) actually applied for commanded ``u`` (B, p)."""
        return self.spec.dac.apply(u, self.dac_static)

    def readings(self, y: np.ndarray, i_src: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the instruments report for true port currents, source currents (A) and node voltages (V)."""
        s = self.spec
        return (s.adc_current.read(self.rng, y, self.adc_y_static),
                s.adc_current.read(self.rng, i_src, self.adc_src_static),
                s.adc_voltage.read(self.rng, e, self.adc_e_static))

    def over_range(self, u: np.ndarray, y_m: np.ndarray, i_m: np.ndarray, e_m: np.ndarray) -> dict | None:
        """Samples (B,) with a commanded source beyond the DAC range (``sources``), or a reading at
        full scale of a port current (``y``), a source current (``i_src``) or a node voltage (``e``):
        the reported value is the range, not the signal.  None when there is none."""
        s = self.spec
        out = {"sources": s.dac.out_of_range(u), "y": s.adc_current.over_range(y_m),
               "i_src": s.adc_current.over_range(i_m), "e": s.adc_voltage.over_range(e_m)}
        return out if any(v.any() for v in out.values()) else None

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"rng_state": _rng_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = json.loads(str(state["rng_state"]))
