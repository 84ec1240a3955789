"""Process-wide JAX set-up of the launch entry points: the persistent compilation cache.

Compiling a train step takes tens of seconds on CPU (the CoMM Trifeature step ~30-50 s); JAX can
keep every compiled executable on disk and reuse it when the same program (same shapes, flags,
jax/jaxlib version, backend) is compiled again, so a rerun or a resumed run starts in seconds.

Where: `$JAXMM_CACHE_DIR` if set, else `$XDG_CACHE_HOME/jaxmm/jax`, else `~/.cache/jaxmm/jax`.
Off: `JAXMM_CACHE_DIR=off` (or `0`, `none`, empty). A cache directory already set through JAX's
own `JAX_COMPILATION_CACHE_DIR` / `jax.config` is left as it is.

A cached executable is the same compiled program, so numbers do not depend on whether the cache
was hit. The test suite turns the cache off (tests/conftest.py) so it writes nothing into the
user's home. Deleting the folder is always safe.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ENV_VAR = "JAXMM_CACHE_DIR"
_OFF = ("", "0", "off", "none", "false", "no")
# Programs that compile faster than this are not worth a disk entry (JAX's default is 1 s).
MIN_COMPILE_SECONDS = 0.5


def cache_dir() -> str | None:
    """The compilation cache folder the launch scripts use, or None when turned off."""
    value = os.environ.get(ENV_VAR)
    if value is not None:
        return None if value.strip().lower() in _OFF else os.path.abspath(os.path.expanduser(value))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxmm", "jax")


def enable_compilation_cache() -> str | None:
    """Turns JAX's persistent compilation cache on at `cache_dir()`; returns the folder in use.

    Call before the first compilation (JAX decides once per process whether a cache is used).
    Does nothing (returns None) when turned off; keeps a folder already configured in JAX.
    """
    import jax

    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    path = cache_dir()
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:  # a read-only home must not stop a run
        log.warning("Compilation cache off: cannot create %s (%s)", path, e)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    log.debug("JAX compilation cache in %s", path)
    return path
