"""Side by side: the official CoMM PyTorch train step vs the jaxmm jitted train step, same CPU.

    pip install -e '.[official]'          # torch (+ einops), never needed by CI or the demo
    git clone https://github.com/Duplums/CoMM /path/to/CoMM
    python -m launch.bench_official --official-dir /path/to/CoMM [--threads 1] [--steps 20]

No official code is part of jaxmm: it is imported from the user's checkout at run time
(`pl_modules.comm.CoMM`, `models.mmfusion.MMFusion`, `models.input_adapters`, `models.mlp.MLP`,
`losses.comm_loss.CoMMLoss` through CoMM). The official step is `CoMM.training_step` (forward of
both views through every mask, `CoMMLoss`, `loss.item()`) + `backward` + the AdamW built by the
official `configure_optimizers` (weight-decay groups of `set_weight_decay_per_param`); ours is
`jaxmm.train.Trainer.train_step` (one compiled function: the same forward, loss, gradient and
AdamW update, state donated) followed by a wait for the loss. The two are timed alternately in one
loop on the same random batch; medians are printed with the ratio official / jaxmm.

Matched models (parameter counts printed for both; the learnable ones, torch buffers and our
BatchNorm running averages excluded):

* tiny: two vector modalities (16 features), each an MLP 16 -> 128 -> 16 then a feature tokenizer
  (16 tokens of width 128); fusion width 128, 1 layer, 8 heads; head 128-128-128 with BatchNorm.
* 32px: two 32x32x3 images, each a small AlexNet (channels 16-32-64-64-64, 5x5/5x5/3x3 convs
  at stride 1, 2x2 max-pools after conv 1, 2, 5 -> a 4x4x64 map) then a 1x1 patch embedding
  (16 tokens of width 64); fusion width 64, 1 layer, 8 heads; head 64-64-64 with BatchNorm.
  The official AlexNet encoder is torchvision's 224 px network, so the torch side of this
  encoder is written here (same layers as `jaxmm.models.AlexNet(variant="small")`); the adapter,
  fusion, head, loss and optimizer are the official ones.

Threads: `--threads N` sets `torch.set_num_threads(N)` and, before jax starts, XLA's CPU flags
(`--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1` for N = 1, else
`intra_op_parallelism_threads=N`), one jax device. Modules that the official training code
imports but this step never uses (pytorch_lightning, omegaconf, tensorboard, pandas, PIL) are
replaced by empty stand-ins when they are not installed; LightningModule then is torch.nn.Module
and `log_dict` a no-op (logging is not part of the step being timed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

CONFIGS = ("tiny", "32px")


def _set_threads(n: int) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if n == 1:
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        flags += f" intra_op_parallelism_threads={n}"
    os.environ["XLA_FLAGS"] = flags.strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _stand_ins() -> None:
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
        encoders = [_torch_small_alexnet((16, 32, 64, 64, 64)) for _ in range(2)]
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
                {"channels": [16, 32, 64, 64, 64], "variant": "small", "pool": False},
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


def run(name: str, official_dir: str, *, batch: int, steps: int, warmup: int, drop: bool):
    import jax
    import numpy as np
    import torch
    from flax import nnx

    from jaxmm.config import OptimizerConfig, TrainConfig
    from jaxmm.methods.comm import CoMMConfig
    from jaxmm.train import Trainer, make_mesh

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

    t_off, t_jax = [], []
    for i in range(warmup + steps):
        t = time.perf_counter()
        official_step()
        dt_off = time.perf_counter() - t
        t = time.perf_counter()
        state, metrics = step(state, sharded)
        jax.block_until_ready(metrics["loss"])
        dt_jax = time.perf_counter() - t
        if i >= warmup:
            t_off.append(dt_off)
            t_jax.append(dt_jax)
    med_off, med_jax = statistics.median(t_off), statistics.median(t_jax)
    return {
        "config": name,
        "params_official": n_official,
        "params_jaxmm": n_jaxmm,
        "official_ms": 1e3 * med_off,
        "jaxmm_ms": 1e3 * med_jax,
        "ratio": med_off / med_jax,
        "compile_s": compile_s,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m launch.bench_official",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--official-dir", required=True, help="checkout of github.com/Duplums/CoMM")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps per side (medians)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch and XLA CPU threads")
    p.add_argument(
        "--full-length-passes",
        action="store_true",
        help="jaxmm: masked passes at full length (attention-masked) instead of dropped tokens",
    )
    args = p.parse_args(argv)
    names = args.configs.split(",")
    bad = [n for n in names if n not in CONFIGS]
    if bad:
        p.error(f"--configs: unknown {bad}; expected a subset of {list(CONFIGS)}")
    if not os.path.isfile(os.path.join(args.official_dir, "pl_modules", "comm.py")):
        p.error(f"--official-dir: {args.official_dir!r} has no pl_modules/comm.py (CoMM checkout?)")
    _set_threads(args.threads)
    try:
        import torch
    except ImportError:
        p.error("torch is not installed: pip install -e '.[official]'")
    torch.set_num_threads(args.threads)
    _stand_ins()
    sys.path.insert(0, os.path.abspath(args.official_dir))
    rows = [
        run(
            n,
            args.official_dir,
            batch=args.batch,
            steps=args.steps,
            warmup=args.warmup,
            drop=not args.full_length_passes,
        )
        for n in names
    ]
    cols = list(rows[0])
    print(f"batch {args.batch}, {args.threads} thread(s), medians of {args.steps} steps")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
