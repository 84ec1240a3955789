"""Critics: Flax NNX modules mapping a batch of pairs to scores ``scores[i, j] = f(x_i, y_j)``.

Every critic's ``__call__(x, y[, c])`` returns a ``(B, B)`` float matrix with the joint
(positive) pairs on the diagonal, ready for the bounds in ``jaxmm.estimators``.
``GaussianConditional`` is the variational ``q(y|x)`` of vCLUB; it returns ``(mu, logvar)`` and its
``log_likelihood_matrix`` is the CLUB "score" matrix.

References: Poole et al. 2019 (separable / concat / bilinear critics); Cheng et al. 2020 (vCLUB);
Liang et al. 2023 (FactorCL, Eqs. 13-16 and App. D.1); Sordoni et al. 2021 (conditional InfoNCE by
concatenating the conditioning variable into the critic).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.estimators import gaussian_log_likelihood_matrix, l2_normalize

__all__ = [
    "MLP",
    "SeparableCritic",
    "BilinearCritic",
    "ConcatCritic",
    "ConditionalCritic",
    "ConditionalConcatCritic",
    "ConditionalSeparableCritic",
    "GaussianConditional",
]


def _check_xy(x, y, x_dim: int, y_dim: int) -> None:
    if x.ndim != 2 or x.shape[1] != x_dim:
        raise ValueError(f"x must have shape (B, {x_dim}), got shape {x.shape}")
    if y.ndim != 2 or y.shape[1] != y_dim:
        raise ValueError(f"y must have shape (B, {y_dim}), got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same batch size, got {x.shape} and {y.shape}")
    for name, a in (("x", x), ("y", y)):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise ValueError(f"{name} must have a floating dtype, got {a.dtype}")


class MLP(nnx.Module):
    """``layers`` hidden ReLU layers of width ``hidden`` followed by a linear output layer."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int, *, rngs: nnx.Rngs):
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        dims = [in_dim] + [hidden] * layers + [out_dim]
        self.linears = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for linear in self.linears[:-1]:
            x = jax.nn.relu(linear(x))
        return self.linears[-1](x)


class SeparableCritic(nnx.Module):
    """Separable critic ``f(x, y) = g(x) . h(y) / temperature`` with MLP encoders ``g`` and ``h``.

    ``cosine=True`` L2-normalises ``g(x)`` and ``h(y)`` first. All ``B x B`` scores cost one matmul.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden: int,
        embed_dim: int,
        layers: int,
        *,
        rngs: nnx.Rngs,
        cosine: bool = False,
        temperature: float = 1.0,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.x_dim, self.y_dim = x_dim, y_dim
        self.g = MLP(x_dim, hidden, embed_dim, layers, rngs=rngs)
        self.h = MLP(y_dim, hidden, embed_dim, layers, rngs=rngs)
        self.cosine = cosine
        self.temperature = temperature

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        _check_xy(x, y, self.x_dim, self.y_dim)
        gx, hy = self.g(x), self.h(y)
        if self.cosine:
            gx, hy = l2_normalize(gx), l2_normalize(hy)
        return gx @ hy.T / self.temperature


class BilinearCritic(nnx.Module):
    """Bilinear critic ``f(x, y) = x^T W y``."""

    def __init__(self, x_dim: int, y_dim: int, *, rngs: nnx.Rngs):
        self.x_dim, self.y_dim = x_dim, y_dim
        init = jax.nn.initializers.lecun_normal()
        self.w = nnx.Param(init(rngs.params(), (x_dim, y_dim)))

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        _check_xy(x, y, self.x_dim, self.y_dim)
        return x @ self.w[...] @ y.T


class ConcatCritic(nnx.Module):
    """Concat critic ``f(x, y) = MLP([x, y])`` (scalar output), evaluated on all ``B x B`` pairs.

    Efficient evaluation: the first layer is affine, so with its kernel split by rows into
    ``W = [W_x; W_y]``, ``W^T [x_i; y_j] + b = (W_x^T x_i + b) + W_y^T y_j`` exactly. Computing
    the two ``(B, hidden)`` halves once and broadcast-adding them gives the ``(B, B, hidden)``
    first-layer pre-activations of every pair without materialising the ``(B, B, x_dim + y_dim)``
    concatenation; the remaining layers act on the last axis only. ``pair_scores`` evaluates the
    MLP on literal concatenations of row-aligned pairs.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int, layers: int, *, rngs: nnx.Rngs):
        if layers < 1:
            raise ValueError(f"ConcatCritic needs layers >= 1 hidden layers, got {layers}")
        self.x_dim, self.y_dim = x_dim, y_dim
        self.mlp = MLP(x_dim + y_dim, hidden, 1, layers, rngs=rngs)

    def pair_scores(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Scores of row-aligned pairs ``f(x_i, y_i)``, shape ``(B,)``."""
        _check_xy(x, y, self.x_dim, self.y_dim)
        return self.mlp(jnp.concatenate([x, y], axis=-1))[..., 0]

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        _check_xy(x, y, self.x_dim, self.y_dim)
        first, rest = self.mlp.linears[0], self.mlp.linears[1:]
        kernel = first.kernel[...]
        hx = x @ kernel[: self.x_dim] + first.bias[...]
        hy = y @ kernel[self.x_dim :]
        h = jax.nn.relu(hx[:, None, :] + hy[None, :, :])  # (B, B, hidden): [i, j] <- (x_i, y_j)
        for linear in rest[:-1]:
            h = jax.nn.relu(linear(h))
        return rest[-1](h)[..., 0]


class ConditionalCritic(nnx.Module):
    """Conditions a critic by concatenation: ``f(x_i, y_j | c) = base([x_i, c_i], [y_j, c'_j])``.

    This is the FactorCL convention (App. D.1, Fig. 5; justified by Sordoni et al. 2021): the
    conditioning variable is concatenated to the inputs of **both** sides before the critic, each
    sample carrying its own conditioning value, so the negative pair ``(i, j)`` sees ``c_i`` with
    ``x_i`` and ``c'_j`` with ``y_j``. FactorCL-SUP uses the label on both sides (``c' = c = y``);
    FactorCL-SSL uses each modality's own augmentation (``c = x1'``, ``c' = x2'``), hence the
    optional ``c_y``. Feed the resulting scores to ``infonce_lower_bound`` /
    ``nce_club_upper_bound`` for FactorCL Eqs. 13-16.

    Args:
      base: a critic built for input dimensions ``(x_dim + c_dim, y_dim + c_y_dim)``.
      c_dim: width of the conditioning variable on the x side.
      c_y_dim: width on the y side (``None``: same as ``c_dim``).
    """

    def __init__(self, base: nnx.Module, c_dim: int, c_y_dim: int | None = None):
        self.base = base
        self.c_dim = c_dim
        self.c_y_dim = c_dim if c_y_dim is None else c_y_dim

    def __call__(
        self, x: jax.Array, y: jax.Array, c: jax.Array, c_y: jax.Array | None = None
    ) -> jax.Array:
        c_y = c if c_y is None else c_y
        for name, v, dim in (("c", c, self.c_dim), ("c_y", c_y, self.c_y_dim)):
            if v.ndim != 2 or v.shape != (x.shape[0], dim):
                raise ValueError(f"{name} must have shape ({x.shape[0]}, {dim}), got {v.shape}")
            if not jnp.issubdtype(v.dtype, jnp.floating):
                raise ValueError(f"{name} must have a floating dtype (one-hot), got {v.dtype}")
        return self.base(jnp.concatenate([x, c], axis=-1), jnp.concatenate([y, c_y], axis=-1))


class ConditionalConcatCritic(ConditionalCritic):
    """``MLP([x_i, c_i, y_j, c'_j])`` on all pairs: FactorCL's conditional concat critic."""

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        c_dim: int,
        hidden: int,
        layers: int,
        *,
        rngs: nnx.Rngs,
        c_y_dim: int | None = None,
    ):
        c_y_dim = c_dim if c_y_dim is None else c_y_dim
        base = ConcatCritic(x_dim + c_dim, y_dim + c_y_dim, hidden, layers, rngs=rngs)
        super().__init__(base, c_dim, c_y_dim)


class ConditionalSeparableCritic(ConditionalCritic):
    """``g([x_i, c_i]) . h([y_j, c'_j])``: the separable form written in FactorCL Sec. 3.2."""

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        c_dim: int,
        hidden: int,
        embed_dim: int,
        layers: int,
        *,
        rngs: nnx.Rngs,
        c_y_dim: int | None = None,
        cosine: bool = False,
        temperature: float = 1.0,
    ):
        c_y_dim = c_dim if c_y_dim is None else c_y_dim
        base = SeparableCritic(
            x_dim + c_dim,
            y_dim + c_y_dim,
            hidden,
            embed_dim,
            layers,
            rngs=rngs,
            cosine=cosine,
            temperature=temperature,
        )
        super().__init__(base, c_dim, c_y_dim)


class GaussianConditional(nnx.Module):
    """Variational ``q(y | x) = N(mu(x), diag(exp(logvar(x))))`` for vCLUB.

    Two one-hidden-layer ReLU networks; ``logvar`` passes through ``tanh`` (as in the CLUB reference
    code) so variances stay in ``[e^-1, e]`` and the likelihood cannot blow up early in training.
    Fit it by maximising ``log_likelihood(x, y).mean()``; estimate MI with
    ``club_upper_bound(q.log_likelihood_matrix(x, y))``.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.x_dim, self.y_dim = x_dim, y_dim
        self.mu_net = MLP(x_dim, hidden, y_dim, 1, rngs=rngs)
        self.logvar_net = MLP(x_dim, hidden, y_dim, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Return ``(mu, logvar)``, each ``(B, y_dim)``."""
        if x.ndim != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"x must have shape (B, {self.x_dim}), got shape {x.shape}")
        return self.mu_net(x), jnp.tanh(self.logvar_net(x))

    def log_likelihood(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Paired log-densities ``log q(y_i | x_i)``, shape ``(B,)``: the max-likelihood target."""
        _check_xy(x, y, self.x_dim, self.y_dim)
        mu, logvar = self(x)
        quad = jnp.sum((y - mu) ** 2 * jnp.exp(-logvar) + logvar, axis=-1)
        return -0.5 * (quad + self.y_dim * jnp.log(2.0 * jnp.pi))

    def log_likelihood_matrix(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """All-pairs ``out[i, j] = log q(y_j | x_i)``, shape ``(B, B)``."""
        _check_xy(x, y, self.x_dim, self.y_dim)
        mu, logvar = self(x)
        return gaussian_log_likelihood_matrix(mu, logvar, y)
