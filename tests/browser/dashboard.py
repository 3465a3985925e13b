"""What the dashboard's browser tests share: where chromium is, where screenshots go, how long
a thing on screen may take to appear, signing in."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.conftest import ROOT

CHROMIUM = os.environ.get("WTM_CHROMIUM", "/usr/bin/chromium")
SHOTS = (
    Path(os.environ.get("WTM_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "screenshots"
)
FIXTURES = ROOT / "tests" / "fixtures" / "tasks"
STEP_MS = 10_000  # the longest any one thing on screen may take to appear
expect.set_options(timeout=STEP_MS)  # for every expect: the suite's other worker shares the cores


def sign_in(page: Page, key: str) -> None:
    page.goto("/#/runs")
    page.fill("#login input[name=api_key]", key)
    page.click("#login button[type=submit]")
    expect(page.locator("#runs")).to_be_visible(timeout=STEP_MS)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
