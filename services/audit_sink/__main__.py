"""``python -m audit_sink``: the ``audit-sink`` command line (:mod:`audit_sink.cli`)."""

import sys

from audit_sink.cli import main

if __name__ == "__main__":  # not when a spawned helper process imports this module
    sys.exit(main())
