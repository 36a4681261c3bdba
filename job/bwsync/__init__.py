"""bwsync.

``__version__`` is written here as well as in ``pyproject.toml`` (a test holds them equal):
reading it from the installed metadata means importing ``importlib.metadata``, 45 ms of every
run's start.
"""

__version__ = "0.1.0"
