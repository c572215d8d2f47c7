"""Browser tests: Debian's headless Chromium driven by Playwright for Python.

Playwright's own browser downloads are never used: the tests launch ``/usr/bin/chromium``
(``EMD_CHROMIUM`` overrides it) with ``executable_path``, and skip with the reason when
Playwright or Chromium is missing. A failing test leaves ``failure.png`` (and the page's
HTML) in its pytest tmp dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The real stack (embedded broker, Emarsys simulator, worker processes), re-exported.
from tests.integration.conftest import broker, make_stack, simulator

__all__ = ["broker", "browser", "make_stack", "page", "simulator"]

CHROMIUM = os.environ.get("EMD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives headless Chromium with Playwright")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module (closed before other modules' async tests run)."""
    pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or set EMD_CHROMIUM)")
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True, timeout=30_000
        )
    except Exception as exc:
        pw.stop()
        pytest.skip(f"cannot launch {CHROMIUM}: {exc}")
    yield chromium
    chromium.close()
    pw.stop()


@pytest.fixture
def page(browser, request, tmp_path):
    """A fresh browser context and page; uncaught page errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        try:
            shot = tmp_path / "failure.png"
            pg.screenshot(path=str(shot), full_page=True)
            (tmp_path / "failure.html").write_text(pg.content())
            print(f"\nbrowser screenshot: {shot}")
        except Exception as exc:  # the page may be gone; the test's own failure matters
            print(f"\nno screenshot: {exc}")
    context.close()
    if report is not None and report.passed:
        assert not errors, f"uncaught errors in the page: {errors}"
