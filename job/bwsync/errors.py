"""The exception tree: every error bwsync raises on purpose, and what each means for the run.

Each class carries, as class attributes, the process **exit code** the CLI returns for it and
the run's **result** (the summary's ``result``, ``bwsync_last_run_result{result}``): the CLI,
the run and the metrics read them from the type, never from a table of their own. A subclass
inherits both from its branch::

    BwsyncError            exit 1  failed        an error no branch names: a bug
    ├── ConfigError        exit 2  config_error  a setting is missing or wrong; nothing contacted
    ├── DirectoryError     exit 3  failed        the directory failed or sent unusable data
    │   ├── LdapError                            an LDAP operation; ``reason`` says which kind
    │   ├── DirectoryApiError                    a cloud API call: request, status, code
    │   │   └── EntraError, GoogleError, OktaError, OneLoginError   (``service`` names it)
    │   └── DuplicateEmailError                  bwdc's "Emails must be unique" rule
    ├── BitwardenError     exit 4  failed        the Bitwarden server refused or failed
    │   ├── BitwardenAuthError                   token endpoint, 401/403
    │   ├── BitwardenClientError                 other 4xx: never retried
    │   └── BitwardenServerError                 5xx, timeout, connection: retried first
    ├── StateError         exit 5  failed        the state store failed
    │   ├── StateConflictError                   another run wrote it since this run read it
    │   ├── LeaseHeldError                       another run holds the lease
    │   └── MemoryStateError                     the memory of synced members is unusable
    ├── SafetyLimitError   exit 6  safety_stop   the plan takes too much away; nothing applied
    └── Interrupted        exit 7  interrupted   SIGTERM/SIGINT; the lease was given back

A run that ends without an error ends in ``success`` or ``no_change``, exit 0
(``SUCCESS_RESULTS``). ``ends_loop`` is kopf's permanent-vs-temporary split for ``sync
--every``: a pass that failed of a type that the next pass cannot fix (a wrong setting, a stop
request) ends the loop; the others are tried again at the next interval.

One constructor per kind: the classes that name a server, a request or a store take those as
arguments and word the message themselves, so that one failure reads the same wherever it is
raised. Foreign exceptions (ldap3, python-ldap, httpx …) are translated into these at the
module that talks to the library, with ``raise … from exc``, so the run loop only ever sees
this tree. Messages must never contain secrets: a server may echo what it was sent, so its
text goes through ``shorten`` (masked by ``bwsync.redact``, then cut to ``MAX_BODY``
characters), and every error's message is masked again whenever it is turned into text
(``BwsyncError.__str__``).

Not in the tree, on purpose: exceptions that carry control flow, not a failure of the run, and
never reach the run loop. The HTTP layer's ``RetriesExhausted`` (``bwsync.http.retry``: the
retries ran out; each client translates it into its own error above, with the last answer) and
``Cancelled`` (``bwsync.http.fanout``: a read not started because another failed first); the
Bitwarden client's private ``_TokenRefused`` and ``_TokenUnusable``; the stand-in's
``HttpError`` and ``_JsonTypeError``, which become HTTP answers.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from bwsync.redact import redact

MAX_BODY = 256

#: How a run ends: the summary's ``result`` and ``bwsync_last_run_result{result}``, in the
#: metrics' order. The two successes end without an error; each other is an error class's.
RunResult = Literal["success", "no_change", "failed", "safety_stop", "config_error", "interrupted"]
#: The results of a run that did what it had to (exit 0).
SUCCESS_RESULTS: frozenset[RunResult] = frozenset({"success", "no_change"})
#: Exit code of a run that ended in one of ``SUCCESS_RESULTS``.
EXIT_OK = 0


def shorten(text: str, limit: int = MAX_BODY) -> str:
    """Mask, then cut, an unstructured server text, so that neither an echoed secret nor a huge
    HTML page reaches a log. Masking comes first: a cut through a secret would leave its first
    characters, which no longer match the secret."""
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BwsyncError(Exception):
    """Root of every error bwsync raises on purpose. Its text is always masked
    (``bwsync.redact``): whoever prints, logs or stores ``str(error)`` gets no secret, even one
    remembered after the error was built."""

    exit_code: ClassVar[int] = 1
    result: ClassVar[RunResult] = "failed"
    ends_loop: ClassVar[bool] = False
    """Whether ``sync --every`` stops after a pass that failed so: the next pass cannot help."""

    def __str__(self) -> str:
        return redact(super().__str__())


class ConfigError(BwsyncError):
    """One or more settings are missing or invalid. ``problems`` holds one line per setting."""

    exit_code = 2
    result = "config_error"
    ends_loop = True  # a wrong setting does not fix itself: stop instead of failing every pass

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class DirectoryError(BwsyncError):
    """The directory could not be read, or returned data bwsync must not send."""

    exit_code = 3


LdapReason = Literal[
    "unreachable", "tls", "credentials", "filter", "no_such_object", "timeout", "other"
]


class LdapError(DirectoryError):
    """An LDAP operation failed: the message names the server and the operation. ``reason``
    says which kind of failure, for ``check()``."""

    def __init__(self, url: str, message: str, reason: LdapReason = "other") -> None:
        self.url = url
        self.reason: LdapReason = reason
        super().__init__(f"LDAP {url}: {message}")


class DirectoryApiError(DirectoryError):
    """A cloud directory API call failed for good (after any retries), or answered what the
    source cannot use. One shape for every service, each a subclass naming it (``service``).

    ``request`` is ``"METHOD /path"`` (no query string, no credentials), ``status`` the HTTP
    status or ``None`` for a transport failure, ``code`` the service's machine-readable error
    code when it sent one (``Authorization_RequestDenied``, ``E0000011`` …). ``detail`` is
    masked as it is stored (``bwsync.redact``): it is often a server's text, and a server may
    echo the request that carried a secret.
    """

    service: ClassVar[str] = "directory"

    def __init__(
        self,
        request: str,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.request = request
        self.status = status
        self.code = code
        self.detail = detail = redact(detail)
        where = f"{self.service} {request}" if request else self.service
        super().__init__(f"{where} failed: {detail}")


class EntraError(DirectoryApiError):
    """Microsoft Graph or the Microsoft identity platform refused or failed a request."""

    service = "Entra"


class GoogleError(DirectoryApiError):
    """Google's token endpoint or the Admin SDK refused or failed a request."""

    service = "Google"


class OktaError(DirectoryApiError):
    """An Okta request failed; ``code`` is Okta's ``errorCode`` (or the OAuth ``error``)."""

    service = "Okta"


class OneLoginError(DirectoryApiError):
    """A OneLogin request failed; ``status`` is OneLogin's own status code where its body
    carries one in a 200."""

    service = "OneLogin"


class DuplicateEmailError(DirectoryError):
    """Two different directory entries share an email (bwdc §3.2); the import would be ambiguous."""

    def __init__(self, emails: list[str]) -> None:
        self.emails = emails
        lines = emails if len(emails) < 4 else [*emails[:3], f"and {len(emails) - 3} more..."]
        super().__init__(
            "Emails must be unique. Multiple entries pulled with the following emails:\n"
            + "\n".join(lines)
        )


class BitwardenError(BwsyncError):
    """The Bitwarden server refused or failed a request.

    ``step`` names what bwsync was doing ("token", "import 2/5", "list members"), ``status``
    the HTTP status (``None`` for a transport failure), ``message`` and ``errors`` the server's
    structured error when it sent one.
    """

    exit_code = 4

    def __init__(
        self,
        step: str,
        detail: str,
        *,
        status: int | None = None,
        url: str | None = None,
        message: str | None = None,
        errors: dict[str, list[str]] | None = None,
    ) -> None:
        self.step = step
        self.status = status
        self.url = url
        self.message = message
        self.errors = errors or {}
        text = f"Bitwarden {step} failed: {detail}"
        if self.errors:
            text += "; " + "; ".join(
                f"{k or '(body)'}: {' '.join(v)}" for k, v in self.errors.items()
            )
        super().__init__(text)


class BitwardenAuthError(BitwardenError):
    """The organization API key was refused, or the token stopped being accepted."""


class BitwardenClientError(BitwardenError):
    """A 4xx other than authentication: the request itself is wrong and retrying cannot help."""


class BitwardenServerError(BitwardenError):
    """A 5xx, timeout or connection failure that outlived the retries."""


class StateError(BwsyncError):
    """The state store could not be read or written."""

    exit_code = 5


class StateConflictError(StateError):
    """Another run wrote the state between this run's read and its write. ``store`` is the
    store's description; ``how`` what told (a resourceVersion conflict …), ``then`` what
    follows for this run."""

    def __init__(self, store: str, *, how: str = "", then: str = "") -> None:
        self.store = store
        super().__init__(
            f"{store} changed since this run read it{f' ({how})' if how else ''}: another run "
            f"wrote it{f'; {then}' if then else ''}"
        )


class LeaseHeldError(StateError):
    """Another run holds the lease on the store ``store``: ``holder`` names it, ``detail``
    says until when or how this run learned it."""

    def __init__(self, store: str, holder: str, detail: str = "") -> None:
        self.store = store
        self.holder = holder
        super().__init__(f"another run holds the lease on {store}: {holder}{detail}")


class MemoryStateError(StateError):
    """The memory of synced members (``bwsync.memory``) cannot be read, or would not fit the
    state document."""


class SafetyLimitError(BwsyncError):
    """The plan would take more access away than the limits allow; nothing was applied.
    ``reasons`` are the plan's reasons to refuse it (``plan.check_safety``), ``advice`` what
    lifts them."""

    exit_code = 6
    result = "safety_stop"

    def __init__(self, reasons: list[str], advice: str) -> None:
        self.reasons = reasons
        super().__init__(
            "safety limit reached, nothing applied: " + "; ".join(reasons) + ". " + advice
        )


class Interrupted(BwsyncError):
    """A stop was requested (SIGTERM, SIGINT) and the run gave up before its end.

    Its own exit code, because it is neither the run's fault nor a failure of a server: the
    request in flight was let finish, the lease given back and the stored hash left as it was,
    so the next run re-sends everything and finishes the job (``bwsync.stop``). Two shapes of
    one message: stopped ``before`` a step, or the request in flight given up after the
    ``grace`` period (``failed``: what it failed with, when it did)."""

    exit_code = 7
    result = "interrupted"
    ends_loop = True  # the loop was asked to stop

    def __init__(
        self,
        signal: str,
        *,
        before: str | None = None,
        grace: float | None = None,
        failed: str | None = None,
    ) -> None:
        self.signal = signal
        if before is not None:
            text = (
                f"stopped by {signal} before {before}; nothing more was sent, and the next run "
                "starts over"
            )
        else:
            text = (
                f"stopped by {signal}: the request in flight did not end within the "
                f"{grace or 0:g} s grace period (BWSYNC_STOP_GRACE_SECONDS), and was given up"
                f"{f' ({failed})' if failed else ''}; the next run starts over"
            )
        super().__init__(text)


def error_classes() -> list[type[BwsyncError]]:
    """Every class of the tree, root first (each before its subclasses): what the README's
    exit-code table and the metrics' results are checked against."""
    out: list[type[BwsyncError]] = []
    todo: list[type[BwsyncError]] = [BwsyncError]
    while todo:
        cls = todo.pop(0)
        if cls not in out and cls.__module__.split(".")[0] == "bwsync":  # not a test's
            out.append(cls)
            todo.extend(cls.__subclasses__())
    return out
