"""The Bitwarden stand-in ``bwsync demo`` runs, and the loopback HTTP plumbing under it.

Part of the package because the demo runs a real sync against it. The stand-ins only tests use
(Graph, Google, Okta, OneLogin, Kubernetes) live in ``tests/standins``.
"""
