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

# Under pytest-xdist, each worker keeps to its own share of the cores (gw0 the first, gw1 the
# second, ... on a 2-core machine). Unpinned, every worker's XLA and data threads spread over all
# cores and contend. On 7 Dec 2026 (2 cores) `make test` took 907 s of wall and 1 704 s of CPU
# time unpinned, then 784 s / 1 483 s pinned; later pinned runs that day took 889 and 1 161 s
# as the machine slowed, so the gain is one pair of runs, not a settled figure. Subprocesses a
# test starts inherit the worker's cores.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    _count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _share = _cores[int(_worker[2:]) % _count :: _count]
    if 1 < _count <= len(_cores) and _share:
        os.sched_setaffinity(0, _share)

from absl import flags  # noqa: E402

# grain 0.2.18's mp_prefetch reads absl flags; outside absl.app (e.g. pytest) they are unparsed.
flags.FLAGS.mark_as_parsed()
