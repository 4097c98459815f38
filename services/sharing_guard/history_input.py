"""Reading a history of events on the command line (``replay``, ``explain``, ``what-if``).

The events come from a file, or from standard input when it is a pipe or a file; a command
given no file at a terminal refuses instead of waiting there silently.
"""

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def stdin_is_terminal() -> bool:
    """True when standard input is a terminal (or absent): nothing would ever arrive there
    but what someone types."""
    stdin = sys.stdin
    return stdin is None or stdin.isatty()


@contextmanager
def open_input(name: str) -> Iterator[BinaryIO]:
    """The events of file ``name``, or of standard input for ``-``."""
    if name == "-":
        yield sys.stdin.buffer
    else:
        with Path(name).open("rb") as handle:
            yield handle


def pause_collector() -> None:
    """A run over a history only accumulates state (no cycles to reclaim): keep the
    collector from rescanning it over and over (measured: a third of a replay's time on
    large files)."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
