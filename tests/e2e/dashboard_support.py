"""A real browser for the dashboard tests: Debian's headless Chromium driven by Playwright
(no browser download: ``executable_path`` points at the system's binary, which
scripts/bootstrap.sh installs), and screenshots kept as test artefacts.

Screenshots go to ``tests/artifacts/dashboard/`` (or ``$TEP_TEST_ARTIFACTS/dashboard``), one
per step, named after the test.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

__all__ = ["ARTIFACTS", "BrowserPage", "chromium_path", "launched_browser", "opened_page"]

ARTIFACTS = Path(os.environ.get("TEP_TEST_ARTIFACTS") or Path(__file__).parents[1] / "artifacts")
"""Where test artefacts go (kept out of git)."""

_CANDIDATES = ("chromium", "chromium-browser", "/usr/lib/chromium/chromium")


def chromium_path() -> str:
    """The system's Chromium (``$TEP_CHROMIUM`` first); fails the test when there is none."""
    explicit = os.environ.get("TEP_CHROMIUM")
    for candidate in (explicit, *_CANDIDATES) if explicit else _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        "no chromium binary found: scripts/bootstrap.sh installs Debian's chromium "
        "(or set TEP_CHROMIUM to one)",
        pytrace=False,
    )


@asynccontextmanager
async def launched_browser() -> AsyncIterator[Browser]:
    """Headless Chromium from the system, for the module's tests."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class BrowserPage:
    """One test's page, what went wrong in it, and its screenshots."""

    page: Page
    name: str
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    shots: int = 0

    async def shot(self, step: str) -> Path:
        """Save a full-page screenshot of this step as an artefact; returns its path."""
        self.shots += 1
        directory = ARTIFACTS / "dashboard"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}-{self.shots:02d}-{step}.png"
        await self.page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}")
        return path


@asynccontextmanager
async def opened_page(browser: Browser, test_name: str) -> AsyncIterator[BrowserPage]:
    """A fresh browser context and page; uncaught page errors fail the test."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")
    for stale in (ARTIFACTS / "dashboard").glob(f"{name}-*.png"):
        stale.unlink()
    opened = BrowserPage(page, name)
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    page.on("console", lambda m: opened.console.append(f"{m.type}: {m.text}"))
    try:
        yield opened
        assert not opened.errors, f"errors in the page: {opened.errors}"
    finally:
        try:
            await opened.shot("last")
        finally:
            await context.close()
