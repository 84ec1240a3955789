"""FactorCL's controlled synthetic protocol, in memory (Liang et al., NeurIPS 2023, Sec. 4.1).

The official release (github.com/pliang279/FactorCL, `Synthetic/synthetic_example.ipynb`,
`synthetic_model.py`, `critic_objectives.py`) trains on 30 000 generated samples held in memory.
This module runs the same protocol through jaxmm's methods and trainer, without the TFDS / grain
pipeline (the data are a few MB): the builder's generator, epoch-wise shuffled batches with
``drop_last``, the official SSL augmentation, `jaxmm.train.Trainer` on one device, and the
official and jaxmm linear probes.

The official set-up, read from the code (`Protocol()` defaults reproduce it):

* data: latents ws (10), w1 (6), w2 (6) ~ N(0, 0.5 I); x_i = [ws, w_i] T_i with T_i ~ U(0, 1)
  to 100-d; the label 1[mean of the read coordinates >= 0]; 80/20 random split;
* encoders 100-512-512-512-128 (`mlp(.., layers=2)`), ReLU; per-term heads 128-128-128-128;
  concat critics in-512-512-1; Adam at 1e-4, batch 256;
* FactorCL-SSL / -SUP: 10 epochs (930 steps), one NCE-CLUB critic step per main step;
* SimCLR / SupCon (`SupConModel`): 20 epochs (1 860 steps), `SupConLoss` at tau 0.07 on the
  unnormalised projections of the two modalities (`jaxmm.methods.baselines.ModalSupCon`);
* SSL views: X clean, X' = one of swap-halves / N(0, 0.01^2) noise / zero 10% / identity per
  sample and modality (`Synthetic/dataset.py: augment_single`);
* probe: scikit-learn ``LogisticRegression(max_iter=200)`` (C = 1, lbfgs, raw unscaled
  features, stops unconverged) on [e1(x1), e2(x2)] of all 24 000 training rows.

Departures kept here (each in `Protocol` and measured in docs/results_factorcl_synthetic.md):
the NCE-CLUB critic step uses the main step's batch (official: a separate batch of 128 drawn from
all 30 000 rows, test rows included); weights are initialised by Flax's defaults (lecun-normal
kernels, zero biases; torch: uniform(+-1/sqrt(fan_in)) for both; `Protocol.torch_init` draws
torch's); the critic width is a
parameter because the official in-512-512-1 critics cost ~9 s per FactorCL step at batch 256 on
two CPU cores.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

METHODS = ("simclr", "supcon", "factorcl_ssl", "factorcl_sup")
METHOD_LABELS = {
    "simclr": "SimCLR",
    "supcon": "SupCon",
    "factorcl_ssl": "FactorCL-SSL",
    "factorcl_sup": "FactorCL-SUP",
    "input": "input [x1, x2]",
}
# The official notebook's released numbers (test accuracy %, `official` data config).
OFFICIAL_NOTEBOOK = {"simclr": 95.55, "factorcl_ssl": 97.17, "factorcl_sup": 98.63}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One pre-training recipe; the defaults are the official synthetic notebook's."""

    encoder_hidden: tuple[int, ...] = (512, 512, 512)  # official mlp(100, 512, 128, layers=2)
    embed_dim: int = 128  # encoder output width
    head_hidden: tuple[int, ...] = (128, 128)  # official mlp(128, 128, 128, layers=1)
    critic_hidden: int = 512  # concat critics in-H-...-1
    critic_layers: int = 2  # hidden layers of the critics (official mlp(.., layers=1): 2)
    batch_size: int = 256
    lr: float = 1e-4  # Adam
    critic_lr: float | None = None  # Adam lr of the NCE-CLUB critics (inner step); None: lr
    inner_steps: int = 1  # NCE-CLUB critic steps per main step (official num_club_iter=1)
    factorcl_epochs: float = 10.0
    baseline_epochs: float = 20.0
    label_sides: str = "x1"  # FactorCL-SUP conditioning (`FactorCLConfig.label_sides`)
    torch_init: bool = False  # every Linear as torch's nn.Linear (`torch_linear_init`)
    num_samples: int = 30_000
    train_fraction: float = 0.8

    def __post_init__(self):
        for name in ("embed_dim", "critic_hidden", "critic_layers", "batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"Protocol.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.factorcl_epochs <= 0 or self.baseline_epochs <= 0:
            raise ValueError("Protocol: lr and the epoch counts must be > 0")

    def epochs(self, method: str) -> float:
        return self.factorcl_epochs if method.startswith("factorcl") else self.baseline_epochs

    def steps(self, method: str, num_train: int) -> int:
        """Optimizer steps of `method`: its epochs of ``num_train // batch_size`` batches."""
        per_epoch = num_train // self.batch_size
        if per_epoch < 1:
            raise ValueError(
                f"Protocol.batch_size {self.batch_size} exceeds the {num_train} training rows"
            )
        return max(1, round(self.epochs(method) * per_epoch))


# ------------------------------------------------------------------------------------------------
# Data.


def make_data(builder_config: str, *, seed: int, protocol: Protocol) -> dict[str, Any]:
    """The builder's generator (`datasets/factorcl_synthetic`) for config `builder_config`.

    Returns ``{"train": {...}, "test": {...}, "config": {...}}``, each split holding x1, x2 (float32
    (n, 100)), label (int32), ws, w1, w2 (the latents) in a random 80/20 split of the samples.
    """
    from jaxmm.data import builders

    module = builders.load_module("factorcl_synthetic")
    configs = {c.name: c for c in module.FactorclSynthetic.BUILDER_CONFIGS}
    if builder_config not in configs:
        raise ValueError(
            f"factorcl_synthetic has no config {builder_config!r}; configs: {sorted(configs)}"
        )
    cfg = dataclasses.replace(
        configs[builder_config],
        seed=seed,
        num_samples=protocol.num_samples,
        train_fraction=protocol.train_fraction,
    )
    data = module.generate(cfg)
    n = cfg.num_samples
    perm = np.random.default_rng(seed + 1).permutation(n)
    cut = int(cfg.train_fraction * n)
    keys = ("x1", "x2", "label", "ws", "w1", "w2")
    split = lambda idx: {
        k: data[k][idx].astype(np.int32 if k == "label" else np.float32) for k in keys
    }
    info = {
        "builder_config": builder_config,
        "label_shared": cfg.label_shared,
        "label_unique": (cfg.label_unique1, cfg.label_unique2),
        "unique_ratio": module.unique_ratio(cfg),
    }
    return {"train": split(perm[:cut]), "test": split(perm[cut:]), "config": info}


def shared_only_bayes_accuracy(label_shared: int, label_unique: int) -> float:
    """Accuracy (%) of the Bayes classifier that sees only the shared latents ws.

    The label is 1[A + U >= 0] with A the sum of the l_s shared coordinates it reads and U the sum
    of its 2 l_u unique ones (i.i.d. Gaussians): A and A + U are jointly Gaussian with correlation
    rho = sqrt(l_s / (l_s + 2 l_u)), the best guess from ws is sign(A), and Sheppard's formula
    gives P(sign A = sign(A + U)) = 1/2 + arcsin(rho) / pi.
    """
    total = label_shared + 2 * label_unique
    if total == 0:
        raise ValueError("the label reads no coordinate")
    return 100.0 * (0.5 + np.arcsin(np.sqrt(label_shared / total)) / np.pi)


def official_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`Synthetic/dataset.py: augment_single`: per row one of swap halves, N(0, 0.01^2) noise,
    zeroing d // 10 random coordinates, or identity, each with probability 1/4."""
    n, d = x.shape
    kind = rng.integers(0, 4, n)
    out = x.copy()
    swap = kind == 0
    out[swap] = np.concatenate([x[swap, d // 2 :], x[swap, : d // 2]], axis=1)
    noise = kind == 1
    out[noise] += 0.01 * rng.standard_normal((int(noise.sum()), d)).astype(x.dtype)
    drop = np.flatnonzero(kind == 2)
    if len(drop) and d // 10:
        cols = np.argsort(rng.random((len(drop), d)), axis=1)[:, : d // 10]
        out[drop[:, None], cols] = 0.0
    return out


def batches(
    split: dict[str, np.ndarray], batch_size: int, *, seed: int, augment: bool
) -> Iterator[dict]:
    """Endless epoch-wise shuffled batches with ``drop_last`` (the official DataLoader)."""
    rng = np.random.default_rng(seed)
    n = len(split["label"])
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            x = {m: split[m][idx] for m in ("x1", "x2")}
            aug = {m: official_augment(v, rng) for m, v in x.items()} if augment else x
            yield {
                "view1": {"x": x, "valid": {}},
                "view2": {"x": aug, "valid": {}},
                "labels": {"label": split["label"][idx]},
            }


# ------------------------------------------------------------------------------------------------
# Methods and training.


def model_config(protocol: Protocol, in_features: int = 100):
    """Two MLP encoders x1, x2 of the protocol's sizes (no fusion is used by these methods)."""
    from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

    enc = {
        "in_features": in_features,
        "hidden_dims": tuple(protocol.encoder_hidden),
        "out_dim": protocol.embed_dim,
    }
    mods = tuple(ModalityConfig(m, "mlp", enc, "one_token") for m in ("x1", "x2"))
    d = protocol.embed_dim
    return ModelConfig(
        modalities=mods,
        fusion=FusionConfig(width=d, num_heads=1, kind="linear"),
        head=HeadConfig((d,), d),
    )


def build_method(name: str, protocol: Protocol):
    """`simclr` / `supcon`: `ModalSupCon` without / with labels; `factorcl_ssl` / `_sup`."""
    from jaxmm.methods.baselines import ModalSupCon, ModalSupConConfig
    from jaxmm.methods.factorcl import FactorCL, FactorCLConfig

    model = model_config(protocol)
    d = protocol.embed_dim
    if name in ("simclr", "supcon"):
        cfg = ModalSupConConfig(
            use_labels=name == "supcon", proj_dim=d, head_hidden_dims=tuple(protocol.head_hidden)
        )
        return ModalSupCon(model, cfg)
    if name in ("factorcl_ssl", "factorcl_sup"):
        sup = name == "factorcl_sup"
        cfg = FactorCLConfig(
            mode="sup" if sup else "ssl",
            num_classes=2 if sup else None,
            head_hidden_dims=tuple(protocol.head_hidden),
            head_dim=d,
            critic_hidden=protocol.critic_hidden,
            critic_layers=protocol.critic_layers,
            label_sides=protocol.label_sides,
        )
        return FactorCL(model, cfg)
    raise ValueError(f"unknown method {name!r}; methods: {list(METHODS)}")


def torch_linear_init(params: Any, key: Any) -> Any:
    """Re-draws every Linear layer as torch's ``nn.Linear`` default does: kernel and bias
    ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)). Flax's default is
    a lecun-normal kernel (std 1/sqrt(fan_in), 1.7x the uniform's) and a zero bias. Other
    parameters are left as they are."""
    import jax

    from jaxmm.methods.base import path_names

    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [path_names(p) for p, _ in leaves]
    names = [n[:-1] if n[-1:] == ("value",) else n for n in names]  # nnx Variable leaves
    fan_in = {
        n[:-1]: x.shape[0]
        for n, (_, x) in zip(names, leaves, strict=True)
        if n[-1] == "kernel" and x.ndim == 2
    }
    keys = jax.random.split(key, len(leaves))
    out = []
    for n, (_, x), k in zip(names, leaves, keys, strict=True):
        fan = fan_in.get(n[:-1]) if n[-1] in ("kernel", "bias") else None
        if fan is None:
            out.append(x)
            continue
        bound = 1.0 / np.sqrt(fan)
        out.append(jax.random.uniform(k, x.shape, x.dtype, -bound, bound))
    return jax.tree_util.tree_unflatten(treedef, out)


def pretrain(
    name: str, data: dict, protocol: Protocol, *, seed: int, steps: int | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """Pre-trains method `name` on ``data["train"]``; returns (method, params, record).

    `jaxmm.train.Trainer` on one device (Adam = AdamW without decay, constant lr, one inner
    NCE-CLUB step per main step for FactorCL). The record holds the steps, the seconds and the
    loss every tenth of the run.
    """
    import jax

    from jaxmm.config import OptimizerConfig, TrainConfig
    from jaxmm.distributed import make_mesh
    from jaxmm.train import Trainer

    method = build_method(name, protocol)
    train = data["train"]
    steps = steps or protocol.steps(name, len(train["label"]))
    it = batches(train, protocol.batch_size, seed=seed, augment=name == "factorcl_ssl")
    first = next(it)
    cfg = TrainConfig(
        steps=steps,
        batch_size=protocol.batch_size,
        seed=seed,
        inner_steps=protocol.inner_steps,
        progress=False,
        optimizer=OptimizerConfig(
            lr=protocol.lr, weight_decay=0.0, schedule="constant", inner_lr=protocol.critic_lr
        ),
    )
    trainer = Trainer(method, cfg, first, mesh=make_mesh(jax.devices()[:1]))
    state = trainer.init_state()
    if protocol.torch_init:
        params = torch_linear_init(state.params, jax.random.key(seed + 10_000))
        state = state.replace(params=jax.device_put(params, trainer.replicated))
    start = time.perf_counter()
    curve, batch = [], first
    every = max(1, steps // 10)
    for step in range(steps):
        state, metrics = trainer.train_step(state, trainer.shard(batch))
        if step == 0:  # the first step compiles: timed apart
            jax.block_until_ready(metrics)
            compiled = time.perf_counter()
        if (step + 1) % every == 0 or step + 1 == steps:
            curve.append((step + 1, float(metrics["loss"])))
        batch = next(it)
    jax.block_until_ready(state.params)
    end = time.perf_counter()
    seconds = end - start
    step_ms = 1000 * (end - compiled) / max(1, steps - 1)
    if not np.isfinite(curve[-1][1]):
        raise FloatingPointError(f"{name}: non-finite loss {curve[-1][1]} after {steps} steps")
    log.info(
        "%s seed %d: %d steps in %.1f s (%.0f ms/step after the first), loss %.4f",
        *(name, seed, steps, seconds, step_ms, curve[-1][1]),
    )
    record = {"steps": steps, "seconds": seconds, "step_ms": step_ms, "loss_curve": curve}
    return method, state.params, record


def representations(
    method: Any, params: Any, x: dict[str, np.ndarray], *, chunk: int = 4096
) -> dict[str, np.ndarray]:
    """Frozen representations of inputs `x`: ``encoders`` = [e1(x1), e2(x2)] (what the official
    notebook probes for every method); FactorCL adds its factorized blocks zs1, zu1, zs2, zu2
    (App. D.1) and ``factors`` = their concatenation (`FactorCL.embed`)."""
    import jax

    from jaxmm.methods.factorcl import FactorCL

    def fn(p, xb):
        h = method.module(p).model.encode_unimodal(xb, {}, deterministic=True)
        out = {"encoders": jax.numpy.concatenate([h["x1"], h["x2"]], axis=-1)}
        if isinstance(method, FactorCL):
            parts = method.embed_parts(p, {"x": xb, "valid": {}})
            out.update(parts, factors=jax.numpy.concatenate(list(parts.values()), axis=-1))
        return out

    fn = jax.jit(fn)
    n = len(x["x1"])
    chunks: dict[str, list] = {}
    for s in range(0, n, chunk):
        for k, v in fn(params, {m: x[m][s : s + chunk] for m in ("x1", "x2")}).items():
            chunks.setdefault(k, []).append(np.asarray(v, np.float32))
    return {k: np.concatenate(v) for k, v in chunks.items()}


# ------------------------------------------------------------------------------------------------
# Probes.


def probe_official(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray
) -> float:
    """The official notebook's probe: scikit-learn ``LogisticRegression(max_iter=200)`` on the raw
    features (C = 1, lbfgs, no scaling; it stops at 200 iterations unconverged). Test accuracy %."""
    import warnings

    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:  # the test extra carries it
        raise ImportError("the official probe needs scikit-learn: pip install 'jaxmm[test]'") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=200).fit(train_z, train_y)
    return 100.0 * float(clf.score(test_z, test_y))


def probe_jaxmm(
    train_z: np.ndarray,
    train_y: np.ndarray,
    test_z: np.ndarray,
    test_y: np.ndarray,
    *,
    seed: int,
    max_iter: int = 500,
) -> float:
    """`jaxmm.probe.probe`: logistic regression on standardised features, L2 = 1 / n (scikit-
    learn's C = 1), L-BFGS run to convergence (`max_iter` cap). Test accuracy %."""
    from jaxmm import probe as probe_lib

    res = probe_lib.probe(
        train_z,
        train_y,
        test_z,
        test_y,
        probe_lib.ProbeTask("label", "classification", 2),
        seed=seed,
        max_iter=max_iter,
        l2_grid=(1.0 / len(train_z),),
    )
    return 100.0 * float(res.metrics["accuracy"])
