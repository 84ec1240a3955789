"""The side-by-side benchmark against the official CoMM PyTorch code (`launch.bench_official`).

Matched models, thread set-up and the alternating timing loop; see `launch/bench_official.py`
for what is compared and how to run it. torch and the official checkout are needed only here.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

CONFIGS = ("tiny", "32px")
# The 32 px config's AlexNet conv widths (both sides).
CHANNELS_32PX = (16, 32, 64, 64, 64)


def set_threads(n: int) -> None:
    """Both sides on `n` CPU cores: call before jax starts.

    The process is pinned to `n` of its cores (Linux `sched_setaffinity`, where fewer than all) so
    that XLA's thread pools and torch's `set_num_threads(n)` (set by the caller) compete for the
    same cores; for n = 1 XLA's Eigen kernels are also made single-threaded.
    """
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = flags.strip()
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if n > len(cores):
            raise ValueError(f"--threads {n}: this process may use {len(cores)} cores")
        os.sched_setaffinity(0, cores[:n])
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def stand_ins() -> None:
    """Empty modules for imports of the official code that the train step does not use."""
    import importlib.machinery
    import importlib.util

    import torch

    def module(name):  # with a spec, so importlib.util.find_spec (torch._dynamo) accepts it
        return importlib.util.module_from_spec(importlib.machinery.ModuleSpec(name, None))

    def need(name):
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True

    if need("pytorch_lightning"):
        pl = module("pytorch_lightning")

        class LightningModule(torch.nn.Module):
            def log_dict(self, *args, **kwargs):
                pass

        pl.LightningModule, pl.Callback = LightningModule, object
        sys.modules["pytorch_lightning"] = pl
    if need("omegaconf"):
        sys.modules["omegaconf"] = module("omegaconf")
        sys.modules["omegaconf"].DictConfig = dict
    if need("tensorboard"):
        for name in (
            "tensorboard",
            "tensorboard.backend",
            "tensorboard.backend.event_processing",
            "tensorboard.backend.event_processing.event_accumulator",
        ):
            sys.modules[name] = module(name)
        sys.modules["tensorboard.backend.event_processing"].event_accumulator = sys.modules[
            "tensorboard.backend.event_processing.event_accumulator"
        ]
    if need("pandas"):
        sys.modules["pandas"] = module("pandas")
    if need("sentence_transformers"):  # CoMM's models/transformer.py (its LanguageEncoder)
        st = module("sentence_transformers")
        st.SentenceTransformer = object
        st.util = module("sentence_transformers.util")
        st.util.batch_to_device = None
        sys.modules["sentence_transformers"] = st
        sys.modules["sentence_transformers.util"] = st.util
    if need("torchvision"):  # FactorCL's multibench_model.py imports `transforms`, unused
        tv = module("torchvision")
        tv.transforms = module("torchvision.transforms")
        sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tv.transforms
    if not torch.cuda.is_available():
        # FactorCL-SUP's forward moves its one-hot labels with `.cuda()`; on a CPU-only torch
        # that is the identity here (every tensor of the step is on the CPU already).
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    if need("PIL"):
        pil = module("PIL")
        pil.ImageFilter = module("PIL.ImageFilter")
        sys.modules["PIL"], sys.modules["PIL.ImageFilter"] = pil, pil.ImageFilter


def _torch_small_alexnet(channels):
    """torch twin of `jaxmm.models.AlexNet(variant="small", pool=False)` (NCHW)."""
    import torch.nn as nn

    spec = ((5, 2), (5, 2), (3, 1), (3, 1), (3, 1))
    layers, c_in = [], 3
    for i, (c, (k, p)) in enumerate(zip(channels, spec, strict=True)):
        layers += [nn.Conv2d(c_in, c, k, 1, p), nn.ReLU()]
        if i in (0, 1, 4):
            layers.append(nn.MaxPool2d(2, 2))
        c_in = c
    return nn.Sequential(*layers)


def _official_model(name: str):
    import torch
    from models.input_adapters import FeaturesInputAdapter, PatchedInputAdapter
    from models.mlp import MLP
    from models.mmfusion import MMFusion
    from pl_modules.comm import CoMM as OfficialCoMM

    torch.manual_seed(0)
    if name == "tiny":
        w, f = 128, 16
        encoders = [MLP(f, w, f) for _ in range(2)]
        adapters = [FeaturesInputAdapter(f, w) for _ in range(2)]
    else:
        w = 64
        encoders = [_torch_small_alexnet(CHANNELS_32PX) for _ in range(2)]
        adapters = [PatchedInputAdapter(64, 1, 1, dim_tokens=w, image_size=4) for _ in range(2)]
    fusion = MMFusion(encoders, adapters, embed_dim=w, n_heads=8, n_layers=1)
    model = OfficialCoMM(
        fusion,
        OfficialCoMM._build_mlp(w, w, w),
        optim_kwargs={"lr": 1e-3, "weight_decay": 0.01},
        loss_kwargs={"temperature": 0.1},
    )
    model.log_dict = lambda *a, **k: None  # logging needs a Lightning Trainer; not timed
    return model


def _jaxmm_method(name: str):
    from jaxmm.methods.comm import CoMM
    from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

    if name == "tiny":
        w, f = 128, 16
        mods = tuple(
            ModalityConfig(
                f"m{i}",
                "mlp",
                {"in_features": f, "hidden_dims": [w], "out_dim": f},
                "feature_tokenizer",
            )
            for i in range(2)
        )
    else:
        w = 64
        mods = tuple(
            ModalityConfig(
                f"m{i}",
                "alexnet",
                {"channels": list(CHANNELS_32PX), "variant": "small", "pool": False},
                "patch",
                {"patch_size": 1},
            )
            for i in range(2)
        )
    cfg = ModelConfig(
        modalities=mods, fusion=FusionConfig(width=w, num_heads=8), head=HeadConfig((w, w), w)
    )
    return CoMM(cfg)


def _inputs(name: str, batch: int, seed: int):
    import numpy as np

    rs = np.random.default_rng(seed)
    shape = (batch, 16) if name == "tiny" else (batch, 32, 32, 3)
    return [[rs.standard_normal(shape).astype(np.float32) for _ in range(2)] for _ in range(2)]


def _alternate(a, b, steps: int, warmup: int) -> tuple[float, float]:
    """Median seconds of `a()` and `b()`, called alternately warmup + steps times."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(warmup + steps):
        for fn, out in zip((a, b), times, strict=True):
            t = time.perf_counter()
            fn()
            if i >= warmup:
                out.append(time.perf_counter() - t)
    return statistics.median(times[0]), statistics.median(times[1])


def run(name: str, official_dir: str, *, batch: int, steps: int, warmup: int, drop: bool):
    import jax
    import numpy as np
    import torch
    from flax import nnx

    from jaxmm.config import OptimizerConfig, TrainConfig
    from jaxmm.distributed import make_mesh
    from jaxmm.methods.comm import CoMMConfig
    from jaxmm.train import Trainer

    views = _inputs(name, batch, 0)
    to_torch = (
        (lambda a: torch.from_numpy(a))
        if name == "tiny"
        else (lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))))
    )
    tbatch = ([to_torch(a) for a in views[0]], [to_torch(a) for a in views[1]])
    official = _official_model(name)
    official.train()
    opt = official.configure_optimizers()
    n_official = sum(p.numel() for p in official.parameters() if p.requires_grad)

    method = _jaxmm_method(name)
    if not drop:
        method = type(method)(method.model_config, CoMMConfig(drop_masked_tokens=False))
    jbatch = {f"view{v + 1}": {"x": {f"m{i}": views[v][i] for i in range(2)}} for v in range(2)}
    tcfg = TrainConfig(
        steps=10**6,
        batch_size=batch,
        progress=False,
        optimizer=OptimizerConfig(lr=1e-3, weight_decay=0.01, schedule="constant", warmup_steps=0),
    )
    trainer = Trainer(method, tcfg, jbatch, mesh=make_mesh(jax.devices()[:1]))
    state = trainer.init_state()
    n_jaxmm = sum(
        int(np.prod(x.shape))
        for x in jax.tree.leaves(nnx.state(method.module(state.params), nnx.Param))
    )
    sharded = trainer.shard(jbatch)
    t0 = time.perf_counter()
    step = trainer.train_step.lower(state, sharded).compile()
    compile_s = time.perf_counter() - t0

    def official_step():
        opt.zero_grad(set_to_none=True)
        loss = official.training_step(tbatch, 0)
        loss.backward()
        opt.step()

    def jaxmm_step():
        nonlocal state
        state, metrics = step(state, sharded)
        jax.block_until_ready(metrics["loss"])

    med_off, med_jax = _alternate(official_step, jaxmm_step, steps, warmup)
    return {
        "config": name,
        "params_official": n_official,
        "params_jaxmm": n_jaxmm,
        "official_ms": 1e3 * med_off,
        "jaxmm_ms": 1e3 * med_jax,
        "ratio": med_off / med_jax,
        "compile_s": compile_s,
    }


def encoders_only(batch: int, steps: int, warmup: int) -> dict:
    """The 32 px config's two AlexNet encoders alone: forward + backward of a sum of squares.

    Each encoder sees both views (2 * batch images), as in the train step; torch runs the twin
    in `_torch_small_alexnet`, jaxmm `AlexNet(variant="small", pool=False)` under `jax.jit`.
    Gives how much of each step is convolution (medians, ms).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from flax import nnx

    from jaxmm.models import AlexNet

    channels = CHANNELS_32PX
    rs = np.random.default_rng(0)
    x = rs.standard_normal((2, 2 * batch, 32, 32, 3)).astype(np.float32)
    nets = [AlexNet(3, channels, variant="small", pool=False, rngs=nnx.Rngs(i)) for i in range(2)]
    graphdef, params = nnx.split(nets)

    def loss(params, x):
        return sum(
            jnp.sum(m(x[i]).features ** 2) for i, m in enumerate(nnx.merge(graphdef, params))
        )

    grad = jax.jit(jax.grad(loss))
    xj = jnp.asarray(x)
    torch.manual_seed(0)
    tnets = [_torch_small_alexnet(channels) for _ in range(2)]
    xt = [torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))) for a in x]

    def torch_step():
        for m in tnets:
            m.zero_grad(set_to_none=True)
        sum(m(a).pow(2).sum() for m, a in zip(tnets, xt, strict=True)).backward()

    med_t, med_j = _alternate(
        torch_step, lambda: jax.block_until_ready(grad(params, xj)), steps, warmup
    )
    return {
        "config": "32px encoders only",
        "official_ms": 1e3 * med_t,
        "jaxmm_ms": 1e3 * med_j,
        "ratio": med_t / med_j,
    }


def _conv_layers_32px() -> list[tuple[int, int, int, int, int]]:
    """(kernel, padding, input side, Cin, Cout) of the 32 px encoder's convolutions."""
    from jaxmm.models.alexnet import _POOL_AFTER, _VARIANTS

    side, dims, out = 32, (3, *CHANNELS_32PX), []
    for i, (k, _, p) in enumerate(_VARIANTS["small"][0]):
        out.append((k, p, side, dims[i], dims[i + 1]))
        side //= 2 if i in _POOL_AFTER else 1
    return out


def _conv_passes(layer: int, n: int, rs):
    """(name, jaxmm call, torch call, GFLOP) for the passes of one 32 px encoder layer."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from jaxmm.models.alexnet import _conv, space_to_depth_conv

    k, p, side, cin, cout = _conv_layers_32px()[layer]
    x = rs.standard_normal((n, side, side, cin)).astype(np.float32)
    w = (rs.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
    dy = rs.standard_normal((n, side, side, cout)).astype(np.float32)
    xj, wj, dyj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(dy)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
    forward = space_to_depth_conv if layer == 0 else _conv
    fwd = jax.jit(lambda a, b: forward(a, b, p))
    dgrad = jax.jit(lambda a, b, g: jax.vjp(lambda t: _conv(t, b, p), a)[1](g)[0])
    wgrad = jax.jit(lambda a, b, g: jax.vjp(lambda t: _conv(a, t, p), b)[1](g)[0])

    def back(mask):
        return torch.ops.aten.convolution_backward(
            dyt, xt, wt, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1, mask
        )

    gflop = 2 * n * side * side * k * k * cin * cout / 1e9
    passes = [
        ("forward", lambda: fwd(xj, wj), lambda: torch.nn.functional.conv2d(xt, wt, None, 1, p)),
        ("input gradient", lambda: dgrad(xj, wj, dyj), lambda: back([True, False, False])),
        ("weight gradient", lambda: wgrad(xj, wj, dyj), lambda: back([False, True, False])),
    ]
    name = f"{layer + 1}: {side} px {k}x{k} {cin}->{cout}"
    # An image needs no input gradient: the stem's is never computed in the step.
    return name, [(kind, j, t, gflop) for kind, j, t in passes if layer or kind != "input gradient"]


def conv_layers(batch: int, steps: int, warmup: int) -> list[dict]:
    """Each convolution pass of the 32 px encoders, XLA vs torch, one pass per jitted call.

    For every layer of the small AlexNet at 2 * batch images (both views, as in the train step):
    the forward convolution (jaxmm's block stem for layer 1, as `AlexNet` runs it), the input
    gradient (not for layer 1: an image needs none) and the weight gradient. torch runs
    `conv2d` and `aten.convolution_backward` in NCHW, as the official step does. Each pair is
    timed alternately (medians, ms) with its rate in GFLOP/s (two per multiply-add of the plain
    convolution). A last row times a 1024^3 float32 matmul: the dense rate each library reaches
    on these cores, the ceiling for a convolution computed as matrix products.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    rs = np.random.default_rng(0)
    rows = []

    def row(layer, kind, jx, tf, gflop):
        with torch.no_grad():
            med_j, med_t = _alternate(lambda: jax.block_until_ready(jx()), tf, steps, warmup)
        rows.append(
            {
                "layer": layer,
                "pass": kind,
                "xla_ms": 1e3 * med_j,
                "torch_ms": 1e3 * med_t,
                "xla_gflops": gflop / med_j,
                "torch_gflops": gflop / med_t,
            }
        )

    for i in range(len(_conv_layers_32px())):
        name, passes = _conv_passes(i, 2 * batch, rs)
        for kind, jx, tf, gflop in passes:
            row(name, kind, jx, tf, gflop)
    a = rs.standard_normal((1024, 1024)).astype(np.float32)
    aj, at = jnp.asarray(a), torch.from_numpy(a)
    matmul = jax.jit(jnp.matmul)
    row("1024^3 matmul", "dense rate", lambda: matmul(aj, aj), lambda: at @ at, 2 * 1024**3 / 1e9)
    return rows


def conv_what_ifs(layers: list[dict], step: dict | None = None) -> dict:
    """Both encoders' convolution time per pass kind and, given the 32 px step row, two what-ifs.

    `layers` are `conv_layers` rows (one encoder; the step runs two, so times count twice);
    `xla_convs_ms` is XLA's total, to hold against the official step time / 1.5.
    The what-ifs keep everything else in the step as measured and change only the convolutions:
    `wgrad_at_forward_rate_ms` runs each weight gradient at its layer's forward rate (the same
    FLOPs), `torch_convs_ms` gives every pass torch's time, i.e. the jaxmm step if XLA had
    oneDNN's convolution kernels. They hold for one core, where the passes run one at a time.
    """
    kinds = ("forward", "input gradient", "weight gradient")
    out: dict = {
        "encoders_ms": {
            k: tuple(
                2 * sum(r[f] for r in layers if r["pass"] == k) for f in ("xla_ms", "torch_ms")
            )
            for k in kinds
        }
    }
    out["xla_convs_ms"] = sum(x for x, _ in out["encoders_ms"].values())
    if step is None:
        return out
    fwd = {r["layer"]: r["xla_gflops"] for r in layers if r["pass"] == "forward"}
    saved = 2 * sum(
        max(0.0, r["xla_ms"] * (1.0 - r["xla_gflops"] / fwd[r["layer"]]))
        for r in layers
        if r["pass"] == "weight gradient"
    )
    as_torch = step["jaxmm_ms"] - sum(x - t for x, t in out["encoders_ms"].values())
    out["wgrad_at_forward_rate_ms"] = step["jaxmm_ms"] - saved
    out["wgrad_at_forward_rate_ratio"] = step["official_ms"] / out["wgrad_at_forward_rate_ms"]
    out["torch_convs_ms"] = as_torch
    out["torch_convs_ratio"] = step["official_ms"] / as_torch
    return out
