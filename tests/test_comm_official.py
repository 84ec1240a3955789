"""The CoMM model against the official code's structure (github.com/Duplums/CoMM): BatchNorm head
(numpy reference), QuickGELU, LayerNorm eps, inits, weight-decay rule, token-dropping passes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmm.checkpoint import Checkpointer
from jaxmm.config import OptimizerConfig, TrainConfig
from jaxmm.methods.comm import CoMM, CoMMConfig
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig, build_model
from jaxmm.models.heads import BatchNorm1d, ProjectionHead
from jaxmm.models.mlp import quick_gelu
from jaxmm.optimizers import decay_mask
from jaxmm.train import Trainer

W = 64


def cfg(head_norm: str = "batch", n: int = 2) -> ModelConfig:
    mods = tuple(
        ModalityConfig(f"m{i}", "mlp", {"in_features": 5, "hidden_dims": [8], "out_dim": 6}, ft)
        for i, ft in zip(
            range(n), ("feature_tokenizer", "one_token", "feature_tokenizer")[:n], strict=True
        )
    )
    return ModelConfig(
        modalities=mods,
        fusion=FusionConfig(width=W, num_heads=4),
        head=HeadConfig((32, 32), 16, norm=head_norm),
    )


def batch(n: int = 2, b: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    view = lambda: {"x": {f"m{i}": rng.normal(size=(b, 5)).astype(np.float32) for i in range(n)}}
    return {"view1": view(), "view2": view()}


def test_structure_matches_the_official_model():
    model = build_model(cfg(), rngs=nnx.Rngs(params=0))
    head = model.projection
    assert [type(x).__name__ for x in head.layers] == ["Linear"] * 3
    assert [type(x).__name__ for x in head.norms] == ["BatchNorm1d"] * 2
    assert head.act == "relu" and all(bn.eps == 1e-5 and bn.momentum == 0.1 for bn in head.norms)
    fusion = model.fusion
    assert fusion.norm.epsilon == 1e-5
    for blk in fusion.blocks:
        assert blk.act is quick_gelu and blk.norm1.epsilon == blk.norm2.epsilon == 1e-5
        # CLIP / official init: qkv N(0, W^-1/2), out and fc2 N(0, W^-1/2 (2L)^-1/2), fc1 (2W)^-1/2
        for lin, std in (
            (blk.attn.qkv, W**-0.5),
            (blk.attn.out, W**-0.5 * 2**-0.5),
            (blk.fc1, (2 * W) ** -0.5),
            (blk.fc2, W**-0.5 * 2**-0.5),
        ):
            np.testing.assert_allclose(np.std(lin.kernel[...]), std, rtol=0.1)
        assert not np.any(blk.attn.qkv.bias[...])
    x = np.linspace(-4, 4, 81)
    np.testing.assert_allclose(quick_gelu(x), x / (1 + np.exp(-1.702 * x)), rtol=1e-6)
    # N(0, 1) [CLS] and feature-tokenizer weights (torch.randn in the official code).
    cls = build_model(cfg(), rngs=nnx.Rngs(params=1)).fusion.cls[...]
    assert abs(float(np.std(cls)) - 1.0) < 0.25
    ft = model.converters[0]
    for p in (ft.weight[...], ft.bias[...]):
        assert abs(float(np.std(p)) - 1.0) < 0.25 and abs(float(np.mean(p))) < 0.3
    old = build_model(cfg("none"), rngs=nnx.Rngs(params=0)).projection
    assert old.norm == "none" and len(old.norms) == 0  # the earlier no-norm head, for ablations


def np_batchnorm(x, mean0, var0, momentum=0.1, eps=1e-5):
    """torch BatchNorm1d train mode, one call per group, with explicit loops."""
    out, mean, var = np.empty_like(x), mean0.copy(), var0.copy()
    for g in range(x.shape[0]):
        xs = x[g].astype(np.float64)
        mu, v = xs.mean(0), xs.var(0)
        out[g] = (xs - mu) / np.sqrt(v + eps)
        mean = (1 - momentum) * mean + momentum * mu
        var = (1 - momentum) * var + momentum * xs.var(0, ddof=1)
    return out, mean, var


def test_batchnorm_matches_torch_semantics_per_call():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(5, 16, 7)).astype(np.float32)
    bn = BatchNorm1d(7)
    y = bn(jnp.asarray(x), train=True)
    ref, mean, var = np_batchnorm(x, np.zeros(7), np.ones(7))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.mean[...], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.var[...], var, rtol=1e-5)
    # Eval mode: the running averages, not the batch.
    y_eval = bn(jnp.asarray(x[0]), train=False)
    np.testing.assert_allclose(y_eval, (x[0] - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)


def test_head_normalises_each_view_and_mask_separately():
    head = ProjectionHead(6, (8,), 4, norm="batch", rngs=nnx.Rngs(params=0))
    z = np.random.default_rng(1).normal(size=(3, 10, 6)).astype(np.float32)
    together = head(jnp.asarray(z), train=False)  # eval: row-wise, so groups do not matter
    np.testing.assert_allclose(together[1], head(jnp.asarray(z[1]), train=False), rtol=1e-6)
    g = nnx.clone(head)
    grouped = g(jnp.asarray(z), train=True)
    for i in range(3):
        np.testing.assert_allclose(grouped[i], head(jnp.asarray(z[i]), train=True), rtol=1e-5)


@functools.cache
def setup(n: int):
    method = CoMM(cfg(n=n))
    b = batch(n)
    return method, b, jax.jit(method.init)(jax.random.key(0), b)


def test_dropped_tokens_equal_attention_masked_passes():
    for n in (2, 3):
        method, b, params = setup(n)
        full_len = CoMM(cfg(n=n), CoMMConfig(drop_masked_tokens=False))
        for head in (False, True):
            fn = lambda m, h=head: jax.jit(functools.partial(m.comm_projections, head=h))
            z_drop, z_mask = fn(method)(params, b["view1"]), fn(full_len)(params, b["view1"])
            for k in z_drop:
                np.testing.assert_allclose(z_drop[k], z_mask[k], rtol=1e-5, atol=1e-5, err_msg=k)
        rng = jax.random.key(3)
        grads = [
            jax.jit(jax.grad(lambda p, m=m, b=b, r=rng: m.loss(p, b, r)[0]))(params)
            for m in (method, full_len)
        ]
        for a, c in zip(*map(jax.tree.leaves, grads), strict=True):
            np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)


def test_weight_decay_follows_the_official_name_rule():
    _, _, params = setup(2)
    flat = {
        "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): m
        for path, m in jax.tree_util.tree_flatten_with_path(decay_mask(params))[0]
    }
    decayed = {k for k, m in flat.items() if m}
    assert any("converters/0/weight" in k for k in decayed)  # FT weight (F, D)
    assert not any("converters/0/bias" in k for k in decayed)  # FT bias (F, D): named bias
    assert any("fusion/cls" in k for k in decayed)  # official: cls_token is decayed
    assert any("qkv/kernel" in k for k in decayed)
    assert not any("norm" in k or k.endswith("bias/value") for k in decayed)


def test_trainer_carries_and_checkpoints_the_running_averages(tmp_path):
    method, b, _ = setup(2)
    tcfg = TrainConfig(
        steps=2,
        batch_size=8,
        progress=False,
        optimizer=OptimizerConfig(lr=1e-3, weight_decay=0.1, schedule="constant"),
    )
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    trainer = Trainer(method, tcfg, b, mesh=mesh)
    state = trainer.init_state()
    stats0 = jax.device_get(nnx.state(method.module(state.params), nnx.BatchStat))
    state, metrics = trainer.train_step(state, trainer.shard(b))
    assert "state_updates" not in metrics
    stats1 = jax.device_get(nnx.state(method.module(state.params), nnx.BatchStat))
    leaves0, leaves1 = jax.tree.leaves(stats0), jax.tree.leaves(stats1)
    assert len(leaves1) == 4  # 2 BatchNorms x (mean, var), in the (checkpointed) train state
    assert all(not np.allclose(a, c) for a, c in zip(leaves0, leaves1, strict=True))
    with Checkpointer(tmp_path / "ckpt", async_save=False) as ckpt:
        ckpt.save(1, state)
        ckpt.wait_until_finished()
        restored = ckpt.restore(trainer.abstract_state())
    back = jax.device_get(nnx.state(method.module(restored.params), nnx.BatchStat))
    for a, c in zip(jax.tree.leaves(back), leaves1, strict=True):
        np.testing.assert_array_equal(a, c)
