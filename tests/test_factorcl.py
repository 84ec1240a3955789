"""FactorCL (Liang et al. 2023): the six terms of Eqs. 94-99 against NumPy loops, conditioning on
the augmented views, the inner / main split of Algorithm 3, data parallelism and training."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxmm import distributed, optimizers
from jaxmm import train as train_lib
from jaxmm.config import OptimizerConfig, TrainConfig
from jaxmm.methods import base
from jaxmm.methods.factorcl import CLUB_TERMS, TERMS, FactorCL, FactorCLConfig
from jaxmm.methods.registry import get_method
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

B, D_IN, WIDTH = 16, 10, 8


def model_config() -> ModelConfig:
    mods = tuple(
        ModalityConfig(
            m, "mlp", {"in_features": D_IN, "hidden_dims": [12], "out_dim": WIDTH}, "one_token"
        )
        for m in ("a", "b")
    )
    return ModelConfig(
        modalities=mods, fusion=FusionConfig(width=8, num_heads=2), head=HeadConfig((8,), 8)
    )


def method(mode: str = "ssl", **kw) -> FactorCL:
    cfg = FactorCLConfig(
        mode=mode, num_classes=2 if mode == "sup" else None, critic_hidden=16, **kw
    )
    return FactorCL(model_config(), cfg)


def synthetic(n: int, seed: int = 0, noise: float = 0.3) -> dict:
    """FactorCL-style data (Sec. 4.1): x1 = [ws, w1] T1, x2 = [ws, w2] T2, y from ws, w1, w2."""
    rs = np.random.default_rng(seed)
    ws, w1, w2 = (rs.normal(size=(n, k)) for k in (4, 3, 3))
    t1, t2 = (rs.normal(size=(7, D_IN)) / math.sqrt(7) for _ in range(2))
    x = {"a": np.concatenate([ws, w1], 1) @ t1, "b": np.concatenate([ws, w2], 1) @ t2}
    view = lambda: {
        "x": {m: (v + noise * rs.normal(size=v.shape)).astype(np.float32) for m, v in x.items()},
        "valid": {},
    }
    y = (ws[:, 0] + w1[:, 0] + w2[:, 0] > 0).astype(np.int32)
    return {
        "view1": {"x": {m: v.astype(np.float32) for m, v in x.items()}, "valid": {}},
        "view2": view(),
        "labels": {"label": y},
    }


def batches(k: int, seed: int = 0) -> list[dict]:
    data = synthetic(k * B, seed)
    return [jax.tree.map(lambda v, i=i: v[i * B : (i + 1) * B], data) for i in range(k)]


# ------------------------------------------------------------------------------------------------
# Independent NumPy computation.


def np_mlp(linears, v: np.ndarray) -> np.ndarray:
    """ReLU MLP from nnx.Linear layers, float64, one explicit layer at a time."""
    h = np.asarray(v, np.float64)
    for k, lin in enumerate(linears):
        h = h @ np.asarray(lin.kernel[...], np.float64) + np.asarray(lin.bias[...], np.float64)
        if k < len(linears) - 1:
            h = np.maximum(h, 0.0)
    return h


def np_scores(critic_linears, a, b, c=None, cy=None) -> np.ndarray:
    """S[i, j] = h([a_i, c_i, b_j, c'_j]) by a double loop over pairs."""
    s = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            left = a[i] if c is None else np.concatenate([a[i], c[i]])
            right = b[j] if cy is None else np.concatenate([b[j], cy[j]])
            s[i, j] = np_mlp(critic_linears, np.concatenate([left, right])[None])[0, 0]
    return s


def np_infonce(s: np.ndarray) -> float:
    n = len(s)
    return math.log(n) + np.mean(
        [s[i, i] - math.log(sum(math.exp(s[i, j]) for j in range(n))) for i in range(n)]
    )


def np_nce_club(s: np.ndarray) -> float:
    n = len(s)
    return (
        np.mean([s[i, i] for i in range(n)])
        - sum(s[i, j] for i in range(n) for j in range(n)) / n**2
    )


def np_terms(m: FactorCL, params, batch) -> dict[str, float]:
    """The six terms of Eqs. 94-96 (SUP) / 97-99 (SSL) from the parameters, in NumPy."""
    mod = m.module(params)
    enc = {n: e.layers for n, e in zip(m.modality_names, mod.model.encoders, strict=True)}
    e1 = lambda view: np_mlp(enc["a"], batch[view]["x"]["a"])
    e2 = lambda view: np_mlp(enc["b"], batch[view]["x"]["b"])
    x1, x2 = e1("view1"), e2("view1")
    head = lambda t, s, e: np_mlp(mod.heads[t][s].layers, e)
    ssl = m.config.mode == "ssl"
    if ssl:
        x1a, x2a = e1("view2"), e2("view2")
    else:
        y = np.eye(2)[batch["labels"]["label"]]
    out = {}
    for term, kind, _ in TERMS:
        critic = mod.club_critics[term] if term in CLUB_TERMS else mod.critics[term]
        if kind in ("nce", "club"):
            s = np_scores(critic.mlp.linears, head(term, "x1", x1), head(term, "x2", x2))
        elif kind == "nce_task1":
            s = np_scores(
                critic.mlp.linears, head(term, "x1", x1), head(term, "x1", x1a) if ssl else y
            )
        elif kind == "nce_task2":
            s = np_scores(
                critic.mlp.linears, head(term, "x2", x2), head(term, "x2", x2a) if ssl else y
            )
        else:  # conditioned on the term's own heads of the AUGMENTED views (SSL) or one-hot y (SUP)
            if ssl:
                c1, c2 = head(term, "x1", x1a), head(term, "x2", x2a)
            else:  # Eqs. 13-14: the anchor's label beside x1; beside x2 too with "both"
                c1, c2 = y, (y if m.config.label_sides == "both" else None)
            s = np_scores(
                critic.base.mlp.linears, head(term, "x1", x1), head(term, "x2", x2), c1, c2
            )
        out[term] = np_nce_club(s) if term in CLUB_TERMS else np_infonce(s)
    return out


@pytest.mark.parametrize("mode,sides", [("ssl", "x1"), ("sup", "x1"), ("sup", "both")])
def test_six_terms_match_numpy_loops(mode, sides):
    m = method(mode, label_sides=sides)
    batch = batches(1)[0]
    params = m.init(jax.random.key(0), batch)
    loss, metrics = jax.jit(m.loss)(params, batch, jax.random.key(1))
    ref = np_terms(m, params, batch)
    for term, _, _ in TERMS:
        np.testing.assert_allclose(
            metrics[f"mi_{term}"], ref[term], rtol=1e-4, atol=1e-5, err_msg=term
        )
    # Eqs. 94-96 / 97-99: each term once, the loss is minus the objective.
    objective = sum(sign * ref[t] for t, _, sign in TERMS)
    np.testing.assert_allclose(loss, -objective, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        metrics["shared_s"], ref["nce_x1x2"] - ref["club_x1x2_cond"], rtol=1e-4, atol=1e-5
    )  # Eq. 8
    # Eq. 100 on the same critics, as the inner step computes it.
    inner, inner_metrics = jax.jit(m.inner_loss)(params, batch, jax.random.key(2))
    np.testing.assert_allclose(-inner, metrics["l_nce"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inner_metrics["l_nce"], metrics["l_nce"], rtol=1e-4, atol=1e-5)


def test_ssl_conditional_terms_use_the_augmented_views():
    """Perturbing only X'2 must move both conditional terms (Eqs. 15-16) and I(X2;X'2), nothing
    else. The official synthetic FactorCLSSL conditions `club_x1x2_cond` on the un-augmented head
    outputs twice, which would leave mi_club_x1x2_cond unchanged here."""
    m = method("ssl")
    batch = batches(1)[0]
    params = m.init(jax.random.key(0), batch)
    loss = jax.jit(m.loss)
    _, before = loss(params, batch, jax.random.key(1))
    moved = jax.tree.map(lambda v: v, batch)
    moved["view2"]["x"]["b"] = batch["view2"]["x"]["b"] + 1.0
    _, after = loss(params, moved, jax.random.key(1))
    for term in ("nce_x1x2_cond", "club_x1x2_cond", "nce_x2y"):
        assert abs(float(after[f"mi_{term}"] - before[f"mi_{term}"])) > 1e-4, term
    for term in ("nce_x1x2", "club_x1x2", "nce_x1y"):
        np.testing.assert_allclose(
            after[f"mi_{term}"], before[f"mi_{term}"], rtol=1e-6, err_msg=term
        )


# ------------------------------------------------------------------------------------------------
# Algorithm 3: the NCE-CLUB critics are trained by L_NCE only.


def _split(tree, m: FactorCL):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    inner = {
        base.path_names(p): np.asarray(x)
        for p, x in leaves
        if m.inner_param_filter(base.path_names(p))
    }
    rest = {
        base.path_names(p): np.asarray(x)
        for p, x in leaves
        if not m.inner_param_filter(base.path_names(p))
    }
    return inner, rest


def test_gradients_reach_heads_but_not_the_club_critics():
    m = method("sup")
    batch = batches(1)[0]
    params = m.init(jax.random.key(0), batch)
    g_main = jax.jit(jax.grad(lambda p: m.loss(p, batch, jax.random.key(1))[0]))(params)
    inner, rest = _split(g_main, m)
    assert {k[1] for k in inner} == set(CLUB_TERMS)
    assert all(np.all(g == 0) for g in inner.values())
    # -NCE-CLUB reaches the heads (and encoders) through the frozen critic.
    for term in CLUB_TERMS:
        assert any(np.abs(g).max() > 0 for k, g in rest.items() if k[:2] == ("heads", term)), term
    g_inner = jax.jit(jax.grad(lambda p: m.inner_loss(p, batch, jax.random.key(1))[0]))(params)
    inner, rest = _split(g_inner, m)
    assert all(np.all(g == 0) for g in rest.values())
    assert all(np.abs(g).max() > 0 for g in inner.values())


def _config(**kw) -> TrainConfig:
    opt = kw.pop("optimizer", OptimizerConfig(lr=3e-3, weight_decay=0.0, schedule="constant"))
    return TrainConfig(batch_size=B, progress=False, optimizer=opt, **kw)


def test_trainer_optimizers_inner_moves_only_club_critics_main_leaves_them():
    """The trainer's two optimizers (`optimizers.make_optimizers`, the method's filter), one step
    each from the gradients of each loss: exactly the split of Algorithm 3 (theta vs phi)."""
    m = method("ssl")
    batch = batches(1)[0]
    params = m.init(jax.random.key(0), batch)
    labels = base.inner_labels(params, m.inner_param_filter)
    tx, inner_tx, _ = optimizers.make_optimizers(
        OptimizerConfig(lr=1e-2, weight_decay=1e-2, schedule="constant"), 10, labels
    )

    def step(opt, loss_fn):
        @jax.jit
        def update(p):
            grads = jax.grad(lambda q: loss_fn(q, batch, jax.random.key(1))[0])(p)
            updates, _ = opt.update(grads, opt.init(p), p)
            return jax.tree.map(lambda a, u: a + u, p, updates)

        return update(params)

    c0, r0 = _split(params, m)
    c1, r1 = _split(step(tx, m.loss), m)  # main step: the NCE-CLUB critics stay
    for k in c0:
        np.testing.assert_array_equal(c1[k], c0[k])
    moved = [k for k in r0 if np.abs(r1[k] - r0[k]).max() > 0]
    assert any(k[0] == "heads" for k in moved) and any(k[0] == "critics" for k in moved)
    assert any(k[:2] == ("model", "encoders") for k in moved)
    c1, r1 = _split(step(inner_tx, m.inner_loss), m)  # inner step: only they move
    for k in r0:
        np.testing.assert_array_equal(r1[k], r0[k])
    assert all(np.abs(c1[k] - c0[k]).max() > 0 for k in c0)


# ------------------------------------------------------------------------------------------------
# Data parallelism, training, representations, configs.


def test_data_parallel_loss_and_grads_equal_single_device():
    m = method("ssl")
    batch = batches(1)[0]
    params = m.init(jax.random.key(0), batch)
    mesh = distributed.make_mesh(jax.devices()[:8])

    def per_device(p, b):
        def obj(q):
            loss, metrics = m.loss(q, b, jax.random.key(1), axis_name="data")
            return jax.lax.pmean(loss, "data"), jax.lax.pmean(metrics, "data")

        return jax.value_and_grad(obj, has_aux=True)(p)

    sharded = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")), out_specs=P())
    )
    (loss8, met8), g8 = sharded(params, batch)
    (loss1, met1), g1 = jax.jit(
        jax.value_and_grad(lambda q: m.loss(q, batch, jax.random.key(1)), has_aux=True)
    )(params)
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5, atol=1e-6)
    for k in met1:
        np.testing.assert_allclose(met8[k], met1[k], rtol=1e-4, atol=1e-5, err_msg=k)
    for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_training_reduces_loss_finite_metrics_no_retrace():
    """FactorCL-SSL through the trainer (inner step k = 1, then the main step) on synthetic data."""
    m = method("ssl")
    traces = []
    loss_fn = m.loss

    def counted(*args, **kwargs):
        traces.append(1)  # runs only while jax traces the step
        return loss_fn(*args, **kwargs)

    m.loss = counted
    data = batches(4, seed=3)
    steps = 40
    trainer = train_lib.Trainer(
        m,
        _config(steps=steps, inner_steps=1),
        data[0],
        mesh=distributed.make_mesh(jax.devices()[:1]),
    )
    state = trainer.init_state()
    losses = []  # each step's loss is measured before its update: same 4 batches at both ends
    for step in range(steps):
        state, metrics = trainer.train_step(state, trainer.shard(data[step % 4]))
        losses.append(metrics["loss"])
        if step == 0:
            n_traces = len(traces)
    assert len(traces) == n_traces, "train_step retraced"
    before, after = np.mean(jax.device_get(losses[:4])), np.mean(jax.device_get(losses[-4:]))
    print(f"FactorCL-SSL loss: first 4 steps {before:.3f}, last 4 steps {after:.3f}")
    assert after < before - 1.0, (before, after)
    metrics = jax.device_get(metrics)
    for name in (
        "loss",
        "objective",
        "l_nce",
        "inner/loss",
        "l2_grads",
        *(f"mi_{t}" for t, _, _ in TERMS),
    ):
        assert np.isfinite(metrics[name]), name
    # InfoNCE terms never exceed their log B ceiling; the trained ones are informative.
    for t in ("nce_x1x2", "nce_x1y", "nce_x2y", "nce_x1x2_cond"):
        assert 0.0 < metrics[f"mi_{t}"] <= math.log(B) + 1e-5, t
    assert int(state.step) == steps


def test_embed_layout_and_ourcl_ablation():
    batch = batches(1)[0]
    m = method("ssl")
    params = m.init(jax.random.key(0), batch)
    parts = m.embed_parts(params, batch)
    assert list(parts) == ["zs1", "zu1", "zs2", "zu2"]
    assert [v.shape[1] for v in parts.values()] == [2 * WIDTH, 3 * WIDTH, 2 * WIDTH, 3 * WIDTH]
    mod = m.module(params)
    h = mod.model.encode_unimodal(batch["view1"]["x"])
    np.testing.assert_allclose(
        parts["zs1"][:, WIDTH:], mod.heads["club_x1x2_cond"]["x1"](h["a"]), rtol=1e-6
    )
    np.testing.assert_allclose(
        parts["zu2"][:, :WIDTH], mod.heads["nce_x2y"]["x2"](h["b"]), rtol=1e-6
    )
    np.testing.assert_allclose(
        m.embed(params, batch), jnp.concatenate(list(parts.values()), axis=1), rtol=1e-6
    )
    # A restored checkpoint meets a method that never ran `init`: the graph comes from configs.
    np.testing.assert_allclose(
        method("ssl").embed(params, batch), m.embed(params, batch), rtol=1e-6
    )
    # OurCL: same objective and parameters, representation = encoder outputs.
    ours = method("ssl", factorized=False)
    p2 = ours.init(jax.random.key(0), batch)
    np.testing.assert_allclose(
        ours.embed(p2, batch), jnp.concatenate([h["a"], h["b"]], 1), rtol=1e-6
    )
    l1, l2 = m.loss(params, batch, jax.random.key(1))[0], ours.loss(p2, batch, jax.random.key(1))[0]
    np.testing.assert_allclose(l1, l2, rtol=1e-6)


def test_registry_and_bad_inputs():
    m = get_method(
        "factorcl", {"mode": "sup", "num_classes": 2, "critic_hidden": 8}, model_config()
    )
    assert isinstance(m, FactorCL) and m.config.mode == "sup"
    with pytest.raises(ValueError, match="num_classes"):
        FactorCLConfig(mode="sup")
    with pytest.raises(ValueError, match="mode"):
        FactorCLConfig(mode="both")
    with pytest.raises(ValueError, match="two distinct"):
        FactorCLConfig(modalities=("a", "a"))
    batch = batches(1)[0]
    bad = dict(batch, labels={"other": batch["labels"]["label"]})
    with pytest.raises(ValueError, match="'label'"):
        m.init(jax.random.key(0), bad)
    ssl = method("ssl")
    with pytest.raises(ValueError, match="view2"):
        ssl.init(jax.random.key(0), {"view1": batch["view1"]})


def test_sup_label_beside_x1_only_cannot_score_label_agreement():
    """Eqs. 13-14 with the anchor's label beside x1 only: S[i, j] = h([a_i, y_i, b_j]), so row i
    depends on y_i alone and no pair's label agreement enters. With labels on both sides (App.
    D.1's wording) S[i, j] = h([a_i, y_i, b_j, y_j]) moves when only the y_j are changed."""
    batch = batches(1)[0]
    one, both = method("sup"), method("sup", label_sides="both")
    crit1 = one.module(one.init(jax.random.key(0), batch)).critics["nce_x1x2_cond"]
    crit2 = both.module(both.init(jax.random.key(0), batch)).critics["nce_x1x2_cond"]
    assert (crit1.c_dim, crit1.c_y_dim, crit2.c_y_dim) == (2, 0, 2)
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(B, WIDTH)), jnp.float32)
    b = jnp.asarray(rng.normal(size=(B, WIDTH)), jnp.float32)
    y = jax.nn.one_hot(jnp.arange(B) % 2, 2)
    s = np.asarray(crit1(a, b, y, jnp.zeros((B, 0))))
    ref = np_scores(crit1.base.mlp.linears, np.asarray(a), np.asarray(b), np.asarray(y))
    np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-5)
    s2 = np.asarray(crit2(a, b, y, y))
    ref2 = np_scores(crit2.base.mlp.linears, *(np.asarray(v) for v in (a, b, y, y)))
    np.testing.assert_allclose(s2, ref2, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(crit2(a, b, y, 1.0 - y)) - s2).max() > 1e-3
