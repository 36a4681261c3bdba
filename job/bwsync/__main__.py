"""The process entry point: ``python -m bwsync`` and the ``bwsync`` console script.

A run is a short-lived process (a CronJob pod, ``docker run``), so two costs that a library
import or a test calling ``bwsync.cli.main`` must not pay are cut here, and only here:

* start-up: the imports (pydantic, httpx, the LDAP engine) allocate a few hundred thousand
  objects with the cyclic collector on, which walks them again and again for nothing
  (25-30 ms of every run); it is paused while they load and the modules' objects are then
  frozen out of later collections, since they live as long as the process. pydantic's plugin
  discovery scans every installed distribution's metadata; bwsync uses no pydantic plugin, so
  it is off while the settings models are built, unless ``PYDANTIC_DISABLE_PLUGINS`` says
  otherwise (and the variable is not left for child processes, such as a kubeconfig exec
  credential plugin);
* exit: interpreter teardown frees, one by one, every object the pass left (a million on
  100,000 users: 60-80 ms). Once ``main`` has returned, everything the run promised is done —
  state saved, metrics pushed, logs written — so the logs and standard streams are flushed and
  the process ends with ``os._exit``, the OS reclaiming the memory at once (``atexit``
  handlers do not run; bwsync registers none). A ``SystemExit`` from argument parsing, or an
  interrupt, still ends the ordinary way.

The process's own standard streams are also made to escape what their encoding cannot show
(``_printable_anywhere``), which a library or a test's captured streams must decide for
themselves.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from typing import NoReturn


def _printable_anywhere() -> None:
    """A terminal or pipe whose encoding cannot show a character bwsync writes (an arrow in a
    message, a name from the directory) gets a stand-in for it, not a ``UnicodeEncodeError``
    that would turn any answer into exit 1: ``PYTHONIOENCODING=ascii``, a latin-1 locale."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="backslashreplace")


def run() -> NoReturn:
    # First: bwsync is PID 1 in its container, which drops signals it has no handler for; a
    # stop signal during the imports below must reach the run (``bwsync.held_signals``).
    from bwsync.held_signals import hold_early

    hold_early()
    _printable_anywhere()
    gc.disable()
    plugins_set = "PYDANTIC_DISABLE_PLUGINS" not in os.environ
    if plugins_set:
        os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    from bwsync.cli import main

    if plugins_set:
        del os.environ["PYDANTIC_DISABLE_PLUGINS"]
    gc.freeze()
    gc.enable()
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`bwsync plan | head`)
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
