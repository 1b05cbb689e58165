"""``python -m digitlab.cli`` (what ``torchrun ... -m digitlab.cli train`` runs): the ``digitlab`` command."""

import sys

from digitlab.cli import run

sys.exit(run())
