"""Logging set-up shared by the launch entry points.

`logging.basicConfig(force=True)` would bind a handler to the `sys.stderr` of the moment and drop
every other root handler (a test runner's capture handler among them); entry points are also
called in-process by tests and notebooks, so this module installs one handler that always writes
to the *current* `sys.stderr`, once, and leaves other handlers alone.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to the current `sys.stderr` (which test runners and notebooks replace)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        del value


def setup_logging(level: int = logging.INFO, *, quiet: Iterable[str] = ()) -> None:
    """INFO (or `level`) logs on stderr; absl's handler removed; `quiet` loggers at WARNING.

    absl (imported by grain / tfds / orbax) puts its own handler on the root logger, which drops
    INFO records; orbax logs every file it writes through absl, so absl is kept at WARNING.
    """
    from absl import logging as absl_logging

    root = logging.getLogger()
    root.removeHandler(absl_logging.get_absl_handler())
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("absl").setLevel(logging.WARNING)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
