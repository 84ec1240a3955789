"""CoMM (Dufumier et al. 2025, Sec. 3.3): Eq. 7 against NumPy loops, masking, training, sharding."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jaxmm.methods.base import STATE_UPDATES
from jaxmm.methods.comm import CoMM, CoMMConfig, comm_loss_from_projections, comm_masks
from jaxmm.methods.registry import get_method
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

TAU = 0.1


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

    def view():  # Gaussian-noise augmentation of a shared input (CoMM App. B.2, tabular data)
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
        "labels": {"label": jnp.asarray(rng.integers(0, 3, b), jnp.int32)},
    }


@functools.cache
def setup(n: int):
    """(method, batch, params) shared by the tests: one jit-compiled init per modality count."""
    method = CoMM(model_config(n))
    batch = make_batch(n)
    return method, batch, jax.jit(method.init)(jax.random.key(0), batch)


def projections(method: CoMM, params, view, head: bool = False) -> dict:
    # The loss runs the BatchNorm head in train mode (per-mask batch statistics).
    fn = functools.partial(method.comm_projections, head=head, batch_stats=head)
    return jax.jit(fn)(params, view)


def np_ntxent(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """SimCLR NT-Xent with explicit loops: 2N anchors, positive = other view, 2N - 2 negatives."""
    z = np.concatenate([a, b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        denom = sum(np.exp(z[i] @ z[k] / tau) for k in range(n2) if k != i)
        total += -np.log(np.exp(z[i] @ z[pos] / tau) / denom)
    return total / n2


def np_comm_eq7(z1: np.ndarray, z2: np.ndarray, w: np.ndarray, tau: float) -> tuple:
    terms = np.array(
        [
            0.5 * (np_ntxent(z1[m], z2[-1], tau) + np_ntxent(z2[m], z1[-1], tau))
            for m in range(len(z1))
        ]
    )
    return float(np.sum(w * terms) / np.sum(w)), terms


def test_masks_are_single_modalities_then_full():
    np.testing.assert_array_equal(
        comm_masks(3),
        [[True, False, False], [False, True, False], [False, False, True], [True, True, True]],
    )
    with pytest.raises(ValueError, match="at least 2 modalities"):
        comm_masks(1)


@pytest.mark.parametrize("weights", [None, (0.5, 2.0, 1.0, 3.0)])
def test_eq7_matches_numpy_loops(weights):
    rng = np.random.default_rng(1)
    z1 = rng.normal(size=(4, 5, 3)).astype(np.float32)  # M = n + 1 = 4 masks, B = 5, D = 3
    z2 = rng.normal(size=(4, 5, 3)).astype(np.float32)
    loss, terms = jax.jit(
        lambda a, b: comm_loss_from_projections(a, b, weights=weights, temperature=TAU)
    )(z1, z2)
    w = np.ones(4) if weights is None else np.asarray(weights)
    ref_loss, ref_terms = np_comm_eq7(z1, z2, w, TAU)
    np.testing.assert_allclose(terms, ref_terms, rtol=2e-5)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-5)


def test_eq7_rejects_bad_shapes():
    z = jnp.zeros((3, 4, 2))
    with pytest.raises(ValueError, match=r"\(M, B, D\)"):
        comm_loss_from_projections(z, z[:, :3])
    with pytest.raises(ValueError, match="weights"):
        comm_loss_from_projections(z, z, weights=(1.0, 1.0))


def test_method_loss_is_eq7_on_its_own_projections():
    _, batch, params = setup(2)
    method = CoMM(model_config(2), CoMMConfig(weights=(1.0, 2.0, 0.5)))
    loss, metrics = jax.jit(method.loss)(params, batch, jax.random.key(1))
    p1 = projections(method, params, batch["view1"], head=True)
    p2 = projections(method, params, batch["view2"], head=True)
    z1 = np.stack([np.asarray(p1[k]) for k in ("m0", "m1", "full")])
    z2 = np.stack([np.asarray(p2[k]) for k in ("m0", "m1", "full")])
    ref_loss, ref_terms = np_comm_eq7(z1, z2, np.array([1.0, 2.0, 0.5]), TAU)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)
    for name, ref in zip(("m0", "m1", "full"), ref_terms, strict=True):
        np.testing.assert_allclose(metrics[f"loss_{name}"], ref, rtol=1e-4)
        np.testing.assert_allclose(
            metrics[f"mi_{name}"], np.log(2 * 8 - 1) - ref, rtol=1e-4, atol=1e-5
        )


def test_masked_pass_ignores_the_other_modalities():
    method, batch, params = setup(3)
    view = batch["view1"]
    perturbed = {"x": dict(view["x"], m1=view["x"]["m1"] + 5.0, m2=-view["x"]["m2"]), "valid": {}}
    z, zp = projections(method, params, view), projections(method, params, perturbed)
    np.testing.assert_array_equal(z["m0"], zp["m0"])  # only-m0 pass: exactly independent
    assert not np.allclose(z["m1"], zp["m1"])
    assert not np.allclose(z["full"], zp["full"])
    np.testing.assert_allclose(
        jax.jit(method.embed)(params, batch), z["full"], rtol=1e-5, atol=1e-6
    )


def test_ablations_match_their_definitions():
    full, batch, params = setup(2)
    cfg, rng = full.model_config, jax.random.key(1)
    # No init for the variants: parameters from another method of the same model config fit.
    loss_of = lambda method: jax.jit(method.loss)(params, batch, rng)
    _, m_all = loss_of(full)
    uni, _ = loss_of(CoMM(cfg, CoMMConfig(terms="unimodal_only")))
    np.testing.assert_allclose(uni, 0.5 * (m_all["loss_m0"] + m_all["loss_m1"]), rtol=1e-5)
    fused, m_fused = loss_of(CoMM(cfg, CoMMConfig(terms="fused_only")))
    assert set(m_fused) == {"comm_loss", "loss_full", "mi_full"}
    np.testing.assert_allclose(fused, m_all["loss_full"], rtol=1e-5)
    # "SimCLR on the fused input" is the same objective with the same parameters.
    simclr = get_method("simclr", {"temperature": TAU}, cfg)
    np.testing.assert_allclose(loss_of(simclr)[0], fused, rtol=1e-5)


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="at least 2 modalities"):
        CoMM(model_config(1))
    with pytest.raises(ValueError, match="needs 3 values"):
        CoMM(model_config(2), CoMMConfig(weights=(1.0, 1.0)))
    with pytest.raises(ValueError, match="weights"):
        CoMMConfig(weights=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="temperature"):
        CoMMConfig(temperature=0.0)
    cfg = CoMMConfig(temperature=0.2, terms="unimodal_only", weights=(1.0, 2.0, 3.0))
    assert CoMMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="Unknown config key"):
        CoMMConfig.from_dict({"temp": 0.1})


def test_three_modalities_train_without_retracing():
    method, batch, params = setup(3)
    tx = optax.adam(3e-3)
    opt_state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, opt_state, rng):
        traces.append(1)
        vg = jax.value_and_grad(method.loss_and_state, has_aux=True)
        (loss, metrics), grads = vg(params, batch, rng)
        stats = metrics.pop(STATE_UPDATES)  # BatchNorm running averages, as the trainer does
        updates, opt_state = tx.update(grads, opt_state, params)
        params = method.apply_state_updates(optax.apply_updates(params, updates), stats)
        return params, opt_state, loss, metrics

    losses = []
    for i in range(25):
        params, opt_state, loss, metrics = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
        assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
    assert len(traces) == 1
    assert set(metrics) >= {f"loss_{k}" for k in ("m0", "m1", "m2", "full")}
    assert losses[-1] < losses[0] - 0.1, losses


def test_data_parallel_loss_and_grads_match_single_device():
    n_dev = 8
    assert jax.device_count() >= n_dev, "conftest provides 8 CPU devices"
    method, _, params = setup(2)
    batch = make_batch(2, b=16, seed=3)
    rng = jax.random.key(5)
    mesh = jax.make_mesh((n_dev,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

    def per_device(params, batch):
        def objective(p):
            loss, metrics = method.loss_and_state(p, batch, rng, axis_name="data")
            return jax.lax.pmean(loss, "data"), jax.lax.pmean(metrics, "data")

        return jax.value_and_grad(objective, has_aux=True)(params)

    sharded = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")), out_specs=P())
    )
    (loss_dp, metrics_dp), grads_dp = sharded(params, batch)
    (loss_1, metrics_1), grads_1 = jax.jit(
        jax.value_and_grad(lambda p: method.loss_and_state(p, batch, rng), has_aux=True)
    )(params)
    np.testing.assert_allclose(loss_dp, loss_1, rtol=1e-5)
    # SyncBatchNorm: global batch statistics, so the running averages match one device's too.
    stats_dp, stats_1 = metrics_dp.pop(STATE_UPDATES), metrics_1.pop(STATE_UPDATES)
    for s_dp, s_1 in zip(jax.tree.leaves(stats_dp), jax.tree.leaves(stats_1), strict=True):
        np.testing.assert_allclose(s_dp, s_1, rtol=1e-5, atol=1e-6)
    for k in metrics_1:
        np.testing.assert_allclose(metrics_dp[k], metrics_1[k], rtol=1e-5, atol=1e-6, err_msg=k)
    flat_dp, flat_1 = jax.tree.leaves(grads_dp), jax.tree.leaves(grads_1)
    assert len(flat_dp) == len(flat_1)
    for g_dp, g_1 in zip(flat_dp, flat_1, strict=True):
        # atol: the BatchNorm moments are summed in another order (pmean of shard moments).
        np.testing.assert_allclose(g_dp, g_1, rtol=1e-4, atol=1e-5)


def test_registry_rebuilds_comm_from_dicts():
    cfg = model_config(2)
    method = get_method("comm", dataclasses.asdict(CoMMConfig(temperature=0.2)), cfg.to_dict())
    assert isinstance(method, CoMM) and method.config.temperature == 0.2
    with pytest.raises(ValueError, match="unknown method"):
        get_method("comm2", None, cfg)
