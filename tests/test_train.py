"""The trainer: learning, AdamW masking, schedule, data parallelism, inner steps, resume."""

from __future__ import annotations

import json
import math
import signal

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm import distributed, estimators, optimizers
from jaxmm import train as train_lib
from jaxmm.config import OptimizerConfig, TrainConfig
from jaxmm.methods import base
from jaxmm.methods.toy import ToyContrastive, _bilinear_nce_club, toy_dataset

BATCH = 16
SMALL = {"hidden": 16, "dim": 8, "proj_dim": 8}


def _batches(n: int, seed: int = 0) -> list[dict]:
    ds = toy_dataset(n * BATCH, seed=seed).batch(BATCH)
    return [ds[i] for i in range(n)]


def _config(**kw) -> TrainConfig:
    opt = kw.pop("optimizer", OptimizerConfig(lr=1e-2, weight_decay=0.0, schedule="constant"))
    return TrainConfig(batch_size=BATCH, progress=False, optimizer=opt, **kw)


def _np(tree):
    """Host copies; PRNG keys as their raw key data (comparable with numpy)."""

    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(jax.device_get(x))

    return jax.tree.map(leaf, tree)


def _critic_and_rest(params):
    """Splits a parameter tree into {path: array} dicts: the toy critic's leaves and the others."""
    named = {
        base.path_names(p): np.asarray(x)
        for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    critic = {k: v for k, v in named.items() if k[0] == "critic"}
    return critic, {k: v for k, v in named.items() if k[0] != "critic"}


def test_toy_loss_decreases_metrics_finite_and_no_retrace():
    method = ToyContrastive(**SMALL)
    traces = []
    loss_fn = method.loss

    def counted_loss(*args, **kwargs):
        traces.append(1)  # runs only while jax traces the step
        return loss_fn(*args, **kwargs)

    method.loss = counted_loss
    batches = _batches(4)
    trainer = train_lib.Trainer(method, _config(steps=40), batches[0])
    state = trainer.init_state()
    losses = []  # the step's "loss" is measured with the parameters before its update
    for step in range(40):
        state, metrics = trainer.train_step(state, trainer.shard(batches[step % 4]))
        losses.append(metrics["loss"])
        if step == 0:
            n_traces = len(traces)
    assert len(traces) == n_traces, "train_step retraced after step 1"
    before, after = np.mean(_np(losses[:4])), np.mean(_np(losses[-4:]))  # same 4 batches
    # Chance level is log(2N - 1) = 3.43; views share most of their signal, so even random
    # encoders start below it. Training must cut the loss substantially.
    assert before < math.log(2 * BATCH - 1) and after < 0.6 * before, (before, after)
    metrics = _np(metrics)
    for name in ("loss", "ntxent", "l2_grads", "l2_params", "l2_updates", "lr"):
        assert np.isfinite(metrics[name]), name
    assert int(state.step) == 40
    np.testing.assert_allclose(metrics["lr"], 1e-2, rtol=1e-6)


def test_adamw_decays_only_matrices():
    cfg = OptimizerConfig(lr=0.1, weight_decay=0.5, schedule="constant")
    method = ToyContrastive(**SMALL)
    params = jax.jit(method.init)(jax.random.key(0), _batches(1)[0])
    tx, _, _ = optimizers.make_optimizers(cfg, total_steps=10)

    @jax.jit
    def apply_zero_grads(params):
        updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
        return jax.tree.map(lambda p, u: p + u, params, updates)

    new = apply_zero_grads(params)
    ndims = set()
    for p, n in zip(jax.tree.leaves(params), jax.tree.leaves(new), strict=True):
        ndims.add(p.ndim)
        # Zero gradient => Adam's step is 0; only decoupled decay p <- p (1 - lr * wd) remains.
        expected = np.asarray(p) * (1 - 0.1 * 0.5) if p.ndim >= 2 else np.asarray(p)
        np.testing.assert_allclose(np.asarray(n), expected, rtol=1e-6)
    assert ndims == {1, 2}  # biases / LayerNorm vectors and kernels both present


def test_warmup_cosine_schedule_matches_closed_form():
    cfg = OptimizerConfig(lr=2.0, warmup_steps=10, end_lr_factor=0.1)
    schedule = optimizers.make_schedule(cfg, total_steps=110)
    for t in (0, 5, 10, 35, 60, 110):
        if t < 10:
            want = 2.0 * t / 10
        else:
            want = 0.2 + (2.0 - 0.2) * 0.5 * (1 + math.cos(math.pi * (t - 10) / 100))
        np.testing.assert_allclose(float(schedule(t)), want, rtol=1e-6)
    with pytest.raises(ValueError, match="warmup_steps"):
        optimizers.make_schedule(cfg, total_steps=10)


def test_data_parallel_step_equals_single_device_step():
    """8 devices x 2 examples == 1 device x 16 examples, contrastive negatives included."""
    batches = _batches(2)
    # eps=1e-3 keeps Adam's first steps (~ g / |g|) from amplifying summation-order noise.
    cfg = _config(
        steps=2,
        inner_steps=1,
        optimizer=OptimizerConfig(
            lr=1e-2, eps=1e-3, weight_decay=1e-2, clip_norm=1.0, schedule="constant"
        ),
    )
    results = []
    for devices in (jax.devices()[:8], jax.devices()[:1]):
        mesh = distributed.make_mesh(devices)
        trainer = train_lib.Trainer(
            ToyContrastive(critic_weight=0.5, **SMALL), cfg, batches[0], mesh=mesh
        )
        state = trainer.init_state()
        for b in batches:
            state, metrics = trainer.train_step(state, trainer.shard(b))
        results.append((_np(state.params), _np(metrics)))
    (p8, m8), (p1, m1) = results
    assert len(jax.devices()) >= 8
    for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for name in ("loss", "ntxent", "nce_club", "inner/loss", "l2_grads"):
        np.testing.assert_allclose(m8[name], m1[name], rtol=1e-5, err_msg=name)


def test_toy_bilinear_nce_club_matches_score_matrix_form():
    rs = np.random.default_rng(0)
    wa, hb = rs.normal(size=(12, 5)).astype(np.float32), rs.normal(size=(12, 5)).astype(np.float32)
    scores = wa @ hb.T
    np.testing.assert_allclose(
        float(_bilinear_nce_club(wa, hb, None)),
        float(estimators.nce_club_upper_bound(scores)),
        rtol=1e-5,
    )


def test_inner_step_moves_only_inner_params_and_main_step_leaves_them():
    batch = _batches(1)[0]
    method = ToyContrastive(critic_weight=1.0, **SMALL)
    params = jax.jit(method.init)(jax.random.key(0), batch)
    # The main loss does depend on the critic, so only the optimizer mask keeps it still.
    grads = jax.jit(jax.grad(lambda p: method.loss(p, batch, jax.random.key(0))[0]))(params)
    critic_grads, _ = _critic_and_rest(grads)
    assert all(np.abs(g).max() > 0 for g in critic_grads.values())

    # inner_steps=0: only the main update runs; the critic must not move, the encoders must.
    trainer = train_lib.Trainer(method, _config(steps=3, inner_steps=0), batch)
    state0 = trainer.init_state()
    c0, r0 = _critic_and_rest(_np(state0.params))
    state, _ = trainer.train_step(state0, trainer.shard(batch))
    c1, r1 = _critic_and_rest(_np(state.params))
    for k in c0:
        np.testing.assert_array_equal(c1[k], c0[k])
    assert any(np.abs(r1[k] - r0[k]).max() > 0 for k in r0)

    # Main lr = 0, inner_steps=1: the main parameters must not move; the critic takes one Adam
    # step whose closed form (bias-corrected first step) is -lr * g / (|g| + eps).
    lr, eps = 0.05, 1e-4
    opt = OptimizerConfig(lr=0.0, inner_lr=lr, eps=eps, weight_decay=0.0, schedule="constant")
    trainer = train_lib.Trainer(method, _config(steps=3, inner_steps=1, optimizer=opt), batch)
    state0 = trainer.init_state()
    p0 = _np(state0.params)
    inner_grads = jax.jit(jax.grad(lambda p: method.inner_loss(p, batch, jax.random.key(0))[0]))(
        state0.params
    )
    g_critic, g_rest = _critic_and_rest(inner_grads)
    assert all(np.abs(g).max() == 0 for g in g_rest.values())  # stop-gradient on the encoders
    c0, r0 = _critic_and_rest(p0)
    state, metrics = trainer.train_step(state0, trainer.shard(batch))
    c1, r1 = _critic_and_rest(_np(state.params))
    for k in r0:
        np.testing.assert_array_equal(r1[k], r0[k])
    for k in c0:
        expected = c0[k] - lr * g_critic[k] / (np.abs(g_critic[k]) + eps)
        np.testing.assert_allclose(c1[k], expected, rtol=1e-4, atol=1e-6)
    assert np.isfinite(float(metrics["inner/loss"]))


class _Interrupt(grain.transforms.MapWithIndex):
    """Sends SIGINT (as Ctrl-C would) while the pipeline produces record `at`."""

    def __init__(self, at: int):
        self.at = at

    def map_with_index(self, index, element):
        if index == self.at:
            signal.raise_signal(signal.SIGINT)
        return element


def _pipeline(interrupt_at: int | None = None):
    ds = toy_dataset(64, seed=1).shuffle(seed=2).repeat()
    if interrupt_at is not None:
        ds = ds.map_with_index(_Interrupt(interrupt_at))
    ds = ds.batch(BATCH)
    # No read-ahead: the interrupt fires exactly while the batch it belongs to is drawn.
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))


def test_ctrl_c_checkpoints_and_resume_is_bitwise_identical(tmp_path):
    steps, stop_at = 8, 4
    opt = OptimizerConfig(lr=1e-2, warmup_steps=2, weight_decay=1e-3)
    method = lambda: ToyContrastive(critic_weight=0.5, **SMALL)
    # Python's default handler, or SIG_IGN when a shell started pytest in the background.
    sigint_before = signal.getsignal(signal.SIGINT)

    straight_iter = _pipeline()
    straight = train_lib.train(
        _config(
            steps=steps,
            ckpt_every=0,
            log_every=2,
            inner_steps=2,
            optimizer=opt,
            workdir=str(tmp_path / "straight"),
        ),
        method(),
        straight_iter,
    )

    cfg = _config(
        steps=steps,
        ckpt_every=100,
        log_every=2,
        inner_steps=2,
        optimizer=opt,
        workdir=str(tmp_path / "resumed"),
    )
    # Ctrl-C while batch `stop_at` is drawn: that step completes, is checkpointed, then we exit.
    with pytest.raises(KeyboardInterrupt, match=f"step {stop_at}"):
        train_lib.train(cfg, method(), _pipeline(interrupt_at=(stop_at - 1) * BATCH))
    assert signal.getsignal(signal.SIGINT) is sigint_before

    with pytest.raises(ValueError, match="already holds checkpoint step 4"):
        train_lib.train(TrainConfig(**{**cfg.__dict__, "resume": False}), method(), _pipeline())

    resumed_iter = _pipeline()  # starts at batch 0; the checkpoint moves it to batch `stop_at`
    resumed = train_lib.train(cfg, method(), resumed_iter)
    assert int(resumed.step) == int(straight.step) == steps
    for a, b in zip(jax.tree.leaves(_np(resumed)), jax.tree.leaves(_np(straight)), strict=True):
        np.testing.assert_array_equal(a, b)  # params, both optimizer states, step, rng
    # Both data streams stand at the same position.
    nxt_a, nxt_b = next(resumed_iter), next(straight_iter)
    jax.tree.map(np.testing.assert_array_equal, nxt_a, nxt_b)

    lines = [
        json.loads(s) for s in (tmp_path / "resumed" / "metrics.jsonl").read_text().split("\n") if s
    ]
    assert [r["step"] for r in lines] == [2, 4, 6, 8]
    assert all(np.isfinite(r["loss"]) and r["examples_per_sec"] > 0 for r in lines)


def test_batch_size_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"batches of 16 examples; train.batch_size=32"):
        train_lib.train(
            TrainConfig(batch_size=32, workdir=str(tmp_path)),
            ToyContrastive(**SMALL),
            iter(_batches(1)),
        )
