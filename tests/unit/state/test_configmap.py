"""The ConfigMap backend's retries (``bwsync.http.retry``'s engine), over httpx.MockTransport:
only what surely did not reach the API server is tried again."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable

import httpx
import pytest

from bwsync.errors import StateError
from bwsync.state.configmap import STATE_POLICY, ConfigMapStateStore
from bwsync.state.kube import KubeConfig
from tests.fixtures.clock import FakeClock

OBJECT = {"metadata": {"resourceVersion": "7"}, "data": {"state.json": '{"version": 1}'}}


def _store(
    handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock
) -> ConfigMapStateStore:
    config = KubeConfig(
        server="https://kube.test",
        namespace="sync",
        verify=ssl.create_default_context(),
        auth=None,
        origin="a test",
        transport=httpx.MockTransport(handler),
    )
    # The backend's own policy, on a fake clock and without jitter.
    policy = dataclasses.replace(STATE_POLICY, sleep=clock.sleep, clock=clock, jitter=lambda: 0.0)
    return ConfigMapStateStore("bwsync-state", config=config, policy=policy)


def _answers(
    *answers: httpx.Response | Exception,
) -> tuple[list[str], Callable[..., httpx.Response]]:
    seen: list[str] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, handler


def test_a_429_of_api_priority_and_fairness_is_waited_for() -> None:
    clock = FakeClock()
    seen, handler = _answers(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"reason": "TooManyRequests"}),
        httpx.Response(200, json=OBJECT),
    )
    assert _store(handler, clock)._read()[1] == "7"
    assert seen == ["GET", "GET"] and clock.slept == [2.0]


def test_a_connection_never_made_is_tried_again() -> None:
    clock = FakeClock()
    refused = httpx.ConnectError("connection refused")
    seen, handler = _answers(refused, refused, httpx.Response(200, json=OBJECT))
    assert _store(handler, clock)._read()[1] == "7"
    assert len(seen) == 3 and clock.slept == [0.25, 0.5]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, json={"reason": "ServiceUnavailable", "message": "etcd"}),
        httpx.Response(500, json={"reason": "InternalError", "message": "boom"}),
        httpx.ReadTimeout("no answer"),
    ],
)
def test_what_may_have_reached_the_server_fails_at_once(answer: httpx.Response | Exception) -> None:
    """A 5xx or a timeout may come after a write was applied: repeating a conditional PUT would
    then fail with a conflict that names the wrong cause."""
    clock = FakeClock()
    seen, handler = _answers(answer)
    with pytest.raises(StateError, match="configmap sync/bwsync-state"):
        _store(handler, clock)._read()
    assert len(seen) == 1 and clock.slept == []


def test_a_connection_that_never_comes_is_reported_after_the_retries() -> None:
    clock = FakeClock()
    refused = httpx.ConnectError("connection refused")
    seen, handler = _answers(refused, refused, refused)
    with pytest.raises(StateError, match=r"cannot reach the Kubernetes API .*gave up after 3"):
        _store(handler, clock)._read()
    assert len(seen) == 3
