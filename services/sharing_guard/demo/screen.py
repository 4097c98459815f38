"""Where the live view goes: a terminal redrawn in place, or plain lines for a pipe.

On a terminal the view takes the alternate screen (so the shell's scrollback is left as it
was) and is redrawn about once a second; :meth:`Screen.close` returns to the normal screen,
where the final summary is then printed. Anywhere else (a pipe, a CI log, ``TERM=dumb``)
it writes a status line every few seconds and each story step once it is decided.
"""

import os
import shutil
import time
from collections.abc import Callable
from typing import TextIO

from sharing_guard.demo.tally import Snapshot
from sharing_guard.demo.view import (
    ALT_SCREEN_OFF,
    ALT_SCREEN_ON,
    RunInfo,
    ansi_frame,
    render_line,
    render_screen,
    story_updates,
)

REDRAW_S = 1.0
PLAIN_STATUS_S = 5.0


def is_terminal(out: TextIO) -> bool:
    """True when ``out`` is a terminal that understands ANSI escapes."""
    return out.isatty() and os.environ.get("TERM", "") not in ("", "dumb")


class Screen:
    """Draws snapshots with ``write``: redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, write: Callable[[str], None], info: RunInfo, live: bool) -> None:
        self.write = write
        self.info = info
        self.live = live
        self.color = live and "NO_COLOR" not in os.environ
        self.opened = False
        self._last_draw = float("-inf")
        self._last_status = 0.0
        self._story_seen: Snapshot | None = None

    def open(self) -> None:
        """Take the alternate screen (terminal only)."""
        if self.live and not self.opened:
            self.write(ALT_SCREEN_ON)
        self.opened = True
        self._last_status = time.monotonic()  # the first plain status line after a while

    def due(self, now: float) -> bool:
        """True when it is time to draw again."""
        return now - self._last_draw >= (REDRAW_S if self.live else REDRAW_S / 2)

    def draw(self, snap: Snapshot, now: float) -> None:
        """Redraw the view, or write what is new as plain lines."""
        self._last_draw = now
        if self.live:
            size = shutil.get_terminal_size((100, 40))
            lines = render_screen(snap, self.info, size.columns, size.lines - 1, self.color)
            self.write(ansi_frame(lines))
        else:
            lines = story_updates(self._story_seen, snap)
            self._story_seen = snap
            if now - self._last_status >= PLAIN_STATUS_S:
                self._last_status = now
                lines.append(render_line(snap))
            if lines:
                self.write("\n".join(lines) + "\n")

    def close(self, snap: Snapshot | None = None) -> None:
        """Leave the alternate screen; on a pipe, write the story steps not yet written."""
        if not self.opened:
            return
        self.opened = False
        if self.live:
            self.write(ALT_SCREEN_OFF)
        elif snap is not None:
            lines = story_updates(self._story_seen, snap)
            if lines:
                self.write("\n".join(lines) + "\n")
