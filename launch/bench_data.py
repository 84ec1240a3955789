"""Examples/s of the Trifeature two-view input pipeline, next to a training step's examples/s.

(Measurement code in `jaxmm.benchmarks.bench_data`.)"""

from __future__ import annotations

import argparse

import jax

from jaxmm.benchmarks import bench_data as lib
from jaxmm.benchmarks.bench_data import _rate, _source, _train_step
from jaxmm.data import pipeline as pl


def main(argv=None):
    ap = argparse.ArgumentParser(description=lib.__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=32, choices=(32, 64), help="image side (px)")
    ap.add_argument("--data-dir", default=None, help="built TFDS dir (default: build a small one)")
    ap.add_argument("--config", default=None, help="builder config in --data-dir (default px32)")
    ap.add_argument("--pairs", type=int, default=1024, help="training pairs of the temp dataset")
    ap.add_argument("--augment", default="simclr", choices=("simclr", "unique", "none"))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--window-batches", type=int, default=4)
    ap.add_argument("--no-step", action="store_true", help="skip the training-step measurement")
    args = ap.parse_args(argv)

    source, config = _source(args)
    spec = pl.trifeature_spec(args.augment)
    b = args.batch_size
    print(
        f"trifeature/{config} train: {len(source)} pairs, augment={args.augment}, batch {b}, "
        f"{args.windows} windows x {args.window_batches} batches; "
        f"jax {jax.__version__} on {jax.devices()[0].platform}"
    )
    input_rates = {}
    for w in (int(x) for x in args.workers.split(",")):
        it = pl.train_iterator(
            source, spec, batch_size=b, seed=0, num_workers=w, process_index=0, process_count=1
        )
        med, rates = _rate(lambda it=it: next(it), b, args.windows, args.window_batches)
        input_rates[w] = med
        print(
            f"input  workers={w}: median {med:8.1f} examples/s  "
            f"(windows: {', '.join(f'{r:.0f}' for r in rates)})"
        )
        del it

    if args.no_step:
        print("model  skipped (--no-step)")
        return
    step, state = _train_step()
    batch = jax.device_put(
        next(
            pl.train_iterator(source, spec, batch_size=b, seed=1, process_index=0, process_count=1)
        )
    )

    def one_step():
        nonlocal state
        state, loss = step(state, batch)
        loss.block_until_ready()

    step_rate, rates = _rate(one_step, b, args.windows, args.window_batches)
    print(
        f"model  step only: median {step_rate:8.1f} examples/s  "
        f"(windows: {', '.join(f'{r:.0f}' for r in rates)})"
    )
    best = max(input_rates, key=input_rates.get)
    it = pl.train_iterator(
        source, spec, batch_size=b, seed=2, num_workers=best, process_index=0, process_count=1
    )

    def fed_step():
        nonlocal state
        state, loss = step(state, jax.device_put(next(it)))
        loss.block_until_ready()

    med, rates = _rate(fed_step, b, args.windows, args.window_batches)
    print(
        f"model  fed by pipeline (workers={best}): median {med:8.1f} examples/s  "
        f"(windows: {', '.join(f'{r:.0f}' for r in rates)})"
    )
    print("slower side:", "input pipeline" if input_rates[best] < step_rate else "training step")


if __name__ == "__main__":
    main()
