"""Typed model configs that round-trip through plain dicts / JSON (the checkpoint stores them)
with the project's one serialiser, `jaxmm.config.Serializable`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from jaxmm.config import Serializable

_DTYPES = ("float32", "bfloat16", "float16")
FUSION_KINDS = ("attention", "linear")


def _freeze(value: Any) -> Any:
    """JSON gives lists where configs hold tuples; normalise so that round trips compare equal."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class ModalityConfig(Serializable):
    """One modality: its encoder and its latent converter (CoMM App. B.3)."""

    name: str  # key of the modality in batch["viewN"]["x"]
    encoder: str  # registered encoder name: mlp | gru | transformer | alexnet | resnet18 | ...
    encoder_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # ctor kwargs
    converter: str = "identity"  # identity | patch | feature_tokenizer | one_token
    converter_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"ModalityConfig.name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "encoder_kwargs", _freeze(dict(self.encoder_kwargs)))
        object.__setattr__(self, "converter_kwargs", _freeze(dict(self.converter_kwargs)))


@dataclasses.dataclass(frozen=True)
class FusionConfig(Serializable):
    """CoMM fusion block: the attention fusion Transformer (App. B: 1 layer, 8 heads), or the
    "Concat + Linear" fusion of the Sec. 5 / Table 4 ablation (`kind="linear"`,
    `jaxmm.models.fusion.LinearFusion`; num_layers, num_heads and mlp_ratio are then unused)."""

    width: int  # token / embedding width D
    num_layers: int = 1  # Transformer layers
    num_heads: int = 8  # attention heads; must divide width
    mlp_ratio: float = 4.0  # MLP hidden width / D
    dropout: float = 0.0  # residual-branch dropout rate (linear: on the concatenated slots)
    kind: Literal["attention", "linear"] = "attention"  # fusion module, see the class docstring

    def __post_init__(self):
        if self.kind not in FUSION_KINDS:
            raise ValueError(f"FusionConfig.kind must be one of {FUSION_KINDS}, got {self.kind!r}")
        if self.kind == "attention" and self.width % self.num_heads:
            raise ValueError(
                f"FusionConfig: width {self.width} not divisible by num_heads {self.num_heads}"
            )


@dataclasses.dataclass(frozen=True)
class HeadConfig(Serializable):
    """Projection head on the fused embedding (CoMM: 3-layer MLP, Linear-BatchNorm-ReLU x 2 then
    Linear, as the official code's `_build_mlp`; norm="none" is the earlier no-norm head, kept
    for ablations). CoMM carries the BatchNorm running averages through the trainer and uses
    global (SyncBatchNorm) statistics under data parallelism; the other methods that call the
    model's head normalise with per-device batch statistics and do not write their running
    averages back (they never run the head in eval mode)."""

    hidden_dims: tuple[int, ...] = (512, 512)  # hidden widths; () = one Linear
    out_dim: int = 256  # projection width
    norm: str = "batch"  # "batch" (official CoMM) | "layer" | "none"
    activation: str = "relu"  # "relu" | "gelu" | "quick_gelu" | "leaky_relu"

    def __post_init__(self):
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        if self.norm not in ("batch", "layer", "none"):
            raise ValueError(
                f"HeadConfig.norm must be 'batch', 'layer' or 'none', got {self.norm!r}"
            )


@dataclasses.dataclass(frozen=True)
class ModelConfig(Serializable):
    """A whole CoMM-style model; a new dataset needs one of these, not new model code."""

    modalities: tuple[ModalityConfig, ...]  # in fusion order
    fusion: FusionConfig
    head: HeadConfig = HeadConfig()
    dtype: str = "float32"  # activation dtype; params are always float32

    def __post_init__(self):
        mods = tuple(self.modalities)
        if not mods:
            raise ValueError("ModelConfig.modalities is empty")
        names = [m.name for m in mods]
        if len(set(names)) != len(names):
            raise ValueError(f"ModelConfig: duplicate modality names {names}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {_DTYPES}, got {self.dtype!r}")
        object.__setattr__(self, "modalities", mods)
