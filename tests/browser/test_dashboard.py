"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against the
session's stack (the gateway serves it over HTTPS with the stack's throwaway CA).

A few tests, each bounded: the page needs a key; a submitted run's steps change state and
progress on screen with no reload; cancel from the page cancels the run; the face run's
image is drawn with its boxes; executors and queues show live figures and the warning for
work no executor takes. Screenshots go to build/test-artifacts/screenshots (not committed).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from clients.sdk import ApiError, Client
from services.localstack import Cluster
from tests.conftest import EXAMPLES, ROOT
from tests.integration.executor_tasks import stop_executor
from tests.integration.test_faults import resting, tired_executor
from tests.integration.test_registry import make_task
from tests.waiting import eventually

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("WTM_CHROMIUM", "/usr/bin/chromium")
SHOTS = (
    Path(os.environ.get("WTM_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "screenshots"
)
FIXTURES = ROOT / "tests" / "fixtures" / "tasks"
STEP_MS = 10_000  # the longest any one thing on screen may take to appear
expect.set_options(timeout=STEP_MS)  # for every expect: the suite's other worker shares the cores


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


def sign_in(page: Page, key: str) -> None:
    page.goto("/#/runs")
    page.fill("#login input[name=api_key]", key)
    page.click("#login button[type=submit]")
    expect(page.locator("#runs")).to_be_visible(timeout=STEP_MS)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


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


def test_the_dashboard_needs_a_key(page: Page, cluster: Cluster) -> None:
    page.goto("/")
    expect(page.locator("#login")).to_be_visible(timeout=STEP_MS)
    page.fill("#login input[name=api_key]", "wtm_0000000000000000.wrong")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("UNAUTHENTICATED", timeout=STEP_MS)
    page.fill("#login input[name=api_key]", cluster.admin_key)
    page.click("#login button[type=submit]")
    expect(page.locator("#runs")).to_be_visible(timeout=STEP_MS)
    page.click("#who button")  # sign out
    expect(page.locator("#login")).to_be_visible(timeout=STEP_MS)


def test_a_runs_steps_change_state_and_progress_without_a_reload(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    sign_in(page, cluster.admin_key)
    page.evaluate("window.__sameDocument = true")
    run = client.submit(pipeline=two_sleepers, input={"seconds": 4.0})
    # The list shows the new run by itself (it refreshes live).
    expect(page.locator(f'#runs tr[data-run="{run.run_id}"]')).to_be_visible(timeout=STEP_MS)
    page.click(f'#runs tr[data-run="{run.run_id}"] a')
    first = page.locator('#dag g.node[data-step="first"]')
    second = page.locator('#dag g.node[data-step="second"]')
    expect(first).to_have_attribute("data-state", "RUNNING", timeout=STEP_MS)
    expect(second).to_have_attribute("data-state", "PENDING")
    # Progress moves on screen: the bar grows from a report of the running step.
    expect(first.locator("rect.bar")).to_have_attribute("data-progress", "0.50", timeout=STEP_MS)
    shot(page, "run-page-running")
    expect(second).to_have_attribute("data-state", "RUNNING", timeout=STEP_MS)
    expect(first).to_have_attribute("data-state", "COMPLETED")
    expect(page.locator("#run-state .badge")).to_have_text("COMPLETED", timeout=STEP_MS)
    expect(second).to_have_attribute("data-state", "COMPLETED")
    expect(page.locator('#gantt .span[data-step="second"]')).to_be_visible()
    assert page.locator('#events div[data-kind="PROGRESS"]').count() >= 8
    expect(page.locator("#output")).to_contain_text('"slept": 4')
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    shot(page, "run-page-finished")


def test_cancel_from_the_page_cancels_the_run(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    sign_in(page, cluster.admin_key)
    run = client.submit(pipeline=two_sleepers, input={"seconds": 30})
    page.goto(f"/#/runs/{run.run_id}")
    expect(page.locator('#dag g.node[data-step="first"]')).to_have_attribute(
        "data-state", "RUNNING", timeout=STEP_MS
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    expect(page.locator("#run-state .badge")).to_have_text("CANCELLED", timeout=STEP_MS)
    assert client.get_run(run.run_id).state == "CANCELLED"
    expect(page.locator("#cancel")).to_be_disabled()
    shot(page, "run-page-cancelled")
    # The list, filtered by state, shows it among cancelled runs only.
    page.goto("/#/runs")
    page.select_option("select[name=state]", "CANCELLED")
    page.click("form.filters button[type=submit]")
    # (until the filtered page is drawn, the list shows every state: wait for it)
    badges = page.locator("#runs tr[data-run] .badge")
    expect(badges.filter(has_not_text="CANCELLED")).to_have_count(0, timeout=STEP_MS)
    expect(page.locator(f'#runs tr[data-run="{run.run_id}"]')).to_be_visible(timeout=STEP_MS)
    states = badges.all_inner_texts()
    assert states and set(states) == {"CANCELLED"}


def test_a_run_past_its_time_limit_turns_timed_out_on_the_page(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    sign_in(page, cluster.admin_key)
    run = client.submit(pipeline=two_sleepers, input={"seconds": 30}, run_timeout=2)
    page.goto(f"/#/runs/{run.run_id}")
    expect(page.locator("#deadline")).to_contain_text("until", timeout=STEP_MS)
    expect(page.locator("#run-state .badge")).to_have_text("TIMED_OUT", timeout=STEP_MS)
    expect(page.locator('#dag g.node[data-step="first"]')).to_have_attribute(
        "data-state", "CANCELLED", timeout=STEP_MS
    )
    expect(page.locator("#cancel")).to_be_disabled()
    # No step ended, so no edge: said so, not an empty table under its headings.
    assert client.get_run(run.run_id).lineage == []
    expect(page.locator("#lineage tbody")).to_have_text("No lineage was recorded for this run.")
    shot(page, "run-page-timed-out")
    # Run again: the page moves to the new run, which has the same time limit.
    page.click("#rerun")
    expect(page).not_to_have_url(re.compile(f"{run.run_id}$"), timeout=STEP_MS)
    again = page.url.rsplit("/", 1)[1]
    assert client.get_run(again).labels["wtm.rerun_of"] == run.run_id
    expect(page.locator("#deadline")).to_contain_text("until", timeout=STEP_MS)


def test_a_cancelled_run_resumes_from_the_page_taking_over_its_first_step(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    sign_in(page, cluster.admin_key)
    # Each step sleeps 1 s: cancelled once its first step has completed. (A time limit
    # between the two steps' ends was not exact enough: it is enforced within a second.)
    started = client.submit(pipeline=two_sleepers, input={"seconds": 1})
    eventually(
        lambda: client.get_run(started.run_id).steps[0].state == "COMPLETED",
        timeout=20,
        what="the first step's end",
    )
    run = client.cancel(started.run_id, "resumed from the page")
    assert run.state == "CANCELLED"
    assert [s.state for s in run.steps] == ["COMPLETED", "CANCELLED"]
    page.goto(f"/#/runs/{run.run_id}")
    page.click("#resume")
    expect(page).not_to_have_url(re.compile(f"{run.run_id}$"), timeout=STEP_MS)
    expect(page.locator("#run-state .badge")).to_have_text("COMPLETED", timeout=STEP_MS)
    expect(page.locator('#dag g.node[data-step="first"]')).to_contain_text("taken over")
    # Its row says where from, in the executor's column (no executor ran it here).
    first = page.locator('#steps tr[data-step="first"]')
    expect(first).to_contain_text(f"taken over from {run.run_id}/")
    expect(first.locator("[data-from] a")).to_have_attribute("href", f"#/runs/{run.run_id}")
    expect(page.locator("#resume")).to_have_count(0)  # a completed run has nothing to resume
    shot(page, "run-page-resumed")
    resumed = client.get_run(page.url.rsplit("/", 1)[1])
    assert resumed.labels["wtm.rerun_of"] == run.run_id
    assert resumed.steps[0].cached_from == f"{run.run_id}/{run.steps[0].output_id}"
    assert resumed.steps[1].executor_id  # the second step ran


def test_a_run_submitted_from_the_page_with_a_start_delay_and_a_time_limit(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    sign_in(page, cluster.admin_key)
    page.click("details.card summary")  # "Submit a run"
    page.select_option("#submit select[name=target]", "task:sleeper")
    page.fill("#submit textarea[name=input]", '{"seconds": 0.2}')
    page.fill("#submit input[name=run_timeout]", "60")
    page.fill("#submit input[name=start_delay]", "2")
    page.click("#submit button[type=submit]")
    expect(page.locator("#scheduled")).to_be_visible(timeout=STEP_MS)
    expect(page.locator("#deadline")).to_contain_text("until")
    run_id = page.url.rsplit("/", 1)[1]
    submitted = client.get_run(run_id)
    assert submitted.scheduled_at is not None and submitted.deadline_at is not None
    assert abs((submitted.deadline_at - submitted.scheduled_at).total_seconds() - 60) < 0.01
    expect(page.locator("#run-state .badge")).to_have_text("COMPLETED", timeout=STEP_MS)


def test_the_runs_list_says_when_a_delayed_run_starts(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """QUEUED alone read as stuck for a run waiting out its start delay."""
    later = client.submit(task="sleeper", input={"seconds": 0.1}, start_delay=3600)
    try:
        sign_in(page, cluster.admin_key)
        row = page.locator(f'#runs tr[data-run="{later.run_id}"]')
        expect(row.locator("[data-starts]")).to_contain_text("starts", timeout=STEP_MS)
        scheduled = client.get_run(later.run_id).scheduled_at
        assert scheduled is not None
        shown = row.locator("[data-starts]").get_attribute("data-starts") or ""
        assert shown.startswith(scheduled.strftime("%Y-%m-%dT%H:%M"))
    finally:
        client.cancel(later.run_id, "the test is over")
    page.reload()
    expect(row.locator(".badge")).to_have_text("CANCELLED", timeout=STEP_MS)
    expect(row.locator("[data-starts]")).to_have_count(0)


def test_the_unfinished_runs_of_a_batch_are_cancelled_from_the_runs_page(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    batch_id, run_ids = client.submit_many([{"seconds": 1}] * 3, task="sleeper", start_delay=60)
    sign_in(page, cluster.admin_key)
    page.fill("form.filters input[name=batch_id]", batch_id)
    page.click("form.filters button[type=submit]")
    expect(page.locator("#runs tr[data-run]")).to_have_count(3, timeout=STEP_MS)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-matching")
    expect(page.locator(".pager")).to_contain_text("cancelled 3", timeout=STEP_MS)
    assert {client.get_run(r).state for r in run_ids} == {"CANCELLED"}
    expect(page.locator("#runs tr[data-run] .badge").first).to_have_text(
        "CANCELLED", timeout=STEP_MS
    )
    # Then resumed, each once, once the history has their ends (it is written behind).
    eventually(
        lambda: {r.state for r in client.list_runs(batch_id=batch_id)} == {"CANCELLED"},
        timeout=10,
        what="the batch's ends in the history",
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#resume-matching")
    expect(page.locator(".pager")).to_contain_text("resumed 3", timeout=STEP_MS)
    for run_id in run_ids:
        [again] = client.list_runs(labels={"wtm.rerun_of": run_id})
        assert again.state != "CANCELLED"


def test_the_face_runs_image_is_drawn_with_its_boxes(
    page: Page, cluster: Cluster, client: Client
) -> None:
    for d in sorted(EXAMPLES.iterdir()):
        if (d / "task.json").exists():
            client.register_task(d)
    client.register_pipelines(ROOT / "tasks" / "pipelines" / "config_pipeline.json")
    uri = client.upload_artifact(ROOT / "tasks" / "data" / "astronaut.jpg")
    run = client.run(pipeline="face_processing_pipeline", input={"image_path": uri}, timeout=120)
    assert run.state == "COMPLETED"
    sign_in(page, cluster.admin_key)
    page.goto(f"/#/runs/{run.run_id}")
    canvas = page.locator("canvas#faces")
    expect(canvas).to_have_attribute("data-drawn", "1", timeout=STEP_MS)
    assert canvas.get_attribute("data-faces") == str(len(run.output["faces"]))
    assert page.locator("#dag g.node").count() == 4
    assert page.locator("#dag path.edge").count() == 4
    shot(page, "run-page-faces")


def test_executors_and_queues_show_live_figures_and_the_stranded_warning(
    page: Page, cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "dash_stranded", queue="dash-nobody"))
    run = client.submit(task="dash_stranded", input={})
    client.create_schedule("dash-nightly", task="dash_stranded", cron="0 3 * * *", paused=True)
    try:
        sign_in(page, cluster.admin_key)
        page.goto("/#/executors")
        row = page.locator("#executors tr[data-executor]").first
        expect(row).to_be_visible(timeout=STEP_MS)
        memory = eventually(
            lambda: int(row.locator("td[data-memory]").get_attribute("data-memory") or 0),
            timeout=10,
            what="an executor's memory on the page",
        )
        assert memory > 20 * 2**20
        # Its cache's disk use (its value is checked in test_operator_reports.py).
        expect(page.locator("#executors thead")).to_contain_text("Disk")
        assert int(row.locator("td[data-disk]").get_attribute("data-disk") or "-1") >= 0
        confined = "isolated" if os.geteuid() == 0 else "limits"  # how its executor says it
        expect(row.locator("[data-sandbox]")).to_have_attribute("data-sandbox", confined)
        # Paused from its row (the reason asked for: a cordon), then resumed.
        page.once("dialog", lambda dialog: dialog.accept("kernel upgrade"))
        row.get_by_role("button", name="Pause").click()
        expect(row.locator("[data-paused]")).to_contain_text("kernel upgrade", timeout=STEP_MS)
        assert any(e.pause is not None for e in client.list_executors())
        row.get_by_role("button", name="Resume").click()
        expect(row.locator("[data-paused]")).to_have_count(0, timeout=STEP_MS)
        assert all(e.pause is None for e in client.list_executors())
        page.goto("/#/queues")
        stranded = page.locator('#queues tr[data-queue="dash-nobody"]')
        expect(stranded).to_contain_text("no executor takes from this queue", timeout=STEP_MS)
        mine = page.locator('#namespaces tr[data-namespace="default"]')
        expect(mine.locator("td").nth(1)).not_to_have_text("0", timeout=STEP_MS)  # this run
        expect(mine.locator("td").nth(2)).to_have_text("none")
        expect(mine.locator("td").nth(5)).to_have_text("30 days")  # the history's retention
        nightly = page.locator('#schedules tr[data-schedule="dash-nightly"]')
        expect(nightly).to_contain_text("At 03:00 every day (UTC)", timeout=STEP_MS)
        expect(nightly.locator("td").nth(3)).to_have_text("paused")
        nightly.get_by_role("button", name="Resume").click()  # an operator's hand
        expect(nightly.locator("td").nth(3)).to_have_attribute(
            "data-next", re.compile(r"T03:00:00"), timeout=STEP_MS
        )  # shown in the browser's own time
        assert not client.get_schedule("dash-nightly").paused
        nightly.get_by_role("button", name="Pause").click()
        expect(nightly.locator("td").nth(3)).to_have_text("paused", timeout=STEP_MS)
        assert client.get_schedule("dash-nightly").paused
        # The queue paused from its row (the reason asked for), then resumed.
        page.once("dialog", lambda dialog: dialog.accept("swapping the model"))
        stranded.get_by_role("button", name="Pause").click()
        expect(stranded).to_contain_text("paused by", timeout=STEP_MS)
        expect(stranded).to_contain_text("swapping the model")
        [held] = [q for q in client.list_queues()[0] if q.queue == "dash-nobody"]
        assert held.pause is not None and held.pause.reason == "swapping the model"
        shot(page, "queues")
        stranded.get_by_role("button", name="Resume").click()
        expect(stranded).to_contain_text("no executor takes from this queue", timeout=STEP_MS)
        assert all(q.pause is None for q in client.list_queues()[0])
    finally:
        for e in client.list_executors():
            if e.pause is not None:
                client.resume_executor(e.executor_id)
        client.resume_queue("dash-nobody")
        client.cancel(run.run_id, "the test is over")
        client.delete_schedule("dash-nightly")


def test_a_resting_executor_is_shown_and_its_rest_ended_from_its_row(
    page: Page, cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """Steps of two tasks failed in an executor (its package cache broken), so it rests; its
    row says until when, and once the cache is mended the row's "End rest" ends it."""
    child, cache = tired_executor(cluster, client, tmp_path, "dashrest", rest_seconds=120)
    try:
        eventually(lambda: resting(client, child.name), 10, "a rest")
        sign_in(page, cluster.admin_key)
        page.goto("/#/executors")
        row = page.locator(f'#executors tr[data-executor="{child.name}"]')
        expect(row.locator("[data-resting]")).to_contain_text("resting until")
        (cache / "packages").unlink()
        (cache / "packages").mkdir()
        row.get_by_role("button", name="End rest").click()
        expect(row.locator("[data-resting]")).to_have_count(0)
        assert not resting(client, child.name)
        done = client.wait(client.submit(task="dashrest_b", input={}).run_id, 60)
        assert done.state == "COMPLETED" and done.steps[0].executor_id == child.name
    finally:
        stop_executor(cluster, child)


def test_a_schedule_is_made_run_listed_and_deleted_from_the_page(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """An operator's whole round with a schedule, in the browser: a bad cron expression is
    refused naming the field; a good one is created (hourly, so no time of its own comes
    due here), run now, its runs listed by its label, and deleted."""
    page.on("dialog", lambda dialog: dialog.accept())  # the delete's "are you sure?"
    try:
        sign_in(page, cluster.admin_key)
        page.goto("/#/queues")
        form = page.locator("form#new-schedule")
        page.locator("details:has(form#new-schedule) > summary").click()
        expect(form.locator("select[name=target] option[value='task:sleeper']")).to_be_attached(
            timeout=STEP_MS
        )
        form.locator("input[name=schedule_id]").fill("dash-hourly")
        form.locator("select[name=target]").select_option("task:sleeper")
        form.locator("textarea[name=input]").fill('{"seconds": 2}')  # a backfill's first run
        form.locator("input[name=when]").fill("61 * * * *")  # no 61st minute
        form.get_by_role("button", name="Create").click()
        expect(form).to_contain_text("INVALID_ARGUMENT: schedule.cron", timeout=STEP_MS)
        form.locator("select[name=kind]").select_option("every")
        form.locator("input[name=when]").fill("3600")
        form.locator("input[name=due_time_field]").fill("hour")
        form.locator("input[name=jitter]").fill("90")
        form.get_by_role("button", name="Create").click()
        row = page.locator('#schedules tr[data-schedule="dash-hourly"]')
        expect(row).to_contain_text("every hour", timeout=STEP_MS)
        made = client.get_schedule("dash-hourly")
        assert (made.every_seconds, made.due_time_field, made.jitter_seconds) == (3600, "hour", 90)

        row.get_by_role("button", name="Run now").click()
        expect(page.locator("#run-state .badge")).to_have_text("COMPLETED", timeout=STEP_MS)
        run_id = page.url.rsplit("/", 1)[1]
        assert client.get_run(run_id).labels["wtm.schedule"] == "dash-hourly"

        page.goto("/#/queues")
        expect(row.locator("td").nth(4)).to_have_text("1", timeout=STEP_MS)  # runs started
        row.get_by_role("button", name="Runs").click()
        expect(page.locator("input[name=label]")).to_have_value("wtm.schedule=dash-hourly")
        listed = page.locator("#runs tr[data-run]")
        expect(listed).to_have_count(1, timeout=STEP_MS)
        assert listed.get_attribute("data-run") == run_id

        # Backfill from 210 to 30 minutes ago, one at a time: the hour's series back from its
        # creation gives three times there, one to three hours before it (the page's times
        # have the second's grain: the range keeps well away from the series' times).
        page.goto("/#/queues")
        row.get_by_role("button", name="Backfill…").click()
        card = page.locator("#backfill")
        expect(card.locator("input[name=schedule_id]")).to_have_value("dash-hourly")
        now = datetime.now()  # the browser's zone is this machine's
        card.locator("input[name=from]").fill(f"{now - timedelta(minutes=210):%Y-%m-%dT%H:%M:%S}")
        card.locator("input[name=until]").fill(f"{now - timedelta(minutes=30):%Y-%m-%dT%H:%M:%S}")
        card.locator("input[name=max_running]").fill("1")
        card.get_by_role("button", name="Backfill").click()
        expect(card.locator("#backfilled")).to_have_text(
            "3 times: started 1, 0 had their run, 2 wait their turn Drop the waiting times",
            timeout=STEP_MS,
        )
        # While the first runs (2 s), the other two are dropped: they will have no run.
        card.get_by_role("button", name="Drop the waiting times").click()
        expect(card.locator("#backfilled")).to_contain_text("dropped 2 waiting", timeout=STEP_MS)
        dropped = client.get_schedule("dash-hourly")
        assert (dropped.runs_started, dropped.backfill_waiting) == (2, 0)

        # The schedule's row says how many times of a backfill wait, and drops them too: three
        # hours further back, one at a time, behind the first time's run or after it.
        card.locator("input[name=from]").fill(f"{now - timedelta(minutes=390):%Y-%m-%dT%H:%M:%S}")
        card.locator("input[name=until]").fill(f"{now - timedelta(minutes=210):%Y-%m-%dT%H:%M:%S}")
        card.get_by_role("button", name="Backfill").click()
        expect(card.locator("#backfilled")).to_contain_text("3 times", timeout=STEP_MS)
        waiting = row.locator("[data-backfill-waiting]")
        expect(waiting).to_have_text(re.compile(r"\+[1-3] backfill waiting"), timeout=STEP_MS)
        row.get_by_role("button", name=re.compile(r"Drop [1-3] waiting")).click()
        expect(waiting).to_have_count(0, timeout=STEP_MS)
        again = client.get_schedule("dash-hourly")
        assert again.backfill_waiting == 0 and again.runs_started < 2 + 3, again

        row.get_by_role("button", name="Delete").click()
        expect(row).to_have_count(0, timeout=STEP_MS)
        assert not [s for s in client.list_schedules() if s.schedule_id == "dash-hourly"]

        # Once, at a time; and every minute, within bounds (both in the browser's time).
        page.locator("details:has(form#new-schedule) > summary").click()
        form.locator("input[name=schedule_id]").fill("dash-once")
        form.locator("select[name=target]").select_option("task:sleeper")  # the page may have
        form.locator("textarea[name=input]").fill('{"seconds": 2}')  # drawn the form anew
        form.locator("select[name=kind]").select_option("once")
        later = datetime.now() + timedelta(hours=1)
        form.locator("input[name=at]").fill(f"{later:%Y-%m-%dT%H:%M:%S}")
        form.locator("input[name=due_time_field]").fill("")
        form.get_by_role("button", name="Create").click()
        once = page.locator('#schedules tr[data-schedule="dash-once"]')
        expect(once).to_contain_text("once, at", timeout=STEP_MS)
        assert client.get_schedule("dash-once").at == later.replace(microsecond=0).astimezone()
        form.locator("input[name=schedule_id]").fill("dash-bounded")
        form.locator("select[name=target]").select_option("task:sleeper")
        form.locator("textarea[name=input]").fill('{"seconds": 2}')
        form.locator("select[name=kind]").select_option("every")
        form.locator("input[name=when]").fill("60")
        form.locator("input[name=end_time]").fill(f"{later:%Y-%m-%dT%H:%M:%S}")
        form.get_by_role("button", name="Create").click()
        bounded = page.locator('#schedules tr[data-schedule="dash-bounded"]')
        expect(bounded).to_contain_text("every minute, until", timeout=STEP_MS)
    finally:
        for made in ("dash-hourly", "dash-once", "dash-bounded"):
            with contextlib.suppress(ApiError):
                client.delete_schedule(made)


def test_an_operator_limits_a_task_from_the_page_and_resets_it(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """Celery's `control rate_limit` in the browser: a bad rate is refused naming the field,
    a good one (and a concurrency limit) is set and listed, then reset to task.json's."""
    sign_in(page, cluster.admin_key)
    page.goto("/#/queues")
    page.locator("details:has(form#task-limit) > summary").click()
    form = page.locator("form#task-limit")
    form.locator("input[name=task_id]").fill("sleeper")
    form.locator("input[name=rate_limit]").fill("lots")
    form.get_by_role("button", name="Set").click()
    expect(form).to_contain_text("INVALID_ARGUMENT: rate_limit: must be", timeout=STEP_MS)
    assert client.task_limits() == []
    form.locator("input[name=rate_limit]").fill("5/s")
    form.locator("input[name=rate_burst]").fill("3")
    form.locator("input[name=concurrency_limit]").fill("2")
    form.get_by_role("button", name="Set").click()
    row = page.locator('#task-limits tr[data-task-limit="sleeper"]')
    expect(row).to_contain_text("rate 5/s · bursts of 3 · at most 2 at once", timeout=STEP_MS)
    [set_] = client.task_limits()
    assert (set_.task_id, set_.rate_limit, set_.rate_burst, set_.concurrency_limit) == (
        "sleeper",
        "5/s",
        3,
        2,
    )
    row.get_by_role("button", name="Reset to task.json's").click()
    expect(row).to_have_count(0, timeout=STEP_MS)
    assert client.task_limits() == []


def test_in_a_narrow_window_tables_scroll_and_the_page_does_not(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    run = client.run(pipeline=two_sleepers, input={"seconds": 0.1}, timeout=60)
    page.set_viewport_size({"width": 760, "height": 900})
    sign_in(page, cluster.admin_key)
    for where, table in (
        ("/#/runs", "#runs"),
        (f"/#/runs/{run.run_id}", "#steps"),
        ("/#/executors", "#executors"),
        ("/#/catalog", "#tasks"),
    ):
        page.goto(where)
        expect(page.locator(table)).to_be_visible(timeout=STEP_MS)
        width, window = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width <= window, f"{where} is {width}px wide in a {window}px window"
    shot(page, "run-page-narrow")


# For every table on the page: the columns whose cells are aligned otherwise than their heading
# (a right-aligned figure under a left-aligned heading reads as the next column's).
MISALIGNED = """() => [...document.querySelectorAll("table")].flatMap((table) => {
  const heads = [...table.querySelectorAll("thead th")];
  return [...table.querySelectorAll("tbody tr")].flatMap((row) => {
    const cells = [...row.children];
    if (cells.length !== heads.length) return [];  // a "nothing here" row spans them all
    return cells.flatMap((cell, i) => {
      const a = getComputedStyle(cell).textAlign, b = getComputedStyle(heads[i]).textAlign;
      const right = (x) => x === "right" || x === "end";
      return right(a) === right(b) || !cell.textContent.trim()
        ? [] : [`#${table.id} ${heads[i].textContent}: cell ${a}, heading ${b}`];
    });
  });
})"""


def test_each_figure_stands_under_its_own_heading(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """Figures are aligned right in their cells; a heading aligned left above them put each
    figure under the next column's heading (the namespaces' "1" read as its limit)."""
    run = client.run(pipeline=two_sleepers, input={"seconds": 0.1}, timeout=60)
    client.create_schedule("dash-aligned", task="sleeper", cron="0 4 * * *", paused=True)
    try:
        sign_in(page, cluster.admin_key)
        for where, table in (
            ("/#/runs", "#runs tbody tr[data-run]"),
            (f"/#/runs/{run.run_id}", "#steps tbody tr"),
            ("/#/executors", "#executors tbody tr[data-executor]"),
            ("/#/queues", "#schedules tbody tr[data-schedule]"),
            ("/#/catalog", "#pipelines tbody tr[data-pipeline]"),
        ):
            page.goto(where)
            expect(page.locator(table).first).to_be_visible(timeout=STEP_MS)
            checked = page.evaluate("() => document.querySelectorAll('tbody td').length")
            assert checked > 0, where
            assert page.evaluate(MISALIGNED) == [], where
    finally:
        client.delete_schedule("dash-aligned")


def test_a_run_pages_footer_says_when_it_read_the_run(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """The footer's "updated" time was the runs list's, kept under a run page that reads its
    run on its own (by its event stream, not the lists' timer)."""
    run = client.run(pipeline=two_sleepers, input={"seconds": 0.1}, timeout=60)
    sign_in(page, cluster.admin_key)
    expect(page.locator("#status")).to_contain_text("updated", timeout=STEP_MS)
    page.evaluate("() => { document.getElementById('status').textContent = 'from the list'; }")
    page.goto(f"/#/runs/{run.run_id}")
    expect(page.locator("#run-state .badge")).to_have_text("COMPLETED", timeout=STEP_MS)
    expect(page.locator("#status")).to_contain_text("updated", timeout=STEP_MS)
