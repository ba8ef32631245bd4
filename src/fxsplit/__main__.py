"""``python -m fxsplit``: the ``fxsplit`` command."""

import sys

from .tools.cli import main

sys.exit(main())
