"""The dashboard in a real browser: Chromium driven by Playwright, over real uvicorn.

What a person sees: a cause's tree filling in and its progress bars moving
to 100 % with no reload, a retrying task's failed attempt with its stack,
a cancel clicked from the keyboard, and hostile task data shown as text
while nothing of it runs. Every wait is Playwright's `expect` with a
timeout, never a sleep. Skips when Playwright or Chromium is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard.conftest import DashboardFactory
from tests.dashboard.defs import boom, echo, flaky, gate, stepper, tree
from tests.runtime.helpers import wait_for

pytestmark = pytest.mark.timeout(120)

LIVE = 2_000
"""Milliseconds a change may take to show: progress is stored at most every 400 ms."""


class Watched:
    """A page, and what it said behind the scenes: dialogs, script errors, failed loads."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []

        def dialog(opened: Any) -> None:
            self.dialogs.append(opened.message)
            opened.dismiss()

        page.on("dialog", dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )

    def clean(self) -> None:
        """Nothing ran that should not have: no dialog, no script error, no XSS flag."""
        assert self.page.evaluate("window.__xss") is None
        assert self.dialogs == [] and self.errors == []


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def test_a_tree_fills_in_and_its_bars_reach_100_percent_live(
    dashboard: DashboardFactory, watched: Watched
) -> None:
    expect = _expect()
    served = dashboard()
    page = watched.page
    page.goto(f"{served.url}/ui/cause?type=upload&cause=live")
    expect(page.get_by_text("No task of this cause is stored.")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text(re.compile("^Live"))
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    run = served.service.run(tree, {"children": 2, "steps": 2, "gate": "live"}, "upload", "live")
    parent = page.locator(f'tr[data-task-id="{run.task}"]')
    expect(parent).to_have_attribute("data-depth", "0", timeout=LIVE)
    gate("live").allow()  # the first subtask: step 1 of 2
    children = page.locator('tr[data-depth="1"]')
    expect(children).to_have_count(1, timeout=LIVE)
    first = children.first
    expect(first.locator("progress")).to_have_attribute("value", "50", timeout=LIVE)
    expect(first.locator('[data-field="percent"]')).to_have_text("50 %")
    expect(first.locator('[data-field="action"]')).to_have_text("step 1 of 2")
    expect(first.locator('[data-field="state"]')).to_have_text("running")

    gate("live").allow(3)  # the rest: both subtasks to their end, the parent too
    assert run.result(timeout=10) == 2
    expect(children).to_have_count(2, timeout=LIVE)
    expect(parent.locator('[data-field="state"]')).to_have_text("done", timeout=LIVE)
    for row in (parent, children.nth(0), children.nth(1)):
        expect(row.locator("progress")).to_have_attribute("value", "100", timeout=LIVE)
        expect(row.locator('[data-field="percent"]')).to_have_text("100 %")
        expect(row.locator('[data-field="cancel"]')).to_be_hidden()
    # parents before their subtasks, each subtask under its own parent
    assert page.locator("tbody[data-rows] tr").evaluate_all(
        "rows => rows.map(row => [row.dataset.depth, row.dataset.parent])"
    ) == [["0", ""], ["1", run.task], ["1", run.task]]
    assert page.evaluate("window.__sameDocument") is True  # no reload
    # accessible basics: a progressbar role, column headers, states in words
    assert page.get_by_role("progressbar").count() == 3
    assert page.get_by_role("columnheader", name="State").count() == 1
    watched.clean()


def test_a_retrying_task_shows_its_failed_attempt_and_stack(
    dashboard: DashboardFactory, watched: Watched
) -> None:
    expect = _expect()
    served = dashboard()
    page = watched.page
    run = served.service.run(flaky, {"message": "disk on fire", "gate": "retry"}, "job", "r1")
    page.goto(f"{served.url}/ui/tasks/{run.task}")
    expect(page.locator("#live-status")).to_have_text(re.compile("^Live"))
    expect(page.get_by_text("No attempt has failed.")).to_be_visible()

    gate("retry").allow()  # the first attempt fails
    attempt = page.locator('[data-list="retries"] li')
    expect(attempt).to_have_count(1, timeout=LIVE)
    expect(attempt.get_by_role("heading")).to_have_text("Attempt 1 failed")
    expect(attempt.locator('[data-field="attempt-error"]')).to_contain_text("disk on fire")
    stack = attempt.locator('[data-field="attempt-stack"]')
    expect(stack).to_contain_text("_explode")
    expect(stack).to_contain_text("flaky_execute")
    expect(page.get_by_text("No attempt has failed.")).to_be_hidden()
    expect(page.locator('article [data-field="failures"]')).to_have_text("1")

    gate("retry").allow()  # the second attempt succeeds
    expect(page.locator('h1 [data-field="state"]')).to_have_text("done", timeout=LIVE)
    expect(page.locator('[data-field="result"]')).to_have_text('"second attempt"')
    expect(page.get_by_role("heading", name="Result")).to_be_visible()
    expect(page.locator('[data-list="triggers"]')).to_contain_text("job_r1OwnedTaskFlakyDone")
    watched.clean()


def test_cancel_from_the_keyboard_changes_the_state(
    dashboard: DashboardFactory, watched: Watched
) -> None:
    expect = _expect()
    served = dashboard()
    page = watched.page
    service = served.service
    run = service.run(stepper, {"steps": 3, "gate": "cancel"}, "job", "k1")
    wait_for(lambda: (service.view.task(run.task) or run.task_object).state == "running")
    page.goto(f"{served.url}/ui/tasks/{run.task}")
    state = page.locator('h1 [data-field="state"]')
    expect(state).to_have_text("running")
    button = page.get_by_role("button", name=re.compile("^Cancel"))
    button.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Cancelled 1 task(s).")).to_be_visible()
    expect(state).to_have_text("cancelled", timeout=LIVE)
    expect(page.locator('article form[data-field="cancel"]')).to_be_hidden()
    expect(page.get_by_role("button", name="Run again")).to_be_visible()
    stored = service.view.task(run.task)
    assert stored is not None and stored.state == "cancelled"
    watched.clean()


PAYLOADS = [
    "<script>window.__xss = 1</script>",
    '"><img src=x onerror="window.__xss = 2">',
    '\'><svg onload="window.__xss = 3"></svg>',
    "javascript:window.__xss=4",
]


def test_hostile_task_data_shows_as_text_and_never_runs(
    dashboard: DashboardFactory, watched: Watched
) -> None:
    expect = _expect()
    served = dashboard()
    page = watched.page
    service = served.service
    cause = PAYLOADS[0] + PAYLOADS[1]
    # the cause's page is open before the tasks exist: their rows come live
    page.goto(f"{served.url}/ui/cause?type={PAYLOADS[3]}&cause=" + cause.replace("#", "%23"))
    expect(page.locator("#live-status")).to_have_text(re.compile("^Live"))
    props = {"a": PAYLOADS[0], "b": PAYLOADS[1], "c": PAYLOADS[2], "message": PAYLOADS[1]}
    failed = service.run(boom, {**props, "action": PAYLOADS[2]}, PAYLOADS[3], cause)
    moving = service.run(
        stepper, {"steps": 2, "gate": "xss", "action": PAYLOADS[0]}, PAYLOADS[3], cause
    )
    gate("xss").allow()
    row = page.locator(f'tr[data-task-id="{moving.task}"]')
    expect(row.locator('[data-field="action"]')).to_have_text(PAYLOADS[0], timeout=LIVE)
    failed_row = page.locator(f'tr[data-task-id="{failed.task}"]')
    expect(failed_row.locator('[data-field="state"]')).to_have_text("failed", timeout=LIVE)
    expect(failed_row.locator('[data-field="action"]')).to_have_text(PAYLOADS[2])
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Cause {PAYLOADS[3]}:{cause}")
    watched.clean()

    done = service.run(echo, props, "safe", "s1")
    done.result(timeout=10)
    page.goto(f"{served.url}/ui/tasks/{failed.task}")
    expect(page.locator("#props")).to_contain_text(PAYLOADS[0])
    expect(page.locator("#props")).to_contain_text(PAYLOADS[1].replace('"', '\\"'))
    expect(page.locator('[data-field="error"]')).to_have_text(f"TaskNoRetry: {PAYLOADS[1]}")
    watched.clean()
    for path in (
        f"/ui/tasks/{done.task}",
        f"/ui/tasks/{moving.task}",
        "/ui/",
        "/ui/causes",
        "/ui/tasks?state=failed",
        "/ui/tasks?state=running",
    ):
        page.goto(served.url + path)
        expect(page.locator("main h1")).to_be_visible()
        assert page.locator("main img").count() == 0
        assert page.locator("main svg[onload]").count() == 0
        watched.clean()
    expect(page.locator("main")).to_contain_text(PAYLOADS[0])  # the running task's action
