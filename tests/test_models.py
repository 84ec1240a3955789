"""MultimodalModel: paper configurations, exact modality masking, padding, jit/shard_map, bf16,
config round trips."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig, build_model

B = 4


def trifeature_cfg(dtype="float32"):
    img = dict(in_channels=3, channels=[8, 16, 16, 16, 16], pool=False, out_dim=16)
    return ModelConfig(
        modalities=(
            ModalityConfig("image1", "alexnet", img, "patch"),
            ModalityConfig("image2", "alexnet", img, "patch"),
        ),
        fusion=FusionConfig(width=16, num_heads=8),
        head=HeadConfig((32, 32), 8),
        dtype=dtype,
    )


def mosi_cfg():
    tr = lambda d: dict(in_features=d, width=40, num_layers=1, num_heads=5)
    return ModelConfig(
        modalities=(
            ModalityConfig("vision", "transformer", tr(7)),
            ModalityConfig("text", "transformer", tr(11)),
            ModalityConfig("audio", "gru", dict(in_features=5, hidden=40)),
        ),
        fusion=FusionConfig(width=40),
        head=HeadConfig((), 40),
    )


def mimic_cfg():
    return ModelConfig(
        modalities=(
            ModalityConfig(
                "tabular",
                "mlp",
                dict(in_features=5, hidden_dims=[10], out_dim=10),
                "feature_tokenizer",
            ),
            ModalityConfig("timeseries", "gru", dict(in_features=12, hidden=30, out_dim=15)),
        ),
        fusion=FusionConfig(width=40),
        head=HeadConfig((64, 64), 32),
    )


def vt_cfg():
    return ModelConfig(
        modalities=(
            ModalityConfig(
                "image",
                "resnet18",
                dict(width=8, stem="cifar", pool=False),
                "patch",
                dict(patch_size=2),
            ),
            ModalityConfig(
                "proprio", "mlp", dict(in_features=8, hidden_dims=[16] * 4, out_dim=16), "one_token"
            ),
            ModalityConfig(
                "force",
                "causal_conv",
                dict(in_features=6, channels=[8] * 4 + [16]),
                "feature_tokenizer",
            ),
        ),
        fusion=FusionConfig(width=16, num_heads=4),
        head=HeadConfig((32,), 8),
    )


def inputs(cfg, seed=0, t=8):
    """Random inputs for every modality, sequences with lengths t, t-3, 1, ..."""
    rng = np.random.default_rng(seed)
    shapes = {"alexnet": (32, 32, 3), "resnet18": (32, 32, 3), "causal_conv": (32, 6)}
    x, valid = {}, {}
    for m in cfg.modalities:
        kw = m.encoder_kwargs
        if m.encoder in ("gru", "transformer"):
            x[m.name] = rng.normal(size=(B, t, kw["in_features"])).astype(np.float32)
            valid[m.name] = np.arange(t)[None] < np.resize([t, t - 3, 1, t - 1], B)[:, None]
        elif m.encoder == "mlp":
            x[m.name] = rng.normal(size=(B, kw["in_features"])).astype(np.float32)
        else:
            x[m.name] = rng.normal(size=(B, *shapes[m.encoder])).astype(np.float32)
    return x, valid


def pure(model):
    """The trainer's form: (params, x, valid, modality_mask, key) -> (B, D), nnx.merge inside."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def apply(params, x, valid, modality_mask, key):
        m = nnx.merge(graphdef, params, rest)
        return m(
            x,
            valid,
            modality_mask,
            deterministic=key is None,
            rngs=None if key is None else nnx.Rngs(dropout=key),
        )

    return apply, params


@pytest.mark.parametrize(
    "make_cfg, tokens",
    [(trifeature_cfg, (16, 16)), (mosi_cfg, (8, 8, 8)), (mimic_cfg, (10, 8)), (vt_cfg, (4, 1, 16))],
)
def test_paper_configurations_shapes(make_cfg, tokens):
    cfg = make_cfg()
    x, valid = inputs(cfg)
    model = nnx.eval_shape(lambda: build_model(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)

    def run(state, x, valid):
        m = nnx.merge(graphdef, state)
        toks = m.encode(x, valid)
        z = m.fuse(toks)
        return toks, z, m.head(z), m.encode_unimodal(x, valid)

    toks, z, h, uni = jax.eval_shape(run, state, x, valid)
    assert tuple(t.shape[1] for t in toks.tokens) == tokens
    assert all(
        t.shape == (B, n, cfg.fusion.width) for t, n in zip(toks.tokens, tokens, strict=True)
    )
    assert all(m.shape == (B, n) for m, n in zip(toks.masks, tokens, strict=True))
    assert z.shape == (B, cfg.fusion.width) and h.shape == (B, cfg.head.out_dim)
    assert {k: v.shape for k, v in uni.items()} == {
        k: (B, d) for k, d in model.unimodal_dims.items()
    }


@pytest.mark.parametrize(
    "make_cfg",
    [
        mimic_cfg,
        pytest.param(vt_cfg, marks=pytest.mark.slow),
        pytest.param(trifeature_cfg, marks=pytest.mark.slow),
    ],
)
def test_masked_modality_has_exactly_no_influence(make_cfg):
    """CoMM Sec. 3.3 projections: with modality j masked, the output and its gradient are
    exactly independent of x_j (bitwise), while unmasked modalities do matter."""
    cfg = make_cfg()
    model = build_model(cfg, rngs=nnx.Rngs(0))
    apply, params = pure(model)
    x, valid = inputs(cfg, seed=1)
    n = len(cfg.modalities)

    @jax.jit
    def out_and_grad(x, mm):
        f = lambda x: apply(params, x, valid, mm, None)
        loss = lambda x: jnp.sum(f(x) ** 2)
        return f(x), jax.grad(loss)(x)

    for i in range(n):  # "only modality i", the n CoMM unimodal passes
        mm = jnp.arange(n) == i
        z, g = out_and_grad(x, mm)
        for j, name in enumerate(model.modality_names):
            x2 = dict(x)
            x2[name] = x[name] * 7.0 + 3.0
            z2, _ = out_and_grad(x2, mm)
            if j == i:
                assert not np.array_equal(np.asarray(z2), np.asarray(z))
                assert np.any(np.asarray(g[name]) != 0)
            else:
                np.testing.assert_array_equal(np.asarray(z2), np.asarray(z))
                assert np.all(np.asarray(g[name]) == 0.0)
    # A per-example (B, n) mask equals the broadcast (n,) mask row by row.
    rows = jnp.array([[True, False] + [True] * (n - 2), [False] + [True] * (n - 1)] * (B // 2))
    z_rows, _ = out_and_grad(x, rows)
    z_a, _ = out_and_grad(x, rows[0])
    z_b, _ = out_and_grad(x, rows[1])
    np.testing.assert_allclose(np.asarray(z_rows)[0::2], np.asarray(z_a)[0::2], atol=1e-6)
    np.testing.assert_allclose(np.asarray(z_rows)[1::2], np.asarray(z_b)[1::2], atol=1e-6)


def test_padded_steps_do_not_change_fused_output():
    cfg = mosi_cfg()
    apply, params = pure(build_model(cfg, rngs=nnx.Rngs(0)))
    x, valid = inputs(cfg, seed=2)
    rng = np.random.default_rng(3)
    garbage = {
        k: np.where(valid[k][..., None], v, rng.normal(scale=1e3, size=v.shape)).astype(np.float32)
        if k in valid
        else v
        for k, v in x.items()
    }
    f = jax.jit(lambda x: apply(params, x, valid, None, None))
    np.testing.assert_array_equal(np.asarray(f(garbage)), np.asarray(f(x)))


def test_pure_function_jits_once_across_steps_and_masks():
    cfg = mimic_cfg()
    apply, params = pure(build_model(cfg, rngs=nnx.Rngs(0)))
    traced = jax.jit(chex.assert_max_traces(apply, n=1))
    outs = []
    for step in range(4):
        x, valid = inputs(cfg, seed=10 + step)
        mm = jnp.array([step % 2 == 0, True])
        outs.append(traced(params, x, valid, mm, jax.random.key(step)))
    assert all(o.shape == (B, 40) for o in outs)


def test_dropout_uses_the_explicit_key():
    cfg = ModelConfig(
        modalities=mimic_cfg().modalities,
        fusion=FusionConfig(width=40, dropout=0.5),
        head=HeadConfig((), 40),
    )
    apply, params = pure(build_model(cfg, rngs=nnx.Rngs(0)))
    x, valid = inputs(cfg)
    f = jax.jit(apply)
    a, b = (
        f(params, x, valid, None, jax.random.key(0)),
        f(params, x, valid, None, jax.random.key(1)),
    )
    np.testing.assert_array_equal(
        np.asarray(a), np.asarray(f(params, x, valid, None, jax.random.key(0)))
    )
    assert not np.allclose(np.asarray(a), np.asarray(b))
    model = build_model(cfg, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs rngs"):
        model(x, valid, deterministic=False)


def test_shard_map_over_batch_matches_single_device():
    cfg = mimic_cfg()
    apply, params = pure(build_model(cfg, rngs=nnx.Rngs(0)))
    n_dev = len(jax.devices())
    global B
    b_saved, B = B, 2 * n_dev
    try:
        x, valid = inputs(cfg, seed=4)
    finally:
        B = b_saved
    mesh = jax.make_mesh((n_dev,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = jax.jit(
        jax.shard_map(
            lambda p, x, v: apply(p, x, v, None, None),
            mesh=mesh,
            in_specs=(P(), P("data"), P("data")),
            out_specs=P("data"),
        )
    )
    ref = jax.jit(lambda p, x, v: apply(p, x, v, None, None))(params, x, valid)
    np.testing.assert_allclose(np.asarray(sharded(params, x, valid)), np.asarray(ref), atol=1e-5)


def test_bf16_forward_is_finite_and_params_stay_float32():
    def run_for(dtype):
        model = build_model(trifeature_cfg(dtype), rngs=nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        @jax.jit
        def run(params, x):
            m = nnx.merge(graphdef, params, rest)
            toks = m.encode(x)
            return toks.tokens[0].dtype == jnp.bfloat16, m.fuse(toks)

        return params, run

    params, run = run_for("bfloat16")
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    x, _ = inputs(trifeature_cfg())
    is_bf16, out = run(params, x)
    assert bool(is_bf16) and out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    _, ref = run_for("float32")[1](params, x)  # same params, float32 activations
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=0.1)


def test_config_round_trips_through_json():
    for cfg in (trifeature_cfg(), mosi_cfg(), mimic_cfg(), vt_cfg()):
        back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg
    d = mimic_cfg().to_dict()
    d["modalities"][0]["encodr"] = "mlp"
    with pytest.raises(ValueError, match="'encodr'"):
        ModelConfig.from_dict(d)
    with pytest.raises(ValueError, match="'widht'"):
        FusionConfig.from_dict({"widht": 3})


def test_clear_errors_for_bad_models_and_inputs():
    base = mimic_cfg()
    bad = ModelConfig((ModalityConfig("a", "lstm", {}),), base.fusion)
    with pytest.raises(ValueError, match="unknown encoder 'lstm'.*registered"):
        build_model(bad, rngs=nnx.Rngs(0))
    bad = ModelConfig((ModalityConfig("a", "mlp", dict(in_features=3), "patch"),), base.fusion)
    with pytest.raises(ValueError, match="takes map features but encoder 'mlp' gives vector"):
        build_model(bad, rngs=nnx.Rngs(0))
    bad = ModelConfig((ModalityConfig("a", "mlp", dict(in_feature=3)),), base.fusion)
    with pytest.raises(ValueError, match="modality 'a': encoder 'mlp' kwargs"):
        build_model(bad, rngs=nnx.Rngs(0))
    model = build_model(base, rngs=nnx.Rngs(0))
    x, valid = inputs(base)
    with pytest.raises(ValueError, match="missing modality 'timeseries'.*expected"):
        model({"tabular": x["tabular"]})
    with pytest.raises(ValueError, match="modality_mask must have shape"):
        model(x, valid, jnp.ones((3,), bool))
