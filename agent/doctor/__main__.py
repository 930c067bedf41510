"""``python -m agent.doctor``: the doctor without the ``imza-agent`` command."""

import sys

from agent.doctor.command import cli

sys.exit(cli())
