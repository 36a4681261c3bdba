"""The exception tree; each class carries the process exit code the CLI returns for it.

::

    BwsyncError                      exit 1 (unexpected; also the base)
    ├── ConfigError                  exit 2  a setting is missing or invalid; nothing contacted
    ├── DirectoryError               exit 3  the directory failed or returned unusable data
    │   ├── LdapError                        (python-ldap / ldap3 errors translated here)
    │   └── DuplicateEmailError              bwdc's "Emails must be unique" rule
    ├── BitwardenError               exit 4  the Bitwarden server refused or failed
    │   ├── BitwardenAuthError               token endpoint or 401/403
    │   ├── BitwardenClientError             4xx other than auth: never retried
    │   └── BitwardenServerError             5xx, timeouts, connection errors: retried first
    ├── StateError                   exit 5  the state store failed, conflicted or is locked
    ├── SafetyLimitError             exit 6  the plan removes more than allowed; nothing applied
    └── Interrupted                  exit 7  stopped by SIGTERM/SIGINT; lease given back

Foreign exceptions (ldap3, python-ldap, httpx …) are translated into these at the module that
talks to the library, with ``raise … from exc``, so the run loop only ever sees this tree.
Messages must never contain secrets: a server may echo what it was sent, so its text goes
through ``shorten`` (masked by ``bwsync.redact``, then cut to ``MAX_BODY`` characters), and
every error's message is masked again whenever it is turned into text (``BwsyncError.__str__``).
"""

from __future__ import annotations

from bwsync.redact import redact

MAX_BODY = 256


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

    exit_code = 1
    #: short machine-readable kind, used in the summary log line and the ``result`` metric
    kind = "error"

    def __str__(self) -> str:
        return redact(super().__str__())


class ConfigError(BwsyncError):
    """One or more settings are missing or invalid. ``problems`` holds one line per setting."""

    exit_code = 2
    kind = "config_error"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class DirectoryError(BwsyncError):
    """The directory could not be read, or returned data bwsync must not send."""

    exit_code = 3
    kind = "directory_error"


class LdapError(DirectoryError):
    """An LDAP operation failed; the message names the server and the operation."""


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
    kind = "bitwarden_error"

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
    """The state store could not be read or written, or another run holds it."""

    exit_code = 5
    kind = "state_error"


class SafetyLimitError(BwsyncError):
    """The plan would remove or revoke more members than the limits allow; nothing was applied."""

    exit_code = 6
    kind = "safety_stop"


class Interrupted(BwsyncError):
    """A stop was requested (SIGTERM, SIGINT) and the run gave up before its end.

    Its own exit code, because it is neither the run's fault nor a failure of a server: the
    request in flight was let finish, the lease given back and the stored hash left as it was,
    so the next run re-sends everything and finishes the job (``bwsync.stop``)."""

    exit_code = 7
    kind = "interrupted"
