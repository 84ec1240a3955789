"""Checks of the estimators' inputs (static, at trace time) and `checked` (runtime, checkify)."""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _check_float(name: str, x) -> None:
    if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
        raise ValueError(f"{name} must have a floating dtype, got {jnp.asarray(x).dtype}")


def _check_scores(scores, name: str = "scores", min_batch: int = 2) -> jax.Array:
    scores = jnp.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"{name} must be a square (B, B) matrix, got shape {scores.shape}")
    if scores.shape[0] < min_batch:
        raise ValueError(f"{name} needs B >= {min_batch}, got shape {scores.shape}")
    _check_float(name, scores)
    return scores


def _check_pair(name_a: str, a, name_b: str, b) -> tuple[jax.Array, jax.Array]:
    a, b = jnp.asarray(a), jnp.asarray(b)
    for name, x in ((name_a, a), (name_b, b)):
        if x.ndim != 2:
            raise ValueError(f"{name} must have shape (B, D), got shape {x.shape}")
        _check_float(name, x)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (B, D), got {a.shape} and {b.shape}"
        )
    return a, b


def _check_temperature(temperature) -> None:
    if isinstance(temperature, jax.core.Tracer):
        return  # no value at trace time: see the module docstring and `checked`
    value = np.asarray(temperature)
    if value.ndim == 0 and not value > 0:
        raise ValueError(f"temperature must be > 0, got {value.item()}")


def _check_batch(name: str, b: int, axis_name) -> None:
    """Contrastive estimates need >= 2 samples of the global batch (a negative per anchor)."""
    total = b * (jax.lax.axis_size(axis_name) if axis_name is not None else 1)
    if total < 2:
        raise ValueError(f"{name} needs a batch of B >= 2 samples (negatives), got B = {total}")


def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def checked(fn):
    """``fn`` (an estimator or loss of this module) with runtime checks of its inputs and result.

    Every floating array argument must be finite and ``temperature`` > 0 (even traced); the
    result must be finite. Outside a trace the checks run under ``checkify.checkify`` and raise
    ``checkify.JaxRuntimeError`` naming the function and the argument. Inside a trace (a jitted
    caller), the checks are plain ``checkify.check``s: functionalise the caller with
    ``checkify.checkify`` to get the error out. The static checks (shapes, ``B >= 2``) still
    raise ``ValueError`` first.

    Example:
      >>> checked(infonce_loss)(za, zb, temperature=t)  # "infonce_loss: za has 3 non-finite..."
    """
    sig = inspect.signature(fn)
    name = fn.__name__

    def run_checks(dynamic, static):
        args = {**static, **dynamic}
        for arg, value in dynamic.items():
            x = jnp.asarray(value)
            if arg == "temperature":
                checkify.check(jnp.all(x > 0), f"{name}: temperature must be > 0, got {{t}}", t=x)
            elif jnp.issubdtype(x.dtype, jnp.inexact):
                bad = jnp.sum(~jnp.isfinite(x))
                checkify.check(
                    bad == 0,
                    f"{name}: {arg} has {{n}} non-finite value(s) (shape {x.shape})",
                    n=bad,
                )
        out = fn(**args)
        checkify.check(jnp.all(jnp.isfinite(out)), f"{name}: non-finite result of finite inputs")
        return out

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        dynamic = {k: v for k, v in bound.arguments.items() if _is_array(v)}
        static = {k: v for k, v in bound.arguments.items() if k not in dynamic}
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(dynamic)):
            return run_checks(dynamic, static)
        # Under jit, so that the estimator sees tracers (eager checkify passes concrete values).
        err, out = checkify.checkify(jax.jit(functools.partial(run_checks, static=static)))(dynamic)
        err.throw()
        return out

    return wrapper
