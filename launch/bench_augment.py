"""Host (NumPy, per image) vs device (JAX, batched and jitted) SimCLR augmentation per batch.

The same chain both ways: random resized crop, horizontal flip, colour jitter (p 0.8),
grayscale (p 0.2), Gaussian blur (p 0.5): `jaxmm.data.augment` classes over the batch one image
at a time (what the grain pipeline does per element), and `jaxmm.data.augment_jax.simclr_augment`
on the whole batch (compile excluded, reported apart). Medians over `--reps` batches.

python -m launch.bench_augment [--batch 64] [--sizes 32,64,224] [--reps 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.bench_augment", description=__doc__)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sizes", default="32,64,224")
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args(argv)

    import jax
    import numpy as np

    from jaxmm.data import augment as host
    from jaxmm.data import augment_jax as aj

    chain = [
        host.RandomResizedCrop(),
        host.HorizontalFlip(),
        host.ColorJitter(),
        host.RandomGrayscale(),
        host.GaussianBlur(),
    ]
    device = jax.jit(aj.simclr_augment)
    print(f"batch {args.batch}, {jax.devices()[0].platform}, medians of {args.reps}")
    print("| size | host ms/batch | device ms/batch | host / device | device compile s |")
    print("|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        rs = np.random.default_rng(0)
        images = rs.uniform(size=(args.batch, size, size, 3)).astype(np.float32)
        t_host = []
        for _ in range(args.reps):
            t = time.perf_counter()
            out = []
            for x in images:
                for aug in chain:
                    x, _ = aug(x, None, rs)
                out.append(x)
            np.stack(out)
            t_host.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        jax.block_until_ready(device(jax.random.key(0), images))
        compile_s = time.perf_counter() - t0
        x_dev = jax.device_put(images)
        t_dev = []
        for i in range(args.reps):
            t = time.perf_counter()
            jax.block_until_ready(device(jax.random.key(i + 1), x_dev))
            t_dev.append(time.perf_counter() - t)
        h, d = statistics.median(t_host), statistics.median(t_dev)
        print(f"| {size} | {1e3 * h:.1f} | {1e3 * d:.1f} | {h / d:.1f} | {compile_s:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
