"""Opens a damaged copy of a store and reads it every way a service does.

    python damaged_child.py STORE EXPECTED.json

Prints one JSON line: whether it opened, the error if not, how many tasks the
reads returned, and every task returned that differs from the original of
its id or does not belong where it was found ("wrong"), and every exception
that was not a `StoreError` ("raw"). Run in a child process: a damaged file
must never crash it (a crash is what the test looks for).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import msgspec

from taskservice.model import STATES, Task
from taskservice.storage import LmdbStore, StoreError, Views


def main() -> None:
    path, expected_file = sys.argv[1], sys.argv[2]
    originals = {
        task.id: task
        for task in msgspec.json.decode(Path(expected_file).read_bytes(), type=list[Task])
    }
    summary: dict[str, Any] = {"opened": False, "returned": 0, "wrong": [], "raw": []}
    try:
        store = LmdbStore(path, readonly=True)
    except StoreError as error:
        summary["error"] = str(error)
        print(json.dumps(summary))
        return
    summary["opened"] = True
    views = Views(store)
    causes = {(t.cause_type, t.cause) for t in originals.values()}

    def check(found: list[Task], where: str, belongs: Any) -> None:
        for task in found:
            summary["returned"] += 1
            original = originals.get(task.id)
            if original is None or task != original or not belongs(task):
                summary["wrong"].append(f"{where}: {task.id}")

    reads: list[tuple[str, Any, Any]] = []
    for cause_type, cause in sorted(causes):
        same = lambda t, ct=cause_type, c=cause: (t.cause_type, t.cause) == (ct, c)  # noqa: E731
        reads.append(
            (
                f"cause {cause}",
                lambda ct=cause_type, c=cause: views.tasks_by_cause_and_start(ct, c, limit=1000),
                same,
            )
        )
        if cause_type != "task_Task":  # for a task, tasks_by_root is its subtree
            reads.append(
                (
                    f"root {cause}",
                    lambda ct=cause_type, c=cause: views.tasks_by_root(ct, c, limit=1000),
                    lambda t, ct=cause_type, c=cause: (t.root_type, t.root) == (ct, c),
                )
            )
        for state in STATES:
            reads.append(
                (
                    f"cause {cause} {state}",
                    lambda ct=cause_type, c=cause, s=state: views.tasks_by_cause_and_state(
                        ct, c, s, limit=1000
                    ),
                    lambda t, ct=cause_type, c=cause, s=state: (
                        (t.cause_type, t.cause, t.state) == (ct, c, s)
                    ),
                )
            )
    for state in STATES:
        reads.append(
            (
                f"state {state}",
                lambda s=state: views.tasks_by_state(s, limit=10_000),
                lambda t, s=state: t.state == s,
            )
        )
    reads.append(("all", lambda: list(store.iter_tasks()), lambda t: True))
    reads.append(
        ("get", lambda: [t for i in originals if (t := views.task(i)) is not None], lambda t: True)
    )
    for where, read, belongs in reads:
        try:
            check(read(), where, belongs)
        except StoreError:
            pass
        except Exception as error:
            summary["raw"].append(f"{where}: {type(error).__name__}: {error}")
    store.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
