"""Forward+backward time and compiled memory of the CLIP loss, one device vs gathered over N.

    python -m launch.bench_estimators                      # B in {256, 1024, 4096}, d = 128
    python -m launch.bench_estimators --devices 1,8 --repeats 20

For each batch size B (the *global* batch) it measures `jax.value_and_grad` of
`jaxmm.estimators.clip_loss` w.r.t. both embedding matrices:

* `1 device`  -- the plain jitted function on one device;
* `N devices` -- the same global batch split over a `data` mesh axis, `clip_loss(...,
  axis_name="data")` inside `jax.shard_map`: each device all-gathers the other side's embeddings
  and scores its own B/N x B block (big_vision-style gathered negatives).

Time: median wall time of repeated jitted calls after warm-up, each ended by
`block_until_ready`. Memory: XLA's compile-time buffer assignment from
`jax.jit(f).lower(...).compile().memory_analysis()`, per device: `temp` is `temp_size_in_bytes`
(scratch buffers, e.g. the B_local x B logit matrices), `args+out` the inputs and outputs, `total`
their sum (the figure to compare), and `xla peak` the `peak_memory_in_bytes` field where the backend
fills it in (else "n/a"; the CPU backend of jax 0.10 reports args+out there, without temporaries).
These are XLA's static buffer-assignment figures, not measured process RSS.

Devices beyond those the backend has are CPU devices simulated in a child process started with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`; simulated devices share the host's cores, so
those timings show the cost of the sharded program (collectives, per-device dispatch), not a
speed-up.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxmm.estimators import clip_loss

TEMPERATURE = 0.07


def _loss_and_grads(za, zb):
    return jax.value_and_grad(
        lambda a, b: clip_loss(a, b, temperature=TEMPERATURE), argnums=(0, 1)
    )(za, zb)


def _sharded_loss_and_grads(mesh):
    def per_device(za, zb):
        # clip_loss with axis_name returns the global-batch loss (already reduced over "data"),
        # so its gradient w.r.t. the local rows is the global gradient's local block.
        return jax.value_and_grad(
            lambda a, b: clip_loss(a, b, temperature=TEMPERATURE, axis_name="data"),
            argnums=(0, 1),
        )(za, zb)

    return jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(P("data"), P("data")),
        out_specs=(P(), (P("data"), P("data"))),
    )


def _memory(compiled) -> dict:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 -- some backends do not implement memory_analysis
        stats = None
    if stats is None:
        return {"peak": None, "temp": None, "args_out": None, "total": None}
    peak = getattr(stats, "peak_memory_in_bytes", None)
    args_out = int(
        stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
    )
    temp = int(stats.temp_size_in_bytes)
    return {
        "peak": int(peak) if peak else None,
        "temp": temp,
        "args_out": args_out,
        "total": temp + args_out,
    }


def measure(batch: int, dim: int, n_devices: int, repeats: int, warmup: int, seed: int) -> dict:
    """Median fwd+bwd time (ms) and compiled memory of clip_loss at global batch `batch`."""
    if batch % n_devices:
        raise ValueError(f"batch {batch} must be divisible by the device count {n_devices}")
    rng = np.random.default_rng(seed)
    za = rng.standard_normal((batch, dim), dtype=np.float32)
    zb = rng.standard_normal((batch, dim), dtype=np.float32)
    if n_devices == 1:
        fn = jax.jit(_loss_and_grads)
        za, zb = jax.device_put(za), jax.device_put(zb)
    else:
        mesh = jax.make_mesh(
            (n_devices,),
            ("data",),
            axis_types=(jax.sharding.AxisType.Auto,),
            devices=jax.devices()[:n_devices],
        )
        sharding = jax.sharding.NamedSharding(mesh, P("data"))
        fn = jax.jit(_sharded_loss_and_grads(mesh))
        za, zb = jax.device_put(za, sharding), jax.device_put(zb, sharding)
    compiled = fn.lower(za, zb).compile()
    for _ in range(warmup):
        jax.block_until_ready(compiled(za, zb))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(za, zb))
        times.append(time.perf_counter() - start)
    loss = float(compiled(za, zb)[0])
    return {
        "batch": batch,
        "dim": dim,
        "devices": n_devices,
        "median_ms": 1e3 * statistics.median(times),
        "loss": loss,
        **_memory(compiled),
    }


def _child(n_devices: int, args) -> list[dict]:
    """Runs the N-device measurements in a fresh process that simulates N CPU devices."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n_devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [
        sys.executable,
        "-m",
        "launch.bench_estimators",
        "--devices",
        str(n_devices),
        "--batches",
        ",".join(map(str, args.batches)),
        "--dim",
        str(args.dim),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
        "--json",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{n_devices}-device child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(n) -> str:
    return "n/a" if n is None else f"{n / 2**20:.2f}"


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'B':>6} {'devices':>7} {'fwd+bwd ms':>11} {'total MiB':>10} {'temp MiB':>9} "
        f"{'args+out MiB':>12} {'xla peak MiB':>12} {'loss':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (r["batch"], r["devices"])):
        lines.append(
            f"{r['batch']:>6} {r['devices']:>7} {r['median_ms']:>11.3f} "
            f"{_mib(r['total']):>10} {_mib(r['temp']):>9} {_mib(r['args_out']):>12} "
            f"{_mib(r['peak']):>12} {r['loss']:>8.4f}"
        )
    return "\n".join(lines)
