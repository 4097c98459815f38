"""Policy versions in the worker: promotions checked, recorded and read back by any worker;
shadow agreement counted; the promotion command's inputs checked before anything is sent.

The Kafka side (two workers switching at one position, a refused promotion dead-lettered,
shadow mode on live traffic) is in tests/integration/test_policy_change.py.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sharing_guard.contract.decision import Decision
from sharing_guard.contract.policy_events import MAX_WHAT_IF_CHARS, PolicyPromoted
from sharing_guard.core.engine import reason
from sharing_guard.core.policy import PolicyError, check_promotion, parse_policy
from sharing_guard.policy_file import load_policy
from sharing_guard.promotion import PromotionError, run_policy, what_if_summary
from sharing_guard.stream.batch import Batch
from sharing_guard.stream.policies import PolicyBook, refusal
from sharing_guard.stream.store import LocalStore
from sharing_guard.stream.telemetry import build_telemetry

BUNDLED = Path(__file__).resolve().parents[2] / "services" / "sharing_guard" / "policy.toml"
WHERE = ("app-recipients-state-changelog", 0)


def document(age: int = 16) -> str:
    return BUNDLED.read_text().replace("child_age_limit = 13", f"child_age_limit = {age}")


def promotion(text: str, version: str | None = None, name: str | None = None) -> PolicyPromoted:
    parsed = parse_policy(text)
    return PolicyPromoted(
        event_id="policy-1",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        policy_name=name or parsed.name,
        version=version or parsed.version,
        document=text,
        promoted_by="officer.ada",
        what_if="{}",
    )


def flush(batch: Batch, store: LocalStore) -> None:
    """What the loop does once the changelog acknowledged the batch's writes."""
    for (topic, part), writes in batch.changes.items():
        start = store.position(topic, part) or 0
        store.apply(topic, part, start + len(writes), writes, 0)


# --- checking a promotion ------------------------------------------------------------------


def test_a_promotion_is_checked_against_its_document() -> None:
    assert check_promotion(promotion(document())).child_age_limit == 16


def test_a_promotion_claiming_another_version_is_refused_with_both_named() -> None:
    claimed = load_policy().version
    with pytest.raises(PolicyError) as refused:
        check_promotion(promotion(document(), version=claimed))
    message = refusal(refused.value)
    assert message.startswith("policy promotion refused: ")
    assert claimed in message
    assert parse_policy(document()).version in message


def test_a_promotion_under_another_name_is_refused() -> None:
    with pytest.raises(PolicyError, match="named cloudsigma-privacy, not other"):
        check_promotion(promotion(document(), name="other"))


def test_an_invalid_document_is_refused_with_the_field_named() -> None:
    broken = document().replace("child_age_limit = 16", "child_age_limit = -1")
    event = PolicyPromoted(
        event_id="p",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        policy_name="cloudsigma-privacy",
        version="cloudsigma-privacy@0000000000000000",
        document=broken,
        promoted_by="officer.ada",
        what_if="{}",
    )
    with pytest.raises(PolicyError, match="child_age_limit"):
        check_promotion(event)


# --- the book of versions --------------------------------------------------------------------


def test_before_any_promotion_the_file_policy_is_in_force(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3")
    book = PolicyBook(load_policy(), WHERE)
    batch = Batch(store)
    assert book.active(batch) is book.initial
    assert book.applied(batch) == 0
    assert book.version(batch, "cloudsigma-privacy@ffffffffffffffff") is None


def test_a_promotion_is_in_force_for_the_batch_and_for_every_other_worker(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "s.sqlite3")
    owner = PolicyBook(load_policy(), WHERE)
    batch = Batch(store)
    event = promotion(document())
    owner.promote(event, check_promotion(event), batch)
    owner.mark_applied(1, batch)
    assert owner.active(batch).version == event.version  # the same batch sees it
    flush(batch, store)

    other = PolicyBook(load_policy(), WHERE)  # another worker following the changelog
    later = Batch(store)
    assert other.active(later).version == event.version
    assert other.active(later).child_age_limit == 16
    assert other.applied(later) == 1
    assert other.version(later, load_policy().version) is other.initial


def test_applied_never_goes_back(tmp_path: Path) -> None:
    book = PolicyBook(load_policy(), WHERE)
    batch = Batch(LocalStore(tmp_path / "s.sqlite3"))
    book.mark_applied(5, batch)
    book.mark_applied(3, batch)
    assert book.applied(batch) == 5


def test_a_rollback_is_a_promotion_of_the_earlier_document(tmp_path: Path) -> None:
    book = PolicyBook(load_policy(), WHERE)
    batch = Batch(LocalStore(tmp_path / "s.sqlite3"))
    stricter, earlier = promotion(document()), promotion(BUNDLED.read_text())
    book.promote(stricter, check_promotion(stricter), batch)
    book.promote(earlier, check_promotion(earlier), batch)
    assert book.active(batch).version == load_policy().version
    assert book.version(batch, stricter.version) is not None  # still known: order stage


def test_the_version_enforced_is_noted_once_per_change(tmp_path: Path) -> None:
    book = PolicyBook(load_policy(), WHERE)
    assert not book.note_enforced(load_policy())
    assert book.note_enforced(parse_policy(document()))
    assert not book.note_enforced(parse_policy(document()))
    assert book.enforced == parse_policy(document()).version


# --- shadow agreement ------------------------------------------------------------------------


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple[Any, ...], float]:
    data = reader.get_metrics_data()
    found: dict[tuple[Any, ...], float] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[tuple(sorted(point.attributes.items()))] = point.value
    return found


def decision(outcome: str, *codes: str, version: str = "v") -> Decision:
    return Decision.model_validate(
        {
            "event_id": "e",
            "outcome": outcome,
            "reasons": [reason(code).model_dump() for code in codes],  # type: ignore[arg-type]
            "policy_version": version,
        }
    )


def test_shadow_agreement_is_counted_by_outcome_and_disagreeing_codes() -> None:
    reader = InMemoryMetricReader()
    telemetry = build_telemetry([reader])
    allow = decision("ALLOW", "BUSINESS_TRANSFER")
    assert telemetry.record_shadow(allow, decision("ALLOW", "BUSINESS_TRANSFER", version="w"))
    assert not telemetry.record_shadow(allow, decision("BLOCK", "CHILD_DATA"))
    both = decision("BLOCK", "CHILD_DATA", "PROCESSING_RESTRICTED")
    assert not telemetry.record_shadow(both, decision("BLOCK", "PROCESSING_RESTRICTED"))
    counted = points(reader, "sharing_guard_shadow_decisions")
    assert counted == {
        (("agreement", "agree"), ("enforced_outcome", "ALLOW"), ("shadow_outcome", "ALLOW")): 1,
        (("agreement", "disagree"), ("enforced_outcome", "ALLOW"), ("shadow_outcome", "BLOCK")): 1,
        (("agreement", "disagree"), ("enforced_outcome", "BLOCK"), ("shadow_outcome", "BLOCK")): 1,
    }
    assert points(reader, "sharing_guard_shadow_disagreement_reasons") == {
        (("code", "BUSINESS_TRANSFER"), ("only_in", "enforced")): 1,
        (("code", "CHILD_DATA"), ("only_in", "shadow")): 1,
        (("code", "CHILD_DATA"), ("only_in", "enforced")): 1,
    }


def test_the_policy_gauge_names_the_enforced_and_shadow_versions() -> None:
    reader = InMemoryMetricReader()
    telemetry = build_telemetry([reader])
    telemetry.policy_versions.update(enforced="a@1", shadow="b@2")
    assert points(reader, "sharing_guard_policy") == {
        (("role", "enforced"), ("version", "a@1")): 1,
        (("role", "shadow"), ("version", "b@2")): 1,
    }


# --- the promote command's inputs -------------------------------------------------------------


def test_without_a_report_the_promotion_says_none_was_given() -> None:
    assert json.loads(what_if_summary(None)) == {"what_if": "none given"}


def test_a_report_keeps_its_summary_and_versions_only(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(
        json.dumps(
            {
                "summary": {"changed": 3},
                "candidate_version": "c@1",
                "groups": [{"examples": ["e1"]}],
            }
        )
    )
    assert json.loads(what_if_summary(report)) == {
        "summary": {"changed": 3},
        "candidate_version": "c@1",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a JSON what-if report"),
        ('{"groups": []}', "no 'summary' object"),
        (json.dumps({"summary": {"x": "y" * MAX_WHAT_IF_CHARS}}), "over"),
    ],
)
def test_a_bad_report_refuses_the_promotion(tmp_path: Path, content: str, message: str) -> None:
    report = tmp_path / "r.json"
    report.write_text(content)
    with pytest.raises(PromotionError, match=message):
        what_if_summary(report)


def test_policy_check_names_the_version_or_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(document())
    bad.write_text(document().replace("child_age_limit = 16", "child_age_limit = 200"))
    assert run_policy(argparse.Namespace(policy_command="check", file=good)) == 0
    assert parse_policy(document()).version in capsys.readouterr().out
    assert run_policy(argparse.Namespace(policy_command="check", file=bad)) == 2
    assert "child_age_limit" in capsys.readouterr().err


def test_promote_refuses_an_invalid_officer_id_before_reaching_the_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(document())
    args = argparse.Namespace(
        policy_command="promote", file=good, by="ada\u202e", what_if=None, no_what_if=True
    )
    assert run_policy(args) == 2
    assert "officer id" in capsys.readouterr().err
