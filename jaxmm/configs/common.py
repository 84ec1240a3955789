"""Pieces shared by the experiment families: loop settings and the smoke variant's knobs."""

from __future__ import annotations

from jaxmm.config import OptimizerConfig, TrainConfig

# The variant every family has: a tiny model, a tiny dataset and a few steps (seconds on CPU).
SMOKE = "smoke"


def train(name: str, *, batch_size: int, seed: int = 0, inner_steps: int = 1) -> TrainConfig:
    """The full-run loop: checkpoints every 1000 steps into workdirs/<name>."""
    return TrainConfig(
        steps=1000,
        batch_size=batch_size,
        seed=seed,
        log_every=50,
        ckpt_every=1000,
        keep=3,
        workdir=f"workdirs/{name}",
        inner_steps=inner_steps,
    )


def smoke_train(name: str, *, inner_steps: int = 1) -> TrainConfig:
    """A few steps at batch 8 (divisible by 1 and 8 simulated devices), checkpoint every 2."""
    return TrainConfig(
        steps=4,
        batch_size=8,
        log_every=1,
        ckpt_every=2,
        keep=2,
        workdir=f"workdirs/{name}_smoke",
        progress=False,
        inner_steps=inner_steps,
    )


def adamw(lr: float, weight_decay: float) -> OptimizerConfig:
    """AdamW at a constant rate (no schedule is reported for these runs)."""
    return OptimizerConfig(lr=lr, weight_decay=weight_decay, schedule="constant")


def check_variant(family: str, variant: str | None, variants: tuple[str | None, ...]) -> None:
    if variant not in variants:
        raise ValueError(f"{family}: unknown variant {variant!r}; variants: {list(variants)}")
