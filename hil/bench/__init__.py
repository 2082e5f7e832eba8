"""Bench files: which instruments a bench has, their limits, and how they are wired to the array.

``hil.bench.schema.load_bench(path_or_mapping) -> Bench`` validates a bench file (every problem
reported at once with its dotted path, as ``hil.config.ConfigError``).  Also here: the bench-time
model (``hil.bench.timing``), an in-process protocol-level test bench (``hil.bench.inprocess``)
and a pulse-response model of resistive devices (``hil.bench.resistive``).
"""

from hil.bench.schema import Bench, ChannelSpec, InstrumentSpec, Timing, Wiring, load_bench

__all__ = ["Bench", "ChannelSpec", "InstrumentSpec", "Timing", "Wiring", "load_bench"]
