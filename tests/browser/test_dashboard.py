"""The dashboard's run pages in a real browser: Debian's chromium, driven by Playwright,
against the session's stack (the gateway serves it over HTTPS with the stack's throwaway CA).

A few tests, each bounded: the page needs a key; a submitted run's steps change state and
progress on screen with no reload; cancel, run again and resume from the page; a delayed
run's start; the face run's image drawn with its boxes. The operators' pages (executors,
queues, schedules, limits) are test_dashboard_operators. Screenshots go to
build/test-artifacts/screenshots (not committed).
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from playwright.sync_api import Page, expect

from clients.sdk import Client
from services.localstack import Cluster
from tests.browser.dashboard import FIXTURES, STEP_MS, shot, sign_in
from tests.conftest import EXAMPLES, ROOT
from tests.waiting import eventually

pytestmark = pytest.mark.browser


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
    said: list[str] = []  # what the page alerted, if it did
    page.on("dialog", lambda dialog: (said.append(dialog.message), dialog.dismiss()))
    for _ in range(3):  # a click while live events redraw the run's header can be lost
        page.click("#resume")
        try:
            expect(page).not_to_have_url(re.compile(f"{run.run_id}$"), timeout=STEP_MS / 3)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"the page did not resume the run; it said {said}")
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


def test_the_runs_list_says_what_ran_and_when_a_delayed_run_starts(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """QUEUED alone read as stuck for a run waiting out its start delay; and a task run was
    listed without the version it runs, where a pipeline run showed its own."""
    later = client.submit(task="sleeper", input={"seconds": 0.1}, start_delay=3600)
    assert later.task_version == client.get_task("sleeper").version
    try:
        sign_in(page, cluster.admin_key)
        row = page.locator(f'#runs tr[data-run="{later.run_id}"]')
        expect(row.locator("[data-starts]")).to_contain_text("starts", timeout=STEP_MS)
        expect(row.locator("[data-what]")).to_have_text(f"sleeper@{later.task_version}")
        # Created today: the time alone, on one line; the whole moment in its title.
        created = row.locator("[data-created]")
        expect(created).to_have_attribute("title", re.compile(str(datetime.now().year)))
        expect(created).not_to_contain_text(str(datetime.now().year))
        scheduled = client.get_run(later.run_id).scheduled_at
        assert scheduled is not None
        shown = row.locator("[data-starts]").get_attribute("data-starts") or ""
        assert shown.startswith(scheduled.strftime("%Y-%m-%dT%H:%M"))
        for version, listed in (("0.0.0-none", 0), (later.task_version, 1)):  # one version's
            page.fill('input[name="task_id"]', f"sleeper@{version}")
            page.click('form.filters button[type="submit"]')
            expect(row).to_have_count(listed, timeout=STEP_MS)
        page.goto("/#/queues")  # its step waits in the delayed set: held back, said plainly
        held = re.compile(r"^[1-9][0-9]* steps? held back: waiting out")
        expect(page.locator("#held-back")).to_have_text(held, timeout=STEP_MS)
        expect(page.locator("#held-back")).not_to_contain_text("1 steps")
        page.goto("/#/runs")
    finally:
        client.cancel(later.run_id, "the test is over")
    page.reload()
    expect(row.locator(".badge")).to_have_text("CANCELLED", timeout=STEP_MS)
    expect(row.locator("[data-starts]")).to_have_count(0)


def test_a_run_page_names_the_runs_labels_and_input(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """The page showed neither: a schedule's run did not say which schedule made it."""
    run = client.submit(
        task="sleeper", input={"seconds": 0.1, "note": "<b>x</b>"}, start_delay=3600,
        labels={"team": "vision", "origin": "test"},
    )  # fmt: skip
    try:
        sign_in(page, cluster.admin_key)
        page.goto(f"/#/runs/{run.run_id}")
        expect(page.locator("#labels")).to_have_text("origin=test, team=vision", timeout=STEP_MS)
        expect(page.locator("#input")).to_have_text('{"seconds":0.1,"note":"<b>x</b>"}')  # as text
    finally:
        client.cancel(run.run_id, "the test is over")


def test_a_skipped_step_shows_skipped_with_its_condition(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """A step its skip_if skipped: SKIPPED in the graph and the steps table (a badge of its
    own colour), the condition that held in its error cell; the step after it ran."""
    client.register_pipelines(
        {
            "pipeline_id": "dashboard_skip",
            "steps": [
                {"step_id": "first", "task_id": "sleeper",
                 "skip_if": {"path": "$.quick", "op": "==", "value": True}},
                {"step_id": "second", "task_id": "sleeper", "depends_on": ["first"]},
            ],
        }
    )  # fmt: skip
    run = client.run(pipeline="dashboard_skip", input={"seconds": 0.1, "quick": True}, timeout=30)
    assert [s.state for s in run.steps] == ["SKIPPED", "COMPLETED"]
    sign_in(page, cluster.admin_key)
    page.goto(f"/#/runs/{run.run_id}")
    node = page.locator('#dag g.node[data-step="first"]')
    expect(node).to_have_attribute("data-state", "SKIPPED", timeout=STEP_MS)
    row = page.locator('#steps tr[data-step="first"]')
    expect(row.locator(".badge")).to_have_text("SKIPPED")
    expect(row.locator("td.error")).to_have_text("skip_if $.quick == true")
    # --skipped, not the default badge's (the row is redrawn live: a retrying check)
    expect(row.locator(".badge")).to_have_css("background-color", "rgb(167, 139, 250)")
    expect(page.locator('#steps tr[data-step="second"] .badge')).to_have_text("COMPLETED")
    shot(page, "run-page-skipped")
    # The catalog's graph of the pipeline says which step may be skipped, and when.
    page.goto("/#/catalog")
    page.click('#pipelines tr[data-pipeline="dashboard_skip"] button')
    node = page.locator('#detail g.node[data-step="first"]')
    expect(node).to_contain_text("skip_if", timeout=STEP_MS)
    expect(node.locator("title")).to_contain_text("skipped when $.quick == true")


def test_a_for_each_steps_instances_are_listed_after_it(
    page: Page, cluster: Cluster, client: Client, two_sleepers: str
) -> None:
    """The graph shows the step; the steps table lists its instances after it, each with its
    own state; the catalog's graph says the step runs once per item."""
    client.register_task(FIXTURES / "echo")
    client.register_pipelines(
        {
            "pipeline_id": "dashboard_fan",
            "steps": [
                {"step_id": "first", "task_id": "echo", "input_mapping": {"items": "$.items"}},
                {"step_id": "each", "task_id": "sleeper", "depends_on": ["first"],
                 "for_each": {"seconds": "$.first.echo.items"}},
                {"step_id": "last", "task_id": "sleeper", "depends_on": ["each"]},
            ],
        }
    )  # fmt: skip
    run = client.run(pipeline="dashboard_fan", input={"items": [0.05, 0.1]}, timeout=30)
    assert run.state == "COMPLETED", run.error
    sign_in(page, cluster.admin_key)
    page.goto(f"/#/runs/{run.run_id}")
    expect(page.locator('#dag g.node[data-step="each"]')).to_have_attribute(
        "data-state", "COMPLETED", timeout=STEP_MS
    )
    expect(page.locator('#dag g.node[data-step="each[0]"]')).to_have_count(0)
    rows = page.locator("#steps tr[data-step]")
    expect(rows).to_have_count(5)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.step)") == [
        "first", "each", "each[0]", "each[1]", "last"
    ]  # fmt: skip
    expect(page.locator('#steps tr[data-step="each[1]"] .badge')).to_have_text("COMPLETED")
    page.goto("/#/catalog")
    page.click('#pipelines tr[data-pipeline="dashboard_fan"] button')
    node = page.locator('#detail g.node[data-step="each"]')
    expect(node).to_contain_text("for_each", timeout=STEP_MS)
    expect(node.locator("title")).to_contain_text("runs once per item of $.first.echo.items")


def test_a_step_that_awaits_a_signal_is_sent_it_from_the_page(
    page: Page, cluster: Cluster, client: Client
) -> None:
    """The runs page lists the runs waiting for a signal apart; the run's steps table says
    what a waiting step awaits, and its button sends the signal (a JSON object, asked for),
    which the step's task gets."""
    client.register_task(FIXTURES / "echo")
    client.register_pipelines(
        {
            "pipeline_id": "dashboard_review",
            "steps": [
                {"step_id": "draft", "task_id": "echo"},
                {"step_id": "publish", "task_id": "echo", "depends_on": ["draft"],
                 "await_signal": {"field": "approval"}},
            ],
        }
    )  # fmt: skip
    run = client.submit(pipeline="dashboard_review", input={"text": "t"})
    sign_in(page, cluster.admin_key)
    page.check("form.filters input[name=awaiting_signal]")
    page.click("form.filters button[type=submit]")
    listed = page.locator(f'#runs tr[data-run="{run.run_id}"] a')
    expect(listed).to_be_visible(timeout=STEP_MS)  # once draft is done, it waits
    listed.click()
    waiting = page.locator('#steps tr[data-step="publish"]')
    expect(waiting).to_contain_text("awaits a signal (approval)", timeout=STEP_MS)
    page.once("dialog", lambda dialog: dialog.accept('{"ok": true}'))
    page.click('button[data-signal="publish"]')
    expect(page.locator('[data-signaled="publish"]')).to_contain_text(
        "signalled by", timeout=STEP_MS
    )
    done = client.wait(run.run_id, timeout=30)
    assert done.state == "COMPLETED", done.error
    assert done.steps[1].output["echo"]["approval"] == {"ok": True}
    shot(page, "run-page-signalled")


def test_a_step_of_every_run_of_a_batch_is_signalled_from_the_runs_page(
    page: Page, cluster: Cluster, client: Client
) -> None:
    """The runs page's **Signal a step** sends one signal to that step of every run its
    filters match (``POST /api/v1/runs:signal``), asking for the step and the document."""
    client.register_task(FIXTURES / "echo")
    client.register_pipelines(
        {
            "pipeline_id": "dashboard_batch_review",
            "steps": [{"step_id": "publish", "task_id": "echo", "await_signal": {"field": "ok"}}],
        }
    )
    batch_id, run_ids = client.submit_many(
        [{"text": "a"}, {"text": "b"}], pipeline="dashboard_batch_review"
    )
    sign_in(page, cluster.admin_key)
    page.fill("form.filters input[name=batch_id]", batch_id)
    page.click("form.filters button[type=submit]")
    expect(page.locator("#runs tr[data-run]")).to_have_count(2, timeout=STEP_MS)
    answers = ["publish", '{"by": "page"}']
    page.on("dialog", lambda dialog: dialog.accept(answers.pop(0)))
    page.click("#signal-matching")
    expect(page.locator(".pager")).to_contain_text("signalled 2", timeout=STEP_MS)
    for run_id in run_ids:
        done = client.wait(run_id, timeout=30)
        assert done.state == "COMPLETED", done.error
        assert done.output["echo"]["ok"] == {"by": "page"}


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
