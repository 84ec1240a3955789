"""5-layer causal 1-D convolution network for force/torque series (Lee et al. 2020, used by
CoMM App. B.1 for Vision&Touch)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.layers import check_rank
from jaxmm.models.outputs import SEQUENCE, VECTOR, EncoderOutput
from jaxmm.models.sequence_utils import default_valid, last_valid


class CausalConvEncoder(nnx.Module):
    """Strided causal 1-D convolutions with LeakyReLU: (B, T, C_in) -> (B, ceil(T/s^L), C_out).

    Each output step t covers input steps [t*s + s - k, t*s + s - 1] (left padding k - s), so it
    never looks at later blocks. Padded steps are set to 0 before every layer and an output step
    is valid when its stride block holds a valid input; hence padded values (garbage included)
    never affect valid outputs. The sequence is right-padded (invalid) to a multiple of s first.
    Defaults follow Lee et al. 2020: kernel 2, stride 2, channels 16-32-64-128-out_dim
    (T = 32 -> a single step).

    Args:
      in_features: channels per step (6 for force/torque).
      channels: output channels of the layers (5 layers by default, the last one is out_dim).
      kernel_size, stride: shared by all layers; kernel_size >= stride.
      output: "vector" (features = pooled = last valid step) or "sequence".
      dtype: compute dtype.
    """

    takes_sequence = True

    def __init__(
        self,
        in_features: int = 6,
        channels: Sequence[int] = (16, 32, 64, 128, 512),
        *,
        kernel_size: int = 2,
        stride: int = 2,
        output: str = "vector",
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} must be >= stride {stride}")
        if output not in ("vector", "sequence"):
            raise ValueError(f"output must be 'vector' or 'sequence', got {output!r}")
        dims = (int(in_features), *(int(c) for c in channels))
        self.in_features, self.k, self.s, self.dtype = dims[0], kernel_size, stride, dtype
        self.out_kind = VECTOR if output == "vector" else SEQUENCE
        self.convs = nnx.List(
            [
                nnx.Conv(
                    a,
                    b,
                    kernel_size,
                    stride,
                    padding=[(kernel_size - stride, 0)],
                    dtype=dtype,
                    rngs=rngs,
                )
                for a, b in zip(dims[:-1], dims[1:], strict=True)
            ]
        )
        self.out_features = self.pooled_features = dims[-1]

    def __call__(self, x, valid=None, *, deterministic=True, rngs=None) -> EncoderOutput:
        check_rank(x, 3, "CausalConvEncoder", f"(B, T, {self.in_features})")
        valid = default_valid(x, valid, "CausalConvEncoder")
        h = x.astype(self.dtype or jnp.float32)
        for i, conv in enumerate(self.convs):
            pad = (-h.shape[1]) % self.s
            h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
            valid = jnp.pad(valid, ((0, 0), (0, pad)))
            h = conv(jnp.where(valid[..., None], h, 0))
            valid = jnp.any(valid.reshape(valid.shape[0], -1, self.s), axis=2)
            if i < len(self.convs) - 1:
                h = jax.nn.leaky_relu(h, 0.1)
        pooled = last_valid(h, valid)
        if self.out_kind == VECTOR:
            return EncoderOutput(pooled, None, pooled)
        return EncoderOutput(h, valid, pooled)
