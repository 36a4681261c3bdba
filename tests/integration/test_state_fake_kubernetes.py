"""The Kubernetes stand-in keeps the API server's contract (raw HTTP, no bwsync code)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.state import KubeTLS
from tests.standins.kubernetes import MAX_CONFIGMAP_BYTES, FakeKubernetes

BASE = "/api/v1/namespaces/ns/configmaps"


@pytest.fixture
def api(fake_kube: FakeKubernetes, kube_tls: KubeTLS) -> Iterator[httpx.Client]:
    token = fake_kube.issue_token("tester")
    with httpx.Client(
        base_url=fake_kube.url,
        verify=ssl.create_default_context(cafile=kube_tls.cert),
        trust_env=False,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


def _cm(name: str, rv: str | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if rv:
        meta["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def test_create_get_replace_delete(api: httpx.Client) -> None:
    created = api.post(BASE, json=_cm("a", k="1"))
    assert created.status_code == 201
    rv = created.json()["metadata"]["resourceVersion"]
    got = api.get(f"{BASE}/a").json()
    assert got["data"] == {"k": "1"}
    assert got["metadata"]["namespace"] == "ns"
    replaced = api.put(f"{BASE}/a", json=_cm("a", rv, k="2"))
    assert replaced.status_code == 200
    assert replaced.json()["metadata"]["resourceVersion"] != rv
    assert replaced.json()["metadata"]["uid"] == got["metadata"]["uid"]
    assert [i["metadata"]["name"] for i in api.get(BASE).json()["items"]] == ["a"]
    assert api.delete(f"{BASE}/a").json()["status"] == "Success"
    gone = api.get(f"{BASE}/a")
    assert gone.status_code == 404
    assert gone.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "a" not found',
        "reason": "NotFound",
        "details": {"name": "a", "kind": "configmaps"},
        "code": 404,
    }


def test_stale_resource_version_is_a_409_conflict(api: httpx.Client) -> None:
    rv = api.post(BASE, json=_cm("a")).json()["metadata"]["resourceVersion"]
    assert api.put(f"{BASE}/a", json=_cm("a", rv, k="1")).status_code == 200
    stale = api.put(f"{BASE}/a", json=_cm("a", rv, k="2"))
    assert stale.status_code == 409
    assert stale.json()["reason"] == "Conflict"
    assert "the object has been modified" in stale.json()["message"]
    # without a resourceVersion a replace is unconditional, as on a real API server
    assert api.put(f"{BASE}/a", json=_cm("a", None, k="3")).status_code == 200


def test_create_existing_is_409_already_exists(api: httpx.Client) -> None:
    api.post(BASE, json=_cm("a"))
    again = api.post(BASE, json=_cm("a"))
    assert again.status_code == 409
    assert again.json()["reason"] == "AlreadyExists"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("PUT", f"{BASE}/a", _cm("b"), 400, "BadRequest"),
        ("POST", BASE, {"kind": "Secret", "apiVersion": "v1", "metadata": {}}, 400, "BadRequest"),
        ("POST", BASE, _cm("a", "5"), 422, "Invalid"),
        ("POST", BASE, _cm("a", big="x" * (MAX_CONFIGMAP_BYTES + 1)), 422, "Invalid"),
        ("GET", "/api/v1/pods", None, 404, "NotFound"),
    ],
)
def test_invalid_requests(
    api: httpx.Client, method: str, path: str, body: Any, status: int, reason: str
) -> None:
    if method == "PUT":
        api.post(BASE, json=_cm("a"))
    response = api.request(method, path, json=body)
    assert response.status_code == status
    assert response.json()["reason"] == reason


def test_body_must_be_json(api: httpx.Client) -> None:
    response = api.post(BASE, content=b"a: b", headers={"Content-Type": "application/yaml"})
    assert response.status_code == 415


def test_401_and_403(fake_kube: FakeKubernetes, kube_tls: KubeTLS) -> None:
    reader = fake_kube.issue_token("reader", {"get"}, resource_names={"mine"})
    with httpx.Client(
        base_url=fake_kube.url,
        verify=ssl.create_default_context(cafile=kube_tls.cert),
        trust_env=False,
    ) as c:
        assert c.get(f"{BASE}/mine").json()["reason"] == "Unauthorized"
        auth = {"Authorization": f"Bearer {reader}"}
        assert c.get(f"{BASE}/mine", headers=auth).status_code == 404  # allowed, absent
        other = c.get(f"{BASE}/theirs", headers=auth)
        assert other.status_code == 403
        assert other.json()["message"] == (
            'configmaps "theirs" is forbidden: User "reader" cannot get resource "configmaps" '
            'in API group "" in the namespace "ns"'
        )
        create = c.post(BASE, json=_cm("mine"), headers=auth)
        assert create.status_code == 403
        assert "cannot create resource" in create.json()["message"]
