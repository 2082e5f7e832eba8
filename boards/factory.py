"""Build a board backend by name from configuration (the only place that picks a backend)."""

from __future__ import annotations

import numpy as np

from hil.boards.simulated import SimulatedBoard
from hil.circuit.build import build_circuit
from hil.config import ConfigError


def make_board(backend: str, circuit: dict | None, g_min: float, g_max: float, instrument_board=None,
               resources: dict | None = None, clock=None, rehearsal_world=None, *, devices: dict | None = None):
    """A board for ``backend`` (``simulated`` or ``instruments``); ``circuit`` is the ``board.circuit``
    mapping, ``instrument_board`` the validated bench (``resources`` replace its VISA addresses),
    ``devices`` the optional ``board.devices`` mapping (non-idealities of a simulated board, :mod:`hil.devices`)."""
    if backend == "instruments":
        from hil.boards.bench_factory import make_instrument_board

        if instrument_board is None:
            raise ConfigError(["board.bench: required for the instruments backend"])
        return make_instrument_board(instrument_board, (g_min, g_max), resources=resources, clock=clock,
                                     rehearsal_world=rehearsal_world)
    if backend == "simulated":
        if circuit is not None and "stages" in circuit:
            from hil.boards.cascade import build_cascade

            if devices:
                from hil.devices import parse_devices

                if not parse_devices(devices, "board.devices").is_ideal:
                    raise ConfigError(["board.devices: non-idealities are simulated on one-stage boards only; a "
                                       "cascade (board.stages) would ignore them: remove board.devices (or use "
                                       "preset: ideal)"])

            return _in_range(build_cascade(circuit["stages"], g_min, g_max))
        if circuit is None:
            raise ConfigError(["board.circuit: required for the simulated backend"])
        built = build_circuit(circuit, "board.circuit")
        if devices:
            from hil.boards.nonideal import NonIdealBoard
            from hil.devices import parse_devices

            spec = parse_devices(devices, "board.devices")
            if not spec.is_ideal:
                return NonIdealBoard(built, g_min, g_max, spec)
        return _in_range(SimulatedBoard(built, g_min=g_min, g_max=g_max))
    raise ConfigError([f"board.backend: unknown backend {backend!r}"])


def _in_range(board):
    """The board with its initial conductances clipped to [g_min, g_max] (S), as the non-ideal board and the
    trainer's first step clip them: a config's initial values outside the programmable range (uniform draws
    above board.g_max, a leak below board.g_min) are not a state the board can hold."""
    g, (g_min, g_max) = board.read_conductances(), board.conductance_bounds
    if np.any((g < g_min) | (g > g_max)):
        board.program(np.clip(g, g_min, g_max), rel_tol=0.0)
    return board
