"""``hil sweep SWEEP.yaml``: a grid of config keys × seeds as independent, resumable runs.

Exit status: 0 every run finished, 1 a run failed or the cluster could not be reached,
2 a problem in the sweep file or in a config it produces (one line per problem), 130 stopped by
Ctrl-C or SIGTERM (finished runs kept, running ones interrupted with their checkpoint, the table
written; the same command continues).
"""

from __future__ import annotations

import argparse
import sys
from hil.cli_help import command_help


def cmd_sweep(args) -> int:
    from hil.sweep import load_sweep, run_sweep
    from hil.sweep.execute import print_summary

    spec = load_sweep(args.sweep)
    try:
        outcome = run_sweep(spec, output=args.output, workers=args.workers, cluster=args.cluster,
                            dry_run=args.dry_run)
    except BrokenPipeError:  # the reader of the listing went away (| head): hil's usual quiet exit
        raise
    except OSError as exc:  # cluster unreachable, sweep directory not writable
        print(f"hil sweep: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from hil.cli import note_interrupt

        try:
            note_interrupt(_what_an_interrupt_kept(spec, args))
        except Exception:  # the plain "interrupted" then; never a traceback on the way out
            pass
        raise
    if args.dry_run:
        return 0
    print_summary(outcome, spec)
    if outcome.failed:
        print(f"hil sweep: {outcome.failed} run(s) failed (see results.csv and each run's result.json); "
              f"run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def _what_an_interrupt_kept(spec, args) -> str:
    """'interrupted; of N run(s) F finished, K keep their last epoch, R not started: …' from the sweep directory."""
    from pathlib import Path

    from collections import Counter

    from hil.sweep.execute import run_state
    from hil.sweep.spec import config_hash, expand

    runs_dir = Path(args.output or spec.output) / "runs"
    points = expand(spec)
    states = Counter(run_state(runs_dir / p.run_id, config_hash(p.raw)) for p in points)
    finished = states.pop("finished", 0)
    failed = sum(n for state, n in states.items() if state.startswith("failed"))
    kept = sum(n for state, n in states.items() if "continues from epoch" in state and not state.startswith("failed"))
    again = f"hil sweep {args.sweep}" + (f" --output {args.output}" if args.output else "")
    failed_text = f"{failed} failed, " if failed else ""
    return (f"interrupted; of {len(points)} run(s) {finished} finished, {failed_text}{kept} keep their last epoch, "
            f"{len(points) - finished - failed - kept} not started: '{again}' continues them")


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="run a grid of config keys × seeds (resumable; CSV table and plot)",
                              **command_help("Run every (grid point, seed) of a sweep file as an independent "
                                             "training run; finished runs are skipped when started again.",
                                             "hil sweep sweep.yaml --dry-run", "hil sweep sweep.yaml --workers 2",
                                             "hil sweep sweep.yaml --cluster local"))
    p.add_argument("sweep", help="sweep YAML file (see docs/sweep.md)")
    p.add_argument("--output", "-o", metavar="DIR", help="sweep directory (default: the file's 'output')")
    p.add_argument("--workers", type=_workers, metavar="N", help="local worker processes (default: one per core)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="Dask scheduler address (tcp://host:8786), or 'local' for a Dask cluster on this machine")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether they are finished; run nothing")
    p.set_defaults(func=cmd_sweep)
