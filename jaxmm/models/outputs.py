"""Containers passed between encoders, latent converters and the fusion block."""

from __future__ import annotations

from typing import NamedTuple

import jax

# What an encoder's `features` look like; latent converters check it (CoMM App. B.3 pairs one
# converter with each kind).
VECTOR = "vector"  # (B, D)
SEQUENCE = "sequence"  # (B, T, D) with a validity mask (B, T)
MAP = "map"  # (B, h, w, C) CNN feature map, final pooling dropped
KINDS = (VECTOR, SEQUENCE, MAP)


class EncoderOutput(NamedTuple):
    """One modality after its encoder.

    Attributes:
      features: (B, D) | (B, T, D) | (B, h, w, C), as given by the encoder's `out_kind`.
      mask: bool (B, T) for sequences (True at valid steps), None otherwise.
      pooled: (B, D_m) the encoder's own vector summary (last valid GRU state, masked mean, global
        average pool, ...): what unimodal baselines (Cross, CMC, FactorCL) contrast.
    """

    features: jax.Array
    mask: jax.Array | None
    pooled: jax.Array


class Tokens(NamedTuple):
    """Converted token sequences of all modalities, in the model's modality order.

    Attributes:
      tokens: per modality (B, T_m, D), D = fusion width.
      masks: per modality bool (B, T_m), True at real tokens.
    """

    tokens: tuple[jax.Array, ...]
    masks: tuple[jax.Array, ...]
