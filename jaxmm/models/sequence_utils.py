"""Padding-mask helpers shared by the sequence encoders."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def default_valid(x: jax.Array, valid: jax.Array | None, what: str) -> jax.Array:
    """Checks `valid` against a (B, T, ...) input; None means every step is real."""
    if valid is None:
        return jnp.ones(x.shape[:2], dtype=bool)
    if tuple(valid.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"{what}: valid mask must have shape {tuple(x.shape[:2])}, got {tuple(valid.shape)}"
        )
    return valid.astype(bool)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of (B, T, D) over valid steps; `where`, so padded values never enter (not as 0*x)."""
    total = jnp.sum(jnp.where(mask[..., None], x, 0), axis=1)
    count = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1)
    return (total / count).astype(x.dtype)


def last_valid(x: jax.Array, mask: jax.Array) -> jax.Array:
    """x[b, t_b] with t_b the last True step of mask[b] (step 0 when none is valid)."""
    t = mask.shape[1]
    idx = jnp.where(jnp.any(mask, axis=1), t - 1 - jnp.argmax(mask[:, ::-1], axis=1), 0)
    return jnp.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]
