"""The Ray executor's own behaviour: the Ray connection it makes, borrows and stops.

The semantics it shares with the other executors are in `test_contract.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.executors.conftest import NEEDS_RAY

if TYPE_CHECKING:
    from taskservice.executors.ray_executor import RayExecutor

pytestmark = [NEEDS_RAY, pytest.mark.timeout(90)]


def test_an_existing_ray_connection_is_used_and_left_running(ray_executor: RayExecutor) -> None:
    import ray

    from taskservice.executors.ray_executor import RayExecutor

    assert ray_executor.owns_ray
    borrowed = RayExecutor()
    borrowed.connect()
    assert not borrowed.owns_ray
    borrowed.shutdown()
    assert ray.is_initialized()
    with pytest.raises(RuntimeError, match="shut down"):
        borrowed.connect()


def test_num_cpus_and_address_do_not_mix() -> None:
    from taskservice.executors.ray_executor import RayExecutor

    with pytest.raises(ValueError, match="num_cpus"):
        RayExecutor(address="auto", num_cpus=2)
