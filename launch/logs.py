"""Logging (and runtime) set-up shared by the launch entry points.

`logging.basicConfig(force=True)` would bind a handler to the `sys.stderr` of the moment and drop
every other root handler (a test runner's capture handler among them); entry points are also
called in-process by tests and notebooks, so this module installs one handler that always writes
to the *current* `sys.stderr`, once, and leaves other handlers alone.

Each record is printed once: absl's `logging.log` calls `logging.basicConfig()` when the root
logger has no handler yet (orbax logs through absl while it is imported), which leaves a second,
`LEVEL:name:message` handler on the root; `setup_logging` removes that one and absl's own.

Lines that mislead at default verbosity are dropped: jax's INFO "Unable to initialize backend
'tpu'" on a machine without a TPU (jax then uses the CPU, as asked), and TFDS's "Using custom
data configuration" / "has no dataset_info.json" warnings, which our builders trigger by design
(every config is a parameterised instance, checked for before it is built). `-v`-style debugging:
`setup_logging(logging.DEBUG)` keeps them all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# (logger, message prefix) pairs dropped below DEBUG; see the module docstring.
_NOISE = (
    ("jax._src.xla_bridge", "Unable to initialize backend"),
    ("absl", "Using custom data configuration"),
    ("absl", "Variant folder"),
)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current `sys.stderr` (which test runners and notebooks replace)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        del value


class _DropPrefixes(logging.Filter):
    """Drops records whose unformatted message starts with one of `prefixes`."""

    def __init__(self, prefixes: Iterable[str]):
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def _is_basic_config_handler(h: logging.Handler) -> bool:
    """The handler `logging.basicConfig()` installs: a plain StreamHandler on stderr."""
    return (
        type(h) is logging.StreamHandler
        and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)
        and h.formatter is not None
        and h.formatter._fmt == logging.BASIC_FORMAT
    )


def setup_logging(
    level: int = logging.INFO, *, quiet: Iterable[str] = (), compilation_cache: bool = True
) -> None:
    """INFO (or `level`) logs on stderr, once each; `quiet` loggers at WARNING; the cache on.

    absl (imported by grain / tfds / orbax) puts its own handler on the root logger, which drops
    INFO records; orbax logs every file it writes through absl, so absl is kept at WARNING.
    `compilation_cache` turns on JAX's persistent compilation cache (`launch.runtime`), which
    must happen before the first compilation: entry points call this first thing.
    """
    from absl import logging as absl_logging

    root = logging.getLogger()
    root.removeHandler(absl_logging.get_absl_handler())
    for h in [h for h in root.handlers if _is_basic_config_handler(h)]:
        root.removeHandler(h)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("absl").setLevel(logging.WARNING)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in {n for n, _ in _NOISE}:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _DropPrefixes)]:
            logger.removeFilter(f)
        if level > logging.DEBUG:
            logger.addFilter(_DropPrefixes(p for n, p in _NOISE if n == name))
    if compilation_cache:
        from launch import runtime

        runtime.enable_compilation_cache()
