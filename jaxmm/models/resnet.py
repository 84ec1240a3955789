"""ResNet-18 image encoder (He et al. 2016), CoMM's Vision&Touch image encoder (App. B.1).

Normalisation: GroupNorm (Wu & He 2018) instead of BatchNorm. BatchNorm's running statistics are
mutable state that a pure `(params, batch, rng)` contrastive step would have to thread through
and synchronise across devices, and its per-device batch statistics leak information between
the samples that the contrastive loss compares (the reason MoCo shuffles BN). GroupNorm is
per-example, so the encoder is a pure function of (params, image)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.layers import check_rank
from jaxmm.models.outputs import MAP, VECTOR, EncoderOutput


def _norm(channels: int, norm: str, groups: int, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
    g = 1 if norm == "layer" else min(groups, channels)
    if channels % g:
        raise ValueError(f"GroupNorm: {channels} channels not divisible into {g} groups")
    return nnx.GroupNorm(channels, num_groups=g, dtype=dtype, rngs=rngs)


class BasicBlock(nnx.Module):
    """conv3x3(stride)-norm-relu-conv3x3-norm + shortcut (1x1 conv + norm when shape changes)."""

    def __init__(
        self, cin: int, cout: int, stride: int, *, norm: str, groups: int, dtype, rngs: nnx.Rngs
    ):
        conv = dict(use_bias=False, dtype=dtype, rngs=rngs)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), (stride, stride), padding=[(1, 1)] * 2, **conv)
        self.norm1 = _norm(cout, norm, groups, dtype, rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=[(1, 1)] * 2, **conv)
        self.norm2 = _norm(cout, norm, groups, dtype, rngs)
        needs_proj = stride != 1 or cin != cout
        self.proj = (
            nnx.Conv(cin, cout, (1, 1), (stride, stride), padding="VALID", **conv)
            if needs_proj
            else None
        )
        self.proj_norm = _norm(cout, norm, groups, dtype, rngs) if needs_proj else None

    def __call__(self, x):
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        shortcut = x if self.proj is None else self.proj_norm(self.proj(x))
        return jax.nn.relu(y + shortcut)


class ResNet18(nnx.Module):
    """ResNet-18: stem, 4 stages of 2 basic blocks (width w, 2w, 4w, 8w; strides 1, 2, 2, 2).

    Args:
      in_channels: image channels (NHWC input).
      width: channels of the first stage (64 for the standard network).
      stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no pool).
      norm: "group" (GroupNorm, `groups` groups) or "layer" (GroupNorm with one group).
      pool: True -> pooled vector; False -> feature map (B, h, w, 8w) for patch embedding.
      out_dim: if set, a Linear after global average pooling.
      dtype: compute dtype.
    """

    takes_sequence = False

    def __init__(
        self,
        in_channels: int = 3,
        *,
        width: int = 64,
        stem: str = "imagenet",
        norm: str = "group",
        groups: int = 32,
        pool: bool = True,
        out_dim: int | None = None,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if norm not in ("group", "layer"):
            raise ValueError(f"norm must be 'group' or 'layer', got {norm!r}")
        self.in_channels, self.stem_kind, self.pool, self.dtype = in_channels, stem, pool, dtype
        k, s = (7, 2) if stem == "imagenet" else (3, 1)
        self.stem = nnx.Conv(
            in_channels,
            width,
            (k, k),
            (s, s),
            padding=[(k // 2, k // 2)] * 2,
            use_bias=False,
            dtype=dtype,
            rngs=rngs,
        )
        self.stem_norm = _norm(width, norm, groups, dtype, rngs)
        blocks, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            for j in range(2):
                blocks.append(
                    BasicBlock(
                        cin,
                        cout,
                        stride if j == 0 else 1,
                        norm=norm,
                        groups=groups,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
                cin = cout
        self.blocks = nnx.List(blocks)
        self.out = None if out_dim is None else nnx.Linear(cin, out_dim, dtype=dtype, rngs=rngs)
        self.pooled_features = cin if out_dim is None else int(out_dim)
        self.out_kind = VECTOR if pool else MAP
        self.out_features = self.pooled_features if pool else cin

    def __call__(self, x, valid=None, *, deterministic=True, rngs=None) -> EncoderOutput:
        check_rank(x, 4, "ResNet18", f"(B, H, W, {self.in_channels})")
        h = jax.nn.relu(self.stem_norm(self.stem(x.astype(self.dtype or jnp.float32))))
        if self.stem_kind == "imagenet":
            h = nnx.max_pool(h, (3, 3), (2, 2), [(1, 1), (1, 1)])
        for block in self.blocks:
            h = block(h)
        pooled = jnp.mean(h, axis=(1, 2))
        if self.out is not None:
            pooled = self.out(pooled)
        return EncoderOutput(pooled if self.pool else h, None, pooled)
