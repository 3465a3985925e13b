"""The dashboard's operator pages in a real browser (as test_dashboard): executors and queues
with live figures and the warning for work no executor takes, pausing from a row, a resting
executor, schedules, a task's limits; and every table's layout: narrow windows scroll the
table, not the page, and each figure stands under its own heading.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from clients.sdk import ApiError, Client
from services.localstack import Cluster
from tests.browser.dashboard import STEP_MS, shot, sign_in
from tests.integration.executor_tasks import stop_executor
from tests.integration.test_faults import resting, tired_executor
from tests.integration.test_registry import make_task
from tests.waiting import eventually

pytestmark = pytest.mark.browser


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
