"""Forward+backward throughput of the CoMM Trifeature model (two AlexNet encoders -> patch
converters -> fusion -> head) with an inline NT-Xent loss (Chen et al. 2020, Eq. 1) between the
fused embeddings of two views.

  python -m launch.bench_models [--batch 64 256] [--image 32 64] [--peak-tflops 989]

Prints examples/s (median over timed jitted calls after warm-up), XLA's FLOP count per example,
and achieved TFLOP/s (with utilisation against --peak-tflops) when the backend is a GPU/TPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig, build_model


def trifeature_config(dtype: str, width: int = 256) -> ModelConfig:
    img = dict(in_channels=3, pool=False, out_dim=width)
    return ModelConfig(
        modalities=(
            ModalityConfig("image1", "alexnet", img, "patch"),
            ModalityConfig("image2", "alexnet", img, "patch"),
        ),
        fusion=FusionConfig(width=width),
        head=HeadConfig((512, 512), 256),
        dtype=dtype,
    )


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float = 0.1) -> jax.Array:
    """SimCLR NT-Xent: each view's positive is the other view of the same example; the other
    2B - 2 embeddings are negatives."""
    z = jnp.concatenate([z1, z2]).astype(jnp.float32)
    z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    logits = z @ z.T / temperature
    n = z1.shape[0]
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
    targets = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2 * n), targets])


def bench(batch: int, image: int, dtype: str, repeats: int) -> tuple[float, float, float]:
    model = build_model(trifeature_config(dtype), rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params, views):
        m = nnx.merge(graphdef, params, rest)
        return nt_xent(*(m.head(m(v)) for v in views))

    step = jax.jit(jax.value_and_grad(loss_fn))
    rng = np.random.default_rng(0)
    views = [
        {
            k: jnp.asarray(rng.normal(size=(batch, image, image, 3)), jnp.float32)
            for k in ("image1", "image2")
        }
        for _ in range(2)
    ]
    compiled = step.lower(params, views).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    jax.block_until_ready(compiled(params, views))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, views))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return batch / med, flops / batch, flops / med


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--image", type=int, nargs="+", default=[32, 64])
    p.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="accelerator peak (dense, this dtype) for utilisation",
    )
    args = p.parse_args()
    backend = jax.default_backend()
    print(
        f"backend={backend} devices={jax.devices()[0].device_kind} (x{len(jax.devices())}, "
        f"benchmark uses one)"
    )
    print(
        f"{'image':>5} {'batch':>5} {'dtype':>8} {'ex/s':>10} {'GFLOP/ex':>9} {'TFLOP/s':>8}"
        f" {'util':>6}"
    )
    for image in args.image:
        for batch in args.batch:
            for dtype in args.dtype:
                ex_s, flop_ex, flop_s = bench(batch, image, dtype, args.repeats)
                util = (
                    f"{flop_s / 1e12 / args.peak_tflops:6.1%}"
                    if args.peak_tflops and backend != "cpu"
                    else "   n/a"
                )
                print(
                    f"{image:5d} {batch:5d} {dtype:>8} {ex_s:10.1f} {flop_ex / 1e9:9.3f} "
                    f"{flop_s / 1e12:8.4f} {util}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
