"""Critics vs explicit per-pair NumPy loops over their own parameters."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm import critics as C
from jaxmm import estimators as E

B, X_DIM, Y_DIM, C_DIM, CY_DIM = 5, 3, 4, 2, 3


def _rand(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _np_mlp(mlp, v):
    """Forward pass of a jaxmm MLP on one vector, from its parameters, in float64 loops."""
    layers = [
        (np.asarray(lin.kernel[...], np.float64), np.asarray(lin.bias[...])) for lin in mlp.linears
    ]
    h = np.asarray(v, np.float64)
    for k, (w, b) in enumerate(layers):
        h = np.array(
            [sum(h[a] * w[a, o] for a in range(w.shape[0])) + b[o] for o in range(w.shape[1])]
        )
        if k < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def _jit_call(module, *args):
    """Call through the functional NNX form (split -> pure function under jit -> merge)."""
    graphdef, state = nnx.split(module)
    return jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))(state, *args)


@pytest.mark.parametrize("layers", [1, 2])
def test_concat_critic_all_pairs_equals_double_loop(layers):
    critic = C.ConcatCritic(X_DIM, Y_DIM, hidden=6, layers=layers, rngs=nnx.Rngs(0))
    x, y = _rand(1, B, X_DIM), _rand(2, B, Y_DIM)
    got = _jit_call(critic, x, y)
    ref = np.array(
        [[_np_mlp(critic.mlp, np.concatenate([x[i], y[j]]))[0] for j in range(B)] for i in range(B)]
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # pair_scores (literal concatenation of aligned rows) is the diagonal
    np.testing.assert_allclose(critic.pair_scores(x, y), np.diagonal(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cosine, temperature", [(False, 1.0), (True, 0.2)])
def test_separable_critic_equals_loop(cosine, temperature):
    critic = C.SeparableCritic(
        X_DIM, Y_DIM, 6, 4, 1, rngs=nnx.Rngs(1), cosine=cosine, temperature=temperature
    )
    x, y = _rand(3, B, X_DIM), _rand(4, B, Y_DIM)
    got = _jit_call(critic, x, y)
    ref = np.zeros((B, B))
    for i in range(B):
        for j in range(B):
            g, h = _np_mlp(critic.g, x[i]), _np_mlp(critic.h, y[j])
            if cosine:
                g, h = g / np.linalg.norm(g), h / np.linalg.norm(h)
            ref[i, j] = float(g @ h) / temperature
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_bilinear_critic_equals_loop():
    critic = C.BilinearCritic(X_DIM, Y_DIM, rngs=nnx.Rngs(2))
    x, y = _rand(5, B, X_DIM), _rand(6, B, Y_DIM)
    w = np.asarray(critic.w[...], np.float64)
    ref = np.array(
        [
            [
                sum(x[i, a] * w[a, b] * y[j, b] for a in range(X_DIM) for b in range(Y_DIM))
                for j in range(B)
            ]
            for i in range(B)
        ]
    )
    np.testing.assert_allclose(_jit_call(critic, x, y), ref, rtol=1e-5, atol=1e-5)


def test_conditional_concat_critic_equals_explicit_concatenation_loop():
    # FactorCL-SSL style: each side carries its own conditioning (c = x1', c_y = x2').
    critic = C.ConditionalConcatCritic(
        X_DIM, Y_DIM, C_DIM, hidden=6, layers=1, rngs=nnx.Rngs(3), c_y_dim=CY_DIM
    )
    x, y, c, cy = _rand(7, B, X_DIM), _rand(8, B, Y_DIM), _rand(9, B, C_DIM), _rand(10, B, CY_DIM)
    got = _jit_call(critic, x, y, c, cy)
    mlp = critic.base.mlp
    ref = np.array(
        [
            [_np_mlp(mlp, np.concatenate([x[i], c[i], y[j], cy[j]]))[0] for j in range(B)]
            for i in range(B)
        ]
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_conditional_separable_critic_shares_c_on_both_sides_by_default():
    # FactorCL-SUP style: the same label (one-hot) conditions both sides.
    critic = C.ConditionalSeparableCritic(X_DIM, Y_DIM, C_DIM, 6, 4, 1, rngs=nnx.Rngs(4))
    x, y = _rand(11, B, X_DIM), _rand(12, B, Y_DIM)
    c = np.eye(C_DIM, dtype=np.float32)[np.arange(B) % C_DIM]
    got = _jit_call(critic, x, y, c)
    ref = np.zeros((B, B))
    for i in range(B):
        for j in range(B):
            g = _np_mlp(critic.base.g, np.concatenate([x[i], c[i]]))
            h = _np_mlp(critic.base.h, np.concatenate([y[j], c[j]]))
            ref[i, j] = float(g @ h)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # usable directly in the conditional bounds (FactorCL Eqs. 13-14)
    assert np.isfinite(E.infonce_lower_bound(got)) and np.isfinite(E.nce_club_upper_bound(got))


def test_gaussian_conditional_log_likelihoods_equal_loop():
    q = C.GaussianConditional(X_DIM, Y_DIM, 8, rngs=nnx.Rngs(5))
    x, y = _rand(13, B, X_DIM), _rand(14, B, Y_DIM)
    mu, logvar = (np.asarray(a, np.float64) for a in q(x))
    assert mu.shape == logvar.shape == (B, Y_DIM) and np.all(np.abs(logvar) <= 1.0)
    ref = np.zeros((B, B))
    for i in range(B):
        for j in range(B):
            for k in range(Y_DIM):
                var = math.exp(logvar[i, k])
                ref[i, j] += -0.5 * ((y[j, k] - mu[i, k]) ** 2 / var + math.log(2 * math.pi * var))
    graphdef, state = nnx.split(q)
    llm = jax.jit(lambda s, a, b: nnx.merge(graphdef, s).log_likelihood_matrix(a, b))(state, x, y)
    np.testing.assert_allclose(llm, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(q.log_likelihood(x, y), np.diagonal(ref), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        E.club_upper_bound(llm), np.mean(np.diagonal(ref)) - np.mean(ref), rtol=1e-4, atol=1e-5
    )


def test_critics_are_differentiable_in_functional_form():
    critic = C.ConcatCritic(X_DIM, Y_DIM, 6, 1, rngs=nnx.Rngs(6))
    graphdef, params = nnx.split(critic, nnx.Param)
    x, y = _rand(15, B, X_DIM), _rand(16, B, Y_DIM)

    def loss(p):
        return -E.infonce_lower_bound(nnx.merge(graphdef, p)(x, y))

    grads = jax.jit(jax.grad(loss))(params)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.all(np.isfinite(g)) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


@pytest.mark.parametrize(
    "x_shape, y_shape, match",
    [
        ((B, X_DIM + 1), (B, Y_DIM), rf"x must have shape \(B, {X_DIM}\)"),
        ((B, X_DIM), (B, Y_DIM, 1), rf"y must have shape \(B, {Y_DIM}\)"),
        ((B, X_DIM), (B + 1, Y_DIM), "same batch size"),
    ],
)
def test_critics_reject_bad_shapes(x_shape, y_shape, match):
    critic = C.ConcatCritic(X_DIM, Y_DIM, 4, 1, rngs=nnx.Rngs(7))
    with pytest.raises(ValueError, match=match):
        critic(np.zeros(x_shape, np.float32), np.zeros(y_shape, np.float32))


def test_bad_conditioning_and_construction():
    critic = C.ConditionalConcatCritic(X_DIM, Y_DIM, C_DIM, 4, 1, rngs=nnx.Rngs(8))
    x, y = np.zeros((B, X_DIM), np.float32), np.zeros((B, Y_DIM), np.float32)
    with pytest.raises(ValueError, match=rf"c must have shape \({B}, {C_DIM}\)"):
        critic(x, y, np.zeros((B, C_DIM + 1), np.float32))
    with pytest.raises(ValueError, match="c must have a floating dtype"):
        critic(x, y, np.zeros((B, C_DIM), np.int32))
    with pytest.raises(ValueError, match="x must have a floating dtype"):
        C.BilinearCritic(X_DIM, Y_DIM, rngs=nnx.Rngs(9))(x.astype(np.int32), y)
    with pytest.raises(ValueError, match="layers >= 1"):
        C.ConcatCritic(X_DIM, Y_DIM, 4, 0, rngs=nnx.Rngs(10))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        C.SeparableCritic(X_DIM, Y_DIM, 4, 4, 1, rngs=nnx.Rngs(11), temperature=0.0)
