"""A real browser for tests: Debian's chromium, headless, driven by Playwright.

Playwright's own browser download is never used (it cannot be fetched here); the browser is
``/usr/bin/chromium`` from Debian, which ``.ci/run`` installs. Without it a browser test skips with
that reason, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip (or under CI fail) a test that needs the browser when it is not installed."""
    if not CHROMIUM.exists():
        reason = f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)"
        if IN_CI:
            pytest.fail(f"CI=true but no browser: {reason}")
        pytest.skip(reason)


@contextmanager
def browser_page() -> Iterator[Any]:
    """A fresh page (playwright.sync_api.Page) in a headless chromium, closed afterwards."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()
