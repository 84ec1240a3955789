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

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _row(name, variant, overrides, batch_size, dtype, steps, warmup, peak_tflops):
    import jax
    import numpy as np

    from jaxmm import experiment as ex
    from jaxmm import train as train_lib
    from launch import configs

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
    spec = ex.example_spec(cfg, batch_size=batch_size)
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

    from jaxmm import experiment as ex
    from jaxmm import train as train_lib
    from launch import configs

    cfg = configs.get_config(name, variant)
    cfg = ex.override(
        cfg,
        [*overrides, f"train.batch_size={batch_size}", f"model.dtype={dtype}", "train.steps=10"],
    )
    n = jax.device_count()
    small = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), ex.example_spec(cfg, batch_size=n))
    trainer = train_lib.Trainer(ex.build_method(cfg), ex.train_config(cfg), small)
    spec = ex.example_spec(cfg, batch_size=batch_size)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m launch.bench_train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="comm_trifeature")
    p.add_argument("--variant", default=None, help="config variant (default: the full run's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--batch-sizes", default="8,16,32")
    p.add_argument("--devices", default="1,8", help="device counts; >1 runs in a subprocess")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="peak dense TFLOP/s of ONE device, for the utilisation column",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="report XLA memory_analysis per device (compile only, abstract inputs) instead of "
        "timing, e.g. --memory --batch-sizes 4096 --devices 8",
    )
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    dtypes = args.dtypes.split(",")
    counts = [int(d) for d in args.devices.split(",")]

    if args.child:
        import jax

        n = jax.device_count()
        if args.memory:
            rows = [
                _memory_row(args.config, args.variant, args.overrides, b, dt)
                for dt in dtypes
                for b in sizes
                if b % n == 0
            ]
            print("BENCH_ROWS " + json.dumps(rows))
            return 0
        rows = [
            _row(
                args.config,
                args.variant,
                args.overrides,
                b,
                dt,
                args.steps,
                args.warmup,
                args.peak_tflops and args.peak_tflops * n,
            )
            for dt in dtypes
            for b in sizes
            if b % n == 0
        ]
        print("BENCH_ROWS " + json.dumps(rows))
        return 0

    rows = []
    for n in counts:
        env = dict(os.environ)
        flags = env.get("XLA_FLAGS", "")
        flags = " ".join(
            f for f in flags.split() if "xla_force_host_platform_device_count" not in f
        )
        platforms = env.get("JAX_PLATFORMS", "")
        if n > 1 and platforms in ("", "cpu"):
            flags += f" --xla_force_host_platform_device_count={n}"
        env["XLA_FLAGS"] = flags.strip()
        cmd = [
            sys.executable,
            "-m",
            "launch.bench_train",
            "--child",
            "--config",
            args.config,
            "--batch-sizes",
            args.batch_sizes,
            "--dtypes",
            args.dtypes,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ]
        cmd += ["--variant", args.variant] if args.variant else []
        cmd += ["--memory"] if args.memory else []
        cmd += ["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else []
        for o in args.overrides:
            cmd += ["--set", o]
        # Each device count in its own process: the device count is fixed when jax starts.
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_ROWS ")]
        if out.returncode or not lines:
            sys.stderr.write(out.stderr[-4000:])
            raise RuntimeError(f"benchmark child for {n} device(s) failed (rc {out.returncode})")
        child_rows = json.loads(lines[-1][len("BENCH_ROWS ") :])
        if child_rows and child_rows[0]["devices"] != n:
            print(
                f"note: asked for {n} device(s), the child saw {child_rows[0]['devices']}",
                file=sys.stderr,
            )
        rows += child_rows
    _print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
