"""Reading the dashboard's HTML in tests: its rows, its CSRF token, its forms."""

from __future__ import annotations

import re
from typing import Final

import httpx

ROW: Final = re.compile(r'<tr data-task-id="([^"]+)" data-depth="(\d+)"')
CSRF: Final = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def rows(html: str) -> list[tuple[str, int]]:
    """(task id, depth) of every task row of a page, in page order (not the template's)."""
    body = html.split('<template id="row-template">')[0]
    return [(task_id, int(depth)) for task_id, depth in ROW.findall(body)]


def csrf(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def page(http: httpx.Client, path: str, **params: str) -> str:
    """A dashboard page's HTML (200 expected)."""
    response = http.get(path, params=params) if params else http.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text
