"""State as one object in S3 (or any S3-compatible server), Google Cloud Storage or Azure Blob.

``BWSYNC_STATE__URL`` names the object: ``s3://bucket/key``, ``gs://bucket/key`` or
``az://container/key``. obstore (a dependency of bwsync) does the talking because it is one
small library for all three, with conditional puts on each (``If-None-Match: *`` to create,
``If-Match: <etag>`` to update; GCS matches on the object generation) and each platform's own
credential chain: ``AWS_*`` variables, web identity (EKS IRSA / pod identity) and instance
metadata; ``GOOGLE_APPLICATION_CREDENTIALS`` and GKE workload identity through the metadata
server; ``AZURE_*`` variables and AKS workload identity (federated token file). bwsync adds no
credential settings of its own, so none can end up in its configuration or its logs.

Every obstore (and builtin) exception is translated here into ``StateError`` naming the object,
with the server's error code (``NoSuchBucket``, ``SignatureDoesNotMatch`` …) but never the raw
response, request headers or credentials.

obstore's calls block in Rust, where no signal reaches: the end of a stop request's grace
period (``bwsync.stop``, a SIGALRM whose handler raises in the main thread) would only take
effect when the call returns, up to ``BWSYNC_STATE__TIMEOUT`` (and its retries) later. So the
main thread makes each call in a worker thread and waits for it where a signal does reach it
(``_unblocked``); a call given up so goes on in its thread, and its answer is dropped.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import orjson

from bwsync.config import STATE_URL_SCHEMES, StateSettings, env_name, is_loopback, split_state_url
from bwsync.errors import ConfigError, Interrupted, StateConflictError, StateError, shorten
from bwsync.http.client import environment_proxies
from bwsync.state.base import StateStore
from bwsync.worker import InThread

if TYPE_CHECKING:
    from obstore.store import ObjectStore

#: URL scheme → the platform's name in messages
SCHEMES = STATE_URL_SCHEMES
#: Server error codes meaning the bucket or container itself is missing (S3, GCS, Azure). Azure's
#: delete goes through a batch request whose per-blob answer obstore reports by message alone.
MISSING_BUCKET = re.compile(
    r"NoSuchBucket|ContainerNotFound|The specified (?:bucket|container) does not exist",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"<Code>([A-Za-z0-9.]{1,64})</Code>|\"(?:code|reason)\"\s*:\s*\"([A-Za-z]{1,64})\""
)
_STATUS = re.compile(r"status code: (\d{3})")

T = TypeVar("T")


def _unblocked(call: Callable[[], T]) -> T:
    """``call()``, made in a worker thread when this is the main thread, which waits for it
    in Python, where the grace period's SIGALRM handler can raise (see the module doc).
    Elsewhere (a wrap-up step's thread: ``StopRequest.wrap_up``) it is made right here."""
    if threading.current_thread() is not threading.main_thread():
        return call()
    work = InThread(call, "bwsync-objectstore")
    work.wait()
    return work.outcome()


def split_url(url: str) -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of a state URL, or ``ConfigError`` naming the setting (the
    settings have checked it already: this is for a store built without them)."""
    try:
        return split_state_url(url)
    except ValueError as exc:
        raise ConfigError(f"{env_name('state', 'url')}: {exc}") from None


class ObjectStateStore(StateStore):
    """One state object; the version is its ETag (and generation/version where there is one)."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        timeout: float = 30.0,
        store: ObjectStore | None = None,
    ) -> None:
        super().__init__()
        self.scheme, self.bucket, self.key = split_url(url)
        self.platform = SCHEMES[self.scheme]
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.timeout = timeout
        self.description = f"object storage {self.scheme}://{self.bucket}/{self.key}"
        self._store = store

    @classmethod
    def from_settings(cls, settings: StateSettings) -> ObjectStateStore:
        if not settings.url:
            raise ConfigError(
                f"{env_name('state', 'url')}: required when "
                f"{env_name('state', 'backend')}=objectstore"
            )
        store = cls(settings.url, endpoint=settings.endpoint, timeout=settings.timeout)
        if store.endpoint and store.platform == "GCS":
            raise ConfigError(f"{env_name('state', 'endpoint')}: not supported for gs:// URLs")
        if store.endpoint and urlsplit(store.endpoint).scheme not in ("http", "https"):
            raise ConfigError(
                f"{env_name('state', 'endpoint')}: must be an http:// or https:// URL"
            )
        return store

    # -- obstore plumbing ------------------------------------------------------------------
    def _obstore(self) -> ObjectStore:
        """Build the client on first use: ``open_store`` does no I/O and reads no credential."""
        if self._store is not None:
            return self._store
        try:
            from obstore.store import from_url
        except ImportError:
            raise ConfigError(
                f"{env_name('state', 'backend')}: objectstore needs the obstore package, a "
                "dependency of bwsync that this installation lacks (reinstall bwsync)"
            ) from None
        client: dict[str, Any] = {
            "timeout": timedelta(seconds=self.timeout),
            "connect_timeout": timedelta(seconds=min(self.timeout, 10.0)),
        }
        config: dict[str, Any] = {}
        if self.endpoint:
            config["endpoint"] = self.endpoint
            if self.endpoint.startswith("http://"):
                client["allow_http"] = True
                client.update(_loopback_direct(self.endpoint))
            if self.platform == "S3":
                # MinIO, Ceph and most S3-compatible servers want path-style requests
                config["virtual_hosted_style_request"] = False
        if self.platform == "S3" and os.environ.get("AWS_CA_BUNDLE"):
            # The AWS CLI and SDKs' variable for a private CA; obstore does not read it itself.
            bundle = os.environ["AWS_CA_BUNDLE"]
            try:
                with open(bundle, "rb") as fh:
                    client["root_certificate"] = fh.read()
            except OSError as exc:
                raise StateError(
                    f"{self.description}: cannot read AWS_CA_BUNDLE {bundle}: {exc.strerror}"
                ) from None
        retry = {
            "max_retries": 2,
            "retry_timeout": timedelta(seconds=self.timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
                "base": 2,
            },
        }
        try:
            # from_url's overloads are per platform; the dicts above are built for this one
            factory: Any = from_url
            self._store = factory(
                f"{self.scheme}://{self.bucket}",
                config=config,
                client_options=client,
                retry_config=retry,
            )
        except Exception as exc:  # obstore raises builtins and its own tree
            self._fail("cannot be configured", exc)
        return self._store

    def _fail(self, action: str, exc: BaseException) -> NoReturn:
        """Raise ``StateError`` for an obstore failure: what, where, and the server's code only."""
        from obstore import exceptions as oe

        text = str(exc)
        match = _CODE.search(text)
        code = next((g for g in match.groups() if g), None) if match else None
        status = _STATUS.search(text)
        detail = f" ({code})" if code else ""
        if status:
            detail = f" (HTTP {status.group(1)}{', ' + code if code else ''})"
        where = self.description
        if MISSING_BUCKET.search(text):
            kind = "bucket" if self.platform != "Azure" else "container"
            msg = f"{where}: the {kind} {self.bucket!r} does not exist{detail}; create it first"
        elif isinstance(exc, oe.UnauthenticatedError | oe.PermissionDeniedError) or (
            status and status.group(1) in ("401", "403")
        ):
            msg = (
                f"{where} {action}: access denied{detail}; check the {self.platform} credentials "
                "(environment or workload identity) and that they may read and write this object"
            )
        elif isinstance(exc, oe.UnknownConfigurationKeyError | oe.InvalidPathError | ValueError):
            msg = f"{where} {action}: invalid configuration: {_first_line(text)}"
        else:
            msg = f"{where} {action}{detail}: {type(exc).__name__}"
            if not status:  # a transport failure: its first line names the cause, not secrets
                msg += f": {_first_line(text)}"
        raise StateError(msg) from exc

    # -- the backend contract --------------------------------------------------------------
    def _read(self) -> tuple[bytes | None, str | None]:
        store = self._obstore()
        try:
            data, meta = _unblocked(lambda: _get(store, self.key))
        except FileNotFoundError as exc:
            if MISSING_BUCKET.search(str(exc)):
                self._fail("cannot be read", exc)
            return None, None
        except Interrupted:  # the grace period is over (_unblocked): not the store's failure
            raise
        except Exception as exc:  # translated, see _fail
            self._fail("cannot be read", exc)
        return data, _version(meta.get("e_tag"), meta.get("version"))

    def _write(self, data: bytes, expected_version: str | None) -> str:
        import obstore
        from obstore import exceptions as oe

        store = self._obstore()
        mode: Any
        if expected_version is None:
            mode = "create"
        else:
            e_tag, version = orjson.loads(expected_version)
            mode = {"e_tag": e_tag} if version is None else {"e_tag": e_tag, "version": version}
        try:
            result = _unblocked(lambda: obstore.put(store, self.key, data, mode=mode))
        except (oe.AlreadyExistsError, oe.PreconditionError, FileNotFoundError) as exc:
            if MISSING_BUCKET.search(str(exc)):
                self._fail("cannot be written", exc)
            raise StateConflictError(self.description) from exc
        except Interrupted:  # the grace period is over (_unblocked): not the store's failure
            raise
        except Exception as exc:  # translated, see _fail
            self._fail("cannot be written", exc)
        if not result.get("e_tag") and not result.get("version"):
            # Some S3-compatible servers answer a PUT without an ETag: ask for it.
            try:
                meta = _unblocked(lambda: obstore.head(store, self.key))
            except Interrupted:  # the grace period is over (_unblocked): not the store's failure
                raise
            except Exception as exc:  # translated, see _fail
                self._fail("cannot be read back", exc)
            return _version(meta.get("e_tag"), meta.get("version"))
        return _version(result.get("e_tag"), result.get("version"))

    def _delete(self) -> None:
        import obstore

        store = self._obstore()
        try:
            _unblocked(lambda: obstore.delete(store, self.key))
        except FileNotFoundError as exc:
            if MISSING_BUCKET.search(str(exc)):
                self._fail("cannot be deleted", exc)
        except Interrupted:  # the grace period is over (_unblocked): not the store's failure
            raise
        except Exception as exc:  # translated, see _fail
            self._fail("cannot be deleted", exc)


def _loopback_direct(endpoint: str) -> dict[str, str]:
    """Client options keeping a plain-http loopback endpoint off any proxy. Clear text is
    allowed to it because it never leaves the host (``bwsync.cleartext``); but obstore reads
    ``HTTP_PROXY`` itself, and would hand the proxy the state and the session token. A proxy
    given as an option replaces the environment's, and its exclusion names the endpoint."""
    host = urlsplit(endpoint).hostname
    proxy = environment_proxies()[0].get("http")
    if not proxy or not is_loopback(host):
        return {}
    return {"proxy_url": proxy, "proxy_excludes": str(host)}


def _get(store: ObjectStore, key: str) -> tuple[bytes, Any]:
    """The object's bytes and metadata: the body is read in the same (worker) thread."""
    import obstore

    result = obstore.get(store, key)
    return bytes(result.bytes()), result.meta


def _version(e_tag: str | None, version: str | None) -> str:
    """The opaque version ``StateStore`` keeps: ETag and, where the store has one, the object
    version (GCS updates match on the generation, not the ETag)."""
    return orjson.dumps([e_tag, version]).decode()


_QUERY = re.compile(r"(https?://[^\s?#]+)[?#][^\s]*")
#: obstore's answer to an Azure account key that is not base64 goes on to quote the offending
#: character and its offset: a piece of the key.
_KEY_DETAIL = re.compile(r"(Invalid Access Key)\b.*", re.IGNORECASE)


def _first_line(text: str) -> str:
    """The first line of an obstore message, URL queries cut: an Azure SAS token or a
    presigned signature travels in the query string and must never reach a log. Neither does
    the detail of a malformed key."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = _KEY_DETAIL.sub(r"\1 (not valid base64; the value is not shown)", line)
    return shorten(_QUERY.sub(r"\1?…", line), 200)
