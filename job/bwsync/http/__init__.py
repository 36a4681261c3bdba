"""One way to call an HTTP API, for every HTTP client of bwsync: the Bitwarden client, the
Kubernetes state backend and the cloud directory sources.

A neutral leaf package: it imports nothing of bwsync but ``errors``, ``logs`` and ``config``
types, so the Bitwarden client, the state backends and the sources can all use it without
reaching each other (DESIGN.md's arrows).

* ``retry``    — the predicate (retry now / retry after N seconds / give up), the policy (one
  time budget, one backoff with jitter, set by each caller) and the engine that applies them;
* ``pressure`` — what a service's pressure does to a client's requests: one shared pause (a
  429's wait is waited out once, by every worker together) and an adaptive bound on the
  requests in flight;
* ``auth``     — the ``httpx.Auth`` flow "attach a token; on a 401, a fresh one, once";
* ``client``   — the ``httpx.Client`` every HTTP client builds: TLS and CA file, timeouts,
  ``HTTPS_PROXY``/``NO_PROXY`` with CIDR blocks;
* ``fanout``   — independent reads run on a few threads, results in the order asked.
"""
