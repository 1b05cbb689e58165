"""``python -m digitlab``: the ``digitlab`` command, for when the script is not on PATH."""

import sys

from digitlab.cli import run

sys.exit(run())
