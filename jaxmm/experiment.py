"""One typed config for a whole experiment: `ExperimentConfig`.

An `ExperimentConfig` names everything a run needs — the TFDS dataset and which of its fields are
modalities / labels (`jaxmm.data.inputs.DataConfig`), the backbone (`jaxmm.models.ModelConfig`),
the method and its own config (`MethodConfig`), the optimizer, the training loop and the
multi-process set-up — and nothing else: `launch.train` builds a run from it, checkpoints store it
as JSON (`to_dict`), and a probe rebuilds the same model from the checkpoint directory alone
(`from_dict` + `build_method`).

Where the rest lives: the data side (datasets, iterators, augmentation presets) in
`jaxmm.data.inputs`; the checks before any compute in `jaxmm.validation`; a user's `.npz`
(`resolve_data`) in `jaxmm.own_data`; the registry of named experiments in `jaxmm.configs`.

Overrides use `jaxmm.config.apply_overrides` through `override(cfg, ["optimizer.lr=3e-4", ...])`;
the method's own fields are reached as `method.config.<field>`.

Example:
  >>> from jaxmm import validation
  >>> from jaxmm.configs import get_config
  >>> from jaxmm.data import inputs
  >>> cfg = override(get_config("comm_trifeature", "smoke"), ["train.steps=10"])
  >>> validation.validate(cfg)
  >>> it, example = inputs.build_train_iterator(cfg)
  >>> method = build_method(cfg)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from jaxmm import config as config_lib
from jaxmm.config import DistributedConfig, OptimizerConfig, TrainConfig
from jaxmm.data.inputs import DataConfig
from jaxmm.methods import base
from jaxmm.methods import registry as method_registry
from jaxmm.models import ModelConfig

__all__ = [
    "ExperimentConfig",
    "MethodConfig",
    "build_method",
    "override",
    "resolve_steps",
    "train_config",
]

# ------------------------------------------------------------------------------------------------
# Method.


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """A registered method (`jaxmm.methods.registry.METHODS`) and its own config dataclass."""

    name: str = "comm"  # registry name: comm | cross | cross_self | simclr | supcon | cmc | ...
    config: Any = None  # the method's config dataclass, its dict form, or None (its defaults)

    def __post_init__(self):
        cls = method_registry.method_config_class(self.name)
        cfg = self.config
        if cfg is None:
            cfg = cls()
        elif isinstance(cfg, Mapping):
            cfg = config_lib.from_dict(cls, cfg, _prefix="method.config.")
        elif not isinstance(cfg, cls):
            raise ValueError(
                f"method {self.name!r} takes a {cls.__name__} as method.config, got "
                f"{type(cfg).__name__}"
            )
        object.__setattr__(self, "config", cfg)


def build_method(cfg: ExperimentConfig) -> base.Method:
    """The `Method` of `cfg` (no parameters yet: call `method.init`)."""
    return method_registry.get_method(cfg.method.name, cfg.method.config, cfg.model)


# ------------------------------------------------------------------------------------------------
# The experiment.


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; see the module docstring.

    `optimizer` and `distributed` live at the top level only: `train_config(cfg)` hands them to the
    trainer inside its `TrainConfig` (whose own copies are not part of this config).
    """

    name: str  # experiment name (registry name in jaxmm.configs, plus the variant)
    data: DataConfig
    model: ModelConfig
    method: MethodConfig
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    # If set, `resolve_steps` replaces train.steps by ceil(epochs * N_train / train.batch_size) once
    # the training split's size N_train is known (the papers count epochs, not steps).
    epochs: float | None = None

    def __post_init__(self):
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"ExperimentConfig.epochs must be > 0 or None, got {self.epochs}")
        for field, cls in (
            ("data", DataConfig),
            ("model", ModelConfig),
            ("method", MethodConfig),
            ("optimizer", OptimizerConfig),
            ("train", TrainConfig),
            ("distributed", DistributedConfig),
        ):
            if not isinstance(getattr(self, field), cls):
                raise ValueError(
                    f"ExperimentConfig.{field} must be a {cls.__name__}, got "
                    f"{type(getattr(self, field)).__name__}"
                )
        nested = self.train
        if (nested.optimizer, nested.distributed) != (OptimizerConfig(), DistributedConfig()):
            raise ValueError(
                "ExperimentConfig: set optimizer.* / distributed.* at the top level, not "
                "train.optimizer / train.distributed"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (the checkpoint's config): every field of every nested config,
        walked generically (`jaxmm.config.to_dict`), the method's config included."""
        d = config_lib.to_dict(self)
        del d["train"]["optimizer"], d["train"]["distributed"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentConfig:
        """Inverse of `to_dict`; an unknown or missing key or a wrongly typed value raises one
        ValueError naming it (the method's config is typed by `method.name`)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"ExperimentConfig.from_dict needs a mapping, got {type(d).__name__}")
        train = d.get("train", {})
        if isinstance(train, Mapping) and {"optimizer", "distributed"} & set(train):
            raise ValueError(
                "Unknown config key(s) under 'train': optimizer / distributed are "
                "top-level keys of ExperimentConfig"
            )
        return config_lib.from_dict(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        return cls.from_dict(json.loads(text))


def resolve_steps(cfg: ExperimentConfig, num_train_examples: int) -> ExperimentConfig:
    """`cfg` with train.steps = ceil(epochs * num_train / batch) when `cfg.epochs` is set."""
    if cfg.epochs is None:
        return cfg
    steps = max(1, math.ceil(cfg.epochs * num_train_examples / cfg.train.batch_size))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))


def train_config(cfg: ExperimentConfig) -> TrainConfig:
    """The trainer's `TrainConfig`: `cfg.train` plus the top-level optimizer and distributed."""
    return dataclasses.replace(cfg.train, optimizer=cfg.optimizer, distributed=cfg.distributed)


def override(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """`cfg` with "dotted.key=value" overrides (`jaxmm.config.apply_overrides`).

    Raises:
      ValueError: an unknown key or a value of the wrong type (naming it), including the trainer's
        nested copies `train.optimizer.*` / `train.distributed.*` (use `optimizer.*`).
    """
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.split(".")[:2] in (["train", "optimizer"], ["train", "distributed"]):
            raise ValueError(
                f"Unknown config key {key!r}: set {key[len('train.') :]!r} instead "
                "(optimizer / distributed are top-level)"
            )
    try:
        return config_lib.apply_overrides(cfg, overrides)
    except TypeError as e:  # a dataclass rejecting a value its __post_init__ could not compare
        raise ValueError(f"Bad override in {list(overrides)}: {e}") from e
