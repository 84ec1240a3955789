"""Encoders, converters and positional embeddings against independent NumPy computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.models import (
    AlexNet,
    CausalConvEncoder,
    EncoderOutput,
    FeatureTokenizer,
    GRUEncoder,
    IdentityConverter,
    MLPEncoder,
    OneToken,
    PatchEmbedding,
    ProjectionHead,
    ResNet18,
    TransformerEncoder,
    sincos_1d,
    sincos_2d,
)


def n_params(module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def abstract(ctor):
    """Builds the module shape-only: counting 11M parameters needs no initialisation compute."""
    return nnx.eval_shape(ctor)


def jitted(module):
    """module(*args, **kw) as one compiled function: far fewer dispatches than eager mode."""
    graphdef, state = nnx.split(module)

    @jax.jit
    def apply(state, *args, **kw):
        return nnx.merge(graphdef, state)(*args, **kw)

    return lambda *args, **kw: apply(state, *args, **kw)


def out_shapes(ctor, *args):
    """Output shapes of ctor()(*args) without initialising or running anything."""
    return jax.eval_shape(lambda *a: ctor()(*a), *args)


def lengths_to_valid(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def garbage_like(x, valid, seed):
    """Replaces padded steps by large random values."""
    g = np.random.default_rng(seed).normal(scale=100.0, size=x.shape).astype(np.float32)
    return np.where(valid[..., None], x, g)


# ---------------------------------------------------------------- positional embeddings


def test_sincos_2d_matches_mae_numpy_loop():
    h, w, d = 3, 5, 16
    ref = np.zeros((h * w, d))
    half, quarter = d // 2, d // 4
    for i in range(h):
        for j in range(w):
            for k in range(quarter):
                omega = 1.0 / 10000 ** (k / quarter)
                # MAE: first half embeds the column (grid[0] of meshgrid(w, h)), second the row.
                ref[i * w + j, k] = math.sin(j * omega)
                ref[i * w + j, quarter + k] = math.cos(j * omega)
                ref[i * w + j, half + k] = math.sin(i * omega)
                ref[i * w + j, half + quarter + k] = math.cos(i * omega)
    np.testing.assert_allclose(np.asarray(sincos_2d(h, w, d)), ref, atol=1e-5)


def test_sincos_1d_matches_transformer_formula():
    pos, d = np.arange(7), 10
    got = np.asarray(sincos_1d(jnp.asarray(pos), d))
    for p in pos:
        for k in range(d // 2):
            angle = p / 10000 ** (2 * k / d)
            assert got[p, k] == pytest.approx(math.sin(angle), abs=1e-5)
            assert got[p, d // 2 + k] == pytest.approx(math.cos(angle), abs=1e-5)


def test_sincos_2d_rejects_bad_dim():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 2, 6)


# ---------------------------------------------------------------- GRU


def numpy_gru(x, valid, wi, bi, wh, bh):
    """Textbook GRU (PyTorch gate order r, z, n), one example and one step at a time."""
    b, t, _ = x.shape
    hd = wh.shape[0]
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))
    states = np.zeros((b, t, hd))
    last = np.zeros((b, hd))
    for n in range(b):
        h = np.zeros(hd)
        for s in range(t):
            if valid[n, s]:
                gi, gh = x[n, s] @ wi + bi, h @ wh + bh
                r = sig(gi[:hd] + gh[:hd])
                z = sig(gi[hd : 2 * hd] + gh[hd : 2 * hd])
                c = np.tanh(gi[2 * hd :] + r * gh[2 * hd :])
                h = (1 - z) * c + z * h
            states[n, s] = h
        last[n] = h
    return states, last


def test_gru_matches_numpy_loop_and_ignores_padding():
    rng = np.random.default_rng(0)
    gru = GRUEncoder(4, hidden=6, rngs=nnx.Rngs(0))
    x = rng.normal(size=(3, 7, 4)).astype(np.float32)
    valid = lengths_to_valid([7, 4, 1], 7)
    out = gru(jnp.asarray(x), jnp.asarray(valid))
    p = lambda v: np.asarray(v[...], np.float64)
    states, last = numpy_gru(
        x,
        valid,
        p(gru.input_proj.kernel),
        p(gru.input_proj.bias),
        p(gru.hidden_proj.kernel),
        p(gru.hidden_proj.bias),
    )
    np.testing.assert_allclose(np.asarray(out.features), states, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.pooled), last, atol=1e-5)
    out2 = gru(jnp.asarray(garbage_like(x, valid, 1)), jnp.asarray(valid))
    np.testing.assert_array_equal(np.asarray(out2.pooled), np.asarray(out.pooled))


def test_gru_out_dim_projects_last_state():
    gru = GRUEncoder(12, hidden=30, out_dim=15, rngs=nnx.Rngs(0))
    out = gru(jnp.ones((2, 24, 12)))
    assert out.features.shape == (2, 24, 30) and out.pooled.shape == (2, 15)
    assert gru.out_features == 30 and gru.pooled_features == 15


# ---------------------------------------------------------------- Transformer, causal conv


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_transformer_encoder_ignores_padded_steps(pool):
    rng = np.random.default_rng(1)
    enc = jitted(
        TransformerEncoder(6, width=20, num_layers=2, num_heads=5, pool=pool, rngs=nnx.Rngs(0))
    )
    x = rng.normal(size=(3, 9, 6)).astype(np.float32)
    valid = lengths_to_valid([9, 5, 2], 9)
    a = enc(jnp.asarray(x), jnp.asarray(valid))
    b = enc(jnp.asarray(garbage_like(x, valid, 2)), jnp.asarray(valid))
    assert a.features.shape == (3, 9, 20) and a.pooled.shape == (3, 20)
    np.testing.assert_array_equal(np.asarray(a.pooled), np.asarray(b.pooled))
    np.testing.assert_array_equal(np.asarray(a.features)[valid], np.asarray(b.features)[valid])
    # The short example is the same as that example given unpadded.
    c = enc(jnp.asarray(x[1:2, :5]))
    np.testing.assert_allclose(np.asarray(c.pooled)[0], np.asarray(a.pooled)[1], atol=1e-5)


def test_causal_conv_is_causal_and_ignores_padding():
    rng = np.random.default_rng(2)
    enc = jitted(CausalConvEncoder(6, rngs=nnx.Rngs(0)))
    x = rng.normal(size=(3, 32, 6)).astype(np.float32)
    out = enc(jnp.asarray(x))
    assert out.features.shape == (3, 512) and out.mask is None
    valid = lengths_to_valid([32, 20, 9], 32)
    a = enc(jnp.asarray(x), jnp.asarray(valid)).pooled
    b = enc(jnp.asarray(garbage_like(x, valid, 3)), jnp.asarray(valid)).pooled
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    seq = jitted(CausalConvEncoder(6, (8, 8), output="sequence", rngs=nnx.Rngs(0)))
    full = seq(jnp.asarray(x)).features  # (3, 8, 8): step t covers inputs [4t, 4t + 3]
    assert full.shape == (3, 8, 8)
    x_future = x.copy()
    x_future[:, 16:] += 5.0  # changes only inputs of output steps >= 4
    moved = seq(jnp.asarray(x_future)).features
    np.testing.assert_array_equal(np.asarray(moved)[:, :4], np.asarray(full)[:, :4])
    assert not np.allclose(np.asarray(moved)[:, 4:], np.asarray(full)[:, 4:])


def test_mlp_encoder_shape_and_bad_input():
    mlp = MLPEncoder(5, (10,), 10, rngs=nnx.Rngs(0))
    assert mlp(jnp.ones((4, 5))).features.shape == (4, 10)
    with pytest.raises(ValueError, match="5 features"):
        mlp(jnp.ones((4, 6)))
    with pytest.raises(ValueError, match="unknown activation"):
        MLPEncoder(5, (), 3, activation="swishy", rngs=nnx.Rngs(0))


# ---------------------------------------------------------------- CNNs: parameter counts


def conv_params(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def test_alexnet_parameter_count_by_hand():
    ch = (8, 16, 24, 16, 16)
    model = abstract(lambda: AlexNet(3, ch, out_dim=12, rngs=nnx.Rngs(0)))
    expected = (
        conv_params(5, 3, 8)
        + conv_params(5, 8, 16)
        + conv_params(3, 16, 24)
        + conv_params(3, 24, 16)
        + conv_params(3, 16, 16)
        + (16 * 12 + 12)
    )
    assert n_params(model) == expected
    # torchvision's alexnet(): 61,100,840 parameters, of which the classifier holds
    # 9216*4096+4096 + 4096*4096+4096 + 4096*1000+1000 = 58,631,144; features = 2,469,696.
    full = abstract(lambda: AlexNet(3, variant="imagenet", rngs=nnx.Rngs(0)))
    assert n_params(full) == 61_100_840 - 58_631_144


def resnet18_params_by_hand(width, cin=3, stem_k=7, out_dim=None):
    total = conv_params(stem_k, cin, width, bias=False) + 2 * width  # stem conv + norm
    c = width
    for stage in range(4):
        cout = width * 2**stage
        for block in range(2):
            total += conv_params(3, c, cout, False) + 2 * cout  # conv1 + norm1
            total += conv_params(3, cout, cout, False) + 2 * cout  # conv2 + norm2
            if block == 0 and (stage > 0 or c != cout):
                total += conv_params(1, c, cout, False) + 2 * cout  # projection shortcut
            c = cout
    if out_dim:
        total += c * out_dim + out_dim
    return total


def test_resnet18_parameter_count_by_hand():
    small = abstract(lambda: ResNet18(3, width=8, stem="cifar", out_dim=10, rngs=nnx.Rngs(0)))
    assert n_params(small) == resnet18_params_by_hand(8, stem_k=3, out_dim=10)
    full = abstract(lambda: ResNet18(rngs=nnx.Rngs(0)))
    assert n_params(full) == resnet18_params_by_hand(64)
    # torchvision resnet18(): 11,689,512 parameters including fc (512*1000 + 1000); GroupNorm has
    # the same affine parameters as BatchNorm.
    assert n_params(full) == 11_689_512 - 513_000


def test_cnn_feature_maps_and_pooled_vectors():
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    a = out_shapes(
        lambda: AlexNet(3, (8, 16, 16, 16, 16), pool=False, out_dim=12, rngs=nnx.Rngs(0)), x
    )
    assert a.features.shape == (2, 4, 4, 16) and a.pooled.shape == (2, 12)
    a = out_shapes(
        lambda: AlexNet(3, variant="imagenet", rngs=nnx.Rngs(0)),
        jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32),
    )
    assert a.features.shape == (1, 256)
    # "small_s2" (stride-2 first conv): a 64 px image gives the 4 x 4 map a 32 px one gives.
    a = out_shapes(
        lambda: AlexNet(3, (8, 16, 16, 16, 16), variant="small_s2", pool=False, rngs=nnx.Rngs(0)),
        jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32),
    )
    assert a.features.shape == (2, 4, 4, 16)
    r = out_shapes(lambda: ResNet18(3, width=8, stem="cifar", pool=False, rngs=nnx.Rngs(0)), x)
    assert r.features.shape == (2, 4, 4, 64) and r.pooled.shape == (2, 64)
    r = out_shapes(lambda: ResNet18(3, width=8, pool=True, out_dim=7, rngs=nnx.Rngs(0)), x)
    assert r.features.shape == (2, 7)


# ---------------------------------------------------------------- converters, head


def test_feature_tokenizer_is_per_feature_affine():
    tok = FeatureTokenizer(3, 8, rngs=nnx.Rngs(0))
    x = np.random.default_rng(3).normal(size=(2, 3)).astype(np.float32)
    tokens, mask = tok(EncoderOutput(jnp.asarray(x), None, jnp.asarray(x)))
    w, b = np.asarray(tok.weight[...]), np.asarray(tok.bias[...])
    ref = np.array([[x[n, j] * w[j] + b[j] for j in range(3)] for n in range(2)])
    np.testing.assert_allclose(np.asarray(tokens), ref, rtol=1e-6)
    assert mask.shape == (2, 3) and bool(mask.all())


def test_patch_embedding_adds_fixed_2d_positions():
    fmap = np.random.default_rng(4).normal(size=(2, 4, 6, 5)).astype(np.float32)
    pe = PatchEmbedding(5, 16, patch_size=2, rngs=nnx.Rngs(0))
    tokens, mask = pe(EncoderOutput(jnp.asarray(fmap), None, jnp.zeros((2, 5))))
    assert tokens.shape == (2, 6, 16) and mask.shape == (2, 6)
    k, bias = np.asarray(pe.proj.kernel[...]), np.asarray(pe.proj.bias[...])
    ref = np.zeros((2, 2, 3, 16))
    for i in range(2):
        for j in range(3):
            patch = fmap[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, :]
            ref[:, i, j] = np.einsum("bhwc,hwcd->bd", patch, k) + bias
    ref = ref.reshape(2, 6, 16) + np.asarray(sincos_2d(2, 3, 16))[None]
    np.testing.assert_allclose(np.asarray(tokens), ref, atol=1e-4)
    assert not any(
        "pos" in str(p) for p in jax.tree_util.tree_leaves_with_path(nnx.state(pe, nnx.Param))
    )  # positions are fixed, not parameters


def test_identity_and_one_token_converters():
    seq = EncoderOutput(jnp.ones((2, 5, 8)), jnp.ones((2, 5), bool), jnp.ones((2, 8)))
    tokens, mask = IdentityConverter(8, 8, rngs=nnx.Rngs(0))(seq)
    assert tokens is seq.features and mask is seq.mask
    assert IdentityConverter(8, 16, rngs=nnx.Rngs(0))(seq)[0].shape == (2, 5, 16)
    with pytest.raises(ValueError, match="project=True"):
        IdentityConverter(8, 16, project=False, rngs=nnx.Rngs(0))
    vec = EncoderOutput(jnp.ones((2, 7)), None, jnp.ones((2, 7)))
    tokens, mask = OneToken(7, 16, rngs=nnx.Rngs(0))(vec)
    assert tokens.shape == (2, 1, 16) and mask.shape == (2, 1)
    with pytest.raises(ValueError, match="sequence features"):
        IdentityConverter(7, 7, rngs=nnx.Rngs(0))(vec)


def test_projection_head_depths():
    assert ProjectionHead(16, (32, 32), 8, rngs=nnx.Rngs(0))(jnp.ones((3, 16))).shape == (3, 8)
    one = ProjectionHead(16, (), 16, rngs=nnx.Rngs(0))
    assert len(one.layers) == 1 and one(jnp.ones((3, 16))).shape == (3, 16)


def _max_pool_numpy(x: np.ndarray, s: int):
    """Plain loops: value and, per output, the flat index of the tile's first maximum."""
    b, h, w, c = x.shape
    y = np.zeros((b, h // s, w // s, c), x.dtype)
    arg = np.zeros((b, h // s, w // s, c, 2), int)
    for n in range(b):
        for i in range(h // s):
            for j in range(w // s):
                for k in range(c):
                    tile = x[n, i * s : i * s + s, j * s : j * s + s, k]
                    r, q = np.unravel_index(np.argmax(tile), (s, s))  # first in row-major order
                    y[n, i, j, k] = tile[r, q]
                    arg[n, i, j, k] = (i * s + r, j * s + q)
    return y, arg


@pytest.mark.parametrize("shape,window", [((2, 8, 8, 3), 2), ((2, 7, 9, 2), 2), ((1, 9, 6, 2), 3)])
def test_tile_max_pool_value_and_gradient_match_loops_and_select_and_scatter(shape, window):
    from jaxmm.models.alexnet import tile_max_pool

    rs = np.random.default_rng(0)
    x = np.round(rs.standard_normal(shape), 1).astype(np.float32)  # many exact ties
    x[:, :4] = 0.5  # a flat region: whole tiles tied, as a constant background gives
    x = np.maximum(x, 0)  # after a ReLU: ties at 0 too
    dy = rs.standard_normal((shape[0], shape[1] // window, shape[2] // window, shape[3]))
    dy = dy.astype(np.float32)
    y_ref, arg = _max_pool_numpy(x, window)
    dx_ref = np.zeros_like(x)
    for idx in np.ndindex(*y_ref.shape):
        n, _, _, k = idx
        r, q = arg[idx]
        dx_ref[n, r, q, k] += dy[idx]
    y, vjp = jax.vjp(lambda a: tile_max_pool(a, window), jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(y), y_ref)
    np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(dy))[0]), dx_ref)
    # the same as XLA's reduce-window max-pool, whose gradient is a select-and-scatter
    w = (window, window)
    y2, vjp2 = jax.vjp(lambda a: nnx.max_pool(a, w, w, "VALID"), jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(y2), y_ref)
    np.testing.assert_array_equal(np.asarray(vjp2(jnp.asarray(dy))[0]), dx_ref)


def _conv_numpy(x: np.ndarray, w: np.ndarray, p: int):
    """Plain loops: stride-1 NHWC convolution with p zeros on each side; returns y and a
    function giving the input and weight gradients of sum(y * dy)."""
    b, h, wd, _ = x.shape
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    y = np.zeros((b, h, wd, w.shape[-1]))
    for i in range(h):
        for j in range(wd):
            y[:, i, j] = np.einsum("bklc,klco->bo", xp[:, i : i + k, j : j + k], w)

    def grads(dy):
        dxp, dw = np.zeros_like(xp), np.zeros_like(w)
        for i in range(h):
            for j in range(wd):
                dxp[:, i : i + k, j : j + k] += np.einsum("bo,klco->bklc", dy[:, i, j], w)
                dw += np.einsum("bklc,bo->klco", xp[:, i : i + k, j : j + k], dy[:, i, j])
        return dxp[:, p : p + h, p : p + wd], dw

    return y, grads


@pytest.mark.parametrize("k,cin,cout", [(5, 3, 4), (3, 1, 2), (7, 2, 3), (1, 3, 2)])
def test_space_to_depth_conv_value_and_gradients_match_loops(k, cin, cout):
    from jaxmm.models.alexnet import space_to_depth_conv

    rs = np.random.default_rng(k)
    x, w = rs.standard_normal((2, 6, 8, cin)), rs.standard_normal((k, k, cin, cout))
    dy = rs.standard_normal((2, 6, 8, cout))
    y_ref, grads = _conv_numpy(x, w, k // 2)
    y, vjp = jax.vjp(lambda a, b: space_to_depth_conv(a, b, k // 2), jnp.asarray(x), jnp.asarray(w))
    dx, dw = vjp(jnp.asarray(dy, jnp.float32))
    dx_ref, dw_ref = grads(dy)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dx), dx_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(dw), dw_ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match=r"even H, W.*input \(2, 5, 8"):
        space_to_depth_conv(jnp.asarray(x[:, :5]), jnp.asarray(w), k // 2)


def test_alexnet_block_stem_equals_plain_convolution(monkeypatch):
    import jaxmm.models.alexnet as alexnet

    net = AlexNet(3, (4, 6, 8, 8, 8), variant="small", pool=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((3, 16, 16, 3)), jnp.float32)
    assert net._block_stem(x) and not net._block_stem(x[:, :15])

    def value_and_grads():
        g, st = nnx.split(net)
        loss = lambda st: jnp.sum(jnp.sin(nnx.merge(g, st)(x).features))  # noqa: E731
        return jax.value_and_grad(loss)(st)

    blocked = value_and_grads()
    monkeypatch.setattr(alexnet, "_BLOCK_STEM_MAX_CHANNELS", 0)
    assert not net._block_stem(x)
    plain = value_and_grads()
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # noqa: E731
    jax.tree.map(close, blocked, plain)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_fusion_last_block_cls_query_equals_full_blocks(num_layers):
    """The last block runs only the [CLS] query; every block at full length gives the same."""
    from jaxmm.models.fusion import FusionTransformer

    fusion = FusionTransformer(32, num_layers=num_layers, num_heads=4, rngs=nnx.Rngs(0))
    rs = np.random.default_rng(1)
    tokens = [jnp.asarray(rs.standard_normal((5, t, 32)), jnp.float32) for t in (6, 4)]
    masks = [jnp.ones((5, 6), bool), jnp.asarray(rs.random((5, 4)) > 0.3)]
    present = jnp.asarray([[1, 1], [1, 0], [0, 1], [1, 1], [0, 0]], bool)

    def full(f):  # the fusion written out with every token querying in every block
        key_mask = jnp.concatenate([jnp.ones((5, 1), bool), masks[0] & present[:, :1]], 1)
        key_mask = jnp.concatenate([key_mask, masks[1] & present[:, 1:]], 1)
        x = jnp.concatenate([jnp.broadcast_to(f.cls[...], (5, 1, 32)), *tokens], axis=1)
        for block in f.blocks:
            x = block(x, key_mask)
        return f.norm(x[:, 0])

    def loss(f, fn):
        return jnp.sum(jnp.sin(3 * fn(f)))

    fast = lambda f: f(tokens, masks, present)
    np.testing.assert_allclose(fast(fusion), full(fusion), atol=2e-6, rtol=1e-5)
    g_fast = nnx.grad(lambda f: loss(f, fast))(fusion)
    g_full = nnx.grad(lambda f: loss(f, full))(fusion)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_full), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
    block = fusion.blocks[0]
    x = jnp.asarray(rs.standard_normal((5, 11, 32)), jnp.float32)
    km = jnp.asarray(rs.random((5, 11)) > 0.2).at[:, 0].set(True)
    np.testing.assert_allclose(block(x, km, num_queries=3), block(x, km)[:, :3], atol=2e-6)
