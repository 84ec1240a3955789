"""The logic of `launch.ablate_trifeature`: CoMM on bimodal Trifeature with every recipe knob
exposed, in memory with device augmentation, probed at intervals (see the launch file)."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

SHAPE_TEXTURE = ("shape", "texture1", "texture2")


def load_split_arrays(
    size: int,
    biased: bool,
    period: int | None,
    data_dir: str,
    train_pairs: int | None = None,
    test_pairs: int | None = None,
):
    """{"train", "test"} -> {field: stacked numpy array} of a Trifeature config (built on
    demand; `period`, `train_pairs` and `test_pairs` override the texture period,
    `num_train_pairs` and `max_test_pairs` where given)."""
    from jaxmm.data import builders, inputs

    given = {
        "texture_period": period,
        "num_train_pairs": train_pairs,
        "max_test_pairs": test_pairs,
    }
    data = inputs.DataConfig(
        builder="trifeature",
        builder_config=f"px{size}" + ("_biased" if biased else ""),
        builder_overrides={k: v for k, v in given.items() if v is not None},
        data_dir=data_dir,
    )
    cfg = inputs.resolve_builder_config(data)
    builders.build("trifeature", data_dir, config=cfg)  # a no-op once built
    out = {}
    for split in ("train", "test"):
        src = builders.data_source("trifeature", split, data_dir, cfg)
        rows = [src[i] for i in range(len(src))]
        out[split] = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return out


def _model_config(args):
    from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

    enc = {
        "channels": tuple(int(c) for c in args.channels.split(",")),
        "variant": args.variant,
        "pool": False,
        "out_dim": args.width,
    }
    mods = tuple(
        ModalityConfig(n, "alexnet", enc, "patch", {"patch_size": 1}) for n in ("image1", "image2")
    )
    head = HeadConfig((args.width,) * args.head_layers, args.proj, norm=args.head_norm)
    return ModelConfig(mods, FusionConfig(width=args.width, num_layers=1, num_heads=4), head)


def _augment(args):
    """(key, uint8 images) -> normalised augmented float images, as set by the flags."""
    import jax

    from jaxmm.data import augment_jax as aj
    from jaxmm.data.pipeline import IMAGENET_MEAN, IMAGENET_STD

    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    crop = None if args.crop == "none" else (float(args.crop), 1.0)

    def fn(key, x):
        x = x.astype(np.float32) / 255.0
        k = jax.random.split(key, 5)
        if crop is not None:
            x = aj.random_resized_crop(k[0], x, crop)
        x = aj.horizontal_flip(k[1], x)
        if args.jitter > 0:
            j = args.jitter
            x = aj.color_jitter(k[2], x, j, j, j, args.hue, 0.8)
        if args.gray > 0:
            x = aj.random_grayscale(k[3], x, args.gray)
        if args.blur > 0:
            x = aj.gaussian_blur(k[4], x, p=args.blur)
        return (x - mean) / std

    return fn


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Pre-trains and probes as `args` say; returns (and appends to ``args.out``) the record."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxmm.data.pipeline import IMAGENET_MEAN, IMAGENET_STD
    from jaxmm.methods.comm import CoMM, CoMMConfig
    from jaxmm.optimizers import decay_mask
    from jaxmm.probe import ProbeTask, probe

    t0 = time.perf_counter()
    pairs = (args.train_pairs, args.test_pairs)
    data = load_split_arrays(args.size, args.biased, args.period, args.data_dir, *pairs)
    train, test = data["train"], data["test"]
    # Synergy is probed on the unbiased pairs (its label is constant on the biased ones).
    probe_train = (
        load_split_arrays(args.size, False, args.period, args.data_dir, *pairs)["train"]
        if args.biased
        else train
    )
    t_data = time.perf_counter() - t0

    method = CoMM(_model_config(args), CoMMConfig(temperature=args.temperature))
    shape = (args.batch_size, args.size, args.size, 3)
    example = {
        f"view{v}": {"x": {m: jnp.zeros(shape) for m in ("image1", "image2")}, "valid": {}}
        for v in (1, 2)
    }
    params = jax.jit(method.init)(jax.random.key(args.seed), example)
    num_params = sum(x.size for x in jax.tree.leaves(params))
    heads = SHAPE_TEXTURE
    if args.method == "sup":
        keys = jax.random.split(jax.random.key(args.seed + 7), len(heads))
        w = {
            t: 0.05 * jax.random.normal(k, (args.width, 10))
            for t, k in zip(heads, keys, strict=True)
        }
        params = {"model": params, "heads": w}
    lr = args.lr
    if args.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0, args.lr, min(100, args.steps // 10), args.steps, 0.01 * args.lr
        )
    opt = optax.adamw(lr, weight_decay=args.weight_decay, mask=decay_mask)
    opt_state = opt.init(params)
    augment = _augment(args)
    x1, x2 = jnp.asarray(train["image1"]), jnp.asarray(train["image2"])
    labels = {t: jnp.asarray(train[t]) for t in heads}

    @jax.jit
    def step(params, opt_state, idx, key):
        k = jax.random.split(key, 5)
        a, b = x1[idx], x2[idx]
        batch = {
            "view1": {"x": {"image1": augment(k[0], a), "image2": augment(k[1], b)}, "valid": {}},
            "view2": {"x": {"image1": augment(k[2], a), "image2": augment(k[3], b)}, "valid": {}},
        }

        def objective(p):
            if args.method == "sup":
                z = method.embed(p["model"], {"x": batch["view1"]["x"], "valid": {}})
                ce = optax.softmax_cross_entropy_with_integer_labels
                loss = sum(ce(z @ p["heads"][t], labels[t][idx]).mean() for t in heads)
                return loss, {}
            return method.loss_and_state(p, batch, k[4])

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates_state = metrics.pop("state_updates", None)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if updates_state is not None:
            params = method.apply_state_updates(params, updates_state)
        return params, opt_state, loss

    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    embed_fn = jax.jit(
        lambda p, a, b: method.embed(p, {"x": {"image1": a, "image2": b}, "valid": {}})
    )

    def embed(p, split):
        norm = lambda x: (x.astype(np.float32) / 255.0 - mean) / std  # noqa: E731
        out = [
            np.asarray(
                embed_fn(p, norm(split["image1"][i : i + 512]), norm(split["image2"][i : i + 512]))
            )
            for i in range(0, len(split["image1"]), 512)
        ]
        return np.concatenate(out)

    tasks = (
        args.tasks.split(",")
        if args.tasks
        else (["synergy"] if args.biased else [*SHAPE_TEXTURE, "color1", "color2"])
    )

    def evaluate(p) -> dict[str, float]:
        t = time.perf_counter()
        p = p["model"] if args.method == "sup" else p
        z_train, z_test = embed(p, probe_train), embed(p, test)
        res = {}
        for task in tasks:
            k = 2 if task == "synergy" else 10
            cw = "balanced" if task == "synergy" else None
            r = probe(
                z_train,
                probe_train[task],
                z_test,
                test[task],
                ProbeTask(task, "classification", k, class_weight=cw),
            )
            res[task] = round(100 * r.metrics["balanced_accuracy"], 1)
            if task == "synergy":
                res["synergy_auroc"] = round(100 * r.metrics["auroc"], 1)
        res["probe_s"] = round(time.perf_counter() - t, 1)
        return res

    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed + 1)
    n = len(train["image1"])
    perm, pos = rng.permutation(n), 0
    history, losses, t_train = [], [], 0.0
    if args.eval_every:
        history.append({"step": 0, **evaluate(params)})
        print(history[-1], flush=True)
    for s in range(1, args.steps + 1):
        if pos + args.batch_size > n:
            perm, pos = rng.permutation(n), 0
        idx = jnp.asarray(perm[pos : pos + args.batch_size])
        pos += args.batch_size
        key, k = jax.random.split(key)
        t = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, idx, k)
        if s % 50 == 0 or s == args.steps:
            losses.append((s, float(loss)))
            print(f"step {s} loss {float(loss):.3f} train {t_train:.0f} s", flush=True)
        t_train += time.perf_counter() - t
        if args.eval_every and s % args.eval_every == 0 and s != args.steps:
            history.append({"step": s, "train_s": round(t_train), **evaluate(params)})
            print(history[-1], flush=True)
    history.append({"step": args.steps, "train_s": round(t_train), **evaluate(params)})
    record = {
        "args": vars(args),
        "num_params": int(num_params),
        "pairs": {"train": int(n), "test": len(test["image1"])},
        "data_s": round(t_data, 1),
        "train_s": round(t_train, 1),
        "final": history[-1],
        "history": history,
        "losses": losses,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    return record
