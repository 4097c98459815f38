"""The legal officers' console in Debian's Chromium, against the real order service process
(``sharing-guard orders serve``) on the real broker.

The story of the four-eyes rule as officers see it: officer A signs in with her token,
registers an order through the form and sees it pending approval, her own "Approve"
disabled with the reason next to it, and the server's 409 when she approves it anyway;
officer B (another browser context) approves it and sees it in force with none of its
disclosures used; revoking it with a reason shows it revoked. Also: nothing without a
token, field errors next to their fields, sign-out forgets the token, no cookie and no
storage but this tab's, no CSP or Trusted Types violation, and a 400px-wide screen.
Assertions go through roles and labels, so they check that the labels exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from orders_harness import (
    OFFICER_A,
    OFFICER_B,
    REVIEWER,
    ConsoleService,
    console_service,
    kafka_or_skip,
    seed_orders,
)
from orders_harness import sign_in as harness_sign_in
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

FOUR_EYES = "You registered this order; a second officer must approve it"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleService]:
    """One order service for the module, on private topics."""
    with console_service(kafka_or_skip(), tmp_path_factory.mktemp("console")) as running:
        yield running


class Watched:
    """A page with its CSP, Trusted Types and script errors collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.violations: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.violations.append(f"page error: {error}"))

    def _console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Trusted Type" in text or "TrustedHTML" in text:
            self.violations.append(text)

    def clean(self) -> None:
        assert self.violations == []


def _watched(context: Any) -> Watched:
    return Watched(context.new_page())


def sign_in(page: Any, service: ConsoleService, officer: str) -> None:
    """Sign in as ``officer`` (the keyboard's Enter submits) and check who is shown."""
    harness_sign_in(page, service, officer)
    role = "security reviewer" if officer == REVIEWER else "legal officer"
    expect(page.get_by_text(f"Signed in as {officer} ({role})", exact=True)).to_be_visible()


def order_card(page: Any, ref: str) -> Any:
    return page.get_by_role("article", name=ref, exact=True)


def _local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def test_an_unauthenticated_visit_shows_the_sign_in_and_no_orders(
    service: ConsoleService, page: Any
) -> None:
    watched = Watched(page)
    response = page.goto(service.console_url)
    assert response.status == 200
    assert "require-trusted-types-for 'script'" in response.headers["content-security-policy"]
    expect(page.get_by_role("heading", name="Legal orders console", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Bearer token")).to_be_visible()
    expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_hidden()
    expect(page.get_by_role("article")).to_have_count(0)
    # The data stays behind the token.
    assert httpx.get(f"{service.url}/orders", timeout=10).status_code == 401
    # A wrong token is refused with the service's reason, and nothing is kept.
    page.get_by_label("Bearer token").fill("sgo_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("status")).to_contain_text("unknown token")
    expect(page.get_by_label("Bearer token")).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("sessionStorage.length") == 0
    # /console without the slash leads to the page.
    page.goto(f"{service.url}/console")
    assert page.url == service.console_url
    watched.clean()


def test_four_eyes_from_registration_to_revocation(  # noqa: PLR0915 (one story)
    service: ConsoleService, browser: Any, page: Any
) -> None:
    anna = Watched(page)
    sign_in(page, service, OFFICER_A)
    ref = f"ZH/2026/{datetime.now().strftime('%H%M%S%f')}"
    now = datetime.now()

    # Officer A registers an order through the form.
    page.get_by_label("Order reference (optional: the authority's case number)").fill(ref)
    page.get_by_label("Type of order").select_option(label="Court order")
    page.get_by_label("Issuing authority").fill("Obergericht des Kantons Zürich")
    page.get_by_label("Jurisdiction (two-letter country code, e.g. CH)").fill("CH")
    page.get_by_label("Receiving agency (recipient id)").fill("police-zh")
    page.get_by_label("Account ids (one per line)").fill("acct-console-1\nacct-console-2")
    page.get_by_role("group", name="Data categories").get_by_label("Virtual drive data").check()
    page.get_by_label("Valid from").fill(_local(now - timedelta(hours=1)))
    page.get_by_label("Valid until").fill(_local(now + timedelta(days=10)))
    page.get_by_label("Maximum disclosures (leave empty for no limit)").fill("3")
    page.get_by_role("button", name="Register order").click()
    expect(page.get_by_role("status")).to_contain_text(f"Order {ref} registered")

    # She sees it pending approval, and her own approval is disabled, the reason next to it.
    card = order_card(page, ref)
    expect(card).to_contain_text("Pending approval")
    expect(card).to_contain_text("0 of 3 disclosures used")
    expect(card).to_contain_text("acct-console-1, acct-console-2")
    approve = card.get_by_role("button", name=f"Approve {ref}")
    expect(approve).to_be_disabled()
    expect(card.get_by_text(FOUR_EYES)).to_be_visible()
    expect(approve).to_have_accessible_description(FOUR_EYES)

    # Approving anyway: the server refuses (409), and the page shows its message.
    answer = page.evaluate(
        """async (ref) => {
            const token = sessionStorage.getItem("sharing-guard.orders.token");
            const response = await fetch("../orders/" + encodeURIComponent(ref) + "/approve", {
                method: "POST", headers: {Authorization: "Bearer " + token}});
            return {status: response.status, body: await response.json()};
        }""",
        ref,
    )
    assert answer["status"] == 409
    assert "four eyes" in answer["body"]["detail"]
    approve.evaluate("button => { button.disabled = false; }")
    approve.click()
    expect(page.get_by_role("status")).to_contain_text(
        f"Approving order {ref} was refused (409): four eyes"
    )
    expect(order_card(page, ref)).to_contain_text("Pending approval")
    # The token is in this tab's sessionStorage only: no cookie, nothing in localStorage.
    assert page.context.cookies() == []
    assert page.evaluate("localStorage.length") == 0
    assert ref not in page.url
    assert "acct" not in page.url

    # Officer B, in a browser of his own, approves it: in force, no disclosure used yet.
    bruno_context = browser.new_context(viewport={"width": 1024, "height": 900})
    bruno_context.set_default_timeout(15_000)
    try:
        bruno = _watched(bruno_context)
        sign_in(bruno.page, service, OFFICER_B)
        card_b = order_card(bruno.page, ref)
        expect(card_b).to_contain_text("Pending approval")
        expect(card_b.get_by_text(FOUR_EYES)).to_have_count(0)
        card_b.get_by_role("button", name=f"Approve {ref}").click()
        expect(bruno.page.get_by_role("status")).to_contain_text(f"Order {ref} approved")
        card_b = order_card(bruno.page, ref)
        expect(card_b).to_contain_text("In force")
        expect(card_b).to_contain_text("0 of 3 disclosures used")
        expect(card_b).to_contain_text(f"by {OFFICER_B}")
        expect(card_b.get_by_role("button", name=f"Approve {ref}")).to_have_count(0)

        # He revokes it with a reason; an empty reason is refused next to its field first.
        card_b.get_by_role("button", name=f"Revoke… {ref}").click()
        reason = card_b.get_by_label(f"Reason for revoking {ref}")
        expect(reason).to_be_focused()
        card_b.get_by_role("button", name="Revoke order").click()
        expect(reason).to_have_attribute("aria-invalid", "true")
        expect(bruno.page.get_by_role("status")).to_contain_text(
            f"Revoking order {ref} was refused (422)"
        )
        reason.fill("order lifted by the court")
        card_b.get_by_role("button", name="Revoke order").click()
        expect(bruno.page.get_by_role("status")).to_contain_text(f"Order {ref} revoked")
        card_b = order_card(bruno.page, ref)
        expect(card_b).to_contain_text("Revoked")
        expect(card_b).to_contain_text("order lifted by the court")
        expect(card_b.get_by_role("button", name=f"Revoke… {ref}")).to_have_count(0)
        bruno.clean()
    finally:
        bruno_context.close()

    # A sees the revocation after a refresh; signing out forgets the token.
    page.get_by_role("button", name="Refresh").click()
    expect(order_card(page, ref)).to_contain_text("Revoked")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("Signed out")
    expect(page.get_by_role("article")).to_have_count(0)
    expect(page.get_by_label("Bearer token")).to_be_focused()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    anna.clean()
    log = service.log.read_text()
    assert "acct-console-1" not in log
    assert not any(token in log for token in service.tokens.values())


def test_each_invalid_field_is_named_next_to_it(service: ConsoleService, page: Any) -> None:
    watched = Watched(page)
    sign_in(page, service, OFFICER_A)
    before = len(service.call(OFFICER_A, "GET", "/orders").json())
    page.get_by_label("Jurisdiction (two-letter country code, e.g. CH)").fill("ch")
    page.get_by_role("button", name="Register order").click()
    expect(page.get_by_role("status")).to_contain_text("The order was not registered")
    for label in (
        "Issuing authority",
        "Jurisdiction (two-letter country code, e.g. CH)",
        "Receiving agency (recipient id)",
        "Account ids (one per line)",
        "Valid from",
        "Valid until",
    ):
        field = page.get_by_label(label, exact=True)
        expect(field).to_have_attribute("aria-invalid", "true")
        description = field.evaluate(
            "input => document.getElementById(input.getAttribute('aria-describedby')).textContent"
        )
        assert description, label
    expect(page.locator("#e-jurisdiction")).to_contain_text("pattern")
    expect(page.locator("#e-data_categories")).to_be_visible()
    assert len(service.call(OFFICER_A, "GET", "/orders").json()) == before
    watched.clean()


def test_orders_in_every_state_on_a_narrow_screen(service: ConsoleService, browser: Any) -> None:
    """Seeded orders (the screenshots' state) at 400px: no horizontal scrolling, each
    state in words, the quotas; a security reviewer may read but sees no change buttons."""
    refs = seed_orders(service)
    context = browser.new_context(viewport={"width": 400, "height": 900})
    context.set_default_timeout(15_000)
    try:
        watched = _watched(context)
        page = watched.page
        sign_in(page, service, OFFICER_A)
        expected = {
            "pending": ("Pending approval", "0 of 2 disclosures used"),
            "pending_other": ("Pending approval", "0 of 4 disclosures used"),
            "in_force": ("In force", "2 of 5 disclosures used"),
            "no_limit": ("In force", "1 disclosure so far, no limit"),
            "exhausted": ("Exhausted", "1 of 1 disclosures used"),
            "revoked": ("Revoked", "0 of 3 disclosures used"),
            "expired": ("Expired", "0 of 4 disclosures used"),
        }
        for name, texts in expected.items():
            for text in texts:
                expect(order_card(page, refs[name])).to_contain_text(text)
        expect(order_card(page, refs["pending"]).get_by_text(FOUR_EYES)).to_be_visible()
        expect(
            order_card(page, refs["pending_other"]).get_by_role(
                "button", name=re.compile("^Approve")
            )
        ).to_be_enabled()
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width
        # The disclosures of an order, on demand.
        card = order_card(page, refs["in_force"])
        card.get_by_role("button", name=re.compile("^Show disclosures")).click()
        expect(card.get_by_role("listitem")).to_have_count(2)
        # Filtering by state uses the service's state names.
        page.get_by_label("Show", exact=True).select_option("EXHAUSTED")
        expect(page.get_by_role("article")).to_have_count(1)
        expect(order_card(page, refs["exhausted"])).to_be_visible()
        page.get_by_label("Show", exact=True).select_option("")
        watched.clean()

        # Keyboard: Tab moves on to the next control, which shows a focus ring.
        page.get_by_label("Show", exact=True).focus()
        page.keyboard.press("Tab")
        refresh = page.get_by_role("button", name="Refresh")
        expect(refresh).to_be_focused()
        ring = refresh.evaluate(
            "b => [getComputedStyle(b).outlineStyle, getComputedStyle(b).outlineWidth]"
        )
        assert ring == ["solid", "3px"], ring
    finally:
        context.close()

    reviewer_context = browser.new_context(viewport={"width": 800, "height": 900})
    reviewer_context.set_default_timeout(15_000)
    try:
        page = reviewer_context.new_page()
        page.goto(service.console_url)
        page.get_by_label("Bearer token").fill(service.tokens[REVIEWER])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as reviewer-rita (security reviewer)")).to_be_visible()
        expect(order_card(page, refs["pending_other"])).to_contain_text("Pending approval")
        expect(page.get_by_role("button", name=re.compile("^(Approve|Revoke)"))).to_have_count(0)
        expect(page.get_by_role("heading", name="Register an order")).to_be_hidden()
    finally:
        reviewer_context.close()
