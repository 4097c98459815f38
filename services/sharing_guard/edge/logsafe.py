"""The one place that turns anything from a request into log text, and the log format of
every service.

:func:`loggable` renders a value as one printable token: every character that is not
printable (C0 and C1 controls such as ESC, NUL, VT, FF and U+0085; format characters
such as zero-width spaces and bidirectional overrides; U+2028 and U+2029; every space but
U+0020) is written as a ``\\xNN``/``\\uNNNN`` escape, a backslash as ``\\\\``, and the
result is capped. :class:`SafeFormatter` applies the same rendering (backslashes aside) to
each record's whole message, so a caller who smuggles a line break into a path, a header
or a body cannot plant a line that looks like the service's own: one record is one line. A traceback
follows on continuation lines that start with ``"  | "`` (never a timestamp), each escaped
the same way.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

__all__ = [
    "CONTINUATION",
    "DEFAULT_CAP",
    "LOG_FORMAT",
    "SafeFormatter",
    "configure",
    "loggable",
    "make_safe",
]

DEFAULT_CAP: Final = 200
"""Characters of a request value kept in a log line (the rest is counted, not shown)."""
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTINUATION: Final = "  | "
_MESSAGE_CAP: Final = 4000


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _render(text: str, backslash: bool = True) -> str:
    if text.isprintable() and not (backslash and "\\" in text):
        return text
    return "".join(
        "\\\\" if backslash and char == "\\" else char if char.isprintable() else _escape(char)
        for char in text
    )


def loggable(value: object, cap: int = DEFAULT_CAP, *, backslash: bool = True) -> str:
    """``value`` (a path, a header, an id...) as printable log text of at most ``cap``
    characters before escaping; longer values end with ``...(+N chars)``. ``backslash``
    false keeps backslashes as they are (for whole messages, whose values were rendered
    already: escaping them twice would garble them)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > cap:
        return f"{_render(text[:cap], backslash)}...(+{len(text) - cap} chars)"
    return _render(text, backslash)


class SafeFormatter(logging.Formatter):
    """Each record on exactly one line, whatever its message holds; a traceback (or stack)
    on continuation lines that cannot be mistaken for records."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = loggable(record.getMessage(), _MESSAGE_CAP, backslash=False)
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extra: list[str] = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            extra.append(record.exc_text)
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        for block in extra:
            for piece in block.split("\n"):
                line += "\n" + CONTINUATION + loggable(piece, _MESSAGE_CAP, backslash=False)
        return line


def configure(level: str | int = logging.INFO, fmt: str = LOG_FORMAT) -> None:
    """Log to standard error through :class:`SafeFormatter` (replacing any earlier set-up)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def merged_dict_config() -> dict[str, object]:
    """A ``logging.config`` dictionary that a framework merging its own (mode's, under
    Faust: ``merge``) takes, replacing its formatters with :class:`SafeFormatter`."""
    safe = {"()": f"{__name__}.SafeFormatter", "fmt": LOG_FORMAT}
    return {"merge": True, "formatters": {"default": dict(safe), "colored": dict(safe)}}


def make_safe(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (the root by default) a :class:`SafeFormatter` that
    keeps its format: for loggers a framework set up (Faust's)."""
    for handler in (logger or logging.getLogger()).handlers:
        current = handler.formatter
        fmt = current._fmt if current is not None and current._fmt else LOG_FORMAT
        handler.setFormatter(SafeFormatter(fmt, current.datefmt if current else None))
