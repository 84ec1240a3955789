"""AlexNet-style image encoder (Krizhevsky et al. 2012), CoMM's Trifeature encoder (App. B.1)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmm.models.layers import check_rank
from jaxmm.models.outputs import MAP, VECTOR, EncoderOutput

# (kernel, stride, padding) per conv layer and the max-pool (window, stride, padding).
_VARIANTS = {
    # torchvision's AlexNet features, for ~224px inputs.
    "imagenet": (((11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1)), (3, 2, "VALID")),
    # Same 5-conv / 3-pool layout at stride 1 for 32-128px inputs (32 -> 4x4 map, 64 -> 8x8).
    "small": (((5, 1, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1)), (2, 2, "VALID")),
    # "small" with a stride-2 first conv: a 64 px image costs about what a 32 px one costs in
    # "small" (64 -> 4x4 map), while the first layer still sees the 64 px texture detail.
    "small_s2": (((5, 2, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1)), (2, 2, "VALID")),
}
_POOL_AFTER = (0, 1, 4)
# Conv 1 runs on 2x2 blocks (`space_to_depth_conv`) up to this many input channels; with more,
# XLA's plain convolution was faster (docs/benchmarks.md).
_BLOCK_STEM_MAX_CHANNELS = 4


def _tiles(x: jax.Array, s: int) -> jax.Array:
    """(B, H, W, C) -> (B, H // s, s, W // s, s, C), dropping the rows/columns "VALID" drops."""
    b, h, w, c = x.shape
    return x[:, : h // s * s, : w // s * s].reshape(b, h // s, s, w // s, s, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tile_max_pool(x: jax.Array, window: int) -> jax.Array:
    return _tiles(x, window).max(axis=(2, 4))


def _tile_max_pool_fwd(x, window):
    y = _tile_max_pool(x, window)
    return y, (x, y)


def _tile_max_pool_bwd(window, res, dy):
    x, y = res
    b, h, w, c = x.shape
    s, hs, ws = window, h // window, w // window
    # Index of each tile's first maximum in row-major order (the one XLA's select-and-scatter and
    # torch's MaxPool2d pick), then the gradient in one broadcast select: no scatter.
    k = (jnp.arange(s)[:, None] * s + jnp.arange(s)).reshape(1, 1, s, 1, s, 1)
    first = jnp.min(jnp.where(_tiles(x, s) == y[:, :, None, :, None], k, s * s), axis=(2, 4))
    dx = jnp.where(k == first[:, :, None, :, None], dy[:, :, None, :, None], 0).astype(dy.dtype)
    dx = dx.reshape(b, hs * s, ws * s, c)
    return (jnp.pad(dx, ((0, 0), (0, h - hs * s), (0, w - ws * s), (0, 0))),)


_tile_max_pool.defvjp(_tile_max_pool_fwd, _tile_max_pool_bwd)


def tile_max_pool(x: jax.Array, window: int) -> jax.Array:
    """Max-pool over non-overlapping `window` x `window` tiles ("VALID"), NHWC.

    Equal to `nnx.max_pool(x, (window,) * 2, (window,) * 2, "VALID")` in value and gradient: the
    gradient goes to the first maximum of each tile in row-major order, as XLA's
    select-and-scatter and torch's MaxPool2d give it. The backward is one broadcast select
    instead of a select-and-scatter, which XLA's CPU backend runs ~25x slower; in the 32 px
    CoMM step that took a fifth of the time (docs/benchmarks.md).
    """
    return _tile_max_pool(x, int(window))


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """Stride-1 NHWC convolution with `padding` zeros on each side (as `nnx.Conv` computes it)."""
    pad = [(padding, padding)] * 2
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), pad, dimension_numbers=_NHWC)


def _block_kernel(kernel: jax.Array, padding: int) -> tuple[jax.Array, int]:
    """The kernel of `_conv` rewritten for 2x2 space-to-depth input and output.

    With x and y grouped in 2x2 blocks (x[2b + q] is channel q of block b; y[2a + r] likewise),
    y[2a + r] = sum_i w[i] x[2a + r + i - p] reads block b = a + floor((r + i - p) / 2) at
    offset q = (r + i - p) mod 2. So per axis the block kernel has taps e = b - a in
    [-D, D], D = ceil(p / 2), and entry (e, q, r) holds w[i] with i = 2e + q - r + p when that
    is a tap of w, else zero. Returns the (2D+1, 2D+1, 4 Cin, 4 Cout) kernel and D.
    """
    k, _, cin, cout = kernel.shape
    d = (padding + 1) // 2
    e, q, r = np.meshgrid(np.arange(-d, d + 1), np.arange(2), np.arange(2), indexing="ij")
    tap = 2 * e + q - r + padding  # (2D+1, 2, 2) over (e, q, r)
    tap = np.where((tap >= 0) & (tap < k), tap, k)  # k -> the zero row/column added below
    w = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    # blocks[e, f, q, t, r, s] = w[tap[e, q, r], tap[f, t, s]]: (2D+1, 2D+1, 2, 2, 2, 2, Cin, Cout)
    blocks = w[tap[:, None, :, None, :, None], tap[None, :, None, :, None, :]]
    blocks = blocks.transpose(0, 1, 2, 3, 6, 4, 5, 7)  # (e, f, q, t, Cin, r, s, Cout)
    return blocks.reshape(2 * d + 1, 2 * d + 1, 4 * cin, 4 * cout), d


def _space_to_depth_conv_impl(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    b, h, w, c = x.shape
    blocks, d = _block_kernel(kernel, padding)
    xs = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    ys = _conv(xs.reshape(b, h // 2, w // 2, 4 * c), blocks, d)
    ys = ys.reshape(b, h // 2, w // 2, 2, 2, -1).transpose(0, 1, 3, 2, 4, 5)
    return ys.reshape(b, h, w, -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _space_to_depth_conv(x, kernel, padding):
    return _space_to_depth_conv_impl(x, kernel, padding)


def _space_to_depth_conv_fwd(x, kernel, padding):
    return _space_to_depth_conv_impl(x, kernel, padding), (x, kernel)


def _space_to_depth_conv_bwd(padding, res, dy):
    # XLA's own input and weight gradients of the plain convolution: the block form's weight
    # gradient is slower, and the input gradient is dead code for an image stem.
    x, kernel = res
    return jax.vjp(lambda a, k: _conv(a, k, padding), x, kernel)[1](dy)


_space_to_depth_conv.defvjp(_space_to_depth_conv_fwd, _space_to_depth_conv_bwd)


def space_to_depth_conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """Stride-1 "same" convolution of a few-channel NHWC image, computed on 2x2 blocks.

    Equal to `_conv(x, kernel, padding)` (`nnx.Conv` without bias), kernel (k, k, Cin, Cout)
    with k = 2 padding + 1 and even H, W. The forward pass regroups the image into 2x2 blocks
    (4 Cin channels at half resolution) and runs one convolution with the equivalent block
    kernel (`_block_kernel`). XLA's CPU convolution is slow at 3 input channels: on one core of
    the project's machine, the 5x5 3 -> 16 stem of the 32 px AlexNet at batch 128 takes 16 ms
    as written and 6 ms on blocks (docs/benchmarks.md). The backward pass is the plain
    convolution's, which is the faster of the two there.
    """
    k = kernel.shape[0]
    if kernel.shape[1] != k or k != 2 * padding + 1 or x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(
            f"space_to_depth_conv: needs a square kernel of size 2 padding + 1 and even H, W; "
            f"got kernel {kernel.shape}, padding {padding}, input {x.shape}"
        )
    return _space_to_depth_conv(x, kernel, int(padding))


class AlexNet(nnx.Module):
    """Five conv layers with ReLU, max-pools after conv 1, 2 and 5, then global average pool.

    Args:
      in_channels: image channels (NHWC input).
      channels: output channels of the 5 convs (AlexNet: 64, 192, 384, 256, 256).
      variant: "small" (stride-1 stem for small images) or "imagenet" (11x11/4 stem).
      pool: True -> features = pooled vector; False -> drop the final pooling and return the
        feature map (B, h, w, C) for CoMM's patch-embedding converter.
      out_dim: if set, a Linear after global pooling gives the pooled embedding.
      dtype: compute dtype.
    """

    takes_sequence = False

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (64, 192, 384, 256, 256),
        *,
        variant: str = "small",
        pool: bool = True,
        out_dim: int | None = None,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if variant not in _VARIANTS:
            raise ValueError(f"unknown AlexNet variant {variant!r}; expected {sorted(_VARIANTS)}")
        if len(channels) != 5:
            raise ValueError(f"AlexNet needs 5 conv channel counts, got {tuple(channels)}")
        convs, self.pool_spec = _VARIANTS[variant]
        self.conv_spec = convs
        dims = (int(in_channels), *(int(c) for c in channels))
        self.in_channels, self.pool, self.dtype = dims[0], pool, dtype
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (k, k), (s, s), padding=[(p, p), (p, p)], dtype=dtype, rngs=rngs)
                for a, b, (k, s, p) in zip(dims[:-1], dims[1:], convs, strict=True)
            ]
        )
        self.out = (
            None if out_dim is None else nnx.Linear(dims[-1], out_dim, dtype=dtype, rngs=rngs)
        )
        self.pooled_features = dims[-1] if out_dim is None else int(out_dim)
        self.out_kind = VECTOR if pool else MAP
        self.out_features = self.pooled_features if pool else dims[-1]

    def _block_stem(self, x: jax.Array) -> bool:
        """Whether conv 1 runs as `space_to_depth_conv` (same function, faster on XLA's CPU)."""
        k, stride, padding = self.conv_spec[0]
        return (
            self.in_channels <= _BLOCK_STEM_MAX_CHANNELS
            and stride == 1
            and k == 2 * padding + 1
            and x.shape[1] % 2 == 0
            and x.shape[2] % 2 == 0
        )

    def __call__(self, x, valid=None, *, deterministic=True, rngs=None) -> EncoderOutput:
        check_rank(x, 4, "AlexNet", f"(B, H, W, {self.in_channels})")
        window, stride, padding = self.pool_spec
        h = x.astype(self.dtype or jnp.float32)
        for i, conv in enumerate(self.convs):
            if i == 0 and self._block_stem(h):
                kernel, bias = (p[...].astype(h.dtype) for p in (conv.kernel, conv.bias))
                h = space_to_depth_conv(h, kernel, self.conv_spec[0][2]) + bias
            else:
                h = conv(h)
            h = jax.nn.relu(h)  # ReLU next to the conv: XLA fuses them
            if i in _POOL_AFTER:
                if min(h.shape[1:3]) < window:
                    raise ValueError(f"AlexNet: image {x.shape[1:3]} too small for this variant")
                if window == stride and padding == "VALID":
                    h = tile_max_pool(h, window)
                else:
                    h = nnx.max_pool(h, (window, window), (stride, stride), padding)
        pooled = jnp.mean(h, axis=(1, 2))
        if self.out is not None:
            pooled = self.out(pooled)
        return EncoderOutput(pooled if self.pool else h, None, pooled)
