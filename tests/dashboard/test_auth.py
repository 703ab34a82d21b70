"""With a token, nothing of the dashboard is readable or changeable without it.

A browser logs in once with the token and gets a session cookie (HttpOnly,
SameSite=Strict) that the gate takes in place of the bearer token for reads
(pages, `/v1/events`, `/v1/views`) and for the dashboard's own forms (which
also need their CSRF token), never for a change through the API.
"""

from __future__ import annotations

import re

import httpx

from tests.dashboard.conftest import DashboardFactory
from tests.dashboard.defs import gate, stepper
from tests.dashboard.helpers import csrf, page

JSON = {"Content-Type": "application/json"}
TOKEN = "s3cret-token-for-the-dashboard"


def _log_in(http: httpx.Client, token: str, next_path: str = "/ui/") -> httpx.Response:
    form = http.get("/ui/login", params={"next": next_path})
    assert form.status_code == 200 and 'type="password"' in form.text
    return http.post("/ui/login", data={"token": token, "next": next_path, "csrf": csrf(form.text)})


def test_without_logging_in_nothing_is_readable_or_changeable(
    dashboard: DashboardFactory,
) -> None:
    served = dashboard(token=TOKEN)
    service, http = served.service, served.http
    run = service.run(stepper, {"steps": 2, "gate": "auth", "secret": "props-secret"}, "job", "a1")
    for path in ["/ui/", "/ui/causes", f"/ui/tasks/{run.task}", "/ui/tasks", "/ui", "/ui/nope"]:
        answer = http.get(path, params={"x": "1"} if path == "/ui/" else None)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/ui/login?next=%2Fui"), path
        assert "props-secret" not in answer.text and run.task not in answer.text
    cause = http.get("/ui/cause", params={"type": "job", "cause": "a1"})
    assert cause.headers["location"] == "/ui/login?next=%2Fui%2Fcause%3Ftype%3Djob%26cause%3Da1"
    for path in [f"/v1/tasks/{run.task}", "/v1/events", "/v1/views/tasks_by_state", "/metrics"]:
        assert http.get(path).status_code == 401, path
    for path, data in [
        (f"/ui/tasks/{run.task}/cancel", {}),
        ("/ui/cause/cancel", {"cause_type": "job", "cause": "a1"}),
        (f"/ui/tasks/{run.task}/rerun", {}),
        ("/ui/logout", {}),
    ]:
        assert http.post(path, data=data).status_code == 401, path
    # the login page and the static files are public; they hold no task data
    assert http.get("/ui/static/dashboard.js").status_code == 200
    assert http.get("/").status_code == 307
    gate("auth").allow(2)
    assert run.result(timeout=10)["steps"] == 2  # nothing was cancelled


def test_a_wrong_token_is_refused_and_a_right_one_opens_a_session(
    dashboard: DashboardFactory,
) -> None:
    served = dashboard(token=TOKEN)
    service, http = served.service, served.http
    run = service.run(stepper, {"steps": 5, "gate": "auth2"}, "job", "a2")
    wrong = _log_in(http, "guess")
    assert wrong.status_code == 401 and "That is not the token." in wrong.text
    assert not http.cookies
    right = _log_in(http, f"  {TOKEN}\n", f"/ui/tasks/{run.task}")
    assert right.status_code == 303 and right.headers["location"] == f"/ui/tasks/{run.task}"
    cookie = right.headers["set-cookie"]
    assert re.match(r"taskservice_session_[0-9a-f]{10}=\d+\.[0-9a-f]{64};", cookie)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie
    html = page(http, f"/ui/tasks/{run.task}")
    assert "Log out" in html
    # the session reads the API (what the page's script does) ...
    assert http.get(f"/v1/tasks/{run.task}").status_code == 200
    with http.stream("GET", "/v1/events", params={"root_type": "job", "root": "a2"}) as stream:
        assert stream.status_code == 200
    # ... but changes nothing through it
    assert http.post(f"/v1/tasks/{run.task}/cancel", headers=JSON).status_code == 401
    assert http.post("/v1/runs", json={}).status_code == 401
    # the dashboard's forms work with the session and their CSRF token
    token = csrf(html)
    cancelled = http.post(f"/ui/tasks/{run.task}/cancel", data={"csrf": token})
    assert cancelled.status_code == 303
    # logging out forgets the cookie
    out = http.post("/ui/logout", data={"csrf": token})
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert http.get("/ui/").status_code == 303


def test_a_forged_or_stale_cookie_is_no_session(dashboard: DashboardFactory) -> None:
    served = dashboard(token=TOKEN)
    http = served.http
    right = _log_in(http, TOKEN)
    name, value = right.headers["set-cookie"].split(";")[0].split("=", 1)
    expires, signature = value.split(".")
    forged = [
        f"{int(expires) + 3600}.{signature}",  # a later expiry, the old signature
        f"{expires}.{'0' * 64}",
        "1.2",
        "",
    ]
    for fake in forged:
        with httpx.Client(base_url=served.url, cookies={name: fake}) as other:
            assert other.get("/ui/").status_code == 303, fake
            assert other.get("/v1/health").status_code == 401, fake
    # a session of another token (another service) is no session here
    other_service = dashboard(token="another-token")
    with httpx.Client(base_url=other_service.url, cookies={name: value}) as other:
        assert other.get("/ui/").status_code == 303
    # the bearer token still works for everything, without any cookie
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}) as bearer:
        assert bearer.get("/ui/").status_code == 200
        assert bearer.get("/v1/health").status_code == 200


def test_login_with_no_token_set_is_not_needed(dashboard: DashboardFactory) -> None:
    http = dashboard().http
    answer = http.get("/ui/login", params={"next": "/ui/causes"})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/causes"
    elsewhere = http.get("/ui/login", params={"next": "//evil.example/x"})
    assert elsewhere.headers["location"] == "/ui/"
