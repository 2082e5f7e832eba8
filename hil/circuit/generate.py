"""Seeded random crossbar circuits for tests, benchmarks and examples."""

from __future__ import annotations

import numpy as np

from hil.circuit.coupling import Coupling, random_coupling
from hil.circuit.elements import DIODE_PRESETS, DiodeBank, SPICE_GMIN_S
from hil.circuit.model import Circuit, make_sources


def random_circuit(
    n_hidden: int,
    n_inputs: int = 4,
    n_outputs: int = 2,
    *,
    seed: int = 0,
    diode: str = "ideal",
    preset: str = "1N4148",
    coupling_degree: int = 2,
    inverted: bool = True,
    rail_v: float = 1.0,
    g_range: tuple[float, float] = (1e-6, 1e-4),
    g_leak_s: float = 1e-7,
    mixed_orientation: bool = False,
    spice_compat: bool = False,
    dense_inputs: bool = True,
) -> Circuit:
    """A validated random circuit: conductances uniform in ``g_range`` (S), sparse coupling."""
    rng = np.random.default_rng(seed)
    sources = make_sources(n_inputs, inverted, [("vb_p", rail_v), ("vb_n", -rail_v)])
    p = len(sources)
    lo, hi = g_range
    g_in = rng.uniform(lo, hi, (n_hidden, p))
    if not dense_inputs:
        g_in *= rng.random((n_hidden, p)) < min(1.0, 8.0 / p)
        g_in[np.arange(n_hidden), rng.integers(0, p, n_hidden)] = rng.uniform(lo, hi, n_hidden)
    g_hh = (random_coupling(n_hidden, coupling_degree, lo, hi, rng) if coupling_degree > 0 and n_hidden > 1
            else Coupling.none(n_hidden))
    g_out = rng.uniform(lo, hi, (n_outputs, n_hidden))
    orientation = rng.choice([-1, 1], n_hidden) if mixed_orientation else np.ones(n_hidden, int)
    par = DIODE_PRESETS[preset]
    diodes = DiodeBank(
        kind=diode, orientation=orientation, v_ref=np.zeros(n_hidden),
        i_s=np.full(n_hidden, par["i_s"]), n=np.full(n_hidden, par["n"]), r_s=np.full(n_hidden, par["r_s"]),
        gmin_s=SPICE_GMIN_S, spice_compat=spice_compat,
    )
    pairs = tuple((2 * i, 2 * i + 1) for i in range(n_outputs // 2))
    return Circuit(
        sources=sources,
        hidden_names=tuple(f"h{k}" for k in range(n_hidden)),
        output_names=tuple(f"y{o}" for o in range(n_outputs)),
        g_in=g_in, g_hh=g_hh, g_leak=np.full(n_hidden, g_leak_s), g_out=g_out, diodes=diodes,
        output_voltage=np.zeros(n_outputs), differential_pairs=pairs,
        name=f"random-{n_hidden}-{diode}-{seed}",
    ).validate()
