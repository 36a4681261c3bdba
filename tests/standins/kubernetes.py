"""A broken Kubernetes API server: only what the real one in the tests cannot be made to do.

Everything the configmap state backend and the Helm chart rely on (ConfigMaps, resourceVersion
conflicts, RBAC and its 403 wording, TokenRequest tokens, 401, 404, validation) is tested
against a real kube-apiserver with etcd (``tests/fixtures/kube.py``). That server answers every
read from etcd and has no switch to fail one, so this stand-in covers just two outages:

- a 5xx answer (``status``: 500 ``InternalError``, 503 ``ServiceUnavailable`` as an API server
  that is restarting, or a load balancer in front of it, answers), as a ``Status`` object;
- an answer that never comes (``hang=True``): the connection is accepted and the request read,
  nothing is sent until the stand-in stops, so the client's own timeout must end the wait.

HTTPS on loopback with a throwaway certificate (``ca_file``), on the cloud stand-ins' server.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from tests.standins.http_server import FakeHttpsServer, Reply, Request
from tests.standins.tls import self_signed_tls

REASONS = {500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "Timeout"}


class BrokenKubernetes(FakeHttpsServer):
    service = "kubernetes"

    def __init__(self, *, status: int = 503, hang: bool = False) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bwsync-broken-kube-")
        self.tls = self_signed_tls(Path(self._dir.name), "kube-apiserver")
        super().__init__(tls=self.tls.server_pair)
        self.status = status
        self.hang = hang
        self._released = threading.Event()

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def route(self, request: Request) -> Reply:
        if self.hang:
            self._released.wait(60)
        reason = REASONS.get(self.status, "InternalError")
        return Reply(self.status, {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"the server is currently unable to handle the request ({reason})",
            "reason": reason, "code": self.status,
        })  # fmt: skip

    def stop(self) -> None:
        self._released.set()  # a hanging request ends, so the server can close
        super().stop()
        self._dir.cleanup()
