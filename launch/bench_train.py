"""Benchmark the compiled train step of an experiment config (default: CoMM on Trifeature).

(Measurement code in `jaxmm.benchmarks.bench_train`.)"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from jaxmm.benchmarks import bench_train as lib
from jaxmm.benchmarks.bench_train import _memory_row, _print_table, _row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m launch.bench_train",
        description=lib.__doc__,
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
