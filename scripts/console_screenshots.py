"""Screenshots of the two consoles for the docs (docs/img/*.png), from the real services.

    make services && .venv/bin/python scripts/console_screenshots.py

Starts what the browser tests start (tests/browser/security_console_support.py: the audit
API on a trail ingested from a private topic into PostgreSQL; tests/integration/
orders_harness.py: the order service with orders in every state), drives Debian's Chromium
(scripts/chromium.sh) through the same steps a reviewer and an officer take, and writes:

* docs/img/security-console.png: the blocked Virtual Drive transfer opened, its reasons in
  words and its proof verified in the browser;
* docs/img/officers-console.png: the orders with their states and quotas, as the officer
  who registered the pending one sees it (its approval refused by the four-eyes rule).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "browser"), str(ROOT / "tests" / "integration")]

from orders_harness import console_service as orders_console  # noqa: E402
from orders_harness import seed_orders  # noqa: E402
from orders_harness import sign_in as officer_sign_in  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from security_console_support import VDD_EVENT  # noqa: E402
from security_console_support import console_service as security_console  # noqa: E402

OUT = ROOT / "docs" / "img"
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
PG_DSN = os.environ.get(
    "SHARING_GUARD_TEST_PG_DSN",
    "postgresql://sharing_guard:sharing_guard@127.0.0.1:5432/sharing_guard_test",
)
CHROMIUM = os.environ.get("SHARING_GUARD_CHROMIUM", "/usr/bin/chromium")
PIN_LABEL = "Published verifier key (vkey), your pin"


def security(browser: object, workdir: Path) -> Path:
    """The reviewer's view of the blocked Virtual Drive transfer, its proof verified."""
    target = OUT / "security-console.png"
    with security_console(workdir, pg_dsn=PG_DSN, kafka_bootstrap=KAFKA) as service:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
        page = context.new_page()
        page.goto(service.url)
        page.get_by_label("API token").fill(service.token)
        page.get_by_label(PIN_LABEL).fill(service.vkey)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Status", exact=True).wait_for()
        page.get_by_label("Reason code").select_option("VDD_EGRESS_FORBIDDEN")
        page.get_by_role("button", name="Search", exact=True).click()
        results = page.get_by_role("region", name="Search results")
        results.get_by_role("button", name=f"Open {VDD_EVENT}").click()
        detail = page.get_by_role("region", name=f"Decision {VDD_EVENT}")
        detail.get_by_text("Proof verified in this browser").wait_for()
        page.screenshot(path=str(target), full_page=True)
        context.close()
    return target


def officers(browser: object, workdir: Path) -> Path:
    """The orders in every state, as the officer who registered the pending one sees them."""
    target = OUT / "officers-console.png"
    with orders_console(KAFKA, workdir) as service:
        seed_orders(service)
        context = browser.new_context(viewport={"width": 1100, "height": 1300})  # type: ignore[attr-defined]
        page = context.new_page()
        officer_sign_in(page, service, next(iter(service.tokens)))
        # The pending order this officer registered: its approval held back by four eyes,
        # with the orders in force, exhausted and revoked around it.
        own = page.get_by_text("You registered this order").first
        own.evaluate("(element) => element.scrollIntoView({block: 'end'})")
        page.evaluate("window.scrollBy(0, 120)")
        page.screenshot(path=str(target))
        context.close()
    return target


def main() -> int:
    """Write both screenshots; print their paths."""
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            for made in (security(browser, Path(tmp) / "s"), officers(browser, Path(tmp) / "o")):
                print(made.relative_to(ROOT))
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
