"""Test set-up: 8 simulated CPU devices and parsed absl flags, before anything imports jax."""

import os

# Must happen before jax initialises its backends (i.e. before the first `import jax` anywhere).
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Launch scripts turn on JAX's persistent compilation cache (launch/runtime.py); tests called
# in-process must not write into the user's ~/.cache, and CI compiles from scratch each time.
os.environ["JAXMM_CACHE_DIR"] = "off"

from absl import flags  # noqa: E402

# grain 0.2.18's mp_prefetch reads absl flags; outside absl.app (e.g. pytest) they are unparsed.
flags.FLAGS.mark_as_parsed()
