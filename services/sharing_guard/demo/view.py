"""Rendering the demo's counts as text: pure functions from a snapshot to lines.

* :func:`render_screen` is the live view on a terminal, redrawn about once a second with
  :func:`ansi_frame` (cursor home, each line cleared to its end, the rest cleared: no
  flicker and no curses);
* :func:`render_line` and :func:`story_updates` are what goes to a pipe or a log instead:
  a status line now and then, and each story step once it is decided, explained;
* :func:`render_summary` is printed when the demo stops.

Nothing here reads a clock, the terminal or Kafka; :class:`RunInfo` carries what the
orchestration knows about the run.
"""

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

from sharing_guard.demo.tally import Snapshot, StoryLine

ALT_SCREEN_ON = "\x1b[?1049h\x1b[?25l"
"""Switch to the alternate screen and hide the cursor."""
ALT_SCREEN_OFF = "\x1b[?25h\x1b[?1049l"
"""Show the cursor and return to the normal screen (its scrollback intact)."""

GREEN, RED, YELLOW, BOLD, DIM, RESET = (
    "\x1b[32m",
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[1m",
    "\x1b[2m",
    "\x1b[0m",
)
_OUTCOMES = "outcomes"  # a style of its own: ALLOW green and BLOCK red within the line


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What is being shown: the broker, the topics, the target rate and duration."""

    broker: str
    topics: str
    rate: float
    seconds: float = 0.0
    note: str = ""
    guard: str = ""


# --- pieces ----------------------------------------------------------------------------------


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def outcome_text(snap: Snapshot) -> str:
    """``ALLOW 12 (60%)   BLOCK 8 (40%)``."""
    total = snap.decided
    allow, block = snap.outcome("ALLOW"), snap.outcome("BLOCK")
    return f"ALLOW {allow} ({_percent(allow, total)})   BLOCK {block} ({_percent(block, total)})"


def rate_text(snap: Snapshot) -> str:
    """Elapsed time, decisions per second, decided and in flight."""
    return (
        f"{snap.elapsed_s:.0f} s   {snap.rate:.0f} decisions/s (peak {snap.peak_rate:.0f})   "
        f"decided {snap.decided}   in flight {snap.in_flight}"
    )


def sent_text(snap: Snapshot) -> str:
    """What the simulated services sent, and whether they are held back."""
    text = f"sent {snap.sent_transfers} transfers and {snap.sent_governance} governance events"
    if snap.held_back:
        text += " (paused: the guard is behind)"
    return text


def code_columns(codes: tuple[tuple[str, int], ...], width: int) -> list[str]:
    """Reason codes with their counts, as many columns as fit in ``width``."""
    if not codes:
        return ["(none yet)"]
    cells = [f"{code} {count}" for code, count in codes]
    cell = max(len(c) for c in cells) + 3
    per_row = max(1, width // cell)
    return [
        "".join(c.ljust(cell) for c in cells[start : start + per_row]).rstrip()
        for start in range(0, len(cells), per_row)
    ]


def story_mark(line: StoryLine) -> str:
    """``[ok]`` decided as expected, ``[!!]`` decided otherwise, ``[..]`` waiting."""
    if line.got is None:
        return "[..]"
    return "[ok]" if line.as_expected else "[!!]"


def story_text(line: StoryLine) -> str:
    """One story step in a line: mark, label, and the decision (or what is expected)."""
    mark = story_mark(line)
    if line.got is None:
        return f"{mark} {line.label}: waiting (expect {line.expected})"
    if line.as_expected:
        return f"{mark} {line.label} -> {line.got}"
    return f"{mark} {line.label} -> {line.got} (expected {line.expected})"


def latest_run(story: Iterable[StoryLine]) -> list[StoryLine]:
    """The lines of the most recent story run."""
    lines = list(story)
    last = max((line.run for line in lines), default=0)
    return [line for line in lines if line.run == last]


def story_heading(snap: Snapshot) -> str:
    """``story (run 2: 5/9 as expected; all runs 14/18)``."""
    if not snap.story:
        return "story"
    shown = latest_run(snap.story)
    done = sum(1 for line in shown if line.as_expected)
    text = f"story (run {shown[0].run}: {done}/{len(shown)} as expected"
    if len(shown) < len(snap.story):
        text += f"; all runs {snap.story_done}/{len(snap.story)}"
    if snap.story_failed:
        text += f"; {snap.story_failed} NOT as expected"
    return text + ")"


def wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    """A multi-line explanation, indented and wrapped to ``width``."""
    out: list[str] = []
    for line in text.splitlines():
        lead = indent + " " * (len(line) - len(line.lstrip()))
        out += textwrap.wrap(
            line.strip(),
            width=max(width, len(lead) + 10),
            initial_indent=lead,
            subsequent_indent=lead + "  ",
        ) or [lead]
    return out


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: max(0, width - 1)] + "~"


# --- the live view ---------------------------------------------------------------------------


def _head(info: RunInfo) -> list[tuple[str, str]]:
    duration = f"for {info.seconds:g} s" if info.seconds > 0 else "until Ctrl-C"
    rows = [
        (f"sharing-guard demo   about {info.rate:g} events/s {duration}", BOLD),
        (f"broker: {info.broker}", ""),
    ]
    if info.note:
        rows.append((f"note: {info.note}", YELLOW))
    rows.append((f"topics: {info.topics}", ""))
    if info.guard:
        rows.append((f"guard: {info.guard}", ""))
    return rows


def _story_style(line: StoryLine) -> str:
    if line.got is None:
        return DIM
    return GREEN if line.as_expected else RED


def _window(lines: list[StoryLine], size: int) -> list[StoryLine]:
    """At most ``size`` story lines, ending at the first step still waiting."""
    end = next((i + 1 for i, line in enumerate(lines) if line.got is None), len(lines))
    return lines[max(0, end - size) : end] if len(lines) > size else lines


def short_explanation(text: str) -> list[str]:
    """An explanation without the clause texts and the policy line: decision and reasons."""
    lines = text.splitlines()
    return [lines[0], *(line for line in lines[1:] if line.startswith("  - "))]


def render_screen(
    snap: Snapshot, info: RunInfo, width: int = 100, height: int = 40, color: bool = False
) -> list[str]:
    """The live view: at most ``height`` lines, none wider than ``width`` characters
    (colour codes aside). On a small terminal the reason codes and the story are cut
    short, and the last decisions are explained briefly, or not at all."""
    width, height = max(width, 20), max(height, 10)
    rows = [
        *_head(info),
        ("", ""),
        (rate_text(snap), BOLD),
        (sent_text(snap), ""),
        ("outcomes: " + outcome_text(snap), _OUTCOMES),
        (
            f"transfers sent again with an already decided event id, answered with the "
            f"stored decision: {snap.duplicates}; alerts received: {snap.alerts}",
            "",
        ),
    ]
    room = height - len(rows)
    codes = code_columns(snap.codes, width - 2)
    if len(codes) > max(2, room // 4):
        shown = max(2, room // 4) - 1
        hidden = sum(len(row.split()) // 2 for row in codes[shown:])
        codes = [*codes[:shown], f"... and {hidden} more"]
    rows += [("", ""), ("by reason code", BOLD), *(("  " + row, "") for row in codes)]
    story = _window(latest_run(snap.story), max(3, room // 3))
    rows += [("", ""), (story_heading(snap), BOLD)]
    rows += [("  " + story_text(line), _story_style(line)) for line in story]
    if not snap.story:
        rows.append(("  (starts in a moment)", DIM))
    rows += _explained(snap.recent, width, height - len(rows))
    return [_styled(_clip(text, width), style, color) for text, style in rows[:height]]


def _explained(recent: tuple[str, ...], width: int, room: int) -> list[tuple[str, str]]:
    """The last decisions, in full where they fit, else briefly, in ``room`` lines."""
    room -= 2  # a blank line and the heading
    blocks: list[list[str]] = []
    for text in recent:
        block = wrap(text, width)
        if len(block) > room:
            block = [_clip(line, width) for line in wrap("\n".join(short_explanation(text)), width)]
        if len(block) > room:
            break
        blocks.append(block)
        room -= len(block)
    if not blocks:
        return []
    heading = ("last decisions, one of each kind", BOLD)
    return [("", ""), heading, *((line, "") for block in blocks for line in block)]


def _styled(text: str, style: str, color: bool) -> str:
    if not color or not style or not text:
        return text
    if style == _OUTCOMES:
        text = re.sub(r"ALLOW \d+", lambda m: f"{GREEN}{m.group(0)}{RESET}", text, count=1)
        return re.sub(r"BLOCK \d+", lambda m: f"{RED}{m.group(0)}{RESET}", text, count=1)
    return f"{style}{text}{RESET}"


def ansi_frame(lines: list[str]) -> str:
    """The escape sequence that redraws the screen with ``lines`` from the top left."""
    return "\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J"


# --- plain output and the summary ------------------------------------------------------------


def render_line(snap: Snapshot) -> str:
    """A plain status line for a pipe or a log."""
    top = ", ".join(f"{code} {count}" for code, count in snap.codes[:4])
    return f"demo: {rate_text(snap)}; {sent_text(snap)}; {outcome_text(snap)}" + (
        f"; top codes: {top}" if top else ""
    )


def story_updates(before: Snapshot | None, now: Snapshot) -> list[str]:
    """Lines for the story steps decided since ``before``: the step, then the explanation."""
    done_before = {line.event_id for line in (before.story if before else ()) if line.got}
    out: list[str] = []
    for line in now.story:
        if line.got is None or line.event_id in done_before:
            continue
        out.append(f"story {line.run}: {story_text(line)}")
        if line.explanation:
            out += ["    " + part for part in line.explanation.splitlines()]
    return out


def render_summary(snap: Snapshot, info: RunInfo) -> str:
    """The final summary: totals, by outcome, by reason code, and the story."""
    average = snap.decided / snap.elapsed_s if snap.elapsed_s > 0 else 0.0
    lines = ["sharing-guard demo: summary", f"  broker:    {info.broker}"]
    if info.note:
        lines.append(f"  note:      {info.note}")
    runs = len({line.run for line in snap.story})
    shown = latest_run(snap.story)
    earlier = [line for line in snap.story if line.got and not line.as_expected]
    earlier = [line for line in earlier if line not in shown]
    lines += [
        f"  topics:    {info.topics}",
        f"  elapsed:   {snap.elapsed_s:.1f} s at about {info.rate:g} events/s; "
        f"sent {snap.sent_transfers} transfers and {snap.sent_governance} governance events",
        f"  decided:   {snap.decided} transfers (average {average:.0f}/s, "
        f"peak {snap.peak_rate:.0f}/s); {snap.in_flight} undecided at the end",
        f"  resent:    {snap.duplicates} transfers sent again with an event id already "
        "decided (the simulated services' retries), each answered with its stored decision",
        f"  alerts:    {snap.alerts} received by the security team's webhook",
        "  outcomes:",
        f"    ALLOW {snap.outcome('ALLOW')}",
        f"    BLOCK {snap.outcome('BLOCK')}",
        "  by reason code:",
        *(f"    {code} {count}" for code, count in snap.codes),
        f"  story: {snap.story_done} of {len(snap.story)} steps as expected"
        + (f" over {runs} runs" if runs > 1 else "")
        + (f", {snap.story_failed} NOT as expected" if snap.story_failed else ""),
        *(f"    run {line.run}: {story_text(line)}" for line in earlier),
        *(f"    {story_text(line)}" for line in shown),
    ]
    return "\n".join(lines)
