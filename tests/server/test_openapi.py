"""The OpenAPI document is generated from the code, valid, has exactly the app's routes,
agrees with docs/server.md, and its checker refuses what it does not describe.

(The served API is checked against it in `test_openapi_served.py`.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.applications import Starlette
from starlette.routing import Route

from taskservice.server import create_app
from tests.server.openapi_contract import Contract, ContractError

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "docs" / "gen_openapi.py"
DOCUMENT = ROOT / "docs" / "openapi.json"
SERVED_COPY = ROOT / "taskservice" / "server" / "openapi.json"
SERVER_MD = ROOT / "docs" / "server.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("taskservice_docs_gen_openapi", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def app_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route `create_app` serves (HEAD, Starlette's twin of GET,
    left out), but the dashboard's HTML pages (docs/dashboard.md)."""
    # building the routes needs no service
    gate = create_app(None, dashboard=False)  # type: ignore[arg-type]
    app = gate.app  # type: ignore[attr-defined]
    assert isinstance(app, Starlette)
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route), route
        found |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
    return found


# -- generated from the code ----------------------------------------------------------


def test_the_checked_in_document_is_what_the_generator_writes() -> None:
    expected = load_generator().render()
    assert DOCUMENT.read_text(encoding="utf-8") == expected, (
        "docs/openapi.json is out of date: run python docs/gen_openapi.py"
    )
    assert SERVED_COPY.read_bytes() == DOCUMENT.read_bytes(), (
        "taskservice/server/openapi.json differs from docs/openapi.json: "
        "run python docs/gen_openapi.py"
    )


def test_the_generator_gives_the_same_document_in_another_process() -> None:
    """Hash seeds and import order change nothing: the script is deterministic."""
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--stdout"],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "4321", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout == DOCUMENT.read_text(encoding="utf-8")


def test_the_generator_refuses_a_route_it_does_not_describe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator = load_generator()
    monkeypatch.delitem(generator.ENDPOINTS, ("GET", "/v1/health"))
    with pytest.raises(LookupError, match="/v1/health"):
        generator.document()


# -- a valid document with exactly the app's routes -------------------------------------


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_the_document_has_exactly_the_routes_of_the_app(document: dict[str, Any]) -> None:
    routes = app_routes()
    assert ("GET", "/v1/events") in routes and ("GET", "/v1/openapi.json") in routes
    assert Contract(document).operations() == routes


def test_every_endpoint_answers_401_and_500_and_every_json_body_also_400_422(
    document: dict[str, Any],
) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            statuses = set(op["responses"])
            assert {"401", "413", "500"} <= statuses, (method, path)
            if "requestBody" in op:
                assert {"400", "422"} <= statuses, (method, path)


# -- docs/server.md agrees ---------------------------------------------------------------


def server_md_section(title: str) -> str:
    text = SERVER_MD.read_text(encoding="utf-8")
    match = re.search(rf"^## {title}\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, f"docs/server.md has no section {title!r}"
    return match.group(1)


def test_server_md_lists_every_endpoint_of_the_document(document: dict[str, Any]) -> None:
    rows = re.findall(r"^\| `(GET|POST) (/[^ ?`]*)", server_md_section("Endpoints"), re.M)
    listed = {(method, re.sub(r"\{[^}]*\}", "{}", path)) for method, path in rows}
    documented = {
        (method, re.sub(r"\{[^}]*\}", "{}", path))
        for method, path in Contract(document).operations()
    }
    assert listed == documented


def test_server_md_gives_every_error_type_its_status(document: dict[str, Any]) -> None:
    kinds = document["components"]["schemas"]["ErrorBody"]["x-error-types"]
    table: dict[str, int] = {}
    rows = re.findall(r"^\| ([^|]+) \| (\d{3}) \|", server_md_section("Errors"), re.M)
    for types, status in rows:
        for kind in re.findall(r"`(\w+)`", types):
            table[kind] = int(status)
    assert {kind: info["status"] for kind, info in kinds.items()} == table


# -- the checker can fail ----------------------------------------------------------------


def exchange(
    method: str, path: str, status: int, body: Any, sent: Any = None, **headers: str
) -> httpx.Response:
    request = httpx.Request(method, f"http://test{path}", json=sent)
    text = body if isinstance(body, str) else json.dumps(body)
    kind = "text/plain" if isinstance(body, str) else "application/json"
    return httpx.Response(
        status, content=text.encode(), headers={"content-type": kind, **headers}, request=request
    )


RUN = {"definition": "echo", "props": {}, "cause_type": "c", "cause": "1"}
HEALTH = {"ok": True, "stopped": False}


@pytest.mark.parametrize(
    "response",
    [
        exchange("GET", "/v1/health", 418, HEALTH),  # a status not listed
        exchange("GET", "/v1/health", 200, {"ok": "yes", "stopped": False}),  # a wrong body
        exchange("GET", "/v1/health", 200, "ok"),  # a media type not listed
        exchange("POST", "/v1/runs", 404, {"type": "TaskNotFound", "message": "m"}, RUN),
        exchange("GET", "/v1/health", 401, {"type": "Unauthorized", "message": "m"}),  # no header
        exchange("POST", "/v1/runs", 200, {"runs": []}, RUN),  # a body of another schema
        # accepted, though the document refuses the request
        exchange("POST", "/v1/runs/many", 200, {"runs": []}, {"runs": [{"definition": "x"}]}),
        exchange("GET", "/v1/views/tasks_by_state?state=done&limit=5000", 200, {"tasks": []}),
        # refused as malformed, though the document accepts it
        exchange("POST", "/v1/runs", 422, {"type": "ValidationError", "message": "m"}, RUN),
        exchange("GET", "/v1/nothing", 404, {"type": "NotFound", "message": "m"}),
    ],
    ids=lambda answer: f"{answer.request.method} {answer.request.url.path} {answer.status_code}",
)
def test_the_checker_refuses_an_exchange_the_document_does_not_describe(
    document: dict[str, Any], response: httpx.Response
) -> None:
    with pytest.raises(ContractError):
        Contract(document).check(response)


def test_the_checker_takes_an_exchange_the_document_describes(document: dict[str, Any]) -> None:
    """The twin of the refusals: it is their differences the checker refuses."""
    contract = Contract(document)
    contract.check(exchange("GET", "/v1/health", 200, HEALTH))
    contract.check(exchange("GET", "/v1/health", 401, {"type": "Unauthorized", "message": "m"},
                            **{"WWW-Authenticate": "Bearer"}))  # fmt: skip
    view = "/v1/views/tasks_by_state?state=done&limit=5"
    contract.check(exchange("GET", view, 200, {"tasks": []}))
    assert contract.seen == {
        ("GET", "/v1/health"): {200, 401},
        ("GET", "/v1/views/{name}"): {200},
    }


@pytest.mark.parametrize(
    ("event", "data", "event_id"),
    [
        ("finished", '{"epoch": "e", "seq": 1}', "e:1"),  # not in x-events
        ("ready", '{"epoch": "e", "seq": 1}', ""),  # without its id
        ("gap", '{"epoch": "e", "after": 1, "first": 3, "reason": "window"}', "e:3"),  # an id
        ("gap", '{"epoch": "e", "after": 1, "first": 3, "reason": "moon"}', ""),  # bad data
        ("stopped", '{"type": "TaskFailed", "message": "m"}', ""),  # not ServiceStopped
    ],
)
def test_the_checker_refuses_an_event_the_document_does_not_describe(
    document: dict[str, Any], event: str, data: str, event_id: str
) -> None:
    contract = Contract(document)
    contract.check_event("/v1/events", "ready", '{"epoch": "e", "seq": 1}', "e:1")
    with pytest.raises(ContractError):
        contract.check_event("/v1/events", event, data, event_id)
    assert contract.events == {"ready"}
