"""The browser tests' fixtures: one chromium a module, a fresh page a test (any script error
on it fails the test), and a two-step pipeline of sleepers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from clients.sdk import Client
from services.localstack import Cluster
from tests.browser.dashboard import CHROMIUM, FIXTURES


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, cluster: Cluster) -> Iterator[Page]:
    # The stack's CA is made at each start and not installed in the browser: its TLS errors
    # are ignored here, for this page only.
    context = browser.new_context(
        ignore_https_errors=True,
        base_url=cluster.gateway_url,
        viewport={"width": 1300, "height": 1000},
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def two_sleepers(client: Client) -> str:
    client.register_task(FIXTURES / "sleeper")
    client.register_pipelines(
        {
            "pipelines": {
                "dashboard_probe": {
                    "pipeline_id": "dashboard_probe",
                    "steps": [
                        {"step_id": "first", "task_id": "sleeper"},
                        {"step_id": "second", "task_id": "sleeper", "depends_on": ["first"]},
                    ],
                }
            }
        }
    )
    return "dashboard_probe"
