"""TupleInfoNCE (Liu et al. 2021): the q_alpha loss against NumPy loops with duplicated blocks,
tuple disturbing, the stop-gradient key encoder, REINFORCE, the retrieval reward and one round of
sample optimisation."""

from __future__ import annotations

import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jaxmm import estimators
from jaxmm.methods.registry import get_method
from jaxmm.methods.tuple_infonce import (
    TupleHParams,
    TupleInfoNCE,
    TupleInfoNCEConfig,
    disturb_modalities,
    random_derangement,
    retrieval_accuracy,
)
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig
from jaxmm.sample_optimization import (
    SampleOptimizer,
    SearchConfig,
    normalize_rewards,
    official_beta_reward,
    reinforce_update,
    score_function_gradient,
)

TAU = 0.07
B = 8
NAMES = ("m0", "m1")


def model_config(dims=(4, 5)) -> ModelConfig:
    mods = tuple(
        ModalityConfig(
            f"m{i}",
            "mlp",
            {"in_features": d, "hidden_dims": [8], "out_dim": 8},
            "feature_tokenizer",
        )
        for i, d in enumerate(dims)
    )
    return ModelConfig(
        modalities=mods, fusion=FusionConfig(width=8, num_heads=2), head=HeadConfig((16,), 8)
    )


def make_batch(b: int = B, dims=(4, 5), seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = {f"m{i}": jnp.asarray(rng.normal(size=(b, d)), jnp.float32) for i, d in enumerate(dims)}
    return {"view1": {"x": x, "valid": {}}}


@pytest.fixture(scope="module")
def setup():
    # Gradient through the positive: the key-branch tests below hold the positive as online.
    method = TupleInfoNCE(
        model_config(), TupleInfoNCEConfig(beta=0.3, stop_gradient_positive=False)
    )
    batch = make_batch()
    params = jax.jit(method.init)(jax.random.key(0), batch)
    return method, params, batch


def np_tuple_infonce(za, zp, zn, multiplicity, tau):
    """-mean_i log softmax over [positives, block k duplicated multiplicity[k] times], loops."""
    za, zp, zn = (np.asarray(a, np.float64) for a in (za, zp, zn))
    norm = lambda v: v / np.linalg.norm(v)
    total = 0.0
    for i in range(len(za)):
        cands = [zp[j] for j in range(len(zp))]
        for k, m in enumerate(multiplicity):
            for _ in range(m):  # alpha_k as a literal multiplicity in q_alpha
                cands.extend(zn[k, j] for j in range(zn.shape[1]))
        logits = np.array([norm(za[i]) @ norm(c) / tau for c in cands])
        total += -(logits[i] - np.log(np.sum(np.exp(logits))))
    return total / len(za)


def test_loss_equals_numpy_loop_with_duplicated_disturbed_blocks(setup):
    method, params, batch = setup
    multiplicity = (3, 2)
    h = TupleHParams(jnp.log(jnp.asarray(multiplicity, jnp.float32)), jnp.asarray(0.3))
    rng = jax.random.key(1)

    @jax.jit
    def both(p):
        loss, metrics = method.loss(p, batch, rng, hparams=h)
        return loss, metrics, method.tuple_embeddings(p, batch, rng, h)

    loss, metrics, (za, zp, zn) = both(params)
    assert zn.shape == (2, B, 8)
    np.testing.assert_allclose(loss, np_tuple_infonce(za, zp, zn, multiplicity, TAU), rtol=1e-5)
    np.testing.assert_allclose(metrics["pos_sim"], np.mean(np.sum(za * zp, -1)), rtol=1e-5)
    np.testing.assert_allclose(
        metrics["neg_logit_m1"], np.mean(za @ np.asarray(zn[1]).T) / TAU, rtol=1e-5
    )
    np.testing.assert_allclose(metrics["alpha_m0"], 3.0, rtol=1e-6)
    # alpha = 1 everywhere is the config default: plain duplication count 1.
    loss1, _ = jax.jit(method.loss)(params, batch, rng)
    np.testing.assert_allclose(loss1, np_tuple_infonce(za, zp, zn, (1, 1), TAU), rtol=1e-5)


def test_derangement_has_no_fixed_point():
    for seed in range(20):
        pi = np.asarray(random_derangement(jax.random.key(seed), 5))
        assert sorted(pi) == list(range(5)) and np.all(pi != np.arange(5))


def test_disturbed_tuples_differ_from_positive_only_in_modality_k(setup):
    method, params, batch = setup
    rng = jax.random.key(3)
    h = TupleHParams(jnp.zeros(2), jnp.asarray(0.3))
    x_pos, valid, perms = jax.jit(method.key_inputs)(batch, rng, h)
    x_pos = {n: np.asarray(v) for n, v in x_pos.items()}
    perms = np.asarray(perms)
    noise = x_pos["m0"] - np.asarray(batch["view1"]["x"]["m0"])
    assert 0.1 < noise.std() < 0.6  # beta = 0.3 Gaussian noise on the positive
    dist = disturb_modalities(x_pos, NAMES, jnp.asarray(perms))
    for k, name_k in enumerate(NAMES):
        assert np.all(perms[k] != np.arange(B))
        for name in NAMES:
            block = np.asarray(dist[name][k])
            if name == name_k:
                np.testing.assert_array_equal(block, x_pos[name][perms[k]])
                assert np.all(np.any(block != x_pos[name], axis=1))  # every row swapped in
            else:
                np.testing.assert_array_equal(block, x_pos[name])
    # The method's key embeddings (token-level disturbing) equal the model on these inputs.
    _, _, zn = jax.jit(method.tuple_embeddings)(params, batch, rng, h)
    direct = jax.jit(lambda p, x: method.module(p).model(x, valid, deterministic=True))(
        params, {n: dist[n].reshape(2 * B, -1) for n in NAMES}
    )
    np.testing.assert_allclose(zn.reshape(2 * B, -1), estimators.l2_normalize(direct), atol=1e-5)


def test_key_branch_is_stop_gradient(setup):
    method, params, batch = setup
    rng = jax.random.key(4)
    h = TupleHParams(jnp.log(jnp.asarray([2.0, 0.5])), jnp.asarray(0.3))

    @jax.jit
    def grads(p):
        emb = lambda q: method.tuple_embeddings(q, batch, rng, h)
        neg_grad = jax.grad(lambda q: jnp.sum(emb(q)[2]))(p)
        zn_const = emb(p)[2]

        def held(q):  # the same loss with the key branch replaced by constants
            za, zp, _ = emb(q)
            return estimators.tuple_infonce_loss(
                za, zp, zn_const, negative_log_weights=h.log_alpha, temperature=TAU
            )

        g_full = jax.grad(lambda q: method.loss(q, batch, rng, hparams=h)[0])(p)
        return neg_grad, g_full, jax.grad(held)(p)

    neg_grad, g_full, g_held = grads(params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(neg_grad))
    for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_held), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_full)) > 0


def test_loss_under_shard_map_gathers_negatives(setup):
    method, params, batch = setup
    h = TupleHParams(jnp.log(jnp.asarray([2.0, 1.0])), jnp.asarray(0.3))
    rng = jax.random.key(5)
    mesh = jax.make_mesh(
        (2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:2]
    )

    def per_device(p, bt):
        r = jax.random.fold_in(rng, jax.lax.axis_index("data"))
        return method.loss(p, bt, r, axis_name="data", hparams=h)[0]

    loss = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")), out_specs=P()))(
        params, batch
    )
    shards = [jax.tree.map(lambda a, d=d: a[d * 4 : (d + 1) * 4], batch) for d in range(2)]
    emb = jax.jit(method.tuple_embeddings)
    embs = [emb(params, s, jax.random.fold_in(rng, d), h) for d, s in enumerate(shards)]
    za, zp = (np.concatenate([e[i] for e in embs]) for i in range(2))
    zn = np.concatenate([e[2] for e in embs], axis=1)
    # Every device's anchors see the global batch's positives and disturbed blocks.
    np.testing.assert_allclose(loss, np_tuple_infonce(za, zp, zn, (2, 1), TAU), rtol=1e-5)


def test_training_reduces_loss_without_retracing(setup):
    method, params, batch = setup
    tx = optax.adam(1e-2)
    traces = []

    @jax.jit
    def step(p, opt, i):
        traces.append(1)
        (loss, _), g = jax.value_and_grad(method.loss, has_aux=True)(
            p, batch, jax.random.fold_in(jax.random.key(6), i)
        )
        updates, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, updates), opt, loss

    eval_loss = jax.jit(lambda p: method.loss(p, batch, jax.random.key(7))[0])
    before = float(eval_loss(params))
    p, opt = params, tx.init(params)
    for i in range(30):
        p, opt, _ = step(p, opt, i)
    after = float(eval_loss(p))
    assert len(traces) == 1
    assert after < before - 0.3, (before, after)


def test_registry_and_config_round_trip():
    cfg = TupleInfoNCEConfig(alpha=(1.0, 2.0), noise_scales=(1.0, 0.5), positive_view="view2")
    assert TupleInfoNCEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    method = get_method("tuple_infonce", cfg.to_dict(), model_config().to_dict())
    assert isinstance(method, TupleInfoNCE)
    np.testing.assert_allclose(method.default_hparams().log_alpha, np.log([1.0, 2.0]), rtol=1e-6)


def test_bad_config_and_hparams_raise(setup):
    method, params, batch = setup
    with pytest.raises(ValueError, match="alpha needs 2 values"):
        TupleInfoNCE(model_config(), TupleInfoNCEConfig(alpha=(1.0, 2.0, 3.0)))
    with pytest.raises(ValueError, match="beta must be finite"):
        TupleInfoNCEConfig(beta=-1.0)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        TupleInfoNCE(model_config(dims=(4,)))
    with pytest.raises(ValueError, match="hparams must have log_alpha"):
        method.loss(params, batch, jax.random.key(0), hparams=TupleHParams(jnp.zeros(3), 0.1))


# ------------------------------------------------------------------------------------------------
# REINFORCE.


def test_score_function_gradient_matches_numpy_and_adam_step():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=3).astype(np.float32)
    sigma = 0.5
    thetas = (mu + sigma * rng.normal(size=(6, 3))).astype(np.float32)
    rewards = rng.uniform(size=6).astype(np.float32)
    r = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
    expected = np.mean([r[i] * (thetas[i] - mu) / sigma**2 for i in range(6)], axis=0)
    g = jax.jit(score_function_gradient, static_argnames="sigma")(mu, thetas, rewards, sigma=sigma)
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalize_rewards(rewards), r, rtol=1e-5, atol=1e-6)
    # First Adam step on -g: m = (1-b1)(-g), v = (1-b2) g^2, bias-corrected -> -g / (|g| + eps).
    new_mu, _ = reinforce_update(
        mu, thetas, rewards, sigma, optax.adam(1.0).init(mu), learning_rate=0.25
    )
    np.testing.assert_allclose(new_mu, mu + 0.25 * expected / (np.abs(expected) + 1e-8), rtol=1e-4)


def test_reinforce_gradient_points_along_linear_reward():
    c = np.array([1.0, -2.0, 0.5, 0.0, 3.0], np.float32)
    mu = np.zeros(5, np.float32)
    thetas = mu + 0.5 * np.asarray(jax.random.normal(jax.random.key(0), (4000, 5)))
    g = np.asarray(score_function_gradient(mu, thetas, thetas @ c, 0.5))
    assert g @ c / (np.linalg.norm(g) * np.linalg.norm(c)) > 0.9
    opt = optax.adam(1.0).init(jnp.asarray(mu))
    m = jnp.asarray(mu)
    for i in range(5):
        th = m + 0.5 * jax.random.normal(jax.random.key(i + 1), (500, 5))
        m, opt = reinforce_update(m, th, th @ c, 0.5, opt, learning_rate=0.1)
    assert float(m @ c) > 0.5  # the search mean climbs the reward


# ------------------------------------------------------------------------------------------------
# Retrieval reward.


def np_retrieval(q, k):
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    hits = 0
    for m in range(q.shape[0]):
        for i in range(q.shape[1]):
            sims = [
                q[m, i] @ k[m, j] / np.linalg.norm(q[m, i]) / np.linalg.norm(k[m, j])
                for j in range(q.shape[1])
            ]
            hits += int(np.argmax(sims) == i)
    return hits / (q.shape[0] * q.shape[1])


def test_retrieval_accuracy_perfect_random_and_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 200, 16)).astype(np.float32)
    assert float(retrieval_accuracy(z, 2.0 * z)) == 1.0
    rand = float(retrieval_accuracy(z, rng.normal(size=z.shape).astype(np.float32)))
    assert rand < 5.0 / 200  # chance 1/N = 0.005
    noisy = z + 1.2 * rng.normal(size=z.shape).astype(np.float32)
    acc = float(jax.jit(retrieval_accuracy)(z[:, :40], noisy[:, :40]))
    assert 0.0 < acc < 1.0
    np.testing.assert_allclose(acc, np_retrieval(z[:, :40], noisy[:, :40]), atol=1e-6)


def test_retrieval_reward_on_the_model():
    method = TupleInfoNCE(model_config(dims=(4, 4)))
    rng = np.random.default_rng(1)
    v = rng.normal(size=(12, 4)).astype(np.float32)
    val = {"view1": {"x": {"m0": jnp.asarray(v), "m1": jnp.asarray(v[::-1].copy())}, "valid": {}}}
    params = jax.jit(method.init)(jax.random.key(0), val)
    reward = jax.jit(method.retrieval_reward)
    q, k = jax.jit(method.retrieval_embeddings)(params, val)
    x = val["view1"]["x"]
    only = jax.jit(lambda p, mask: method.module(p).model(x, None, mask))
    np.testing.assert_allclose(q[0], only(params, jnp.asarray([True, False])), atol=1e-5)
    np.testing.assert_allclose(k[0], only(params, jnp.asarray([False, True])), atol=1e-5)
    np.testing.assert_allclose(reward(params, val), np_retrieval(q, k), atol=1e-6)
    # Hand-built perfect case: both modalities carry the same scene and share their encoder, so
    # z(m0 alone) == z(m1 alone) == z(tuple without m0) for every scene.
    perfect = copy.deepcopy(params)
    perfect["model"]["encoders"][1] = params["model"]["encoders"][0]
    perfect["model"]["converters"][1] = params["model"]["converters"][0]
    same = {"view1": {"x": {"m0": jnp.asarray(v), "m1": jnp.asarray(v)}, "valid": {}}}
    assert float(reward(perfect, same)) == 1.0


# ------------------------------------------------------------------------------------------------
# One round of sample optimisation.


def test_sample_optimization_round_keeps_best_candidate(setup):
    method, params, batch = setup
    tx = optax.adam(1e-2)
    cfg = SearchConfig(num_candidates=3)
    so = SampleOptimizer(method, tx, cfg)
    opt_state, search = so.init(params)
    batches = jax.tree.map(lambda a: jnp.stack([a, a[::-1]]), batch)  # 2 inner steps
    val = make_batch(b=16, seed=9)
    new_params, new_opt, new_search, info = so.round(
        params, opt_state, search, batches, val, jax.random.key(8), 0
    )
    rewards = np.asarray(info["rewards"])
    assert rewards.shape == (3,) and info["losses"].shape == (3, 2)
    assert np.all(np.asarray(info["beta"]) == np.float32(0.3))  # round 0 searches alpha only
    assert len(set(np.asarray(info["log_alpha"])[:, 0].tolist())) == 3
    np.testing.assert_allclose(
        jax.jit(method.retrieval_reward)(new_params, val), rewards.max(), atol=1e-6
    )
    assert int(new_opt[0].count) == 2
    # The search mean moved by one Adam step on the explicit score-function gradient.
    g = score_function_gradient(search.mu.log_alpha, info["log_alpha"], rewards, cfg.log_alpha_std)
    expected = search.mu.log_alpha + cfg.log_alpha_lr * g / (jnp.abs(g) + 1e-8)
    np.testing.assert_allclose(new_search.mu.log_alpha, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(new_search.mu.beta, search.mu.beta)
    # Round 2 is an alpha round again: same compiled function, no retrace.
    so.round(new_params, new_opt, new_search, batches, val, jax.random.key(9), 2)
    assert so._round._cache_size() == 1


# ------------------------------------------------------------------------------------------------
# Plain tuple InfoNCE (alpha = 0), the stop-gradient positive, the own-disturbed diagnostic.


def test_alpha_zero_removes_blocks_and_plain_is_infonce(setup):
    method, params, batch = setup
    rng = jax.random.key(11)
    za, zp, zn = jax.jit(method.tuple_embeddings)(params, batch, rng)
    loss = jax.jit(
        lambda w: estimators.tuple_infonce_loss(
            za, zp, zn, negative_log_weights=w, temperature=TAU, normalize=False
        )
    )
    one_off = jnp.asarray([-jnp.inf, jnp.log(2.0)])
    np.testing.assert_allclose(loss(one_off), np_tuple_infonce(za, zp, zn, (0, 2), TAU), rtol=1e-5)
    plain = jnp.full((2,), -jnp.inf)
    np.testing.assert_allclose(loss(plain), np_tuple_infonce(za, zp, zn, (0, 0), TAU), rtol=1e-5)
    # alpha = (0, 0) is InfoNCE over the positives only (an independent estimator).
    np.testing.assert_allclose(
        loss(plain),
        estimators.infonce_from_scores_loss(jnp.asarray(za) @ jnp.asarray(zp).T / TAU),
        rtol=1e-5,
    )
    # Finite gradients with alpha = 0 (no inf - inf): to the embeddings and to the weights.
    g = jax.grad(
        lambda a, w: estimators.tuple_infonce_loss(a, zp, zn, negative_log_weights=w), (0, 1)
    )(za, one_off)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in g)
    assert float(g[1][0]) == 0.0 and float(g[1][1]) > 0.0
    # The config accepts alpha = 0 and the method's loss is then the plain one.
    m0 = TupleInfoNCE(model_config(), TupleInfoNCEConfig(beta=0.3, alpha=(0.0, 0.0)))
    assert np.all(np.isneginf(m0.default_log_alpha))
    l0, metrics = jax.jit(m0.loss)(params, batch, rng)
    np.testing.assert_allclose(l0, np_tuple_infonce(za, zp, zn, (0, 0), TAU), rtol=1e-5)
    assert float(metrics["alpha_m0"]) == 0.0
    with pytest.raises(ValueError, match="alpha must be finite and >= 0"):
        TupleInfoNCEConfig(alpha=(-1.0, 1.0))


def test_stop_gradient_positive_option(setup):
    _, params, batch = setup
    sg = TupleInfoNCE(model_config(), TupleInfoNCEConfig(beta=0.3, stop_gradient_positive=True))
    full = TupleInfoNCE(model_config(), TupleInfoNCEConfig(beta=0.3, stop_gradient_positive=False))
    assert TupleInfoNCEConfig().stop_gradient_positive  # the public code's key-model positive
    rng = jax.random.key(12)
    za, zp, zn = jax.jit(full.tuple_embeddings)(params, batch, rng)

    def held(p):  # gradient only through the anchors: positives and negatives are constants
        a, _, _ = full.tuple_embeddings(p, batch, rng)
        return estimators.tuple_infonce_loss(
            a, zp, zn, negative_log_weights=jnp.zeros(2), temperature=TAU
        )

    loss_fn = lambda m: jax.jit(jax.value_and_grad(lambda p: m.loss(p, batch, rng)[0]))
    (l_sg, g_sg), (l_full, g_full) = loss_fn(sg)(params), loss_fn(full)(params)
    g_held = jax.jit(jax.grad(held))(params)
    np.testing.assert_allclose(l_sg, l_full, rtol=1e-6)  # same value, different gradient
    for a, b in zip(jax.tree.leaves(g_sg), jax.tree.leaves(g_held), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(g_sg), jax.tree.leaves(g_full), strict=True)
    )
    assert diff > 1e-4


def test_own_disturbed_tuple_diagnostic(setup):
    method, params, batch = setup
    rng = jax.random.key(13)
    _, metrics = jax.jit(method.loss)(params, batch, rng)
    za, zp, zn = (
        np.asarray(a, np.float64) for a in jax.jit(method.tuple_embeddings)(params, batch, rng)
    )
    for k, name in enumerate(NAMES):
        own = [za[i] @ zn[k, i] for i in range(B)]
        pos = [za[i] @ zp[i] for i in range(B)]
        np.testing.assert_allclose(metrics[f"own_neg_logit_{name}"], np.mean(own) / TAU, rtol=1e-5)
        beats = np.mean([o >= p for o, p in zip(own, pos, strict=True)])
        np.testing.assert_allclose(metrics[f"own_neg_beats_pos_{name}"], beats)


# ------------------------------------------------------------------------------------------------
# The official beta reward.


def test_noisy_retrieval_and_official_beta_reward():
    cfg = TupleInfoNCEConfig(noise_scales=(1.0, 0.0))
    method = TupleInfoNCE(model_config(dims=(4, 4)), cfg)
    rng = np.random.default_rng(2)
    v = rng.normal(size=(16, 4)).astype(np.float32)
    w = (v @ rng.normal(size=(4, 4)) + 0.3 * rng.normal(size=(16, 4))).astype(np.float32)
    val = {"view1": {"x": {"m0": jnp.asarray(v), "m1": jnp.asarray(w)}, "valid": {}}}
    params = jax.jit(method.init)(jax.random.key(0), val)
    fused = jax.jit(lambda p, x, mask: method.module(p).model(x, None, mask))
    model = lambda p, x, mask: fused(p, x, jnp.asarray(mask))
    # Without noise: z(m0 alone) retrieves z(m1 alone) (only m0 is augmented), as a NumPy loop.
    q = model(params, val["view1"]["x"], [True, False])
    k = model(params, val["view1"]["x"], [False, True])
    acc0 = jax.jit(method.noisy_retrieval_accuracy)(params, val, 0.0, jax.random.key(1))
    np.testing.assert_allclose(acc0, np_retrieval(q[None], k[None]), atol=1e-6)
    # With noise: the same loop on inputs noised by hand with the method's draw for m0.
    std = 0.7
    eps = jax.random.normal(jax.random.split(jax.random.key(1), 2)[0], v.shape)
    qn = model(params, {"m0": v + std * eps, "m1": w}, [True, False])
    acc = jax.jit(method.noisy_retrieval_accuracy)(params, val, std, jax.random.key(1))
    np.testing.assert_allclose(acc, np_retrieval(qn[None], k[None]), atol=1e-6)
    # The reward: 1 - ((beta - peak) / scale)^2 + 1 - mean accuracy, peak = best level.
    levels = (0.1, 0.5, 1.0)
    reward, accs = jax.jit(
        lambda p, b: official_beta_reward(method, p, val, b, jax.random.key(5), levels, 0.98)
    )(params, 0.3)
    keys = jax.random.split(jax.random.key(5), 3)
    noisy_acc = jax.jit(method.noisy_retrieval_accuracy)
    expect_accs = [
        float(noisy_acc(params, val, lv, kk)) for lv, kk in zip(levels, keys, strict=True)
    ]
    np.testing.assert_allclose(accs, expect_accs, atol=1e-6)
    peak = levels[int(np.argmax(expect_accs))]
    np.testing.assert_allclose(
        reward, 2.0 - ((0.3 - peak) / 0.98) ** 2 - np.mean(expect_accs), rtol=1e-5
    )


def test_beta_round_uses_the_official_reward(setup):
    method, params, batch = setup
    cfg = SearchConfig(num_candidates=2, beta_levels=(0.1, 0.2))
    so = SampleOptimizer(method, optax.adam(1e-2), cfg)
    opt_state, search = so.init(params)
    batches = jax.tree.map(lambda a: a[None], batch)
    val = make_batch(b=16, seed=9)
    new_params, _, _, info = so.round(params, opt_state, search, batches, val, jax.random.key(3), 1)
    assert np.all(np.asarray(info["log_alpha"]) == 0.0)  # round 1 searches beta only
    r_eval = jax.random.fold_in(jax.random.key(3), 7)
    best = int(info["best"])
    expect, _ = jax.jit(
        lambda p, b: official_beta_reward(
            method, p, val, b, r_eval, cfg.beta_levels, cfg.beta_peak_scale
        )
    )(new_params, info["beta"][best])
    np.testing.assert_allclose(info["rewards"][best], expect, rtol=1e-5)
    assert float(np.max(info["rewards"])) > 1.0  # the peak term is near 1, retrieval is < 1


def test_shared_noise_law_is_one_map_over_the_batch(setup):
    _, _, batch = setup
    shared = TupleInfoNCE(model_config(), TupleInfoNCEConfig(beta=0.3, noise_law="shared"))
    x_pos, _, _ = jax.jit(shared.key_inputs)(batch, jax.random.key(2))
    for name in NAMES:
        noise = np.asarray(x_pos[name] - batch["view1"]["x"][name])
        np.testing.assert_allclose(noise, np.broadcast_to(noise[:1], noise.shape), atol=1e-6)
        assert np.std(noise[0]) > 0.05  # one nonzero map, the same for every row
    assert shared._noise_shape((8, 16, 16, 3)) == (1, 16, 16, 1)  # NHWC: shared over channels
    with pytest.raises(ValueError, match="noise_law"):
        TupleInfoNCEConfig(noise_law="epoch")
