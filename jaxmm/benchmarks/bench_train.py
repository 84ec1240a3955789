"""Benchmark the compiled train step of an experiment config (default: CoMM on Trifeature).

Median steps/s and examples/s over timed steps, per batch size, device count and activation dtype,
on random batches shaped like the pipeline's (no dataset is built: this measures the step, not
the input pipeline; see launch/bench_data.py for that). FLOP/s uses XLA's cost analysis of the
compiled step (per-device program x device count = the whole mesh); with `--peak-tflops` (one
accelerator's dense peak) it also reports the utilisation of all devices together. Each device
count runs in a subprocess, with simulated CPU devices on a CPU-only machine
(XLA_FLAGS=--xla_force_host_platform_device_count=N).

python -m launch.bench_train                                   # CPU: small sizes
python -m launch.bench_train --variant paper --batch-sizes 64,128,256 --devices 1 \
    --peak-tflops 989                                          # one H100, bf16 dense peak
python -m launch.bench_train --memory --variant paper --batch-sizes 4096 --devices 8 \
    --dtypes bfloat16                                          # XLA bytes per device
"""

from __future__ import annotations

import statistics
import time


def _row(name, variant, overrides, batch_size, dtype, steps, warmup, peak_tflops):
    import jax
    import numpy as np

    from jaxmm import configs, validation
    from jaxmm import experiment as ex
    from jaxmm import train as train_lib

    cfg = configs.get_config(name, variant)
    cfg = ex.override(
        cfg,
        [
            *overrides,
            f"train.batch_size={batch_size}",
            f"model.dtype={dtype}",
            "train.steps=1000000",
        ],
    )
    spec = validation.example_spec(cfg, batch_size=batch_size)
    rs = np.random.default_rng(0)

    def leaf(s):
        if s.dtype == np.bool_:
            return np.ones(s.shape, bool)
        if np.issubdtype(s.dtype, np.integer):
            return rs.integers(0, 2, s.shape).astype(s.dtype)
        return rs.standard_normal(s.shape).astype(s.dtype)

    local = jax.tree.map(leaf, spec)
    method = ex.build_method(cfg)
    trainer = train_lib.Trainer(method, ex.train_config(cfg), local)
    state = trainer.init_state()
    batch = trainer.shard(local)
    t0 = time.perf_counter()
    compiled = trainer.train_step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    # XLA reports the per-device (SPMD-partitioned) program's FLOPs: scale to the whole mesh.
    flops = (float(cost.get("flops", 0.0)) if cost else 0.0) * trainer.mesh.size
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics["loss"])
        if i >= warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    row = {
        "config": f"{name}/{variant}",
        "devices": trainer.mesh.size,
        "platform": jax.devices()[0].platform,
        "batch": batch_size,
        "dtype": dtype,
        "params": trainer.num_params,
        "compile_s": compile_s,
        "step_ms": 1e3 * med,
        "steps_per_s": 1 / med,
        "examples_per_s": batch_size / med,
        "xla_flops": flops,
        "tflops_per_s": flops / med / 1e12,
    }
    if peak_tflops:
        row["utilisation"] = row["tflops_per_s"] / peak_tflops
    return row


def _memory_row(name, variant, overrides, batch_size, dtype):
    """XLA's memory analysis of the compiled step at a global batch, per device (nothing runs:
    state and batch are abstract, so a 4096 batch needs no host memory)."""
    import jax
    import numpy as np

    from jaxmm import configs, validation
    from jaxmm import experiment as ex
    from jaxmm import train as train_lib

    cfg = configs.get_config(name, variant)
    cfg = ex.override(
        cfg,
        [*overrides, f"train.batch_size={batch_size}", f"model.dtype={dtype}", "train.steps=10"],
    )
    n = jax.device_count()
    small = jax.tree.map(
        lambda s: np.zeros(s.shape, s.dtype), validation.example_spec(cfg, batch_size=n)
    )
    trainer = train_lib.Trainer(ex.build_method(cfg), ex.train_config(cfg), small)
    spec = validation.example_spec(cfg, batch_size=batch_size)
    batch = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=trainer.data_sharding), spec
    )
    t0 = time.perf_counter()
    compiled = trainer.train_step.lower(trainer.abstract_state(), batch).compile()
    mem = compiled.memory_analysis()
    row = {"config": f"{name}/{variant}", "devices": n, "batch": batch_size, "dtype": dtype}
    row["compile_s"] = time.perf_counter() - t0
    for field in ("argument", "output", "alias", "temp", "generated_code"):
        row[f"{field}_MiB"] = getattr(mem, f"{field}_size_in_bytes", float("nan")) / 2**20
    # Donated state aliases its output: live bytes ~ arguments + outputs - aliased + temporaries.
    row["peak_MiB"] = row["argument_MiB"] + row["output_MiB"] - row["alias_MiB"] + row["temp_MiB"]
    return row


def _print_table(rows):
    cols = [
        "config",
        "devices",
        "platform",
        "batch",
        "dtype",
        "compile_s",
        "step_ms",
        "steps_per_s",
        "examples_per_s",
        "tflops_per_s",
    ]
    if any("utilisation" in r for r in rows):
        cols.append("utilisation")
    if rows and "peak_MiB" in rows[0]:
        cols = list(rows[0])
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        print(" | ".join(cells))
