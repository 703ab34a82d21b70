"""Checks real HTTP exchanges against the OpenAPI document, with jsonschema (2020-12).

`Contract(document)` finds the operation of a request by its method and path
template, and checks the answer: its status is one the operation lists, its
media type one that status lists, its body valid against that schema, its
documented headers present and valid. It checks the request too: a request
answered 2xx must be valid against the document (body and query), and one
refused as malformed (`BadRequest`, `ValidationError`) must not be. Use it as
an httpx response hook (`Contract.hook`) so no answer escapes it; it records
which statuses each operation gave (`seen`). Server-Sent Events are checked one
by one against the operation's `x-events` with `check_event`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry
from referencing.jsonschema import DRAFT202012

URI = "urn:taskservice:openapi"
JSON = "application/json"
MALFORMED = frozenset({"BadRequest", "ValidationError"})
"""Error types that say the request itself does not match its schema."""
EVENT_ID = re.compile(r"^.+:[0-9]+$")


def escape(part: str) -> str:
    """A JSON pointer token."""
    return part.replace("~", "~0").replace("/", "~1")


class ContractError(AssertionError):
    """An exchange the document does not describe."""


class Contract:
    """The document's operations, and a checker of exchanges against them."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = DRAFT202012.create_resource(document)
        self.registry: Registry[Any] = Registry().with_resource(URI, resource)
        self.templates = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"), path)
            for path in document["paths"]
        ]
        self.seen: dict[tuple[str, str], set[int]] = {}
        self.events: set[str] = set()

    # -- lookups ----------------------------------------------------------------

    def operations(self) -> set[tuple[str, str]]:
        """Every (METHOD, path template) of the document."""
        return {
            (method.upper(), path)
            for path, item in self.document["paths"].items()
            for method in item
        }

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """The path template matching `path` and its operation for `method`."""
        for pattern, template in self.templates:
            if pattern.match(path):
                item = self.document["paths"][template]
                if method.lower() in item:
                    return template, item[method.lower()]
        raise ContractError(f"the document has no operation {method} {path}")

    def resolve(self, pointer: str) -> Any:
        """The value at a JSON pointer (`#/...`) of the document."""
        value: Any = self.document
        for token in pointer.removeprefix("#/").split("/"):
            value = value[token.replace("~1", "/").replace("~0", "~")]
        return value

    def errors(self, pointer: str, instance: Any) -> list[str]:
        """Why `instance` is not valid against the schema at `pointer` (none: valid)."""
        validator = Draft202012Validator({"$ref": f"{URI}{pointer}"}, registry=self.registry)
        return [
            f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(instance)
        ]

    # -- requests ---------------------------------------------------------------

    def query_errors(self, method: str, path: str, query: Iterable[tuple[str, str]]) -> list[str]:
        """Why a query is not valid against the operation's parameters (none: valid)."""
        template, op = self.operation(method, path)
        base = f"#/paths/{escape(template)}/{method.lower()}/parameters"
        params = {
            param["name"]: (index, param)
            for index, param in enumerate(op.get("parameters", []))
            if param["in"] == "query"
        }
        problems: list[str] = []
        for name, text in query:
            if name not in params:
                problems.append(f"{name}: not a parameter of {method} {template}")
                continue
            index, param = params[name]
            value = _typed(text, param["schema"])
            found = self.errors(f"{base}/{index}/schema", value)
            problems += [f"{name}={text!r}: {problem}" for problem in found]
        return problems

    def body_errors(self, method: str, path: str, content: bytes) -> list[str]:
        """Why a request body is not valid against the operation's (none: valid)."""
        template, op = self.operation(method, path)
        if "requestBody" not in op:
            return [] if not content else ["the operation takes no body"]
        try:
            body = json.loads(content)
        except ValueError as error:
            return [f"not JSON: {error}"]
        pointer = f"#/paths/{escape(template)}/{method.lower()}/requestBody/content/{escape(JSON)}"
        return self.errors(f"{pointer}/schema", body)

    # -- answers ----------------------------------------------------------------

    def check(self, response: httpx.Response) -> None:
        """Raise `ContractError` unless the document describes this exchange."""
        request = response.request
        method, path = request.method, request.url.path
        template, op = self.operation(method, path)
        status = response.status_code
        where = f"{method} {path} -> {status}"
        if str(status) not in op["responses"]:
            raise ContractError(f"{where}: status not documented; body {response.text[:300]}")
        pointer = f"#/paths/{escape(template)}/{method.lower()}/responses/{status}"
        answer = self.resolve(pointer)
        if "$ref" in answer:
            pointer = answer["$ref"]
            answer = self.resolve(pointer)
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media not in answer.get("content", {}):
            raise ContractError(f"{where}: media type {media!r} not documented")
        for name in answer.get("headers", {}):
            if name not in response.headers:
                raise ContractError(f"{where}: header {name} missing")
            header = f"{pointer}/headers/{escape(name)}/schema"
            problems = self.errors(header, response.headers[name])
            if problems:
                raise ContractError(f"{where}: header {name}: {problems}")
        if media != "text/event-stream":
            value = response.json() if media == JSON else response.text
            problems = self.errors(f"{pointer}/content/{escape(media)}/schema", value)
            if problems:
                raise ContractError(f"{where}: body not valid: {problems}; body {value!r:.300}")
        self._check_request(response, where)
        self.seen.setdefault((method, template), set()).add(status)

    def _check_request(self, response: httpx.Response, where: str) -> None:
        request = response.request
        method, path = request.method, request.url.path
        try:
            content = request.content
        except httpx.RequestNotRead:  # a streamed body: not checked
            return
        if response.is_success:
            problems = self.query_errors(method, path, request.url.params.multi_items())
            problems += self.body_errors(method, path, content)
            if problems:
                raise ContractError(f"{where}: accepted a request the document refuses: {problems}")
        elif response.headers.get("content-type", "").startswith(JSON):
            kind = response.json().get("type")
            if kind in MALFORMED and not self.body_errors(method, path, content):
                raise ContractError(f"{where}: {kind} for a body the document accepts: {content!r}")

    def hook(self, response: httpx.Response) -> None:
        """An httpx response hook: read the body (unless a stream) and `check`."""
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
        self.check(response)

    def check_event(self, path: str, event: str, data: str, event_id: str | None) -> None:
        """Raise `ContractError` unless the operation's `x-events` describe this event."""
        template, _ = self.operation("GET", path)
        pointer = (
            f"#/paths/{escape(template)}/get/responses/200/content/"
            f"{escape('text/event-stream')}/x-events"
        )
        events = self.resolve(pointer)
        if event not in events:
            raise ContractError(f"event {event!r} is not in x-events ({sorted(events)})")
        documented_id = events[event]["id"]
        if documented_id is None and event_id is not None:
            raise ContractError(f"event {event!r} has id {event_id!r}; the document says none")
        if documented_id is not None and not EVENT_ID.match(event_id or ""):
            raise ContractError(f"event {event!r} has id {event_id!r}, not {documented_id}")
        problems = self.errors(f"{pointer}/{escape(event)}/data", json.loads(data))
        if problems:
            raise ContractError(f"event {event!r}: data not valid: {problems}; data {data:.300}")
        self.events.add(event)

    def covered(self, operations: Iterable[tuple[str, str]]) -> list[str]:
        """The operations not seen with both a 2xx answer and an error answer."""
        missing: list[str] = []
        for method, template in sorted(operations):
            statuses = self.seen.get((method, template), set())
            if not any(200 <= s < 300 for s in statuses) or not any(s >= 400 for s in statuses):
                missing.append(f"{method} {template}: {sorted(statuses)}")
        return missing


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event as sent: its own `id:` field (None: it had none)."""

    event: str
    data: str
    id: str | None


def read_events(response: httpx.Response) -> Iterator[Event]:
    """The events of a `text/event-stream` answer, as sent (comment lines skipped).

    Written here rather than taken from an SSE client library, because a client
    gives each event the last id seen (as EventSource does), and the contract is
    about which events carry one.
    """
    fields: dict[str, list[str]] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                event_id = fields["id"][-1] if "id" in fields else None
                kind = fields.get("event", ["message"])[-1]
                yield Event(kind, "\n".join(fields["data"]), event_id)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))


def _typed(text: str, schema: dict[str, Any]) -> Any:
    """A query string value as the JSON value its schema describes (kept as text if it
    does not convert, so the schema refuses it)."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    return text
