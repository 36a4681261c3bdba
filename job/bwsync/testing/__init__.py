"""Stand-ins for servers bwsync talks to, for tests and for ``bwsync demo``.

They are part of the package (not of ``tests/``) because the demo runs a real sync against them.
Each speaks real HTTP on loopback and follows a published contract (see
``reference/bitwarden-public-api.md``), so the production client code runs unmodified. Only the
standard library and orjson are used here: no pytest, nothing a slim image lacks.
"""
