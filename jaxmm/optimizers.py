"""Optimizers of the trainer: AdamW with decoupled weight decay on the parameters the official
CoMM code decays (`decay_mask`), linear warm-up then cosine decay (`make_schedule`), optional
global-norm clipping, and the separate inner optimizer of methods with an inner objective
(`make_optimizers`, FactorCL's critics)."""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxmm.config import OptimizerConfig
from jaxmm.methods import base

log = logging.getLogger(__name__)


def make_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to `cfg.lr`, then cosine decay to `lr * end_lr_factor` or constant."""
    if cfg.warmup_steps >= total_steps and cfg.schedule == "cosine":
        raise ValueError(
            f"optimizer.warmup_steps ({cfg.warmup_steps}) must be < train.steps ({total_steps})"
        )
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            decay_steps=total_steps,
            end_value=cfg.lr * cfg.end_lr_factor,
        )
    if cfg.schedule == "constant":
        if cfg.warmup_steps == 0:
            return optax.constant_schedule(cfg.lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps), optax.constant_schedule(cfg.lr)],
            [cfg.warmup_steps],
        )
    raise ValueError(f"optimizer.schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")


def _decayed(path: tuple[str, ...], p: Any) -> bool:
    if jnp.ndim(p) < 2:
        return False
    return not any("bias" in name or name.startswith(("ln", "bn", "norm")) for name in path)


def decay_mask(params: Any) -> Any:
    """True for parameters that get weight decay, the official CoMM rule (utils.py,
    `set_weight_decay_per_param`): not if ndim < 2 or named bias / ln / bn. Here: no decay for
    ndim < 2 or a path component containing "bias" or naming a norm layer
    (starting with ln / bn / norm), e.g. the feature tokenizer's (F, D) bias."""
    return jax.tree_util.tree_map_with_path(lambda k, p: _decayed(base.path_names(k), p), params)


def _adamw(cfg: OptimizerConfig, lr: float | optax.Schedule) -> optax.GradientTransformation:
    parts = []
    if cfg.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(
        optax.adamw(
            lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=decay_mask
        )
    )
    return optax.chain(*parts)


def make_optimizers(
    cfg: OptimizerConfig, total_steps: int, labels: Any = None
) -> tuple[optax.GradientTransformation, optax.GradientTransformation | None, optax.Schedule]:
    """The main optimizer, the inner one (None without `labels`) and the main lr schedule.

    Args:
      cfg: optimizer config.
      total_steps: length of the run (for the cosine schedule).
      labels: a pytree like the params with leaves `base.INNER` / `base.MAIN`, for methods with an
        inner objective. The main optimizer then zeroes inner updates and vice versa; clipping
        applies to each optimizer's own parameters.

    Returns:
      (main transformation, inner transformation or None, schedule).
    """
    schedule = make_schedule(cfg, total_steps)
    main = _adamw(cfg, schedule)
    if labels is None:
        return main, None, schedule
    # The critic tracks a moving target (the encoders), so it keeps a constant learning rate.
    inner = _adamw(cfg, cfg.lr if cfg.inner_lr is None else cfg.inner_lr)
    zero = optax.set_to_zero()
    main = optax.multi_transform({base.MAIN: main, base.INNER: zero}, labels)
    inner = optax.multi_transform({base.INNER: inner, base.MAIN: zero}, labels)
    return main, inner, schedule
