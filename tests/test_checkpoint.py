"""Checkpoints: exact round-trip into abstract targets, iterator position, config, errors."""

from __future__ import annotations

import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmm.checkpoint import Checkpointer, CheckpointError, load_config
from jaxmm.config import TrainConfig, apply_overrides, from_dict


def _state():
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.full((3,), 0.5)}
    tx = optax.multi_transform(
        {"main": optax.adamw(1e-2), "inner": optax.set_to_zero()}, {"w": "main", "b": "inner"}
    )
    opt_state = tx.init(params)
    # One real update so the Adam moments and count are non-trivial.
    _, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), opt_state, params)
    return {"step": jnp.int32(7), "params": params, "opt": opt_state, "rng": jax.random.key(3)}


def _iterator():
    ds = grain.MapDataset.source(np.arange(40)).shuffle(seed=5).batch(4)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)).__iter__()


def _leaves_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_restores_types_values_and_data_position(tmp_path):
    state = _state()
    it = _iterator()
    for _ in range(3):
        next(it)
    cfg = apply_overrides(TrainConfig(), ["steps=12", "optimizer.lr=0.5"])
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(7, state, data_iter=it, config=cfg)
    expected_next = [next(it) for _ in range(2)]

    fresh = _iterator()  # a new iterator at position 0; restore moves it
    abstract = jax.eval_shape(_state)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        assert ckpt.latest_step() == 7
        restored = ckpt.restore(abstract, data_iter=fresh)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    assert type(restored["opt"]) is type(state["opt"])  # optax PartitionState, not a dict
    assert jax.dtypes.issubdtype(restored["rng"].dtype, jax.dtypes.prng_key)
    _leaves_equal(restored, state)
    for want in expected_next:
        np.testing.assert_array_equal(next(fresh), want)
    assert from_dict(TrainConfig, load_config(tmp_path / "ckpt")) == cfg


def test_keeps_only_the_last_n(tmp_path):
    state = _state()
    with Checkpointer(tmp_path / "ckpt", max_to_keep=2) as ckpt:
        for step in (1, 2, 3, 4):
            ckpt.save(step, state)
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [3, 4]
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["3", "4"]


def test_missing_directory_is_one_clear_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(CheckpointError, match=f"{missing} does not exist"):
        load_config(missing)
    with pytest.raises(CheckpointError, match=f"{missing} does not exist"):
        Checkpointer(missing, read_only=True)


def test_empty_directory_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=f"No checkpoint found in {tmp_path / 'empty'}"):
        load_config(tmp_path / "empty")
    with Checkpointer(tmp_path / "empty") as ckpt:
        with pytest.raises(CheckpointError, match="No checkpoint found"):
            ckpt.restore(jax.eval_shape(_state))
        with pytest.raises(CheckpointError, match=r"No checkpoint for step 3 .*steps: \[\]"):
            ckpt.restore(jax.eval_shape(_state), step=3)


def test_corrupt_checkpoint_is_one_clear_error(tmp_path):
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(5, _state(), config=TrainConfig())
    # Damage every array file of the saved state (as a truncated copy or a full disk would).
    state_dir = tmp_path / "ckpt" / "5" / "state"
    damaged = 0
    for root, _, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\x00garbage")
            damaged += 1
    assert damaged > 0
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        with pytest.raises(
            CheckpointError, match=f"Could not restore checkpoint {tmp_path}/ckpt/5"
        ):
            ckpt.restore(jax.eval_shape(_state))


def test_restore_into_mismatched_target_is_one_clear_error(tmp_path):
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(1, _state())
    wrong = jax.eval_shape(lambda: {**_state(), "extra": jnp.zeros(2)})
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        with pytest.raises(CheckpointError, match=f"{tmp_path}/ckpt/1"):
            ckpt.restore(wrong)
