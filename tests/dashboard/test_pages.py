"""The dashboard's pages over real HTTP: what each shows, in which order, and its actions.

(The browser tests, test_browser.py, check what a person sees; these check
the HTML the server sends and what the actions change.)
"""

from __future__ import annotations

import re

import httpx
import pytest

from taskservice import Cron, Every, TaskDefinition, TaskFailed
from taskservice.dashboard import formatting
from taskservice.metrics.hooks import MetricsHooks
from taskservice.server.serving import Serving, bind
from taskservice.testing import ManualClock
from tests.dashboard.conftest import DashboardFactory
from tests.dashboard.defs import DEFINITIONS, boom, echo, flaky, gate, stepper, tree
from tests.dashboard.helpers import csrf, page, rows
from tests.runtime.helpers import wait_for
from tests.services import Services


def test_root_redirects_to_the_overview_and_assets_are_served(dashboard: DashboardFactory) -> None:
    http = dashboard().http
    response = http.get("/")
    assert response.status_code == 307 and response.headers["location"] == "/ui/"
    html = page(http, "/ui/")
    assert "<h1>Overview</h1>" in html
    headers = http.get("/ui/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    script = http.get("/ui/static/dashboard.js")
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert http.get("/ui/static/dashboard.css").headers["content-type"].startswith("text/css")
    missing = http.get("/ui/no-such-page")
    assert missing.status_code == 404 and "There is no dashboard page here." in missing.text


def test_a_cause_page_shows_its_tree_parents_before_their_subtasks(
    dashboard: DashboardFactory,
) -> None:
    served = dashboard()
    service = served.service
    gate("tree").allow(100)
    first = service.run(tree, {"children": 2, "steps": 1, "gate": "tree"}, "upload", "u1")
    second = service.run(tree, {"children": 1, "steps": 1, "gate": "tree"}, "upload", "u1")
    assert first.result(timeout=10) == 2 and second.result(timeout=10) == 1
    html = page(served.http, "/ui/cause", type="upload", cause="u1")
    shown = rows(html)
    by_id = {task.id: task for task in service.view.tasks_by_root("upload", "u1")}
    assert len(shown) == 5 == len(by_id)
    # each top task is followed by its own subtasks, one level deeper
    names = [(by_id[task_id].name, depth) for task_id, depth in shown]
    assert names == [("tree", 0), ("stepper", 1), ("stepper", 1), ("tree", 0), ("stepper", 1)]
    parents = [by_id[task_id].cause for task_id, depth in shown if depth == 1]
    assert parents == [first.task, first.task, second.task]
    assert 'data-events="/v1/events?root_type=upload&amp;root=u1"' in html
    assert "100 %" in html and 'value="100"' in html


def test_a_task_page_shows_props_result_attempts_stack_parent_and_triggers(
    dashboard: DashboardFactory,
) -> None:
    served = dashboard()
    gate("flaky").allow(2)
    run = served.service.run(flaky, {"message": "disk on fire", "gate": "flaky"}, "job", "j1")
    assert run.result(timeout=10) == "second attempt"
    html = page(served.http, f"/ui/tasks/{run.task}")
    assert "Attempt 1 failed" in html and "disk on fire" in html
    assert "_explode" in html  # the failed attempt's stack, function by function
    assert "second attempt" in html  # the result
    assert '"message": "disk on fire"' in html.replace("&#34;", '"')  # the props, as JSON
    for name in ("taskDone", "taskFlakyDone", "job_j1OwnedTaskFlakyDone"):
        assert f"<code>{name}</code>" in html
    gate("tree").allow(10)
    parent = served.service.run(tree, {"children": 1, "steps": 1, "gate": "tree"}, "job", "j2")
    parent.result(timeout=10)
    [child] = served.service.view.subtasks(parent.task)
    child_page = page(served.http, f"/ui/tasks/{child.id}")
    assert f'href="/ui/tasks/{parent.task}"' in child_page  # its parent
    parent_page = page(served.http, f"/ui/tasks/{parent.task}")
    assert rows(parent_page) == [(child.id, 0)]  # its subtasks
    unknown = served.http.get("/ui/tasks/nope")
    assert unknown.status_code == 404 and "No task nope is stored." in unknown.text


HOSTILE = [
    "<script>window.__xss = 1</script>",
    '"><img src=x onerror="window.__xss = 2">',
    "'><svg onload=alert(3)>",
]


def test_hostile_values_are_escaped_on_every_page(dashboard: DashboardFactory) -> None:
    served = dashboard()
    service = served.service
    cause = HOSTILE[0] + HOSTILE[1]
    props = {"a": HOSTILE[0], "b": HOSTILE[1], "message": HOSTILE[1], "action": HOSTILE[2]}
    failed = service.run(boom, props, HOSTILE[2], cause)
    with pytest.raises(TaskFailed):
        failed.result(timeout=10)
    done = service.run(echo, {"x": HOSTILE[1]}, "safe", "s1")
    done.result(timeout=10)
    wait_for(lambda: service.view.task(failed.task) is not None)
    pages = [
        page(served.http, "/ui/"),
        page(served.http, "/ui/causes"),
        page(served.http, "/ui/cause", type=HOSTILE[2], cause=cause),
        page(served.http, f"/ui/tasks/{failed.task}"),
        page(served.http, f"/ui/tasks/{done.task}"),
        page(served.http, "/ui/tasks", state="failed"),
        page(served.http, "/ui/causes", find=f"{HOSTILE[2]}:nothing"),
    ]
    for html in pages:
        for payload in HOSTILE:
            assert payload not in html
        assert (
            "<img" not in html
            and "<svg onload" not in html
            and "window.__xss = 1</script>" not in html
        )
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in pages[3]


def _form_token(http: httpx.Client, path: str) -> str:
    return csrf(page(http, path))


def test_cancel_a_task_and_a_cause_and_run_a_failed_task_again(
    dashboard: DashboardFactory,
) -> None:
    served = dashboard()
    service, http = served.service, served.http
    running = service.run(stepper, {"steps": 5, "gate": "held"}, "job", "c1")
    other = service.run(stepper, {"steps": 5, "gate": "held", "n": 2}, "job", "c2")
    wait_for(lambda: (service.view.task(running.task) or running.task_object).state == "running")
    token = _form_token(http, f"/ui/tasks/{running.task}")
    answer = http.post(
        f"/ui/tasks/{running.task}/cancel",
        data={"csrf": token, "next": f"/ui/tasks/{running.task}"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/tasks/{running.task}?notice=cancelled&count=1"
    wait_for(lambda: (service.view.task(running.task) or running.task_object).state == "cancelled")
    assert "Cancelled 1 task(s)." in page(http, answer.headers["location"])
    answer = http.post(
        "/ui/cause/cancel",
        data={"csrf": token, "cause_type": "job", "cause": "c2", "next": "https://evil.example/"},
    )
    assert answer.status_code == 303  # and never to another site:
    assert answer.headers["location"] == "/ui/cause?type=job&cause=c2&notice=cancelled&count=1"
    wait_for(lambda: (service.view.task(other.task) or other.task_object).state == "cancelled")

    failed = service.run(boom, {"message": "no"}, "job", "c3")
    wait_for(lambda: (service.view.task(failed.task) or failed.task_object).state == "failed")
    answer = http.post(f"/ui/tasks/{failed.task}/rerun", data={"csrf": token})
    assert answer.status_code == 303
    new_id = re.fullmatch(r"/ui/tasks/([0-9a-f]+)\?notice=rerun", answer.headers["location"])
    assert new_id is not None and new_id.group(1) != failed.task
    again = service.view.task(new_id.group(1))
    original = service.view.task(failed.task)
    assert again is not None and original is not None
    assert (again.name, again.properties, again.cause_type, again.cause) == (
        original.name,
        original.properties,
        original.cause_type,
        original.cause,
    )
    done = service.run(echo, {}, "job", "c4")
    done.result(timeout=10)
    refused = http.post(f"/ui/tasks/{done.task}/rerun", data={"csrf": token})
    assert (
        refused.status_code == 409 and "Only a failed or cancelled task runs again" in refused.text
    )


def test_a_form_without_its_csrf_token_or_from_another_site_changes_nothing(
    dashboard: DashboardFactory,
) -> None:
    served = dashboard()
    service, http = served.service, served.http
    run = service.run(stepper, {"steps": 3, "gate": "csrf"}, "job", "x1")
    token = _form_token(http, f"/ui/tasks/{run.task}")
    attempts = [
        ({}, {}),
        ({"csrf": "0" * 64}, {}),
        ({"csrf": token}, {"Origin": "https://evil.example"}),
    ]
    for data, headers in attempts:
        answer = http.post(f"/ui/tasks/{run.task}/cancel", data=data, headers=headers)
        assert answer.status_code == 403, (data, headers)
    cause = http.post("/ui/cause/cancel", data={"cause_type": "job", "cause": "x1"})
    assert cause.status_code == 403
    gate("csrf").allow(3)
    assert run.result(timeout=10)["steps"] == 3  # it ran to its end: nothing was cancelled


def test_read_only_hides_the_actions_and_refuses_them(dashboard: DashboardFactory) -> None:
    served = dashboard(read_only=True)
    service, http = served.service, served.http
    run = service.run(stepper, {"steps": 2, "gate": "ro"}, "job", "r1")
    html = page(http, f"/ui/tasks/{run.task}")
    cause_html = page(http, "/ui/cause", type="job", cause="r1")
    assert "Read-only" in html
    for shown in (html, cause_html):
        assert (
            "/cancel" not in shown
            and "/rerun" not in shown
            and '<button type="submit" class="danger"' not in shown
        )
    token = "refused before the form is read"
    for path, data in [
        (f"/ui/tasks/{run.task}/cancel", {"csrf": token}),
        ("/ui/cause/cancel", {"csrf": token, "cause_type": "job", "cause": "r1"}),
        (f"/ui/tasks/{run.task}/rerun", {"csrf": token}),
    ]:
        answer = http.post(path, data=data)
        assert answer.status_code == 403 and "read-only" in answer.text
    gate("ro").allow(2)
    assert run.result(timeout=10)["steps"] == 2


def test_without_a_token_only_loopback_names_reach_the_dashboard(
    dashboard: DashboardFactory,
) -> None:
    http = dashboard().http
    for host in ("evil.example", "evil.example:80", "10.0.0.5", "127.0.0.1.evil.example"):
        refused = http.get("/ui/", headers={"Host": host})
        assert refused.status_code == 403 and "loopback" in refused.text, host
    for host in ("localhost", "127.0.0.1:8750", "[::1]:8750", "127.1.2.3"):
        assert http.get("/ui/", headers={"Host": host}).status_code == 200, host


def test_lists_filter_by_state_and_definition_and_page(dashboard: DashboardFactory) -> None:
    served = dashboard()
    service, http = served.service, served.http
    runs = [service.run(echo, {"i": i}, "list", "l1") for i in range(5)]
    failed = [service.run(boom, {"message": f"m{i}"}, "list", "l1") for i in range(3)]
    for run in runs:
        run.result(timeout=10)
    wait_for(lambda: len(service.view.tasks_by_state("failed")) == 3)
    newest = rows(page(http, "/ui/tasks", state="failed", order="newest"))
    assert [task_id for task_id, _ in newest] == [run.task for run in reversed(failed)]
    oldest = rows(page(http, "/ui/tasks", state="done", definition="echo", limit="25"))
    assert [task_id for task_id, _ in oldest] == [run.task for run in runs]
    assert rows(page(http, "/ui/tasks", state="done", definition="boom")) == []
    first = page(http, "/ui/cause", type="list", cause="l1", limit="25")
    assert len(rows(first)) == 8 and "Next page" not in first
    only_failed = rows(page(http, "/ui/cause", type="list", cause="l1", state="failed"))
    assert {task_id for task_id, _ in only_failed} == {run.task for run in failed}
    bad = http.get("/ui/tasks", params={"state": "sleeping"})
    assert bad.status_code == 400 and "unknown state" in bad.text
    assert http.get("/ui/cause", params={"type": "list"}).status_code == 400
    assert (
        http.get("/ui/cause", params={"type": "l", "cause": "c", "limit": "7"}).status_code == 400
    )


def test_find_goes_to_a_cause_or_a_task(dashboard: DashboardFactory) -> None:
    served = dashboard()
    run = served.service.run(echo, {}, "upload", "u:7")
    run.result(timeout=10)
    http = served.http
    to_cause = http.get("/ui/causes", params={"find": "upload:u:7"})
    assert to_cause.status_code == 303
    assert to_cause.headers["location"] == "/ui/cause?type=upload&cause=u%3A7"
    to_task = http.get("/ui/causes", params={"find": f" {run.task} "})
    assert to_task.headers["location"] == f"/ui/tasks/{run.task}"
    nothing = page(http, "/ui/causes", find="upload:u8")
    assert "No task of cause upload:u8 is stored." in nothing
    recent = page(http, "/ui/causes")
    assert "upload:u:7" in recent


def test_the_overview_counts_by_state_and_definition(dashboard: DashboardFactory) -> None:
    served = dashboard()
    service = served.service
    for i in range(3):
        service.run(echo, {"i": i}, "ov", "o1").result(timeout=10)
    failed = service.run(boom, {"message": "broken pipe"}, "ov", "o2")
    running = service.run(stepper, {"steps": 1, "gate": "ov"}, "ov", "o3")
    wait_for(lambda: len(service.view.tasks_by_state("failed")) == 1)
    wait_for(lambda: len(service.view.tasks_by_state("running")) == 1)
    html = page(served.http, "/ui/")
    state_counts = dict(
        re.findall(r'data-state="(\w+)">\1</span></a></th><td class="num">(\d+)', html)
    )
    assert (state_counts["done"], state_counts["failed"], state_counts["running"]) == (
        "3",
        "1",
        "1",
    )
    echo_line = re.search(r"<th scope=\"row\">echo</th>((?:<td class=\"num\">\d+</td>){6})", html)
    assert echo_line is not None
    assert re.findall(r"\d+", echo_line.group(1)) == ["0", "0", "3", "3", "0", "0"]
    assert "broken pipe" in html and failed.task[-8:] in html  # a recent failure
    assert running.task[-8:] in html  # running now
    assert "ov:o3" in html  # a recent cause
    # throughput from the service's counters: sampled when the app started, and now
    assert "<strong>4</strong> finished (3 succeeded, 1 failed, 0 cancelled), 5 created" in html
    assert html.count('<rect class="succeeded"') == 30  # a bar every 30 s for 15 minutes
    gate("ov").allow()


def test_without_prometheus_metrics_the_overview_says_so(services: Services) -> None:
    service = services(DEFINITIONS, durability="memory", metrics=MetricsHooks())
    with Serving(service.asgi_app(), bind("127.0.0.1", 0)) as serving:
        service.run(echo, {}, "m", "m1").result(timeout=10)
        with httpx.Client(base_url=serving.address) as http:
            html = page(http, "/ui/")
    assert "started with metrics that are not Prometheus" in html
    assert '<td class="num">1</td>' in html  # the stored counts are there all the same


def test_a_subtask_cause_is_its_parent_task_page(dashboard: DashboardFactory) -> None:
    http = dashboard().http
    answer = http.get("/ui/cause", params={"type": "task_Task", "cause": "0123abc"})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/tasks/0123abc"


def test_a_task_page_shows_a_delayed_runs_start_time(dashboard: DashboardFactory) -> None:
    served = dashboard()
    start_ms = 1_999_999_999_000  # 2033-05-18 03:33:19 UTC
    later = served.service.run(echo, {"x": "later"}, "remind", "r1", at=start_ms)
    html = page(served.http, f"/ui/tasks/{later.task}")
    assert 'data-field="starts"' in html and "2033-05-18 03:33:19" in html
    assert 'data-state="scheduled"' in html
    now = served.service.run(echo, {"x": "now"}, "remind", "r2")
    assert now.result(timeout=10)
    assert 'data-field="starts"' not in page(served.http, f"/ui/tasks/{now.task}")


def _slot(props: dict[str, object], ctx: object, emit: object) -> object:
    return props["slot"]


def test_the_schedules_page_lists_each_periodic_definition_and_its_latest_slot(
    services: Services,
) -> None:
    hour = 3_600_000
    start = 1_900_000_800_000 // hour * hour  # a whole hour in 2030 (UTC)
    clock = ManualClock(start / 1000)
    every = TaskDefinition("heartbeat", _slot, schedule=Every(minutes=10))
    nightly = TaskDefinition("nightly", _slot, schedule=Cron("0 3 * * *", catch_up="skip"))
    service = services([every, nightly], durability="memory", clock=clock)
    serving = Serving(service.asgi_app(), bind("127.0.0.1", 0))
    try:
        with httpx.Client(base_url=serving.address, timeout=30) as http:
            html = page(http, "/ui/schedules")
            assert 'aria-current="page"' in html.split("<h1>")[0].split("Schedules</a>")[0][-80:]
            table = html.split('id="schedules"')[1]
            assert table.index("heartbeat") < table.index("nightly")  # by name
            assert "every 0:10:00" in table and "cron 0 3 * * *" in table and "skip" in table
            assert 'href="/ui/cause?type=schedule&amp;cause=heartbeat"' in table
            # the first ten-minute slot is waiting for its time: linked, with its state
            first = start + 600_000
            wait_for(lambda: service.schedules()[0].last_slot == first)
            [listed] = [s for s in service.schedules() if s.name == "heartbeat"]
            html = page(http, "/ui/schedules")
            assert f'href="/ui/tasks/{listed.last_task}"' in html
            assert 'data-state="scheduled"' in html
            assert formatting.iso(first) in html
            # its time comes: it runs, and the next slot becomes the latest
            clock.advance(600)
            wait_for(lambda: service.schedules()[0].last_slot == first + 600_000)
            assert service.run(every, {"slot": first}, "schedule", "heartbeat").result(10) == first
            assert formatting.iso(first + 600_000) in page(http, "/ui/schedules")
    finally:
        serving.close()
