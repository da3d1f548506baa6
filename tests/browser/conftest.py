"""Chromium (Debian's, never a downloaded one) driven by Playwright, against the whole stack."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)
from sqlalchemy.orm import Session, sessionmaker

from robot.config import Settings
from robot.dashboard.accounts import add_staff
from tests.e2e.conftest import Stack, start_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PASSWORD = "correct horse battery"
#: The operator's own phone for bridged calls: an emulator number that answers.
OPERATOR_PHONE = "+8613800138003"


def dashboard_settings(settings: Settings) -> Settings:
    """Quick polling and no sign-in slow-down, so the browser sees changes within a second."""
    return replace(
        settings,
        dashboard=replace(settings.dashboard, poll_seconds=1.0, failed_login_delay_seconds=0.0),
    )


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"browser tests are required under CI: {message}")
        pytest.skip(message)
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def dashboard_stack(settings: Settings) -> Iterator[Stack]:
    yield from start_stack(settings, tune=dashboard_settings)


def make_staff(
    sessions: sessionmaker[Session],
    username: str,
    *,
    role: str = "operator",
    phone: str | None = None,
) -> None:
    with sessions.begin() as session:
        add_staff(session, username, PASSWORD, role=role, language="en-US", phone=phone)


# expect() keeps its own 5 s default, which the contexts' 20 s does not reach: the queue's
# one-second refresh on a loaded machine came close to it.
expect.set_options(timeout=20_000)


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """Contexts (separate cookie jars: separate people) closed after the test."""
    made: list[BrowserContext] = []

    def make() -> BrowserContext:
        context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(20_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


def sign_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/dashboard/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/dashboard/")
