"""Cross-device contrastive losses: shard_map value and gradients == single-device global batch.

Runs on the 8 simulated CPU devices set up by tests/conftest.py. Each device holds 2 examples of a
16-example global batch, so most negatives live on other devices.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmm import estimators as E

N_DEV, B_LOCAL, D_IN, D = 8, 2, 5, 3
B = N_DEV * B_LOCAL
AXIS = "data"

pytestmark = pytest.mark.skipif(
    jax.device_count() < N_DEV, reason=f"needs {N_DEV} devices (tests/conftest.py sets XLA_FLAGS)"
)


@pytest.fixture(scope="module")
def mesh():
    return jax.make_mesh((N_DEV,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def _rand(seed, *shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


# Each case: (loss of (params, *data, axis_name), params, data arrays, data partition specs).
# params are replicated; a tiny linear map W turns raw inputs into embeddings inside the loss so
# the test covers gradients w.r.t. replicated parameters as well as w.r.t. the sharded inputs.
def _cases():
    w = _rand(0, D_IN, D)
    xa, xb = _rand(1, B, D_IN), _rand(2, B, D_IN)
    feats = _rand(3, B, 2, D_IN)
    labels = jnp.asarray(np.arange(B) % 3, jnp.int32)  # 5-6 samples per label, 2 views
    negs = _rand(4, 2, B, D_IN)

    def infonce(p, a, b, axis_name=None):
        return E.infonce_loss(a @ p["w"], b @ p["w"], temperature=0.3, axis_name=axis_name)

    def clip(p, a, b, axis_name=None):
        return E.clip_loss(a @ p["w"], b @ p["w"], logit_scale=p["s"], axis_name=axis_name)

    def ntxent(p, a, b, axis_name=None):
        return E.ntxent_loss(a @ p["w"], b @ p["w"], temperature=0.5, axis_name=axis_name)

    def supcon(p, f, y, axis_name=None):
        return E.supcon_loss(f @ p["w"], y, temperature=0.3, axis_name=axis_name)

    def tuple_nce(p, a, b, n, axis_name=None):
        return E.tuple_infonce_loss(
            a @ p["w"],
            b @ p["w"],
            n @ p["w"],
            negative_log_weights=p["logw"],
            temperature=0.2,
            axis_name=axis_name,
        )

    return {
        "infonce": (infonce, {"w": w}, (xa, xb), (P(AXIS), P(AXIS))),
        "clip": (clip, {"w": w, "s": jnp.log(7.0)}, (xa, xb), (P(AXIS), P(AXIS))),
        "ntxent": (ntxent, {"w": w}, (xa, xb), (P(AXIS), P(AXIS))),
        "supcon": (supcon, {"w": w}, (feats, labels), (P(AXIS), P(AXIS))),
        "tuple_infonce": (
            tuple_nce,
            {"w": w, "logw": jnp.log(jnp.array([1.0, 3.0]))},
            (xa, xb, negs),
            (P(AXIS), P(AXIS), P(None, AXIS)),
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_sharded_value_and_grads_equal_global_batch(mesh, name):
    loss, params, data, specs = CASES[name]
    float_args = tuple(i for i, x in enumerate(data) if jnp.issubdtype(x.dtype, jnp.floating))

    def grads(fn, p, *xs):
        # d/d params and d/d every float input, in one value_and_grad.
        def wrt(p, *fx):
            full = list(xs)
            for i, v in zip(float_args, fx, strict=True):
                full[i] = v
            return fn(p, *full)

        fx = tuple(xs[i] for i in float_args)
        return jax.value_and_grad(wrt, argnums=tuple(range(1 + len(fx))))(p, *fx)

    ref_val, ref_grads = jax.jit(lambda p, *xs: grads(loss, p, *xs))(params, *data)

    def per_device(p, *xs):
        return grads(lambda p, *xs: loss(p, *xs, axis_name=AXIS), p, *xs)

    grad_specs = (P(),) + tuple(specs[i] for i in float_args)
    sharded = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), *specs), out_specs=(P(), grad_specs))
    )
    val, got_grads = sharded(params, *data)
    np.testing.assert_allclose(val, ref_val, rtol=1e-5, atol=1e-6)
    flat_got, tree_got = jax.tree.flatten(got_grads)
    flat_ref, tree_ref = jax.tree.flatten(ref_grads)
    assert tree_got == tree_ref
    for g, r in zip(flat_got, flat_ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
        assert float(jnp.max(jnp.abs(r))) > 1e-4  # the gradient is not trivially zero


def test_local_block_only_sees_its_rows(mesh):
    # Without axis_name each device would contrast against its own 2 examples only: a genuinely
    # different (smaller-batch) loss. Guards against the sharded test passing for a trivial reason.
    loss, params, data, specs = CASES["ntxent"]
    local_only = jax.jit(
        jax.shard_map(
            lambda p, *xs: jax.lax.pmean(loss(p, *xs), AXIS),
            mesh=mesh,
            in_specs=(P(), *specs),
            out_specs=P(),
        )
    )(params, *data)
    assert abs(float(local_only) - float(loss(params, *data))) > 1e-2


def test_explicit_mesh_rejects_batch_sharded_matmul_auto_mesh_accepts():
    # Trap 1: jax.make_mesh defaults to Explicit axes, where the (B, B) similarity of two
    # batch-sharded arrays would be sharded twice over the same axis -> a sharding type error.
    x = _rand(5, B, D)
    explicit = jax.make_mesh((N_DEV,), (AXIS,))
    if explicit.axis_types[0] != jax.sharding.AxisType.Explicit:
        pytest.skip("this jax's make_mesh does not default to Explicit axes")
    xe = jax.device_put(x, NamedSharding(explicit, P(AXIS)))
    try:
        jax.jit(lambda a, b: a @ b.T)(xe, xe)
    except Exception as err:  # the public alias of the class varies across jax versions
        assert type(err).__name__ == "ShardingTypeError", repr(err)
    else:
        pytest.skip("this jax does not raise on batch-sharded matmuls under Explicit axes")
    auto = jax.make_mesh((N_DEV,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    xa = jax.device_put(x, NamedSharding(auto, P(AXIS)))
    np.testing.assert_allclose(jax.jit(lambda a, b: a @ b.T)(xa, xa), x @ x.T, rtol=1e-5)


def test_pmean_of_grad_is_n_times_too_big_grad_of_pmean_is_right(mesh):
    # Trap 2: inside shard_map (check_vma on) jax.grad w.r.t. a replicated parameter already sums
    # the per-device cotangents, so pmean(grad(local mean)) = N x the global-mean gradient.
    w, x = _rand(6, D_IN, D), _rand(7, B, D_IN)

    def local_loss(w, x):
        return jnp.mean((x @ w) ** 2)

    def per_device(w, x):
        wrong = jax.lax.pmean(jax.grad(local_loss)(w, x), AXIS)
        right = jax.grad(lambda w: jax.lax.pmean(local_loss(w, x), AXIS))(w)
        return wrong, right

    wrong, right = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()))
    )(w, x)
    true = jax.grad(local_loss)(w, x)  # global batch on one device
    np.testing.assert_allclose(right, true, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wrong, N_DEV * true, rtol=1e-5, atol=1e-5)
