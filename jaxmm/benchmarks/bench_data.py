"""Examples/s of the Trifeature two-view input pipeline, next to a training step's examples/s.

    python -m launch.bench_data                           # px32, workers 0 and 2
    python -m launch.bench_data --size 64 --workers 0,4 --batch-size 128
    python -m launch.bench_data --data-dir ~/tfds --config px32   # an already built dataset

Input side: `jaxmm.data.pipeline.train_iterator` over the Trifeature train split (SimCLR
augmentations on both images, or FactorCL's unique augmentation on image2 with --augment unique),
for each worker count. After a warm-up batch (worker start-up excluded), it times `--windows`
windows of `--window-batches` batches each and prints the median examples/s over windows.

Without --data-dir, a small Trifeature variant (`--pairs` training pairs, one render per
combination) is built through `jaxmm.data.builders` into a temporary directory first.

Model side (unless --no-step): a jitted, donated Adam step of a two-view InfoNCE loss on the fused
embeddings of a CoMM-style model built by `jaxmm.models.build_model` (two small-stem AlexNets ->
one token each -> 1-layer fusion Transformer -> MLP head; only CoMM's full-modality term, not its
masked-modality passes), timed on a fixed device-resident batch: median examples/s over windows,
then the end-to-end rate of the step fed by the pipeline with the fastest worker count.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time

import jax

from jaxmm.data import builders


def _source(args):
    if args.data_dir:
        return builders.data_source(
            "trifeature", "train", args.data_dir, config=args.config
        ), args.config or "px32"
    cls = builders.builder_class("trifeature")
    base = cls.builder_configs[f"px{args.size}"]
    cfg = dataclasses.replace(
        base,
        name=f"bench_px{args.size}",
        num_train_pairs=args.pairs,
        max_test_pairs=8,
        num_per_combination=1,
    )
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    t0 = time.perf_counter()
    builders.build("trifeature", tmp, config=cfg)
    print(
        f"built {args.pairs} px{args.size} training pairs into {tmp} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return builders.data_source("trifeature", "train", tmp, config=cfg), cfg.name


def _rate(next_batch, batch_size: int, windows: int, per_window: int) -> tuple[float, list]:
    next_batch()  # warm-up: worker start-up, compilation
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(per_window):
            next_batch()
        rates.append(per_window * batch_size / (time.perf_counter() - t0))
    return statistics.median(rates), rates


def _train_step():
    """Returns (step(state, batch) -> (state, loss), state) for a CoMM-style two-view step."""
    import optax
    from flax import nnx

    from jaxmm.estimators import infonce_loss
    from jaxmm.models.model import (
        FusionConfig,
        HeadConfig,
        ModalityConfig,
        ModelConfig,
        build_model,
    )

    mod = lambda name: ModalityConfig(name, "alexnet", {"variant": "small"}, "one_token")
    cfg = ModelConfig(
        modalities=(mod("image1"), mod("image2")),
        fusion=FusionConfig(width=256),
        head=HeadConfig((512,), 128),
    )
    model = build_model(cfg, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adam(1e-3)

    def loss_fn(p, batch):
        m = nnx.merge(graphdef, p, rest)
        z1 = m.head(m(batch["view1"]["x"]))
        z2 = m.head(m(batch["view2"]["x"]))
        return 0.5 * (infonce_loss(z1, z2) + infonce_loss(z2, z1))

    def step(state, batch):
        p, o = state
        loss, grads = jax.value_and_grad(loss_fn)(p, batch)
        updates, o = opt.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), loss

    return jax.jit(step, donate_argnums=(0,)), (params, opt.init(params))
