"""LinearFusion, the "Concat + Linear" fusion of CoMM's Table 4 ablation (Dufumier et al. 2025,
Sec. 5): NumPy reference, exact modality masking, padding, CoMM training, config round trips."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmm.methods.comm import CoMM, CoMMConfig
from jaxmm.models import (
    FusionConfig,
    HeadConfig,
    LinearFusion,
    ModalityConfig,
    ModelConfig,
    build_model,
)

B, D, T = 4, 6, 5


def linear_cfg(dropout: float = 0.0) -> ModelConfig:
    """Two tiny MLP modalities (both vector converters) and a padded GRU sequence."""
    return ModelConfig(
        modalities=(
            ModalityConfig(
                "tab", "mlp", dict(in_features=3, hidden_dims=[5], out_dim=4), "feature_tokenizer"
            ),
            ModalityConfig("prop", "mlp", dict(in_features=2, out_dim=5), "one_token"),
            ModalityConfig("ts", "gru", dict(in_features=3, hidden=5)),
        ),
        # width 6 is not divisible by the 8 default heads: irrelevant (and allowed) for "linear".
        fusion=FusionConfig(width=D, dropout=dropout, kind="linear"),
        head=HeadConfig((8,), 4),
    )


def model_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = {
        "tab": rng.normal(size=(B, 3)),
        "prop": rng.normal(size=(B, 2)),
        "ts": rng.normal(size=(B, T, 3)),
    }
    x = {k: v.astype(np.float32) for k, v in x.items()}
    valid = {"ts": np.arange(T)[None] < np.array([T, 3, 1, 4])[:, None]}
    return x, valid


def pure(model):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def apply(params, x, valid, modality_mask):
        return nnx.merge(graphdef, params, rest)(x, valid, modality_mask)

    return apply, params


def np_linear_fusion(module: LinearFusion, tokens, masks, present) -> np.ndarray:
    """Independent float64 loop version of the module's documented formula."""
    get = lambda p: np.asarray(p[...], np.float64)
    out = np.zeros((B, module.width))
    for b in range(B):
        slots = []
        for i, (t, m) in enumerate(zip(tokens, masks, strict=True)):
            if not present[b, i]:
                slots.append(np.zeros(module.width))
                continue
            rows = [np.asarray(t[b, s], np.float64) for s in range(t.shape[1]) if m[b, s]]
            mean = np.mean(rows, axis=0) if rows else np.zeros(module.width)
            slots.append(mean @ get(module.proj[i].kernel) + get(module.proj[i].bias))
        h = np.concatenate(slots) @ get(module.out.kernel) + get(module.out.bias)
        h = (h - h.mean()) / np.sqrt(h.var() + module.norm.epsilon)
        out[b] = h * get(module.norm.scale) + get(module.norm.bias)
    return out


def fusion_inputs(seed: int = 0, lengths=(3, 1, 4)):
    rng = np.random.default_rng(seed)
    tokens = [rng.normal(size=(B, t, D)).astype(np.float32) for t in lengths]
    masks = [rng.random((B, t)) < 0.6 for t in lengths]
    masks[0][0] = False  # a row with no valid token: its mean is 0 by definition
    return tokens, masks


def test_linear_fusion_matches_numpy_and_ignores_padding():
    module = LinearFusion(D, 3, rngs=nnx.Rngs(0))
    tokens, masks = fusion_inputs()
    present = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]], bool)
    f = jax.jit(lambda toks, mm: module(toks, masks, mm))
    out = np.asarray(f(tokens, present))
    assert out.shape == (B, D) and out.dtype == np.float32
    np.testing.assert_allclose(out, np_linear_fusion(module, tokens, masks, present), atol=2e-5)
    # (n,) masks broadcast over the batch; None means every modality is present.
    np.testing.assert_allclose(
        np.asarray(f(tokens, present[0])), np.asarray(f(tokens, None)), atol=1e-6
    )
    # Padded tokens are dropped with `where`: even NaN / inf there changes neither output nor grad.
    bad = [
        np.where(m[..., None], t, np.float32(np.nan)) for t, m in zip(tokens, masks, strict=True)
    ]
    bad[1] = np.where(masks[1][..., None], tokens[1], np.float32(np.inf))
    np.testing.assert_array_equal(np.asarray(f(bad, present)), out)
    grads = jax.jit(jax.grad(lambda toks: jnp.sum(f(toks, present) ** 2)))(bad)
    for g, m in zip(grads, masks, strict=True):
        assert np.all(np.isfinite(np.asarray(g)))
        assert np.all(np.asarray(g)[~m] == 0.0)


def test_linear_fusion_dropout_and_bad_inputs():
    module = LinearFusion(D, 3, dropout=0.5, rngs=nnx.Rngs(0))
    tokens, masks = fusion_inputs(seed=1)
    run = lambda k: np.asarray(
        module(tokens, masks, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(k)))
    )
    np.testing.assert_array_equal(run(0), run(0))
    assert not np.allclose(run(0), run(1))
    with pytest.raises(ValueError, match="built for 3 modalities, got 2"):
        module(tokens[:2], masks[:2])
    with pytest.raises(ValueError, match="modality_mask must have shape"):
        module(tokens, masks, np.ones((2,), bool))
    with pytest.raises(ValueError, match=r"modality 1: tokens must be \(B, T, 6\)"):
        module([tokens[0], tokens[1][..., :4], tokens[2]], masks)


def test_model_shapes_and_exact_modality_masking():
    """CoMM's projections X_i with linear fusion: the output and its gradient are bitwise
    independent of every masked modality; the unmasked modality does matter."""
    cfg = linear_cfg()
    model = build_model(cfg, rngs=nnx.Rngs(0))
    assert isinstance(model.fusion, LinearFusion)
    apply, params = pure(model)
    x, valid = model_inputs(seed=1)
    n = len(cfg.modalities)
    graphdef, state = nnx.split(model)

    def shapes(state, x, valid):
        m = nnx.merge(graphdef, state)
        toks = m.encode(x, valid)
        z = m.fuse(toks)
        return toks, z, m.head(z)

    toks, z, h = jax.eval_shape(shapes, state, x, valid)
    assert [t.shape for t in toks.tokens] == [(B, 4, D), (B, 1, D), (B, T, D)]
    assert z.shape == (B, D) and h.shape == (B, cfg.head.out_dim)

    @jax.jit
    def out_and_grad(x, mm):
        f = lambda x: apply(params, x, valid, mm)
        return f(x), jax.grad(lambda x: jnp.sum(f(x) ** 2))(x)

    masks = [np.arange(n) == i for i in range(n)] + [np.zeros(n, bool)]
    for mm in masks:
        z, g = out_and_grad(x, mm)
        for j, name in enumerate(model.modality_names):
            x2 = dict(x)
            x2[name] = x[name] * 7.0 + 3.0
            z2, _ = out_and_grad(x2, mm)
            if mm[j]:
                assert not np.array_equal(np.asarray(z2), np.asarray(z))
                assert np.any(np.asarray(g[name]) != 0)
            else:
                np.testing.assert_array_equal(np.asarray(z2), np.asarray(z))
                assert np.all(np.asarray(g[name]) == 0.0)


def test_model_padded_steps_do_not_change_output():
    cfg = linear_cfg()
    apply, params = pure(build_model(cfg, rngs=nnx.Rngs(0)))
    x, valid = model_inputs(seed=2)
    garbage = dict(x)
    garbage["ts"] = np.where(
        valid["ts"][..., None], x["ts"], np.float32(1e3) * np.sign(x["ts"]) + 5.0
    ).astype(np.float32)
    f = jax.jit(lambda x: apply(params, x, valid, None))
    np.testing.assert_array_equal(np.asarray(f(garbage)), np.asarray(f(x)))


def test_comm_with_linear_fusion_trains():
    cfg = ModelConfig(
        modalities=tuple(
            ModalityConfig(
                f"m{i}",
                "mlp",
                dict(in_features=4 + i, hidden_dims=[8], out_dim=8),
                "feature_tokenizer",
            )
            for i in range(2)
        ),
        fusion=FusionConfig(width=8, kind="linear"),
        head=HeadConfig((16,), 8),
    )
    method = CoMM(cfg.to_dict(), CoMMConfig())
    rng = np.random.default_rng(0)
    base = {f"m{i}": rng.normal(size=(8, 4 + i)).astype(np.float32) for i in range(2)}
    view = lambda: {
        "x": {k: v + 0.1 * rng.normal(size=v.shape).astype(np.float32) for k, v in base.items()},
        "valid": {},
    }
    batch = {"view1": view(), "view2": view()}
    params = jax.jit(method.init)(jax.random.key(0), batch)
    assert isinstance(method.module(params).model.fusion, LinearFusion)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key):
        (loss, metrics), grads = jax.value_and_grad(method.loss, has_aux=True)(params, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, metrics

    losses = []
    for i in range(15):
        params, opt_state, loss, metrics = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
        assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
    assert set(metrics) >= {"loss_m0", "loss_m1", "loss_full"}
    # NT-Xent with 2N = 16 candidates: a random embedding sits near log(15) ~ 2.7.
    assert losses[-1] < losses[0] - 0.1, losses
    # z_0 (only m0 present) does not move when m1 changes: exact masking inside CoMM too.
    proj = jax.jit(method.comm_projections)
    a = proj(params, batch["view1"])
    other = {"x": dict(batch["view1"]["x"], m1=batch["view1"]["x"]["m1"] + 1.0), "valid": {}}
    np.testing.assert_array_equal(np.asarray(proj(params, other)["m0"]), np.asarray(a["m0"]))


def test_fusion_kind_config_round_trip_and_errors():
    cfg = linear_cfg()
    back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.fusion.kind == "linear"
    assert FusionConfig(width=16).kind == "attention"
    # Configs stored before `kind` existed still load as the attention fusion.
    legacy = {"width": 16, "num_layers": 1, "num_heads": 8, "mlp_ratio": 4.0, "dropout": 0.0}
    assert FusionConfig.from_dict(legacy) == FusionConfig(width=16)
    with pytest.raises(ValueError, match=r"FusionConfig\.kind must be one of .*'linaer'"):
        FusionConfig(width=16, kind="linaer")
    d = cfg.to_dict()
    d["fusion"]["kind"] = "concat"
    with pytest.raises(ValueError, match=r"kind.*'concat'.*Literal\['attention', 'linear'\]"):
        ModelConfig.from_dict(d)
    # The heads/width check still guards the attention fusion.
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        FusionConfig(width=D)
