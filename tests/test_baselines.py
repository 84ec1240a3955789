"""CoMM's baselines (Cross, Cross+Self, SimCLR, SupCon, CMC): losses against NumPy loops,
CLIP's logit-scale clamp, training, embeddings and the registry."""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmm.methods.baselines import CMC, Cross, CrossConfig, CrossSelfConfig
from jaxmm.methods.registry import METHODS, get_method
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

SMALL = {
    "cross": {"proj_dim": 8},
    "cross_self": {"proj_dim": 8, "head_hidden_dims": [16, 16]},
    "cmc": {"proj_dim": 8},
    "simclr": {},
    "supcon": {},
    "modal_supcon": {"proj_dim": 8, "head_hidden_dims": [8]},
}


def model_config(n: int = 2) -> ModelConfig:
    mods = tuple(
        ModalityConfig(
            f"m{i}",
            "mlp",
            {"in_features": 4 + i, "hidden_dims": [8], "out_dim": 8},
            "feature_tokenizer",
        )
        for i in range(n)
    )
    return ModelConfig(
        modalities=mods, fusion=FusionConfig(width=8, num_heads=2), head=HeadConfig((16,), 8)
    )


def make_batch(n: int = 2, b: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    base = {f"m{i}": rng.normal(size=(b, 4 + i)).astype(np.float32) for i in range(n)}

    def view():
        return {
            "x": {
                m: jnp.asarray(v + 0.1 * rng.normal(size=v.shape).astype(np.float32))
                for m, v in base.items()
            },
            "valid": {},
        }

    return {
        "view1": view(),
        "view2": view(),
        "labels": {"label": jnp.asarray(np.arange(b) % 3, jnp.int32)},
    }


@functools.cache
def setup(name: str, n: int = 2):
    method = get_method(name, SMALL[name], model_config(n))
    batch = make_batch(n)
    if name == "supcon":  # same parameters as SimCLR (the bare backbone): reuse its compiled init
        return method, batch, setup("simclr", n)[2]
    return method, batch, jax.jit(method.init)(jax.random.key(0), batch)


def _unit(z):
    z = np.asarray(z, np.float64)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def np_ntxent(a, b, tau: float) -> float:
    """SimCLR NT-Xent with explicit loops (2N anchors, 2N - 2 negatives each)."""
    z = np.concatenate([_unit(a), _unit(b)])
    n2, total = len(z), 0.0
    for i in range(n2):
        denom = sum(np.exp(z[i] @ z[k] / tau) for k in range(n2) if k != i)
        total -= np.log(np.exp(z[i] @ z[(i + n2 // 2) % n2] / tau) / denom)
    return total / n2


def np_clip(a, b, scale: float) -> float:
    """CLIP's symmetric cross-entropy (Radford et al. 2021, Fig. 3) with explicit loops."""
    a, b = _unit(a), _unit(b)
    n, total = len(a), 0.0
    for i in range(n):
        row = [scale * a[i] @ b[j] for j in range(n)]
        col = [scale * b[i] @ a[j] for j in range(n)]
        total += -row[i] + np.log(np.sum(np.exp(row))) - col[i] + np.log(np.sum(np.exp(col)))
    return total / (2 * n)


def head_outputs(method, params, view) -> dict:
    module = method.module(params)
    h = module.model.encode_unimodal(view["x"], view["valid"])
    return {m: np.asarray(module.heads[m](h[m])) for m in method.modality_names}


@pytest.mark.parametrize(
    "name,n",
    [
        ("cross", 2),
        ("cross_self", 2),
        ("simclr", 2),
        ("supcon", 2),
        ("cmc", 3),
        ("modal_supcon", 2),
    ],
)
def test_training_reduces_loss_without_retracing(name, n):
    method, batch, params = setup(name, n)
    tx = optax.adam(5e-3)
    opt_state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, opt_state, rng):
        traces.append(1)
        (loss, metrics), grads = jax.value_and_grad(method.loss, has_aux=True)(params, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, metrics

    losses = []
    for i in range(12):
        params, opt_state, loss, metrics = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
        assert all(np.isfinite(v) for v in jax.device_get(metrics).values()), metrics
    assert len(traces) == 1
    assert losses[-1] < losses[0] - 0.05, losses


def test_cmc_is_mean_pairwise_ntxent_for_three_modalities():
    method, batch, params = setup("cmc", 3)
    loss, metrics = jax.jit(method.loss)(params, batch, jax.random.key(1))
    p = head_outputs(method, params, batch["view1"])
    pairs = list(itertools.combinations(method.modality_names, 2))
    assert len(pairs) == 3
    ref = np.mean([np_ntxent(p[a], p[b], 0.1) for a, b in pairs])
    np.testing.assert_allclose(loss, ref, rtol=1e-4)
    assert jax.jit(method.embed)(params, batch).shape == (8, 3 * 8)  # concat of 3 pooled (B, 8)


def test_cross_self_weighting_matches_official_code():
    method, batch, params = setup("cross_self")
    loss, metrics = jax.jit(method.loss)(params, batch, jax.random.key(1))
    p1 = head_outputs(method, params, batch["view1"])
    p2 = head_outputs(method, params, batch["view2"])
    # losses/cross_self_loss.py: cross + ssl_scale * 0.5 * (ssl1 + ssl2), ssl_scale = 1.
    ref = np_ntxent(p1["m0"], p1["m1"], 0.1) + 0.5 * (
        np_ntxent(p1["m0"], p2["m0"], 0.1) + np_ntxent(p1["m1"], p2["m1"], 0.1)
    )
    np.testing.assert_allclose(loss, ref, rtol=1e-4)
    cross = np_ntxent(p1["m0"], p1["m1"], 0.1)
    np.testing.assert_allclose(metrics["cross_loss"], cross, rtol=1e-4)


def test_cross_is_clip_and_its_logit_scale_is_clamped_at_ln_100():
    method, batch, params = setup("cross")
    np.testing.assert_allclose(params["logit_scale"][...], math.log(1 / 0.07), rtol=1e-6)
    p = head_outputs(method, params, batch["view1"])
    loss, metrics = jax.jit(method.loss)(params, batch, jax.random.key(1))
    np.testing.assert_allclose(loss, np_clip(p["m0"], p["m1"], 1 / 0.07), rtol=1e-4)
    np.testing.assert_allclose(metrics["logit_scale"], 1 / 0.07, rtol=1e-5)

    value_and_grad = jax.jit(
        jax.value_and_grad(lambda q: method.loss(q, batch, jax.random.key(1))[0])
    )

    def loss_at(log_scale):
        new = jax.tree.map(lambda x: x, params)
        new["logit_scale"][...] = jnp.asarray(log_scale, jnp.float32)
        return value_and_grad(new)

    at_bound, _ = loss_at(math.log(100.0))
    above, grad_above = loss_at(7.0)
    np.testing.assert_allclose(above, at_bound, rtol=1e-6)
    np.testing.assert_allclose(above, np_clip(p["m0"], p["m1"], 100.0), rtol=1e-4)
    assert float(grad_above["logit_scale"][...]) == 0.0  # the clamp, not the parameter, moves


def test_supcon_needs_its_label_key():
    method, batch, params = setup("supcon")
    bad = dict(batch, labels={"other": batch["labels"]["label"]})
    with pytest.raises(ValueError, match="label_key"):
        method.loss(params, bad, jax.random.key(0))
    float_labels = dict(batch, labels={"label": batch["labels"]["label"].astype(jnp.float32)})
    with pytest.raises(ValueError, match="integer class ids"):
        method.loss(params, float_labels, jax.random.key(0))


def test_embeddings_are_pre_head_features():
    cross, batch, params = setup("cross")
    assert jax.jit(cross.embed)(params, batch).shape == (8, 16)  # 2 modalities x pooled 8
    simclr, _, params = setup("simclr")
    z = jax.jit(simclr.embed)(params, batch)
    assert z.shape == (8, 8)  # fusion width, not the head's
    np.testing.assert_allclose(z, jax.jit(simclr.embed)(params, batch["view1"]), rtol=1e-6)


def test_registry_round_trips_configs_and_rejects_bad_input():
    assert set(METHODS) >= {"comm", "cross", "cross_self", "simclr", "supcon", "cmc"}
    for name in SMALL:
        cfg_cls = METHODS[name][1]
        cfg = cfg_cls()
        assert cfg_cls.from_dict(cfg.to_dict()) == cfg, name
    method = get_method("cross", CrossConfig(proj_dim=4).to_dict(), model_config(2).to_dict())
    assert isinstance(method, Cross) and method.config.proj_dim == 4
    with pytest.raises(ValueError, match="unknown method"):
        get_method("clip", None, model_config(2))
    with pytest.raises(ValueError, match="CrossConfig"):
        get_method("cross", CrossSelfConfig(), model_config(2))
    with pytest.raises(ValueError, match="at least 2 modalities"):
        CMC(model_config(1))
    with pytest.raises(ValueError, match="temperature"):
        get_method("cmc", {"temperature": -1.0}, model_config(2))


def np_official_supcon(f1, f2, labels, tau: float = 0.07, base: float = 0.07) -> float:
    """FactorCL's `SupConLoss` (contrast_mode "all") on features [f1, f2] with explicit loops:
    anchors are the 2B rows ordered view-major, positives the other rows of the anchor's label,
    the denominator every row but the anchor; unnormalised features, as the official model."""
    z = np.concatenate([np.asarray(f1, np.float64), np.asarray(f2, np.float64)])
    y = np.concatenate([labels, labels])
    n, total = len(z), 0.0
    for i in range(n):
        logits = [z[i] @ z[k] / tau for k in range(n)]
        denom = sum(np.exp(logits[k]) for k in range(n) if k != i)
        pos = [k for k in range(n) if k != i and y[k] == y[i]]
        total += -(tau / base) * np.mean([logits[k] - np.log(denom) for k in pos])
    return total / n


@pytest.mark.parametrize("use_labels", [True, False])
def test_modal_supcon_is_the_official_supconloss_over_modalities(use_labels):
    cfg = {"proj_dim": 8, "head_hidden_dims": [8], "use_labels": use_labels}
    method = get_method("modal_supcon", cfg, model_config(2))
    batch = make_batch(2)
    params = setup("modal_supcon")[2]  # same parameter tree for either labels setting
    loss, _ = jax.jit(method.loss)(params, batch, jax.random.key(0))
    p = head_outputs(method, params, batch["view1"])
    labels = np.asarray(batch["labels"]["label"]) if use_labels else np.arange(8)
    expect = np_official_supcon(p["m0"], p["m1"], labels)
    np.testing.assert_allclose(float(loss), expect, rtol=2e-5)
    assert jax.jit(method.embed)(params, batch).shape == (8, 16)  # [e1(x1), e2(x2)]


def test_modal_supcon_without_labels_is_distributed_exactly():
    """Each sample its own class: globally unique ids over 8 devices give the one-device value."""
    from jax.sharding import PartitionSpec as P

    from jaxmm.distributed import make_mesh

    method = get_method(
        "modal_supcon", {**SMALL["modal_supcon"], "use_labels": False}, model_config(2)
    )
    params = setup("modal_supcon")[2]
    batch = make_batch(2, b=16)
    batch = {"view1": batch["view1"]}
    mesh = make_mesh()
    n = mesh.shape["data"]
    f = jax.shard_map(
        lambda p, b, r: jax.lax.pmean(method.loss(p, b, r, axis_name="data")[0], "data"),
        mesh=mesh,
        in_specs=(P(), P("data"), P()),
        out_specs=P(),
    )
    dist = jax.jit(f)(params, batch, jax.random.key(0))
    single, _ = jax.jit(method.loss)(params, batch, jax.random.key(0))
    assert 16 % n == 0
    np.testing.assert_allclose(float(dist), float(single), rtol=1e-5)
