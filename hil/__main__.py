"""``python -m hil``: the same as the ``hil`` command."""

import sys

from hil.cli import main

sys.exit(main())
