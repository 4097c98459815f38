"""The security console in Chromium, against the real services: ``audit-sink serve`` over a
PostgreSQL trail filled by the real ingest from a private topic of the real broker
(:mod:`security_console_support`).

A reviewer signs in with the token and the published vkey, finds the blocked transfer of
Virtual Drive Data, reads its reasons in words and sees its inclusion proof verified by the
browser (WebCrypto); the browser-side verifier accepts a real bundle and rejects every
tampered one; after the store is tampered with, "Verify now" names the entry.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_sink.checkpoint import NoteSigner
from audit_sink.words import CLAUSE_WORDS, REASON_WORDS
from playwright.sync_api import expect
from security_console_support import (
    ERASED_EVENT,
    VDD_ACCOUNT,
    VDD_ALLOWED_EVENT,
    VDD_EVENT,
    VDD_TRACE,
    ConsoleService,
    console_service,
)
from sharing_guard.contract.enums import Clause, ReasonCode

pytestmark = [pytest.mark.browser, pytest.mark.kafka, pytest.mark.postgres]

PG_DSN = os.environ.get(
    "SHARING_GUARD_TEST_PG_DSN",
    "postgresql://sharing_guard:"
    + os.environ.get("PGPASSWORD_TEST", "sharing_guard")
    + "@127.0.0.1:5432/sharing_guard_test",
)
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
PIN_LABEL = "Published verifier key (vkey), your pin"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleService]:
    """One populated service for the tests that do not tamper with it."""
    with console_service(
        tmp_path_factory.mktemp("console"), pg_dsn=PG_DSN, kafka_bootstrap=KAFKA
    ) as running:
        yield running


def call(service: ConsoleService, path: str, token: str | None) -> tuple[int, bytes]:
    """A plain HTTP call to the API (urllib), with or without the token."""
    request = urllib.request.Request(service.base + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def watch(page: Any) -> dict[str, list[str]]:
    """Every request URL and every console error of ``page`` (a CSP or Trusted Types
    violation shows as one)."""
    seen: dict[str, list[str]] = {"urls": [], "errors": []}
    page.on("request", lambda request: seen["urls"].append(request.url))
    page.on(
        "console",
        lambda message: seen["errors"].append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    return seen


def sign_in(page: Any, service: ConsoleService, *, pin: str | None) -> None:
    page.goto(service.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API token").fill(service.token)
    page.get_by_label(PIN_LABEL).fill(pin or "")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Status", exact=True)).to_be_visible()


def test_without_a_token_the_page_asks_for_one_and_the_api_refuses(
    page: Any, service: ConsoleService
) -> None:
    seen = watch(page)
    page.goto(service.url)

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("API token")).to_be_focused()
    expect(page.get_by_role("heading", name="Search decisions")).to_be_hidden()
    assert call(service, "/status", None)[0] == 401
    assert call(service, "/entries", None)[0] == 401
    in_page = page.evaluate("fetch('../status').then((r) => r.status)")
    assert in_page == 401
    page.get_by_label("API token").fill("x" * 40)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("refused")
    assert page.evaluate("sessionStorage.length") == 0
    assert not [e for e in seen["errors"] if "401" not in e]


def test_a_reviewer_finds_the_blocked_vdd_transfer_and_the_browser_verifies_its_proof(
    page: Any, service: ConsoleService
) -> None:
    seen = watch(page)
    sign_in(page, service, pin=service.vkey)

    expect(page.locator("#key-note")).to_contain_text("your pinned key")
    page.get_by_label("Reason code").select_option("VDD_EGRESS_FORBIDDEN")
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.get_by_role("region", name="Search results")
    expect(results.get_by_role("button", name=f"Open {VDD_EVENT}")).to_be_visible()
    expect(results.get_by_role("row")).not_to_have_count(1)
    for row in results.get_by_role("row").all()[1:]:
        expect(row).to_contain_text("VDD_EGRESS_FORBIDDEN")
        expect(row).to_contain_text("BLOCK")

    results.get_by_role("button", name=f"Open {VDD_EVENT}").click()

    detail = page.get_by_role("region", name=f"Decision {VDD_EVENT}")
    expect(detail.get_by_role("heading", name=f"Decision {VDD_EVENT}")).to_be_focused()
    reasons = detail.get_by_role("list")
    expect(reasons).to_contain_text("VDD_EGRESS_FORBIDDEN")
    expect(reasons).to_contain_text("C-VDD-NO-SHARING")
    expect(reasons).to_contain_text(REASON_WORDS[ReasonCode.VDD_EGRESS_FORBIDDEN])
    expect(reasons).to_contain_text(CLAUSE_WORDS[Clause.VDD_NO_SHARING])
    expect(detail).to_contain_text(VDD_ACCOUNT)
    expect(detail).to_contain_text(VDD_TRACE)  # the trace the guard's record carried
    proof = detail.get_by_role("status")
    expect(proof).to_contain_text("Proof verified in this browser against checkpoint")
    key_id = service.vkey.split("+")[1]
    expect(proof).to_contain_text(f"signed by {service.origin}+{key_id}")

    # The same reviewer searches by account: the id goes in a body, never in a URL.
    page.get_by_label("Reason code").select_option("")
    page.get_by_label("Account").fill(VDD_ACCOUNT)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(results.get_by_role("button", name=f"Open {VDD_ALLOWED_EVENT}")).to_be_visible()
    expect(results.get_by_role("row")).to_have_count(3)  # the header and the two transfers
    assert not [u for u in seen["urls"] if VDD_ACCOUNT in u]
    assert VDD_ACCOUNT not in service.log_path.read_text(errors="replace")
    assert service.token not in service.log_path.read_text(errors="replace")
    assert page.evaluate("sessionStorage.getItem('audit-console.token')") == service.token
    assert service.token not in json.dumps(page.evaluate("Object.entries(localStorage)"))
    assert page.context.cookies() == []
    assert not seen["errors"], seen["errors"]


def test_without_a_pin_the_page_says_the_key_is_the_servers_claim(
    page: Any, service: ConsoleService
) -> None:
    sign_in(page, service, pin=None)

    expect(page.locator("#key-note")).to_contain_text("the server's claim")
    page.get_by_label("Outcome").select_option("BLOCK")
    page.get_by_label("Clause").select_option("C-VDD-NO-SHARING")
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_role("button", name=f"Open {VDD_EVENT}").click()
    proof = page.locator("#proof")
    expect(proof).to_contain_text("Proof verified in this browser")
    expect(proof).to_contain_text("the server's claim, not an independent pin")


def test_erased_entries_show_as_erased_and_still_prove(page: Any, service: ConsoleService) -> None:
    sign_in(page, service, pin=service.vkey)
    page.get_by_label("Recipient").fill("rcp-archive-co")
    page.get_by_role("button", name="Search", exact=True).click()

    row = page.get_by_role("row").filter(
        has=page.get_by_role("button", name=f"Open {ERASED_EVENT}")
    )
    expect(row).to_contain_text("erased")
    row.get_by_role("button").click()
    expect(page.locator("#detail")).to_contain_text("erased: the subject's key was destroyed")
    expect(page.locator("#proof")).to_contain_text("Proof verified in this browser")


def test_status_report_and_export_at_400_pixels(page: Any, service: ConsoleService) -> None:
    page.set_viewport_size({"width": 400, "height": 800})
    sign_in(page, service, pin=service.vkey)

    status = page.get_by_role("region", name="Status")
    expect(status).to_contain_text("Entries")
    # The trail's age: the newest record its latest checkpoint covers, and how long ago.
    newest = re.compile(r"Newest record covered by a checkpoint.*\(\d+ days ago\)")
    expect(status).to_contain_text(newest)
    expect(page.get_by_role("region", name="Member logs")).to_contain_text("log")
    page.get_by_role("button", name="Verify now").click()
    expect(page.locator("#verification")).to_contain_text("Verified intact")
    page.get_by_label("From (your local time)").nth(1).fill("2026-10-01T00:00:00")
    page.get_by_label("To (your local time, excluded)").nth(1).fill("2026-12-01T00:00:00")
    page.get_by_role("button", name="Show report").click()
    expect(page.locator("#report-out")).to_contain_text("Disclosures")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download export (tar.gz)").click()
    assert download.value.suggested_filename.startswith("audit-export-")
    assert download.value.suggested_filename.endswith(".tar.gz")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.keyboard.press("Tab")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none"


# -- the browser's verifier, cross-checked --------------------------------------------------------

VERIFY = """async ([bundle, vkey, shard, eventId, index]) => {
  const m = await import('/console/verify.js');
  try {
    const r = await m.verifyProof({ bundle, vkey, shard, eventId, index });
    return { ok: true, size: String(r.checkpointSize), key: r.keyName, index: String(r.index) };
  } catch (e) {
    return { ok: false, step: e.step ?? null, message: String(e.message) };
  }
}"""


def _flip_b64(line: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(line))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode("ascii")


def tampered(bundle: str) -> dict[str, str]:
    """The real bundle with one thing changed each."""
    head, _, note = bundle.partition("\n\n")
    lines = head.split("\n")
    extra, index, *hashes = lines[1:]
    text, _, signatures = note.rpartition("\n\n")
    dash, name, blob = signatures.strip("\n").split(" ")
    n = int(index.split(" ")[1])

    def join(new_lines: list[str], new_note: str = note) -> str:
        return "\n".join(new_lines) + "\n\n" + new_note

    bad_sig = f"{text}\n\n{dash} {name} {_flip_b64(blob, 10)}\n"
    return {
        "proof hash": join([lines[0], extra, index, _flip_b64(hashes[0], 5), *hashes[1:]]),
        "signature": join(lines, bad_sig),
        "leaf": join([lines[0], "extra " + _flip_b64(extra[6:], 100), index, *hashes]),
        "index": join([lines[0], extra, f"index {n + 1}", *hashes]),
    }


def test_the_browser_verifier_accepts_a_real_bundle_and_rejects_tampered_ones(
    page: Any, service: ConsoleService
) -> None:
    status, raw = call(service, f"/proof/{VDD_EVENT}", service.token)
    assert status == 200
    bundle = raw.decode("utf-8")
    index = service.index_of(VDD_EVENT)
    page.goto(service.url)

    good = page.evaluate(VERIFY, [bundle, service.vkey, None, VDD_EVENT, index])
    assert good["ok"] is True, good
    key_id = service.vkey.split("+")[1]
    assert (good["key"], good["index"]) == (f"{service.origin}+{key_id}", str(index))

    cases = tampered(bundle)
    expected = {"proof hash": "inclusion", "signature": "signature", "leaf": "inclusion"}
    for name, text in cases.items():
        result = page.evaluate(VERIFY, [text, service.vkey, None, VDD_EVENT, None])
        assert result["ok"] is False, name
        if name in expected:
            assert result["step"] == expected[name], (name, result)
    other_key = NoteSigner.generate(service.origin).verifier().vkey
    other_origin = NoteSigner.generate(service.origin + "-other").verifier().vkey
    for vkey, shard in ((other_key, None), (other_origin, None), (service.vkey, 0)):
        result = page.evaluate(VERIFY, [bundle, vkey, shard, VDD_EVENT, None])
        assert (result["ok"], result["step"]) == (False, "signature"), result
        assert "not signed by the pinned key" in result["message"]
    wrong_event = page.evaluate(VERIFY, [bundle, service.vkey, None, VDD_ALLOWED_EVENT, None])
    assert (wrong_event["ok"], wrong_event["step"]) == (False, "leaf")
    wrong_index = page.evaluate(VERIFY, [bundle, service.vkey, None, VDD_EVENT, index + 1])
    assert (wrong_index["ok"], wrong_index["step"]) == (False, "leaf")
    bad_vkey = service.vkey[:-4] + ("AAAA" if not service.vkey.endswith("AAAA") else "BBBB")
    malformed = page.evaluate(VERIFY, [bundle, bad_vkey, None, VDD_EVENT, None])
    assert (malformed["ok"], malformed["step"]) == (False, "key")


# -- tampering, seen by "Verify now" ---------------------------------------------------------


def test_after_tampering_verify_now_shows_the_failure_naming_the_entry(
    page: Any, tmp_path: Path
) -> None:
    with console_service(tmp_path, pg_dsn=PG_DSN, kafka_bootstrap=KAFKA, samples=12) as own:
        sign_in(page, own, pin=own.vkey)
        page.get_by_role("button", name="Verify now").click()
        verification = page.locator("#verification")
        expect(verification).to_contain_text("Verified intact")

        index = own.index_of(VDD_EVENT)
        own.flip_leaf_byte(index)
        page.get_by_role("button", name="Verify now").click()

        expect(verification).to_contain_text("Verification FAILED")
        expect(verification).to_contain_text(f"entry {index}")
        expect(verification).to_contain_text("leaf-hash-mismatch")
        expect(verification).to_have_class("verification bad")
        expect(page.locator("#announce")).to_contain_text("Verification FAILED")

        page.get_by_label("Reason code").select_option("VDD_EGRESS_FORBIDDEN")
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_role("button", name=f"Open {VDD_EVENT}").click()
        expect(page.locator("#proof")).to_contain_text("Proof NOT verified")
