"""The demo's live view and summary: pure functions from counts to text."""

import re

from sharing_guard.demo.tally import Snapshot, StoryLine
from sharing_guard.demo.view import (
    ALT_SCREEN_OFF,
    ALT_SCREEN_ON,
    RunInfo,
    ansi_frame,
    code_columns,
    latest_run,
    outcome_text,
    render_line,
    render_screen,
    render_summary,
    story_heading,
    story_text,
    story_updates,
    wrap,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
INFO = RunInfo(broker="127.0.0.1:19092 (already running)", topics="private set", rate=200)
EXPLAINED = (
    "evt-000042: BLOCK\n"
    "  - CONSENT_MISSING [C-MARKETING-CONSENT] The person had not given the needed consent.\n"
    "      C-MARKETING-CONSENT: Promotional offers go only to people who agreed beforehand.\n"
    "  policy p@1"
)


def ok(label: str, got: str, run: int = 1, event_id: str = "e1") -> StoryLine:
    return StoryLine(label, got, run, event_id, got=got, as_expected=True, explanation="x: y")


def snapshot(**fields: object) -> Snapshot:
    base: dict[str, object] = {
        "elapsed_s": 12.3,
        "sent_transfers": 120,
        "sent_governance": 30,
        "decided": 100,
        "duplicates": 2,
        "rate": 87.5,
        "peak_rate": 190.0,
        "outcomes": (("ALLOW", 75), ("BLOCK", 25)),
        "codes": (("PROCESSOR", 70), ("CONSENT_MISSING", 20), ("ORDER_NOT_APPROVED", 1)),
        "recent": (EXPLAINED,),
        "story": (
            ok("marketing with consent", "ALLOW PROCESSOR"),
            StoryLine("self-approved order", "BLOCK ORDER_NOT_APPROVED", 1, "e2"),
        ),
    }
    base.update(fields)
    return Snapshot(**base)  # type: ignore[arg-type]


def test_outcomes_with_shares() -> None:
    assert outcome_text(snapshot()) == "ALLOW 75 (75%)   BLOCK 25 (25%)"
    assert outcome_text(Snapshot(elapsed_s=0)) == "ALLOW 0 (-)   BLOCK 0 (-)"


def test_in_flight_counts_redeliveries_as_answered() -> None:
    assert snapshot().in_flight == 120 - 100 - 2
    assert snapshot(decided=130, duplicates=0).in_flight == 0


def test_codes_fill_columns_that_fit() -> None:
    codes = (("PROCESSOR", 70), ("CONSENT_MISSING", 20), ("ORDER", 3), ("CHILD_DATA", 1))
    wide = code_columns(codes, 100)
    assert len(wide) == 1
    assert wide[0].split() == [
        "PROCESSOR",
        "70",
        "CONSENT_MISSING",
        "20",
        "ORDER",
        "3",
        "CHILD_DATA",
        "1",
    ]
    narrow = code_columns(codes, 20)
    assert [row.split()[0] for row in narrow] == [
        "PROCESSOR",
        "CONSENT_MISSING",
        "ORDER",
        "CHILD_DATA",
    ]
    assert code_columns((), 80) == ["(none yet)"]


def test_story_lines_say_what_happened() -> None:
    waiting = StoryLine("quota", "BLOCK ORDER_QUOTA_EXHAUSTED", 1, "e9")
    assert story_text(waiting) == "[..] quota: waiting (expect BLOCK ORDER_QUOTA_EXHAUSTED)"
    assert story_text(ok("consent", "ALLOW PROCESSOR")) == "[ok] consent -> ALLOW PROCESSOR"
    wrong = StoryLine("vdd", "BLOCK VDD_EGRESS_FORBIDDEN", 1, "e5", got="ALLOW PROCESSOR")
    assert story_text(wrong) == "[!!] vdd -> ALLOW PROCESSOR (expected BLOCK VDD_EGRESS_FORBIDDEN)"


def test_story_heading_counts_the_latest_run_and_all_runs() -> None:
    lines = (ok("a", "ALLOW X", 1, "e1"), ok("a", "ALLOW X", 2, "e2"), StoryLine("b", "B", 2, "e3"))
    snap = snapshot(story=lines)
    assert latest_run(lines) == list(lines[1:])
    assert story_heading(snap) == "story (run 2: 1/2 as expected; all runs 2/3)"
    assert story_heading(snapshot(story=())) == "story"


def test_screen_shows_rate_outcomes_codes_story_and_explanations() -> None:
    lines = render_screen(snapshot(), INFO, width=120, height=60)
    text = "\n".join(lines)
    assert "88 decisions/s (peak 190)" in text
    assert "decided 100   in flight 18" in text
    assert "ALLOW 75 (75%)   BLOCK 25 (25%)" in text
    assert "PROCESSOR 70" in text
    assert "ORDER_NOT_APPROVED 1" in text
    assert "[ok] marketing with consent -> ALLOW PROCESSOR" in text
    assert "[..] self-approved order: waiting" in text
    assert "evt-000042: BLOCK" in text
    assert "CONSENT_MISSING [C-MARKETING-CONSENT]" in text
    assert not ANSI.search(text)


def test_screen_fits_the_terminal() -> None:
    info = RunInfo(broker="b" * 300, topics="t", rate=200, note="Tansu: memory only")
    for width, height in ((40, 12), (80, 24), (200, 50)):
        lines = render_screen(snapshot(), info, width=width, height=height)
        assert len(lines) <= height
        assert all(len(line) <= width for line in lines)
    small = render_screen(snapshot(), info, width=80, height=24)
    assert "note: Tansu: memory only" in small


def test_explanations_in_full_briefly_or_not_at_all() -> None:
    tall = "\n".join(render_screen(snapshot(), INFO, width=100, height=60))
    medium = "\n".join(render_screen(snapshot(), INFO, width=100, height=19))
    tiny = "\n".join(render_screen(snapshot(), INFO, width=100, height=17))
    assert "C-MARKETING-CONSENT: Promotional offers" in tall
    assert "policy p@1" in tall
    assert "evt-000042: BLOCK" in medium
    assert "- CONSENT_MISSING [C-MARKETING-CONSENT]" in medium
    assert "C-MARKETING-CONSENT: Promotional offers" not in medium
    assert "evt-000042" not in tiny


def test_a_classic_terminal_keeps_the_story_in_view() -> None:
    codes = tuple((f"CODE_{n:02d}", 100 - n) for n in range(22))
    story = tuple(
        ok(f"step {n}", "ALLOW X", 1, f"e{n}") if n < 7 else StoryLine(f"step {n}", "X", 1, f"e{n}")
        for n in range(9)
    )
    lines = render_screen(snapshot(codes=codes, story=story), INFO, width=80, height=24)
    text = "\n".join(lines)
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    assert re.search(r"\.\.\. and \d+ more", text)
    assert "[..] step 7: waiting" in text  # the first step still waiting is in view
    assert "step 8" not in text
    assert "story (run 1: 7/9 as expected)" in text


def test_colour_only_decorates() -> None:
    plain = render_screen(snapshot(), INFO, width=100, height=60)
    coloured = render_screen(snapshot(), INFO, width=100, height=60, color=True)
    assert [ANSI.sub("", line) for line in coloured] == plain
    assert any("\x1b[32mALLOW 75\x1b[0m" in line for line in coloured)
    assert any("\x1b[31mBLOCK 25\x1b[0m" in line for line in coloured)


def test_frame_redraws_from_the_top_and_clears_the_rest() -> None:
    frame = ansi_frame(["one", "two"])
    assert frame == "\x1b[Hone\x1b[K\ntwo\x1b[K\n\x1b[J"
    assert ALT_SCREEN_ON.startswith("\x1b[?1049h")
    assert ALT_SCREEN_OFF.endswith("\x1b[?1049l")


def test_wrap_keeps_the_indentation_of_each_line() -> None:
    wrapped = wrap("head\n    - a long reason " + "word " * 20, width=40)
    assert wrapped[0] == "  head"
    assert wrapped[1].startswith("      - a long reason")
    assert all(line.startswith("        ") for line in wrapped[2:])
    assert all(len(line) <= 40 for line in wrapped)


def test_plain_line_for_logs() -> None:
    line = render_line(snapshot(held_back=True))
    assert line.startswith("demo: 12 s   88 decisions/s")
    assert "(paused: the guard is behind)" in line
    assert "ALLOW 75 (75%)   BLOCK 25 (25%)" in line
    assert "top codes: PROCESSOR 70, CONSENT_MISSING 20, ORDER_NOT_APPROVED 1" in line


def test_story_updates_report_each_step_once_with_its_explanation() -> None:
    first = snapshot(story=(StoryLine("a", "ALLOW X", 1, "e1"),))
    decided = snapshot(story=(ok("a", "ALLOW X", 1, "e1"), StoryLine("b", "B", 1, "e2")))
    assert story_updates(None, first) == []
    assert story_updates(first, decided) == ["story 1: [ok] a -> ALLOW X", "    x: y"]
    assert story_updates(decided, decided) == []
    again = snapshot(story=(*decided.story, ok("a", "ALLOW X", 2, "e3")))
    assert story_updates(decided, again) == ["story 2: [ok] a -> ALLOW X", "    x: y"]


def test_summary_lists_outcomes_codes_and_the_story() -> None:
    summary = render_summary(snapshot(), RunInfo("kafka", "defaults", 200, note="memory only"))
    lines = summary.splitlines()
    assert lines[0] == "sharing-guard demo: summary"
    assert "  note:      memory only" in lines
    assert "    ALLOW 75" in lines
    assert "    BLOCK 25" in lines
    codes = lines[lines.index("  by reason code:") + 1 :]
    assert codes[:3] == ["    PROCESSOR 70", "    CONSENT_MISSING 20", "    ORDER_NOT_APPROVED 1"]
    assert "  story: 1 of 2 steps as expected" in lines
    assert "    [..] self-approved order: waiting (expect BLOCK ORDER_NOT_APPROVED)" in lines
    assert "paused" not in summary


def test_summary_names_failed_steps_of_earlier_runs() -> None:
    failed = StoryLine("vdd", "BLOCK VDD_EGRESS_FORBIDDEN", 1, "e1", got="ALLOW PROCESSOR")
    snap = snapshot(story=(failed, ok("vdd", "BLOCK VDD_EGRESS_FORBIDDEN", 2, "e2")))
    summary = render_summary(snap, INFO)
    assert "story: 1 of 2 steps as expected over 2 runs, 1 NOT as expected" in summary
    assert "run 1: [!!] vdd -> ALLOW PROCESSOR (expected BLOCK VDD_EGRESS_FORBIDDEN)" in summary
