"""`MultimodalModel` (encoders -> latent converters -> fusion -> head) and `build_model`.

Functional use (the trainer's form): split once, merge inside a pure function.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> cfg = ModelConfig(
  ...     modalities=(ModalityConfig("tab", "mlp", {"in_features": 5, "hidden_dims": [10],
  ...                                               "out_dim": 10}, "feature_tokenizer"),
  ...                 ModalityConfig("ts", "gru", {"in_features": 12, "hidden": 30})),
  ...     fusion=FusionConfig(width=40), head=HeadConfig((64,), 32))
  >>> model = build_model(cfg, rngs=nnx.Rngs(0))
  >>> graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  >>> def embed(params, x, valid, key):
  ...     m = nnx.merge(graphdef, params, rest)
  ...     return m(x, valid, deterministic=False, rngs=nnx.Rngs(dropout=key))
  >>> x = {"tab": jnp.ones((4, 5)), "ts": jnp.ones((4, 24, 12))}
  >>> jax.jit(embed)(params, x, {"ts": jnp.ones((4, 24), bool)}, jax.random.key(0)).shape
  (4, 40)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmm.models.alexnet import AlexNet
from jaxmm.models.causal_conv import CausalConvEncoder
from jaxmm.models.config import FusionConfig, HeadConfig, ModalityConfig, ModelConfig
from jaxmm.models.converters import FeatureTokenizer, IdentityConverter, OneToken, PatchEmbedding
from jaxmm.models.fusion import FusionTransformer, LinearFusion
from jaxmm.models.gru import GRUEncoder
from jaxmm.models.heads import ProjectionHead
from jaxmm.models.mlp import MLPEncoder
from jaxmm.models.outputs import EncoderOutput, Tokens
from jaxmm.models.resnet import ResNet18
from jaxmm.models.transformer import TransformerEncoder

__all__ = [
    "ENCODERS",
    "CONVERTERS",
    "register_encoder",
    "register_converter",
    "build_model",
    "MultimodalModel",
    "FusionConfig",
    "HeadConfig",
    "ModalityConfig",
    "ModelConfig",
]

ENCODERS: dict[str, Callable[..., nnx.Module]] = {
    "mlp": MLPEncoder,
    "gru": GRUEncoder,
    "transformer": TransformerEncoder,
    "causal_conv": CausalConvEncoder,
    "alexnet": AlexNet,
    "resnet18": ResNet18,
}
CONVERTERS: dict[str, Callable[..., nnx.Module]] = {
    "identity": IdentityConverter,
    "patch": PatchEmbedding,
    "feature_tokenizer": FeatureTokenizer,
    "one_token": OneToken,
}


def register_encoder(name: str, ctor: Callable[..., nnx.Module]) -> None:
    """Adds an encoder: ctor(**encoder_kwargs, dtype=, rngs=) -> module with `out_kind`,
    `out_features`, `pooled_features`, `takes_sequence` and
    `__call__(x, valid, *, deterministic, rngs) -> EncoderOutput`."""
    ENCODERS[name] = ctor


def register_converter(name: str, ctor: Callable[..., nnx.Module]) -> None:
    """Adds a converter: ctor(in_features, width, **converter_kwargs, dtype=, rngs=) -> module with
    `accepts` (an encoder kind) and `__call__(EncoderOutput) -> (tokens, mask)`."""
    CONVERTERS[name] = ctor


def _lookup(registry: Mapping[str, Callable], kind: str, name: str, modality: str) -> Callable:
    if name not in registry:
        raise ValueError(
            f"modality {modality!r}: unknown {kind} {name!r}; registered: {sorted(registry)}"
        )
    return registry[name]


def _construct(ctor: Callable, what: str, *args, **kwargs) -> nnx.Module:
    try:
        return ctor(*args, **kwargs)
    except TypeError as e:  # wrong / missing kwargs in a config
        raise ValueError(f"{what}: {e}") from e


class MultimodalModel(nnx.Module):
    """Per-modality encoders and latent converters, the CoMM fusion block and a projection head.

    Built from a `ModelConfig` (see `build_model`). Outputs (fused, pooled, head) are float32
    whatever `cfg.dtype` is. The fusion block is `FusionTransformer` (cfg.fusion.kind
    "attention", CoMM) or `LinearFusion` ("linear", the Table 4 ablation); `encode` is the same
    for both.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dtype = None if cfg.dtype == "float32" else jnp.dtype(cfg.dtype)
        self.cfg = cfg
        self._names = tuple(m.name for m in cfg.modalities)
        encoders, converters = [], []
        for m in cfg.modalities:
            enc = _construct(
                _lookup(ENCODERS, "encoder", m.encoder, m.name),
                f"modality {m.name!r}: encoder {m.encoder!r} kwargs",
                **m.encoder_kwargs,
                dtype=dtype,
                rngs=rngs,
            )
            conv_ctor = _lookup(CONVERTERS, "converter", m.converter, m.name)
            conv = _construct(
                conv_ctor,
                f"modality {m.name!r}: converter {m.converter!r} kwargs",
                enc.out_features,
                cfg.fusion.width,
                **m.converter_kwargs,
                dtype=dtype,
                rngs=rngs,
            )
            if conv.accepts != enc.out_kind:
                raise ValueError(
                    f"modality {m.name!r}: converter {m.converter!r} takes "
                    f"{conv.accepts} features but encoder {m.encoder!r} gives "
                    f"{enc.out_kind}"
                )
            encoders.append(enc)
            converters.append(conv)
        self.encoders = nnx.List(encoders)
        self.converters = nnx.List(converters)
        f = cfg.fusion
        if f.kind == "linear":  # CoMM Sec. 5 / Table 4 ablation
            self.fusion = LinearFusion(
                f.width, len(self._names), dropout=f.dropout, dtype=dtype, rngs=rngs
            )
        else:
            self.fusion = FusionTransformer(
                f.width,
                num_layers=f.num_layers,
                num_heads=f.num_heads,
                mlp_ratio=f.mlp_ratio,
                dropout=f.dropout,
                dtype=dtype,
                rngs=rngs,
            )
        h = cfg.head
        self.projection = ProjectionHead(
            f.width,
            h.hidden_dims,
            h.out_dim,
            norm=h.norm,
            activation=h.activation,
            dtype=dtype,
            rngs=rngs,
        )

    @property
    def modality_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def unimodal_dims(self) -> dict[str, int]:
        """Width of each modality's pooled embedding (`encode_unimodal`)."""
        return {n: e.pooled_features for n, e in zip(self._names, self.encoders, strict=True)}

    def _run_encoders(self, x, valid, deterministic, rngs) -> list[EncoderOutput]:
        valid = {} if valid is None else valid
        for name in self._names:
            if name not in x:
                raise ValueError(
                    f"missing modality {name!r} in inputs (got {sorted(x)}); "
                    f"expected {list(self._names)}"
                )
        outs = []
        for name, enc in zip(self._names, self.encoders, strict=True):
            v = valid.get(name)
            if v is not None and not enc.takes_sequence:
                raise ValueError(f"modality {name!r} has no time axis but a valid mask was given")
            outs.append(enc(x[name], v, deterministic=deterministic, rngs=rngs))
        return outs

    def encode(
        self,
        x: Mapping[str, jax.Array],
        valid: Mapping[str, jax.Array] | None = None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Tokens:
        """Encoders + latent converters -> Tokens((B, T_m, D) per modality, masks (B, T_m))."""
        outs = self._run_encoders(x, valid, deterministic, rngs)
        pairs = [conv(o) for conv, o in zip(self.converters, outs, strict=True)]
        return Tokens(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def fuse(
        self,
        tokens: Tokens,
        modality_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """Fused embedding (B, D): the [CLS] output (attention) or the Concat + Linear output
        (linear); modality_mask bool (n,) or (B, n), True = present."""
        return self.fusion(
            tokens.tokens, tokens.masks, modality_mask, deterministic=deterministic, rngs=rngs
        )

    def __call__(
        self,
        x,
        valid=None,
        modality_mask=None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """fuse(encode(x, valid), modality_mask) -> (B, D)."""
        tokens = self.encode(x, valid, deterministic=deterministic, rngs=rngs)
        return self.fuse(tokens, modality_mask, deterministic=deterministic, rngs=rngs)

    def encode_unimodal(
        self, x, valid=None, *, deterministic: bool = True, rngs: nnx.Rngs | None = None
    ) -> dict[str, jax.Array]:
        """Each encoder's pooled embedding {name: (B, D_m)} (float32), for unimodal baselines."""
        outs = self._run_encoders(x, valid, deterministic, rngs)
        return {n: o.pooled.astype(jnp.float32) for n, o in zip(self._names, outs, strict=True)}

    def fuse_present(
        self,
        tokens: Tokens,
        present: Sequence[bool],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """`fuse` under a mask known at trace time (True = present): the attention fusion runs on
        the present modalities' tokens only (the official CoMM passes drop the masked ones; same
        function, shorter sequence); the linear fusion keeps its fixed slots (`fuse`)."""
        present = tuple(bool(p) for p in present)
        if len(present) != len(self._names):
            raise ValueError(f"present needs {len(self._names)} flags, got {len(present)}")
        if isinstance(self.fusion, LinearFusion) or not any(present):
            return self.fuse(tokens, np.asarray(present), deterministic=deterministic, rngs=rngs)
        keep = [i for i, p in enumerate(present) if p]
        return self.fusion(
            [tokens.tokens[i] for i in keep],
            [tokens.masks[i] for i in keep],
            deterministic=deterministic,
            rngs=rngs,
        )

    def head(self, z: jax.Array, *, train: bool = True, axis_name: str | None = None) -> jax.Array:
        """Projection head (..., B, D) -> (..., B, out_dim) float32.

        With the default BatchNorm head (`HeadConfig.norm="batch"`) each leading index is
        normalised over its own B rows with batch statistics (`train=True`, global over
        `axis_name` inside shard_map) or with the running averages (`train=False`, torch eval
        mode); see `jaxmm.models.heads.BatchNorm1d`.
        """
        return self.projection(z, train=train, axis_name=axis_name)


def build_model(cfg: ModelConfig | Mapping, *, rngs: nnx.Rngs) -> MultimodalModel:
    """Builds a `MultimodalModel` from a `ModelConfig` (or its dict form)."""
    if not isinstance(cfg, ModelConfig):
        cfg = ModelConfig.from_dict(cfg)
    return MultimodalModel(cfg, rngs=rngs)
