"""``python -m tep``: the same as the ``tep`` console script."""

from __future__ import annotations

import sys

from tep.cli.main import main

sys.exit(main())
