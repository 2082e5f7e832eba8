"""Sweeps: a grid of config keys × seeds trained as independent, resumable runs.

``hil sweep SWEEP.yaml`` (see ``docs/sweep.md``); from Python::

    from hil.sweep import load_sweep, run_sweep
    outcome = run_sweep(load_sweep("my-sweep.yaml"))
"""

from hil.sweep.execute import SweepOutcome, run_sweep
from hil.sweep.spec import RunPoint, SweepSpec, expand, load_sweep, parse_sweep

__all__ = ["RunPoint", "SweepOutcome", "SweepSpec", "expand", "load_sweep", "parse_sweep", "run_sweep"]
