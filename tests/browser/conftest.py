"""The browser of the console tests: Debian's Chromium (scripts/chromium.sh), headless,
driven by Playwright through its ``executable_path`` (Playwright's own browser downloads
are never used).

A missing browser is a failure, never a skip: ``make test`` installs it first
(``scripts/chromium.sh install``), and CI runs ``make test``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("SHARING_GUARD_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module. Not per session: Playwright's sync API keeps
    an asyncio loop running in this thread while it is open, and every later test that
    runs a loop of its own (``asyncio.run``: uvicorn, the guard) would find it running."""
    from playwright.sync_api import sync_playwright

    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run scripts/chromium.sh install (make test does), "
            "or set SHARING_GUARD_CHROMIUM",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # Root in a container has no user namespace for the sandbox; the pages are our own.
            args=["--no-sandbox", "--disable-dev-shm-usage"]
            if os.geteuid() == 0 or shutil.which("sudo") is None
            else [],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in a fresh context (no cookies or storage shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()
