"""Forward+backward time and compiled memory of the CLIP loss, one device vs gathered over N.

(Measurement code in `jaxmm.benchmarks.bench_estimators`.)"""

from __future__ import annotations

import argparse
import json

import jax

from jaxmm.benchmarks import bench_estimators as lib
from jaxmm.benchmarks.bench_estimators import _child, format_table, measure


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m launch.bench_estimators",
        description=lib.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ints = lambda s: [int(v) for v in s.split(",")]
    p.add_argument("--batches", type=ints, default=[256, 1024, 4096], help="global batch sizes")
    p.add_argument("--dim", type=int, default=128, help="embedding dimension")
    p.add_argument("--devices", type=ints, default=[1, 8], help="device counts to compare")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after compilation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the rows as one JSON line")
    args = p.parse_args(argv)
    if min(args.devices) < 1 or min(args.batches) < 1 or args.repeats < 1:
        p.error("--devices, --batches and --repeats must be positive")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    rows = []
    for n in args.devices:
        if n <= jax.device_count():
            rows += [
                measure(b, args.dim, n, args.repeats, args.warmup, args.seed) for b in args.batches
            ]
        else:
            rows += _child(n, args)
    if args.json:
        print(json.dumps(rows))
    else:
        print(
            f"clip_loss value_and_grad, d={args.dim}, backend={jax.default_backend()} "
            f"({jax.devices()[0].device_kind}), jax {jax.__version__}, median of "
            f"{args.repeats} calls; memory = XLA compile-time estimate per device"
        )
        print(format_table(rows))
        # The gathered loss must equal the single-device loss on the same global batch.
        by = {}
        for r in rows:
            by.setdefault(r["batch"], []).append(r["loss"])
        spread = max(max(v) - min(v) for v in by.values())
        print(f"max |loss(1 device) - loss(N devices)| over batches: {spread:.2e}")
    return rows


if __name__ == "__main__":
    main()
