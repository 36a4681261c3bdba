"""``tests/standins/bitwarden/faults.py``: the tests' fault switches and the cloud's rate
limits (§4), as a client meets them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bwsync.standin.http import UNHANDLED
from tests.fixtures.bitwarden import FakeFactory
from tests.fixtures.clock import FakeClock
from tests.standins.bitwarden import FakeBitwarden
from tests.unit.standin.client import Api, body, m


def test_throttle_sends_retry_after_and_the_internal_error_body(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.throttle("list_members", times=2, retry_after=7)
    for _ in range(2):
        r = api.get("/members")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "7"
        assert r.json() == {
            "object": "error",
            "message": "Slow down! Too many requests. Try again in 7s.",
            "validationErrors": None,
            "exceptionMessage": None,
            "exceptionStackTrace": None,
            "innerExceptionMessage": None,
        }
    assert api.get("/groups").status_code == 200  # other endpoints unaffected
    assert api.get("/members").status_code == 200


def test_token_endpoint_can_be_throttled(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.throttle("token", retry_after=60)
    assert api.get_token().status_code == 429
    assert api.get_token().status_code == 200


def test_server_errors_until_cleared(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.server_error("*", times=None, status=503)
    for _ in range(3):
        r = api.get("/groups")
        assert r.status_code == 503
        assert r.json()["message"] == UNHANDLED
    fake_bitwarden.clear_faults()
    assert api.get("/groups").status_code == 200


def test_fail_with_custom_body(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.fail("import", status=502, body=b"<html>bad gateway</html>")
    r = api.imp(body())
    assert (r.status_code, r.content) == (502, b"<html>bad gateway</html>")


def test_slow_and_disconnect(fake_bitwarden_factory: FakeFactory) -> None:
    """A slow fault waits its delay before the answer (the request is not in the log yet,
    which it joins once answered), once; a disconnect hangs up once."""
    delays: list[tuple[float, int]] = []
    fake_bitwarden: FakeBitwarden = fake_bitwarden_factory(
        sleep=lambda s: delays.append((s, len(fake_bitwarden.requests_to("list_groups"))))
    )
    api = Api(fake_bitwarden)
    try:
        api.login()
        fake_bitwarden.slow("list_groups", 0.3, times=1)
        assert api.get("/groups").status_code == 200
        assert api.get("/groups").status_code == 200
        assert delays == [(0.3, 0)]
        fake_bitwarden.disconnect("list_groups")
        with pytest.raises(httpx.RemoteProtocolError):
            api.get("/groups")
        assert api.get("/groups").status_code == 200
    finally:
        api.http.close()
    assert [r.status for r in fake_bitwarden.requests_to("list_groups")] == [200, 200, 0, 200]


def test_a_fault_can_skip_the_first_requests(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    """A 5xx at batch 3 of n: two requests through, then the fault."""
    fake_bitwarden.server_error("list_groups", skip=2, times=1, status=503)
    assert [api.get("/groups").status_code for _ in range(4)] == [200, 200, 503, 200]


def _answer(call: Callable[[], httpx.Response]) -> int:
    """The status the client got; 0 when the connection closed without an answer."""
    try:
        return call().status_code
    except httpx.RemoteProtocolError:
        return 0


def test_a_pause_before_holds_the_request_until_released_or_dropped(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    api.get("/groups")  # not counted: pauses count from the call on
    second = fake_bitwarden.pause("list_groups", 2)
    answers: list[int] = []

    def client() -> None:
        for _ in range(2):
            answers.append(_answer(lambda: api.get("/groups")))

    thread = threading.Thread(target=client)
    thread.start()
    second.wait()
    assert answers == [200]  # the second request waits at the server
    second.release()
    thread.join()
    assert answers == [200, 200]
    dropped = fake_bitwarden.pause("import")
    thread = threading.Thread(target=lambda: answers.append(_answer(lambda: api.imp(_one()))))
    thread.start()
    dropped.wait()
    dropped.drop()
    thread.join()
    assert answers[-1] == 0  # closed without an answer
    assert fake_bitwarden.members == []  # and the import never ran


def test_a_pause_after_holds_the_answer_of_a_change_already_made(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    pause = fake_bitwarden.pause("import", before=False)
    answers: list[int] = []
    thread = threading.Thread(target=lambda: answers.append(_answer(lambda: api.imp(_one()))))
    thread.start()
    pause.wait()
    assert [x.email for x in fake_bitwarden.members] == ["u1@example.com"]  # made
    assert answers == []  # the answer not sent yet
    pause.drop()
    thread.join()
    assert answers == [0]


def test_stopping_the_server_ends_a_forgotten_pause(fake_bitwarden_factory: FakeFactory) -> None:
    fake = fake_bitwarden_factory()
    api = Api(fake)
    api.login()
    pause = fake.pause("list_groups")
    answers: list[int] = []
    thread = threading.Thread(target=lambda: answers.append(_answer(lambda: api.get("/groups"))))
    thread.start()
    pause.wait()
    fake.stop()
    thread.join()
    assert answers == [0]


def _one() -> dict[str, Any]:
    return body([m("u1")])


def test_unknown_fault_endpoint_is_refused(fake_bitwarden: FakeBitwarden) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        fake_bitwarden.throttle("imports")


def test_cloud_rate_limits_on_identity(fake_bitwarden_factory: FakeFactory) -> None:
    clock = FakeClock()
    api = Api(fake_bitwarden_factory(rate_limits=True, clock=clock))
    try:
        assert [api.get_token().status_code for _ in range(6)] == [200] * 5 + [429]
        r = api.get_token()
        assert r.headers["Retry-After"] == "1"
        assert r.json()["message"] == "Slow down! Too many requests. Try again in 1s."
        clock.now += 1
        assert [api.get_token().status_code for _ in range(6)] == [200] * 5 + [429]
        clock.now += 10
        r = api.get_token()  # 10 per minute on the token endpoint
        assert r.status_code == 429
        assert r.json()["message"] == "Slow down! Too many requests. Try again in 1m."
        assert r.headers["Retry-After"] == "49"
        clock.now += 49
        assert api.get_token().status_code == 200
    finally:
        api.http.close()


def test_cloud_rate_limits_on_the_api(fake_bitwarden_factory: FakeFactory) -> None:
    clock = FakeClock()
    api = Api(fake_bitwarden_factory(rate_limits=True, clock=clock))
    try:
        api.login()
        assert [api.imp(body()).status_code for _ in range(6)] == [200] * 5 + [429]
        assert [api.get("/groups").status_code for _ in range(201)] == [200] * 200 + [429]
    finally:
        api.http.close()


def test_self_hosted_ignores_rate_limits(fake_bitwarden_factory: FakeFactory) -> None:
    api = Api(fake_bitwarden_factory(rate_limits=True, self_hosted=True))
    try:
        assert all(api.get_token().status_code == 200 for _ in range(12))
    finally:
        api.http.close()


def test_fault_default_bodies_follow_the_server(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.fail("token", status=400)
    assert api.get_token().json() == {"error": "invalid_client"}
    fake_bitwarden.fail("list_groups", status=401)
    r = api.get("/groups")
    assert (r.status_code, r.content) == (401, b"")
    assert "invalid_token" in r.headers["WWW-Authenticate"]
