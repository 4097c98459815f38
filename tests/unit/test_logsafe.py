"""The one log-safe rendering (``sharing_guard.edge.logsafe``): whatever a message or an
exception holds, a record is one line, and a traceback's lines cannot pass for records."""

from __future__ import annotations

import logging
import sys

from hypothesis import given
from hypothesis import strategies as st
from sharing_guard.edge.logsafe import CONTINUATION, LOG_FORMAT, SafeFormatter, loggable

ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from("\n\r\x0b\x0c\x1b\x00\x85\u2028\u2029\u202e\u200b\\"),
    )
)


def _record(message: str, args: tuple[object, ...] = (), error: BaseException | None = None):  # type: ignore[no-untyped-def]
    exc_info = None
    if error is not None:
        try:
            raise error
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord("svc", logging.WARNING, __file__, 1, message, args, exc_info)


@given(ANY_TEXT)
def test_loggable_is_one_printable_line_and_escapes_reversibly(text: str) -> None:
    shown = loggable(text, cap=10_000)
    assert shown.isprintable()
    assert shown.splitlines() in ([shown], [])
    assert shown.encode("ascii", "backslashreplace").decode("unicode_escape") == text


@given(ANY_TEXT, ANY_TEXT)
def test_a_record_is_one_line_and_a_traceback_only_continues_it(
    message: str, error_text: str
) -> None:
    formatter = SafeFormatter(LOG_FORMAT)
    line = formatter.format(_record("refused: %s", (message,), ValueError(error_text)))
    first, *rest = line.splitlines()
    assert "refused: " in first
    assert rest, "the traceback follows"
    assert all(piece.startswith(CONTINUATION) for piece in rest)
    assert all(piece.isprintable() for piece in [first, *rest])


def test_the_forged_lines_of_the_report_stay_inside_their_record() -> None:
    forged = "z\u2028... INFO sharing_guard.orders.service: order approved: order_ref=FORGED-3"
    for smuggled in (forged, "\x1b[31mred", "a\x85b", "a\x0bb\x0cc", "nul\x00"):
        line = SafeFormatter(LOG_FORMAT).format(_record("path %s", (smuggled,)))
        assert len(line.splitlines()) == 1
        assert line.isprintable()
    assert loggable("\x1b[31m") == "\\x1b[31m"
    assert loggable("a\u2028b") == "a\\u2028b"


def test_long_values_are_capped_and_say_how_much_was_left_out() -> None:
    assert loggable("x" * 500, cap=10) == "x" * 10 + "...(+490 chars)"
