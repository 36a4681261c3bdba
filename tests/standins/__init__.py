"""Stand-ins for the servers bwsync talks to, for the tests and benchmarks only.

Each speaks real HTTP(S) on loopback and follows its service's published contract, errors,
paging and rate limits included, so the production client code runs unmodified:

* ``graph`` (Microsoft Graph and the Entra token endpoint), ``google_workspace`` (Admin SDK
  Directory and Google's OAuth token endpoint), ``okta``, ``onelogin``: the cloud directories.
* ``kubernetes``: a broken Kubernetes API (5xx, no answer): the configmap state backend is
  otherwise tested on a real kube-apiserver (``tests/fixtures/kube.py``).
* ``bitwarden``: the shipped Bitwarden stand-in (``bwsync.standin``, which ``bwsync demo``
  runs) plus what only tests need: injected faults, the cloud's rate limits, Vaultwarden mode.
* ``http_server`` (the HTTPS server under ``graph`` and ``google_workspace``) and ``tls``
  (a throwaway certificate for loopback).

They live here, not in the package, because no user runs them: the wheel and the image carry
only what ``bwsync`` itself runs (and the Bitwarden stand-in ``bwsync demo`` needs). They are not
published as a distribution of their own either: their one consumer is this test suite, and a
published package would make their Python API (seeding, fault switches) a promise to keep.
Only the standard library and bwsync's runtime dependencies are used, so they also run outside
pytest, in a benchmark's parent process.
"""
