"""Reply: the one-shot answer waited for by threads, set by an actor."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from taskservice.actors.reply import Reply


def test_a_reply_set_before_anyone_waits_is_read_at_once() -> None:
    reply: Reply[int] = Reply()
    reply.set_result(7)
    assert reply.done()
    assert reply.result(0) == 7
    assert reply.result() == 7


def test_an_error_is_raised_to_every_reader() -> None:
    reply: Reply[int] = Reply()
    reply.set_exception(KeyError("gone"))
    for _ in range(2):
        with pytest.raises(KeyError, match="gone"):
            reply.result(0)


def test_many_threads_waiting_before_the_set_all_get_the_value() -> None:
    reply: Reply[str] = Reply()
    waiting = threading.Barrier(9)

    def wait() -> str:
        waiting.wait(10)
        return reply.result(10)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(wait) for _ in range(8)]
        waiting.wait(10)
        reply.set_result("ok")
        assert [future.result(10) for future in futures] == ["ok"] * 8


def test_a_wait_that_times_out_leaves_the_reply_usable() -> None:
    reply: Reply[int] = Reply()
    with pytest.raises(TimeoutError, match=r"no reply within 0\.01 s"):
        reply.result(0.01)
    assert not reply.done()
    reply.set_result(3)
    assert reply.result(0) == 3
    assert reply.result(1) == 3


def test_a_reply_is_set_once() -> None:
    reply: Reply[int] = Reply()
    reply.set_result(1)
    with pytest.raises(RuntimeError, match="set only once"):
        reply.set_result(2)
    assert reply.result(0) == 1


def test_callbacks_run_once_set_or_at_once_when_already_set() -> None:
    reply: Reply[int] = Reply()
    seen: list[int] = []
    reply.add_done_callback(lambda done: seen.append(done.result(0)))
    assert seen == []
    reply.set_result(5)
    reply.add_done_callback(lambda done: seen.append(done.result(0) + 1))
    assert seen == [5, 6]
