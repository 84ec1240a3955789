"""What a checkpoint write costs the training loop, as a share of training time.

python -m launch.bench_checkpoint --config factorcl_ssl_synthetic --variant smoke
python -m launch.bench_checkpoint --config comm_trifeature --variant smoke --every 1000

Times, on the config's model and batch: the train step (median of `--steps` steps, each waited
for), the part of `Checkpointer.save` the loop waits for (device-to-host copy and handing the
write to orbax's thread; median of `--saves`), and the full write (`save` + `wait_until_finished`).
The share is `blocking save / (every * step + blocking save)` at `--every` (default: the
`ckpt_every` of the config's full variant, i.e. the interval a real run uses), and the same with
the full write for a synchronous checkpointer. Nothing is written outside a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax

from jaxmm import checkpoint as ckpt_lib
from jaxmm import configs, experiment
from jaxmm import train as train_lib
from jaxmm.data import inputs
from launch import logs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m launch.bench_checkpoint", description=__doc__)
    p.add_argument("--config", default="factorcl_ssl_synthetic")
    p.add_argument("--variant", default="smoke")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--every", type=int, default=None, help="checkpoint interval (steps)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--saves", type=int, default=8)
    args = p.parse_args(argv)
    logs.setup_logging(quiet=("jaxmm.train",))

    cfg = experiment.override(
        configs.get_config(args.config, args.variant), [f"data.data_dir={args.data_dir}"]
    )
    every = args.every or configs.get_config(args.config, None).train.ckpt_every
    it, example = inputs.build_train_iterator(cfg, process_index=0, process_count=1)
    trainer = train_lib.Trainer(experiment.build_method(cfg), experiment.train_config(cfg), example)
    state = trainer.init_state()
    batch = trainer.shard(next(it))
    state, m = trainer.train_step(state, batch)  # compile
    jax.block_until_ready(m)
    step_times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, m = trainer.train_step(state, trainer.shard(next(it)))
        jax.block_until_ready((state, m))
        step_times.append(time.perf_counter() - t0)

    blocking, full = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = ckpt_lib.Checkpointer(os.path.join(tmp, "checkpoints"), max_to_keep=2)
        for i in range(args.saves + 1):
            t0 = time.perf_counter()
            ckpt.save(i + 1, state, data_iter=it, config=cfg.to_dict())
            t1 = time.perf_counter()
            ckpt.wait_until_finished()
            t2 = time.perf_counter()
            if i:  # the first save also sets up orbax's handlers
                blocking.append(t1 - t0)
                full.append(t2 - t0)
        ckpt.close()

    step = statistics.median(step_times)
    block, write = statistics.median(blocking), statistics.median(full)
    print(
        f"config {cfg.name}: {trainer.num_params:,} parameters, global batch {cfg.train.batch_size}"
    )
    print(f"train step (median of {args.steps}): {step * 1e3:.2f} ms")
    print(f"save, blocking part (median of {args.saves}): {block * 1e3:.1f} ms")
    print(f"save, full write (median of {args.saves}): {write * 1e3:.1f} ms")
    for label, cost in (("async (as train() saves)", block), ("if saves were synchronous", write)):
        share = cost / (every * step + cost)
        print(f"share of training time at ckpt_every={every}, {label}: {100 * share:.2f}%")


if __name__ == "__main__":
    main()
