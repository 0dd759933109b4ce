"""A real headless browser for tests: Debian's chromium driven by Playwright for Python.

Never ``playwright install`` (it downloads a browser build, which cannot be fetched here): Playwright
drives ``/usr/bin/chromium`` from Debian, which ``.ci/run`` installs. Without it (or without
Playwright) a browser test skips with the reason, except under CI=true, where it is a failure.
Screenshots for a person to look at go to bench/out/screenshots/.
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
SCREENSHOTS = Path(__file__).resolve().parents[1] / "bench" / "out" / "screenshots"


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless chromium (a Playwright ``Browser``), closed afterwards."""
    if not CHROMIUM.exists():
        _missing(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("browser tests need Playwright for Python (the test extra: pip install -e '.[test]')")
        raise
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page() -> Iterator[Any]:
    """A fresh page (playwright.sync_api.Page) in a headless chromium, closed afterwards."""
    with chromium() as browser:
        yield browser.new_page()


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot for a person to look at, under bench/out/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
