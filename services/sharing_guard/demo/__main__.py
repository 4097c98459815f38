"""``python -m sharing_guard.demo``: see :mod:`sharing_guard.demo.cli`."""

import sys

from sharing_guard.demo.cli import main

sys.exit(main())
