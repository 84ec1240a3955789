"""Estimators on bad input: B < 2 is a ValueError, `checked` names non-finite inputs and T = 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.sharding import PartitionSpec as P

from jaxmm import distributed
from jaxmm import estimators as E

_ONE = np.ones((1, 1), np.float32)
_Z1 = np.ones((1, 3), np.float32)

_SCORE_FNS = [
    E.infonce_lower_bound,
    E.nce_club_upper_bound,
    E.club_upper_bound,
    E.infonce_from_scores_loss,
    E.dv_lower_bound,
]
_EMBED_FNS = {
    "infonce_loss": lambda a, b, **k: E.infonce_loss(a, b, **k),
    "clip_loss": lambda a, b, **k: E.clip_loss(a, b, temperature=0.1, **k),
    "ntxent_loss": lambda a, b, **k: E.ntxent_loss(a, b, **k),
    "tuple_infonce_loss": lambda a, b, **k: E.tuple_infonce_loss(a, b, **k),
    "supcon_loss": lambda a, b, **k: E.supcon_loss(
        jnp.stack([a, b], axis=1), jnp.zeros(a.shape[0], jnp.int32), **k
    ),
}


@pytest.mark.parametrize("fn", _SCORE_FNS, ids=lambda f: f.__name__)
def test_score_bounds_refuse_a_single_sample(fn):
    with pytest.raises(ValueError, match=r"B >= 2, got shape \(1, 1\)"):
        fn(_ONE)


@pytest.mark.parametrize("name", sorted(_EMBED_FNS))
def test_embedding_losses_refuse_a_single_sample(name):
    with pytest.raises(ValueError, match=f"{name} needs a batch of B >= 2 samples .*B = 1"):
        _EMBED_FNS[name](_Z1, _Z1)


@pytest.mark.parametrize("name", sorted(_EMBED_FNS))
def test_one_sample_per_device_is_fine_when_the_global_batch_is_larger(name):
    """8 devices x 1 example: the global batch of 8 gives the single-device value on all 8."""
    rs = np.random.default_rng(0)
    za, zb = rs.normal(size=(2, 8, 4)).astype(np.float32)
    want = float(_EMBED_FNS[name](za, zb))
    fn = _EMBED_FNS[name]
    for devices, expect_error in ((jax.devices()[:8], False), (jax.devices()[:1], True)):
        mesh = distributed.make_mesh(devices)
        n = len(devices)
        per_device = jax.shard_map(
            lambda a, b: fn(a, b, axis_name="data"),
            mesh=mesh,
            in_specs=(P("data"), P("data")),
            out_specs=P(),
        )
        if expect_error:  # one device holding one example: global B = 1
            with pytest.raises(ValueError, match="B = 1"):
                per_device(za[:n], zb[:n])
        else:
            np.testing.assert_allclose(float(per_device(za, zb)), want, rtol=1e-5)


def test_concrete_zero_temperature_is_a_value_error():
    z = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        E.infonce_loss(z, z, temperature=jnp.float32(0.0))


def test_checked_names_the_non_finite_input():
    rs = np.random.default_rng(1)
    za, zb = rs.normal(size=(2, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(
        float(E.checked(E.infonce_loss)(za, zb)), float(E.infonce_loss(za, zb)), rtol=1e-6
    )
    bad = za.copy()
    bad[2, 1], bad[4, 0] = np.nan, np.inf
    assert np.isnan(float(E.infonce_loss(bad, zb)))  # unchecked: NaN propagates, documented
    with pytest.raises(checkify.JaxRuntimeError, match=r"infonce_loss: za has 2 non-finite"):
        E.checked(E.infonce_loss)(bad, zb)
    scores = np.zeros((6, 6), np.float32)
    scores[0, 0] = np.nan
    with pytest.raises(checkify.JaxRuntimeError, match=r"nce_club_upper_bound: scores has 1 "):
        E.checked(E.nce_club_upper_bound)(scores)


def test_checked_catches_a_traced_zero_temperature_under_the_callers_checkify():
    z = np.eye(4, dtype=np.float32)
    loss = jax.jit(lambda t: E.infonce_loss(z, z, temperature=t))
    assert not np.isfinite(float(loss(0.0)))  # traced T = 0: not visible at trace time
    with pytest.raises(checkify.JaxRuntimeError, match="infonce_loss: temperature must be > 0"):
        E.checked(E.infonce_loss)(z, z, temperature=jnp.float32(0.0))
    guarded = checkify.checkify(jax.jit(lambda t: E.checked(E.infonce_loss)(z, z, temperature=t)))
    err, _ = guarded(jnp.float32(0.0))
    assert "temperature must be > 0" in err.get()
    err, value = guarded(jnp.float32(0.5))
    assert err.get() is None and np.isfinite(float(value))
