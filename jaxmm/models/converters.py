"""Latent converters (CoMM Sec. 3.2, App. B.3): encoder output -> token sequence (B, T, D) plus a
token mask (B, T), D = fusion width.

  Transformer / GRU  -> IdentityConverter (optionally a Linear to the fusion width)
  CNN feature map    -> PatchEmbedding (ViT patch projection + fixed 2-D sine-cosine positions)
  MLP vector         -> FeatureTokenizer (FT-Transformer, Gorishniy et al. 2021) or OneToken
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.outputs import MAP, SEQUENCE, VECTOR, EncoderOutput
from jaxmm.models.posemb import sincos_2d


def _check_kind(conv: object, out: EncoderOutput, kind: str, shape: str) -> None:
    ndim = {VECTOR: 2, SEQUENCE: 3, MAP: 4}[kind]
    if out.features.ndim != ndim:
        raise ValueError(
            f"{type(conv).__name__} takes {kind} features {shape}, "
            f"got shape {tuple(out.features.shape)}"
        )


class IdentityConverter(nnx.Module):
    """Sequence encoders already emit tokens; keep them (and their padding mask) as they are,
    with a Linear to the fusion width when the widths differ or `project=True`."""

    accepts = SEQUENCE

    def __init__(
        self,
        in_features: int,
        width: int,
        *,
        project: bool | None = None,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        project = in_features != width if project is None else project
        if not project and in_features != width:
            raise ValueError(
                f"identity converter: encoder width {in_features} != fusion width "
                f"{width}; set project=True"
            )
        self.proj = nnx.Linear(in_features, width, dtype=dtype, rngs=rngs) if project else None

    def __call__(self, out: EncoderOutput) -> tuple[jax.Array, jax.Array]:
        _check_kind(self, out, SEQUENCE, "(B, T, D)")
        x = out.features if self.proj is None else self.proj(out.features)
        return x, out.mask


class PatchEmbedding(nnx.Module):
    """ViT patch embedding (Dosovitskiy et al. 2021, Eq. 1) over a CNN feature map: a p x p,
    stride-p convolution to the fusion width, plus FIXED MAE 2-D sine-cosine positions."""

    accepts = MAP

    def __init__(
        self,
        in_features: int,
        width: int,
        *,
        patch_size: int = 1,
        positional: bool = True,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.width, self.positional, self.dtype = width, positional, dtype
        self.proj = nnx.Conv(
            in_features,
            width,
            (patch_size, patch_size),
            (patch_size, patch_size),
            padding="VALID",
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, out: EncoderOutput) -> tuple[jax.Array, jax.Array]:
        _check_kind(self, out, MAP, "(B, h, w, C)")
        x = self.proj(out.features)
        b, h, w, d = x.shape
        if self.positional:
            x = x + sincos_2d(h, w, d).reshape(h, w, d).astype(x.dtype)[None]
        return x.reshape(b, h * w, d), jnp.ones((b, h * w), dtype=bool)


class FeatureTokenizer(nnx.Module):
    """FT-Transformer feature tokenizer (Gorishniy et al. 2021, Sec. 3.3): token_j = x_j W_j + b_j,
    W_j, b_j in R^D learnable per feature, so a (B, F) vector becomes F tokens (B, F, D)."""

    accepts = VECTOR

    def __init__(self, in_features: int, width: int, *, dtype=None, rngs: nnx.Rngs):
        # N(0, 1), as the official CoMM `FeaturesInputAdapter` (torch.randn); the FT-Transformer
        # reference uses U(-1/sqrt(D), 1/sqrt(D)) instead.
        self.in_features, self.dtype = in_features, dtype
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (in_features, width)))
        self.bias = nnx.Param(jax.random.normal(rngs.params(), (in_features, width)))

    def __call__(self, out: EncoderOutput) -> tuple[jax.Array, jax.Array]:
        _check_kind(self, out, VECTOR, "(B, F)")
        x = out.features
        if x.shape[1] != self.in_features:
            raise ValueError(f"FeatureTokenizer expects {self.in_features} features, got {x.shape}")
        cdt = self.dtype or jnp.float32
        w, b = self.weight[...].astype(cdt), self.bias[...].astype(cdt)
        tokens = x.astype(cdt)[..., None] * w + b
        return tokens, jnp.ones(x.shape, dtype=bool)


class OneToken(nnx.Module):
    """A vector as a 1-length sequence (CoMM App. B.3 for proprioception): Linear + unsqueeze."""

    accepts = VECTOR

    def __init__(self, in_features: int, width: int, *, dtype=None, rngs: nnx.Rngs):
        self.proj = nnx.Linear(in_features, width, dtype=dtype, rngs=rngs)

    def __call__(self, out: EncoderOutput) -> tuple[jax.Array, jax.Array]:
        _check_kind(self, out, VECTOR, "(B, D)")
        x = self.proj(out.features)[:, None, :]
        return x, jnp.ones(x.shape[:2], dtype=bool)
