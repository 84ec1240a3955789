"""Shared pieces of the NNX methods (CoMM and its baselines): batch access and the init /
merge plumbing of the functional method contract (`jaxmm.methods.base`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.methods.base import Batch, Params
from jaxmm.models import ModelConfig, MultimodalModel, ProjectionHead, build_model


def check_temperature(name: str, temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"{name}.temperature must be > 0, got {temperature}")


def get_view(batch: Batch, key: str) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """(x, valid) of `batch[key]`; `valid` defaults to {} (no sequence padding)."""
    if key not in batch:
        raise ValueError(f"batch has no view {key!r}; got keys {sorted(batch)}")
    view = batch[key]
    if "x" not in view:
        raise ValueError(f"batch[{key!r}] needs an 'x' dict of modalities, got keys {sorted(view)}")
    return view["x"], view.get("valid") or {}


def concat_views(*views: tuple[dict, dict]) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Stacks several (x, valid) views along the batch axis (one encoder pass for all of them)."""
    xs = {m: jnp.concatenate([v[0][m] for v in views], axis=0) for m in views[0][0]}
    valid = {m: jnp.concatenate([v[1][m] for v in views], axis=0) for m in views[0][1]}
    return xs, valid


def dropout_rngs(rng: jax.Array) -> nnx.Rngs:
    return nnx.Rngs(dropout=rng)


class MethodModule(nnx.Module):
    """The backbone `MultimodalModel` plus what a method adds on top of it.

    Attributes:
      model: the multimodal backbone (encoders, converters, fusion, fused projection head).
      heads: per-modality projection heads {name: ProjectionHead} on `encode_unimodal` vectors
        (Cross, Cross+Self, CMC); absent for fused methods.
      logit_scale: CLIP's learnable log inverse temperature (Cross only).
    """

    def __init__(
        self,
        model: MultimodalModel,
        *,
        heads: dict[str, nnx.Module] | None = None,
        logit_scale: float | None = None,
    ):
        self.model = model
        if heads is not None:
            self.heads = nnx.Dict(heads)
        if logit_scale is not None:
            self.logit_scale = nnx.Param(jnp.asarray(logit_scale, jnp.float32))


def unimodal_heads(
    model: MultimodalModel, hidden_dims: tuple[int, ...], out_dim: int, rngs: nnx.Rngs
) -> dict[str, ProjectionHead]:
    """One projection head per modality on its pooled encoder output (`encode_unimodal`)."""
    dims = model.unimodal_dims
    return {
        n: ProjectionHead(dims[n], hidden_dims, out_dim, rngs=rngs) for n in model.modality_names
    }


def view_index(view: Any) -> int:
    """N of a batch key "viewN"; 1 for anything else (a method then reads view1)."""
    return int(view[4:]) if isinstance(view, str) and re.fullmatch(r"view\d+", view) else 1


def views_named(config: Any) -> int:
    """The highest N of the "viewN" values of `config`'s fields named `*view` (1 if none)."""
    return max([1] + [view_index(getattr(config, f.name)) for f in dataclasses.fields(config)
                      if f.name.endswith("view")])  # fmt: skip


class NNXMethod:
    """init/merge plumbing: `init` builds a `MethodModule`, keeps its graphdef, returns its Params.

    Subclasses implement `_build_module(model, rngs)` and the contract's `loss` / `embed`, and
    declare what they read, so that nothing outside the method tests its name
    (`jaxmm.validation`, `jaxmm.own_data` and the configs read these):

      name, config_class   the registry name and the method's config dataclass (`@register`)
      min_modalities       fewest modalities the method models
      views_read(config)   the highest "viewN" its loss reads (the pipeline must make as many)
      labels_read(config)  the `batch["labels"]` keys its loss reads
      check_modalities(config, names)  raises ValueError when a dataset's modalities do not fit
      own_data_config(width)  its config on a user's .npz (`<method>_arrays`, README "Your own
                           data"); own_data_views: the training views that config makes
    """

    name = "method"
    config_class: type = type(None)
    min_modalities = 1
    own_data_views = 2

    @classmethod
    def views_read(cls, config: Any) -> int:
        """Default: the views its config names in `*view` fields (view1 when none)."""
        return views_named(config)

    @classmethod
    def labels_read(cls, config: Any) -> tuple[str, ...]:
        """Default: none (self-supervised)."""
        return ()

    @classmethod
    def check_modalities(cls, config: Any, names: Sequence[str]) -> None:
        """Default: at least `min_modalities`."""
        if len(names) < cls.min_modalities:
            raise ValueError(
                f"method {cls.name!r} needs at least {cls.min_modalities} modalities, got "
                f"{len(names)}: {list(names)}"
            )

    @classmethod
    def own_data_config(cls, width: int) -> Any:
        """Default: the config class's defaults."""
        return cls.config_class()

    def __init__(self, model_config: ModelConfig | Mapping[str, Any]):
        if not isinstance(model_config, ModelConfig):
            model_config = ModelConfig.from_dict(model_config)
        n = len(model_config.modalities)
        if n < self.min_modalities:
            raise ValueError(
                f"{self.name} needs at least {self.min_modalities} modalities, the model "
                f"config has {n}: {[m.name for m in model_config.modalities]}"
            )
        self.model_config = model_config
        self.modality_names = tuple(m.name for m in model_config.modalities)
        self._graphdef = None

    def _build_module(self, model: MultimodalModel, rngs: nnx.Rngs) -> MethodModule:
        return MethodModule(model)

    def init(self, rng: jax.Array, example_batch: Batch) -> Params:
        """Builds the parameters (traceable: the trainer calls it under jit / eval_shape)."""
        x, _ = get_view(example_batch, "view1")
        missing = [m for m in self.modality_names if m not in x]
        if missing:
            raise ValueError(
                f"{self.name}: example batch view1 lacks modalities {missing}; got {sorted(x)}"
            )
        rngs = nnx.Rngs(params=rng)
        module = self._build_module(build_model(self.model_config, rngs=rngs), rngs)
        # The whole state: Params and the BatchNorm head's running averages (nnx.BatchStat).
        self._graphdef, params = nnx.split(module)
        return params

    def apply_state_updates(self, params: Params, updates: Any) -> Params:
        """`params` with the non-trainable values in `updates` (an nnx.State) written in."""
        module = self.module(params)
        nnx.update(module, updates)
        return nnx.state(module)

    def module(self, params: Params) -> MethodModule:
        """The `MethodModule` holding `params` (`params` from `init` or a restored checkpoint)."""
        if self._graphdef is None:
            # The graph only depends on the configs: build it abstractly (no parameter allocation).
            def build():
                rngs = nnx.Rngs(params=0)
                return self._build_module(build_model(self.model_config, rngs=rngs), rngs)

            self._graphdef = nnx.split(nnx.eval_shape(build))[0]
        return nnx.merge(self._graphdef, params)
