"""The Bitwarden stand-in ``bwsync demo`` runs: the official server's organization API over
real HTTP on loopback, written from its contract (``reference/bitwarden-public-api.md``).

It ships because the demo runs a real sync against it; nothing else of the package imports
it. Only what the official server does is here; the tests' extensions (injected faults, the
cloud's rate limits, Vaultwarden mode) live in ``tests/standins/bitwarden``. One concern a
module:

* ``organization``: what the server stores (members, groups, their indexes, the event log),
  seeding and inspection.
* ``import_request``: the import body, bound and validated as ASP.NET does (§3.1, §3.6).
* ``import_command``: the import itself, the controller's checks and §3.4 step by step.
* ``server``: ``BitwardenStandIn``, the HTTP surface: routes, the token endpoint, bearer
  tokens, the read endpoints, revoke and restore, the request log, start and stop.
* ``http``: the wire under it (responses, error bodies, the threaded loopback server).
* ``serve``: ``python -m bwsync.standin``, the stand-in as a process of its own.

Only the standard library, orjson and msgspec (runtime dependencies) are used.
"""
