"""Side-by-side configs shaped like the papers' real runs (`launch.bench_official`).

CoMM on MultiBench shapes and the full FactorCL step, against the official PyTorch code imported
from the user's checkouts (github.com/Duplums/CoMM, github.com/pliang279/FactorCL) at run time.
Nothing here imports torch at module level: the jaxmm side (`jaxmm_method`, `batch_shapes`,
`official_param_count`) is usable and tested without it.

Configs (widths read from the official code; `DEFAULT_BATCH` from the official runs):

* `mosi`: CoMM, vision (50 x 20) + text (50 x 300), each the official `models.transformer.
  Transformer` (1x1 conv to width 40, `nn.TransformerEncoder` of 5 pre-norm layers, 5 heads,
  torch's default feed-forward width 2048 and dropout 0.1, no positions), no adapters; fusion
  width 40, 1 layer, 8 heads; head 40-512-512-256 with BatchNorm (official
  `configs/train_multibench.yaml`, `configs/model/comm.yaml`); batch 64.
* `mosi3`: the same plus audio (50 x 5) (`configs/train_multibench_all-mod.yaml`).
* `mimic`: CoMM, static (5) through `models.mlp.MLP(5, 10, 10)` + `FeaturesInputAdapter(10, 512)`,
  time series (24 x 12) through `models.gru.GRU(12, 512)` (all 24 states are tokens); fusion
  width 512, 1 layer, 8 heads; head 512-512-512-256 with BatchNorm; batch 64.
* `factorcl_synthetic`: FactorCL-SUP of `synthetic_model.FactorCLSUP(100, 100, 2, 512, 128)`:
  encoders 100-512-512-512-128, ten heads 128-128-128-128, six concat critics in-512-512-1,
  Adam; x1, x2 (100), binary labels; batch 256 (the synthetic notebook).
* `factorcl_mosi`: FactorCL-SSL of `multibench_model.FactorCLSSL` with the official notebook's
  encoders `[Transformer(20, 40), Transformer(300, 600)]` (MultiBench's `unimodals.common_models.
  Transformer`: 1x1 conv, 5 post-norm layers, 5 heads, feed-forward 2048, dropout 0.1, last step;
  MultiBench is not a dependency of the FactorCL checkout, so its torch twin is written here);
  heads d-d-d, six concat critics in-512-512-1; X and X' (the augmented batch) as inputs;
  batch 32 (the notebook).

The official FactorCL step is the notebook's `train_sup_*` / `train_ssl_*` loop body: forward,
`loss.detach().cpu().numpy()`, `backward`, a `step` of each of the 11 non-CLUB Adam optimisers,
then `learning_loss` (the NCE-CLUB critics' InfoNCE, through the encoders again), `backward`, a
`step` of each of the 2 CLUB optimisers. Ours is `jaxmm.train.Trainer.train_step` with
`inner_steps=1`: the critics' update and the main update in one compiled function.
"""

from __future__ import annotations

import math
import time

COMM_CONFIGS = ("mosi", "mosi3", "mimic")
FACTORCL_CONFIGS = ("factorcl_synthetic", "factorcl_mosi")
CONFIGS = COMM_CONFIGS + FACTORCL_CONFIGS
DEFAULT_BATCH = {
    "mosi": 64,
    "mosi3": 64,
    "mimic": 64,
    "factorcl_synthetic": 256,
    "factorcl_mosi": 32,
}
# torch.nn.TransformerEncoderLayer's default feed-forward width (the official encoders keep it).
TORCH_FF = 2048
_AFFECT = {"vision": 20, "text": 300, "audio": 5}  # MOSI feature widths (MultiBench)
_SEQ = 50
_MIMIC_STEPS = 24


def batch_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Per-sample input shape of each modality of config `name`."""
    if name in ("mosi", "mosi3"):
        mods = ("vision", "text", "audio") if name == "mosi3" else ("vision", "text")
        return {m: (_SEQ, _AFFECT[m]) for m in mods}
    if name == "mimic":
        return {"static": (5,), "timeseries": (_MIMIC_STEPS, 12)}
    if name == "factorcl_synthetic":
        return {"x1": (100,), "x2": (100,)}
    if name == "factorcl_mosi":
        return {"vision": (_SEQ, 20), "text": (_SEQ, 300)}
    raise ValueError(f"unknown config {name!r}; expected one of {list(CONFIGS)}")


# -- jaxmm side ------------------------------------------------------------------------------


def _transformer(name: str, n: int, width: int, pool: str = "mean"):
    from jaxmm.models import ModalityConfig

    return ModalityConfig(
        name,
        "transformer",
        {
            "in_features": n,
            "width": width,
            "num_layers": 5,
            "num_heads": 5,
            "mlp_ratio": TORCH_FF / width,
            "dropout": 0.1,
            "positional": False,
            "pool": pool,
        },
    )


def jaxmm_method(name: str):
    """The jaxmm method matched to the official model of config `name` (see the module doc)."""
    from jaxmm.methods.comm import CoMM
    from jaxmm.methods.factorcl import FactorCL, FactorCLConfig
    from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

    if name in ("mosi", "mosi3"):
        mods = tuple(_transformer(m, d[1], 40) for m, d in batch_shapes(name).items())
        cfg = ModelConfig(mods, FusionConfig(width=40, num_heads=8), HeadConfig((512, 512), 256))
        return CoMM(cfg)
    if name == "mimic":
        mods = (
            ModalityConfig(
                "static",
                "mlp",
                {"in_features": 5, "hidden_dims": [10], "out_dim": 10},
                "feature_tokenizer",
            ),
            ModalityConfig("timeseries", "gru", {"in_features": 12, "hidden": 512}),
        )
        cfg = ModelConfig(mods, FusionConfig(width=512, num_heads=8), HeadConfig((512, 512), 256))
        return CoMM(cfg)
    # FactorCL uses the encoders only; the backbone's fusion and head are built but unused
    # (left out of the parameter count, see `count_params`).
    if name == "factorcl_synthetic":
        mods = tuple(
            ModalityConfig(
                m,
                "mlp",
                {"in_features": 100, "hidden_dims": [512, 512, 512], "out_dim": 128},
                "one_token",
            )
            for m in ("x1", "x2")
        )
        cfg = ModelConfig(
            mods, FusionConfig(width=128, num_heads=1, kind="linear"), HeadConfig((), 8, "none")
        )
        fcfg = FactorCLConfig(
            mode="sup",
            num_classes=2,
            head_hidden_dims=(128, 128),
            critic_hidden=512,
            critic_layers=2,
        )
        return FactorCL(cfg, fcfg)
    if name == "factorcl_mosi":
        mods = (_transformer("vision", 20, 40, "last"), _transformer("text", 300, 600, "last"))
        cfg = ModelConfig(
            mods,
            FusionConfig(width=40, num_heads=1, kind="linear"),
            HeadConfig((), 8, "none"),
        )
        return FactorCL(cfg, FactorCLConfig(mode="ssl", critic_hidden=512, critic_layers=2))
    raise ValueError(f"unknown config {name!r}; expected one of {list(CONFIGS)}")


def jaxmm_batch(name: str, views, labels=None) -> dict:
    """The trainer's batch from two views of {modality: array} (and SUP labels)."""
    batch = {f"view{v + 1}": {"x": dict(views[v])} for v in range(2)}
    if labels is not None:
        batch["labels"] = {"label": labels}
    return batch


def count_params(name: str, method, params) -> int:
    """Learnable parameters of the jaxmm side (BatchNorm statistics excluded); for FactorCL only
    the parts its step uses (encoders, heads, critics: not the backbone's fusion and head)."""
    import jax
    from flax import nnx

    state = nnx.state(method.module(params), nnx.Param)
    unused = (("model", "fusion"), ("model", "projection"), ("model", "converters"))
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        keys = tuple(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        if name in FACTORCL_CONFIGS and keys[:2] in unused:
            continue
        total += math.prod(leaf.shape)
    return total


# -- the official models' parameter counts, by formula (checked against torch when present) ----


def _linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def _torch_encoder_layer(d: int, ff: int = TORCH_FF) -> int:
    # in_proj (3d x d + 3d), out_proj, linear1, linear2, two LayerNorms
    return _linear(d, 3 * d) + _linear(d, d) + _linear(d, ff) + _linear(ff, d) + 4 * d


def _seq_transformer(n: int, d: int) -> int:
    return n * d + 5 * _torch_encoder_layer(d)  # 1x1 conv without bias, 5 layers


def _fusion(w: int) -> int:
    block = _linear(w, 3 * w) + _linear(w, w) + 4 * w + _linear(w, 4 * w) + _linear(4 * w, w)
    return w + 2 * w + block  # [CLS], final LayerNorm, one block


def _comm_head(w: int) -> int:
    return _linear(w, 512) + 2 * 512 + _linear(512, 512) + 2 * 512 + _linear(512, 256)


def _factorcl_mlp(i: int, h: int, o: int, layers: int) -> int:  # critic_objectives.mlp
    return _linear(i, h) + layers * _linear(h, h) + _linear(h, o)


def official_param_count(name: str) -> int:
    """Learnable parameters of the official model of config `name` (torch's requires_grad ones)."""
    if name in ("mosi", "mosi3"):
        enc = sum(_seq_transformer(d[1], 40) for d in batch_shapes(name).values())
        return enc + _fusion(40) + _comm_head(40)
    if name == "mimic":
        h = 512
        enc = _linear(5, 10) + _linear(10, 10) + 2 * 10 * h + 3 * h * (12 + h) + 6 * h
        return enc + _fusion(h) + _comm_head(h)
    critic = lambda i: _factorcl_mlp(i, 512, 1, 1)  # noqa: E731
    if name == "factorcl_synthetic":
        e, k = 128, 2
        enc = 2 * _factorcl_mlp(100, 512, e, 2)
        heads = 10 * _factorcl_mlp(e, e, e, 1)
        critics = 2 * critic(2 * e) + 2 * critic(e + 1) + 2 * critic(2 * e + k)
        return enc + heads + critics
    if name == "factorcl_mosi":
        d1, d2 = 40, 600
        enc = _seq_transformer(20, d1) + _seq_transformer(300, d2)
        head = lambda d: 2 * _linear(d, d)  # noqa: E731  (mlp_head)
        heads = 5 * (head(d1) + head(d2))
        critics = (
            2 * critic(d1 + d2) + critic(2 * d1) + critic(2 * d2) + 2 * critic(2 * d1 + 2 * d2)
        )
        return enc + heads + critics
    raise ValueError(f"unknown config {name!r}; expected one of {list(CONFIGS)}")


# -- official side (torch) -----------------------------------------------------------------------


def _torch_multibench_transformer(n_features: int, dim: int):
    """torch twin of MultiBench's `unimodals.common_models.Transformer(n_features, dim)`."""
    import torch.nn as nn

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(n_features, dim, kernel_size=1, padding=0, bias=False)
            layer = nn.TransformerEncoderLayer(d_model=dim, nhead=5)
            self.transformer = nn.TransformerEncoder(layer, num_layers=5)

        def forward(self, x):
            x = self.conv(x.permute([0, 2, 1]))
            x = x.permute([2, 0, 1])
            return self.transformer(x)[-1]

    return Transformer()


def _official_comm(name: str):
    import torch
    from models.input_adapters import FeaturesInputAdapter
    from models.mmfusion import MMFusion
    from pl_modules.comm import CoMM as OfficialCoMM

    torch.manual_seed(0)
    if name in ("mosi", "mosi3"):
        from models.transformer import Transformer

        w = 40
        encoders = [
            Transformer(d[1], w, max_seq_length=_SEQ, positional_encoding=False)
            for d in batch_shapes(name).values()
        ]
        adapters = [None] * len(encoders)
    else:
        from models.gru import GRU
        from models.mlp import MLP

        w = 512
        encoders = [MLP(5, 10, 10), GRU(12, w, batch_first=True)]
        adapters = [FeaturesInputAdapter(10, w), None]
    fusion = MMFusion(encoders, adapters, embed_dim=w, n_heads=8, n_layers=1)
    lr = 1e-4 if name == "mosi3" else 1e-3
    model = OfficialCoMM(
        fusion,
        OfficialCoMM._build_mlp(w, 512, 256),
        optim_kwargs={"lr": lr, "weight_decay": 1e-2},
        loss_kwargs={"temperature": 0.1},
    )
    model.log_dict = lambda *a, **k: None  # logging needs a Lightning Trainer; not timed
    return model


def _official_factorcl(name: str):
    import torch

    torch.manual_seed(0)
    if name == "factorcl_synthetic":
        from synthetic_model import FactorCLSUP

        return FactorCLSUP(100, 100, 2, 512, 128, layers=2)
    from multibench_model import FactorCLSSL

    encoders = [_torch_multibench_transformer(20, 40), _torch_multibench_transformer(300, 600)]
    return FactorCLSSL(encoders, [40, 600], 3)


def _inputs(name: str, batch: int, seed: int):
    """Two views {modality: float32 array} and, for FactorCL-SUP, int labels (B,)."""
    import numpy as np

    rs = np.random.default_rng(seed)
    shapes = batch_shapes(name)
    views = [
        {m: rs.standard_normal((batch, *s)).astype(np.float32) for m, s in shapes.items()}
        for _ in range(2)
    ]
    labels = rs.integers(0, 2, batch).astype(np.int32) if name == "factorcl_synthetic" else None
    return views, labels


def official_step(name: str, batch: int):
    """(step function, learnable parameter count) of the official code at config `name`."""
    import numpy as np
    import torch

    views, labels = _inputs(name, batch, 0)
    t = [{m: torch.from_numpy(a) for m, a in v.items()} for v in views]
    if name in COMM_CONFIGS:
        model = _official_comm(name)
        model.train()
        opt = model.configure_optimizers()
        tbatch = (list(t[0].values()), list(t[1].values()))

        def step():
            opt.zero_grad(set_to_none=True)
            loss = model.training_step(tbatch, 0)
            loss.backward()
            opt.step()

    else:
        model = _official_factorcl(name)
        model.train()
        non_club, club = model.get_optims()
        if name == "factorcl_synthetic":
            y = torch.from_numpy(labels.astype(np.float32)[:, None])
            args = (t[0]["x1"], t[0]["x2"], y)
        else:
            args = (t[0]["vision"], t[0]["text"], t[1]["vision"], t[1]["text"])
        losses = []

        def step():
            loss = model(*args)
            losses.append(loss.detach().cpu().numpy())
            for o in non_club:
                o.zero_grad()
            loss.backward()
            for o in non_club:
                o.step()
            learning_loss = model.learning_loss(*args)
            for o in club:
                o.zero_grad()
            learning_loss.backward()
            for o in club:
                o.step()

    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return step, n


# -- jaxmm side (timed) ------------------------------------------------------------------------


def jaxmm_trainer(name: str, batch: int, *, inner_steps: int = 1, drop: bool = True, method=None):
    """(trainer, sharded batch) of the jaxmm side at config `name` (`method`: another one)."""
    import dataclasses

    import jax

    from jaxmm.config import OptimizerConfig, TrainConfig
    from jaxmm.distributed import make_mesh
    from jaxmm.train import Trainer

    method = jaxmm_method(name) if method is None else method
    if name in COMM_CONFIGS and not drop:
        cfg = dataclasses.replace(method.config, drop_masked_tokens=False)
        method = type(method)(method.model_config, cfg)
    views, labels = _inputs(name, batch, 0)
    jbatch = jaxmm_batch(name, views, labels)
    if name in COMM_CONFIGS:
        opt = OptimizerConfig(
            lr=1e-4 if name == "mosi3" else 1e-3,
            weight_decay=0.01,
            schedule="constant",
            warmup_steps=0,
        )
    else:
        opt = OptimizerConfig(lr=1e-4, weight_decay=0.0, schedule="constant", warmup_steps=0)
    tcfg = TrainConfig(
        steps=10**6, batch_size=batch, progress=False, optimizer=opt, inner_steps=inner_steps
    )
    trainer = Trainer(method, tcfg, jbatch, mesh=make_mesh(jax.devices()[:1]))
    return trainer, trainer.shard(jbatch)


def inner_only_step(trainer):
    """FactorCL's critic update alone (the inner step of `Trainer._step`), jitted on its own:
    with a `Trainer` of `inner_steps=0` it gives the unfused structure of the official loop."""
    import jax
    import optax

    vg = trainer._value_and_grad(trainer.method.inner_loss)

    def step(state, batch):
        rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), 1)
        loss, _, grads = vg(state.params, batch, rng)
        updates, opt = trainer.inner_tx.update(grads, state.inner_opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state.replace(params=params, inner_opt_state=opt), loss

    return jax.jit(step, donate_argnums=(0,))


def run(
    name: str,
    *,
    batch: int | None,
    steps: int,
    warmup: int,
    drop: bool = True,
    unfused: bool = False,
    alternate=None,
):
    """One row: official vs jaxmm step at config `name`, medians of alternating steps (ms)."""
    import jax

    from jaxmm.benchmarks.official import _alternate

    alternate = alternate or _alternate
    batch = batch or DEFAULT_BATCH[name]
    off_step, n_official = official_step(name, batch)
    inner = 0 if unfused else 1
    trainer, sharded = jaxmm_trainer(name, batch, inner_steps=inner, drop=drop)
    state = trainer.init_state()
    n_jaxmm = count_params(name, trainer.method, state.params)
    t0 = time.perf_counter()
    step = trainer.train_step.lower(state, sharded).compile()
    inner_step = None
    if unfused and name in FACTORCL_CONFIGS:
        inner_step = inner_only_step(trainer).lower(state, sharded).compile()
    compile_s = time.perf_counter() - t0

    def jaxmm_step():
        nonlocal state
        if inner_step is not None:
            state, inner_loss = inner_step(state, sharded)
            jax.block_until_ready(inner_loss)  # the official loop's separate critic phase
        state, metrics = step(state, sharded)
        jax.block_until_ready(metrics["loss"])

    med_off, med_jax = alternate(off_step, jaxmm_step, steps, warmup)
    return {
        "config": name + (" (unfused)" if inner_step is not None else ""),
        "batch": batch,
        "params_official": n_official,
        "params_formula": official_param_count(name),
        "params_jaxmm": n_jaxmm,
        "official_ms": 1e3 * med_off,
        "jaxmm_ms": 1e3 * med_jax,
        "ratio": med_off / med_jax,
        "compile_s": compile_s,
    }


def _round_robin(fns: dict, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds of each callable, called in turn warmup + steps times."""
    import statistics

    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + steps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def jaxmm_levers(name: str, *, batch: int | None, steps: int, warmup: int) -> list[dict]:
    """The jaxmm step of config `name` in variants, timed round-robin (no torch needed).

    * `as benchmarked`: the step `run` times (one compiled call, masked CoMM passes on the
      present tokens only, FactorCL's critic update fused in, threefry dropout bits);
    * `dispatch only`: the time until the call returns, before the result is ready (host cost);
    * CoMM `full-length masked passes`: attention-masked passes instead of dropped tokens;
    * FactorCL `unfused`: the critic update as its own compiled call, then the main step;
      `main update only`: without the critic update (what the inner step costs, by difference);
    * `rbg dropout bits`: the same step with `jax_default_prng_impl="rbg"` (dropout masks from
      XLA's RngBitGenerator instead of threefry: other random bits, the same distribution);
    * `no dropout` (what-if, not the benchmarked function): dropout rates 0.
    """
    import dataclasses

    import jax

    batch = batch or DEFAULT_BATCH[name]
    fns, compiled = {}, {}

    def add(label, trainer, sharded, inner=None):
        state = trainer.init_state()
        step = trainer.train_step.lower(state, sharded).compile()
        inner_c = None if inner is None else inner.lower(state, sharded).compile()
        box = {"state": state}

        def call():
            st = box["state"]
            if inner_c is not None:
                st, loss = inner_c(st, sharded)
                jax.block_until_ready(loss)
            st, metrics = step(st, sharded)
            jax.block_until_ready(metrics["loss"])
            box["state"] = st

        fns[label] = call
        compiled[label] = (step, box, sharded)

    base, sharded = jaxmm_trainer(name, batch)
    add("as benchmarked", base, sharded)
    if name in COMM_CONFIGS:
        add("full-length masked passes", *jaxmm_trainer(name, batch, drop=False))
    else:
        t0, s0 = jaxmm_trainer(name, batch, inner_steps=0)
        add("unfused (critic update, then main: 2 calls)", t0, s0, inner_only_step(t0))
        add("main update only", *jaxmm_trainer(name, batch, inner_steps=0))
    prev = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    try:
        add("rbg dropout bits", *jaxmm_trainer(name, batch))
    finally:
        jax.config.update("jax_default_prng_impl", prev)
    method = jaxmm_method(name)
    mods = tuple(
        dataclasses.replace(m, encoder_kwargs={**m.encoder_kwargs, "dropout": 0.0})
        if "dropout" in m.encoder_kwargs
        else m
        for m in method.model_config.modalities
    )
    if mods != method.model_config.modalities:
        cfg = dataclasses.replace(method.model_config, modalities=mods)
        t, s = jaxmm_trainer(name, batch, method=type(method)(cfg, method.config))
        add("no dropout (what-if)", t, s)

    def dispatch():
        step, box, sh = compiled["as benchmarked"]
        t = time.perf_counter()
        st, metrics = step(box["state"], sh)
        dt = time.perf_counter() - t
        jax.block_until_ready(metrics["loss"])
        box["state"] = st
        return dt

    med = _round_robin(fns, steps, warmup)
    disp = sorted(dispatch() for _ in range(max(3, steps // 2)))
    rows = [
        {"config": name, "batch": batch, "variant": k, "jaxmm_ms": 1e3 * v} for k, v in med.items()
    ]
    rows.insert(
        1,
        {
            "config": name,
            "batch": batch,
            "variant": "dispatch only",
            "jaxmm_ms": 1e3 * disp[len(disp) // 2],
        },
    )
    return rows
