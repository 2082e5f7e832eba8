"""``python -m hil`` and the ``hil`` console script: the CLI, with a clean Ctrl-C even while starting.

Loading the CLI imports NumPy, SciPy and the circuit engine, which takes a noticeable moment on a
busy machine. A Ctrl-C (or SIGTERM) in that moment would otherwise surface as a traceback from
whatever import it hit (NumPy even turns it into a misleading "bad install" ImportError). Nothing
has been opened or written yet, so the startup handler simply says so and leaves with status 130.
"""

import os
import signal
import sys

_STARTUP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"\nhil: interrupted while starting; nothing was done\n")
    os._exit(130)


def run() -> int:
    """Load the CLI under the startup handler, then run it with the usual signal behaviour."""
    previous = {sig: signal.signal(sig, _interrupted_while_starting) for sig in _STARTUP_SIGNALS}
    try:
        from hil.cli import build_parser, main

        parser = build_parser()  # imports every subcommand's module (the emulator, SciPy) while still covered
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return main(parser=parser)


if __name__ == "__main__":
    sys.exit(run())
