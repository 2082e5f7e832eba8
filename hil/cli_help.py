"""Uniform ``--help`` pages for every ``hil`` subcommand: what it does, examples, exit status."""
from __future__ import annotations

import argparse
import textwrap
from typing import Any

__all__ = ["EXIT_STATUS", "command_help"]

EXIT_STATUS = "exit status: 0 success, 1 runtime failure, 2 configuration or argument mistake, 130 interrupted"


def command_help(description: str, *examples: str, exit_status: str = EXIT_STATUS) -> dict[str, Any]:
    """Keyword arguments for ``subparsers.add_parser``: wrapped description, example lines, exit codes
    (``exit_status``: the command's own line where it differs from the common one)."""
    lines = "\n".join(f"  {example}" for example in examples)
    return {"description": textwrap.fill(description, 79),
            "formatter_class": argparse.RawDescriptionHelpFormatter,
            "epilog": f"examples:\n{lines}\n\n{exit_status}"}
