"""The Bitwarden stand-in the tests use: the shipped one (``bwsync.standin``, the official
server's contract) with what only tests need.

``FakeBitwarden`` is ``vaultwarden.VaultwardenMode`` (``vaultwarden=True``), a subclass of
``faults.FaultInjection`` (switched-on faults, the cloud's rate limits, tokens expired on
demand), a subclass of the shipped ``bwsync.standin.server.BitwardenStandIn``; each extends the
one below through its hooks, so the official server's code is the shipped code. The fixtures in
``tests/fixtures/bitwarden.py`` start it; ``python -m tests.standins.bitwarden`` serves it from a
shell, with ``--vaultwarden`` and ``--groups-enabled`` besides the shipped stand-in's options.
"""

from __future__ import annotations

from bwsync.standin.organization import Group, Member
from bwsync.standin.server import ENDPOINTS, RecordedRequest
from tests.standins.bitwarden.faults import Fault
from tests.standins.bitwarden.vaultwarden import VaultwardenMode

__all__ = ["ENDPOINTS", "FakeBitwarden", "Fault", "Group", "Member", "RecordedRequest"]


class FakeBitwarden(VaultwardenMode):
    """The stand-in with every switch. Keyword arguments: ``BitwardenStandIn``'s (the API key,
    ``self_hosted``, ``staged_status``, ``token_lifetime``, ``jwt_tokens``, plan features,
    ``seats``, ``require_confirmed_owner``, ``clock``, ``host``/``port``, ``ssl_context``),
    ``rate_limits``, ``sleep`` (``FaultInjection``), ``vaultwarden``, ``groups_enabled``,
    ``mail_enabled``, ``login_ratelimit_max_burst``, ``login_ratelimit_seconds``
    (``VaultwardenMode``)."""
