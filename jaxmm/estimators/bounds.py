"""Bounds on I(X; Y) from a score matrix (lower: InfoNCE, TUBA, NWJ, DV/MINE, JS, SMILE; upper:
CLUB, NCE-CLUB), and the shared pieces they use. Conventions: `jaxmm.estimators`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmm.estimators.checks import _check_float, _check_pair, _check_scores

# --------------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------------


def logmeanexp_nodiag(scores: jax.Array) -> jax.Array:
    """Log of the mean of ``exp(scores)`` over the off-diagonal entries (product of marginals).

    Args:
      scores: ``(B, B)`` float score matrix, ``B >= 2``.

    Returns:
      Scalar ``logsumexp_{i != j} S_ij - log(B (B - 1))``.

    References:
      Poole et al. 2019, reference implementation ``reduce_logmeanexp_nodiag``.

    Example:
      >>> logmeanexp_nodiag(jnp.zeros((4, 4)))  # log of a mean of ones: 0
    """
    scores = _check_scores(scores, min_batch=2)
    b = scores.shape[0]
    # -inf on the diagonal removes it from the logsumexp without changing the shape.
    off = jnp.where(jnp.eye(b, dtype=bool), -jnp.inf, scores)
    return jax.nn.logsumexp(off) - math.log(b * (b - 1))


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """Scale ``x`` to unit L2 norm along ``axis`` (norms below ``eps`` are clamped to ``eps``)."""
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    # rsqrt of the clamped square norm keeps the gradient finite at x = 0.
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _diag_mean(scores: jax.Array) -> jax.Array:
    return jnp.mean(jnp.diagonal(scores))


# --------------------------------------------------------------------------------------------------
# Lower bounds on I(X; Y)
# --------------------------------------------------------------------------------------------------


def infonce_lower_bound(scores: jax.Array) -> jax.Array:
    """InfoNCE lower bound on I(X; Y): ``log B + mean_i [S_ii - logsumexp_j S_ij]``.

    Args:
      scores: ``(B, B)`` float scores, ``scores[i, j] = f(x_i, y_j)``.

    Returns:
      Scalar MI estimate in nats; never exceeds ``log B``.

    References:
      van den Oord et al. 2018, Eq. 4 (as a loss); Poole et al. 2019, InfoNCE bound (I_NCE).

    Example:
      >>> infonce_lower_bound(10.0 * jnp.eye(8))  # close to log 8 = 2.079
    """
    scores = _check_scores(scores)
    b = scores.shape[0]
    return math.log(b) + jnp.mean(jnp.diagonal(scores) - jax.nn.logsumexp(scores, axis=1))


def tuba_lower_bound(scores: jax.Array, log_baseline: jax.Array | None = None) -> jax.Array:
    """TUBA lower bound: ``1 + mean_i S'_ii - exp(logmeanexp_nodiag(S'))`` with ``S' = S - a``.

    ``S'_ij = S_ij - log_baseline[i]``: the baseline is a function of the row (anchor) variable
    only, which is all the bound needs for validity (it is the tangent point of ``log``).

    Args:
      scores: ``(B, B)`` float scores.
      log_baseline: optional ``(B,)`` float log-baseline ``a(x_i)``, subtracted from row ``i``.

    Returns:
      Scalar MI estimate in nats.

    References:
      Poole et al. 2019, TUBA bound (I_TUBA); NWJ is the special case ``a = 1``.

    Example:
      >>> tuba_lower_bound(jnp.zeros((4, 4)), log_baseline=jnp.zeros(4))  # 1 + 0 - 1 = 0
    """
    scores = _check_scores(scores, min_batch=2)
    if log_baseline is not None:
        log_baseline = jnp.asarray(log_baseline)
        if log_baseline.shape != (scores.shape[0],):
            raise ValueError(
                f"log_baseline must have shape ({scores.shape[0]},), got {log_baseline.shape}"
            )
        _check_float("log_baseline", log_baseline)
        scores = scores - log_baseline[:, None]
    return 1.0 + _diag_mean(scores) - jnp.exp(logmeanexp_nodiag(scores))


def nwj_lower_bound(scores: jax.Array) -> jax.Array:
    """NWJ (f-divergence / MINE-f) lower bound: TUBA with the constant baseline ``a = 1``.

    Value: ``1 + mean_i (S_ii - 1) - exp(logmeanexp_nodiag(S - 1))``; optimal critic
    ``1 + log p(y|x)/p(y)``. Unbiased in expectation over batches, high variance at large MI.

    Args:
      scores: ``(B, B)`` float scores, ``B >= 2``.

    Returns:
      Scalar MI estimate in nats.

    References:
      Nguyen, Wainwright & Jordan 2010; Poole et al. 2019, I_NWJ.

    Example:
      >>> nwj_lower_bound(jnp.ones((4, 4)))  # independent critic: 0
    """
    scores = _check_scores(scores, min_batch=2)
    return tuba_lower_bound(scores - 1.0)


def dv_lower_bound(scores: jax.Array) -> jax.Array:
    """Donsker–Varadhan (MINE) lower bound: ``mean_i S_ii - logmeanexp_nodiag(S)``.

    The batch estimate of the log-partition term is biased; MINE corrects the *gradient* with an
    exponential moving average across batches, which is the caller's (stateful) business.

    Args:
      scores: ``(B, B)`` float scores, ``B >= 2``.

    Returns:
      Scalar MI estimate in nats.

    References:
      Donsker & Varadhan 1983; Belghazi et al. 2018 (MINE); Poole et al. 2019, I_DV.

    Example:
      >>> dv_lower_bound(jnp.zeros((4, 4)))  # 0
    """
    scores = _check_scores(scores, min_batch=2)
    return _diag_mean(scores) - logmeanexp_nodiag(scores)


def js_fgan_lower_bound(scores: jax.Array) -> jax.Array:
    """Jensen–Shannon f-GAN objective: ``mean_i -softplus(-S_ii) - mean_{i!=j} softplus(S_ij)``.

    Not an MI estimate itself (it lower-bounds a JS divergence); its optimum is the log density
    ratio, which is why ``js_lower_bound`` and ``smile_lower_bound`` borrow its gradient.

    Args:
      scores: ``(B, B)`` float scores, ``B >= 2``.

    Returns:
      Scalar.

    References:
      Nowozin et al. 2016 (f-GAN); Hjelm et al. 2019 (Deep InfoMax); Poole et al. 2019, I_JS.

    Example:
      >>> js_fgan_lower_bound(jnp.zeros((4, 4)))  # -2 log 2
    """
    scores = _check_scores(scores, min_batch=2)
    b = scores.shape[0]
    diag = jnp.diagonal(scores)
    first = jnp.mean(-jax.nn.softplus(-diag))
    second = (jnp.sum(jax.nn.softplus(scores)) - jnp.sum(jax.nn.softplus(diag))) / (b * (b - 1))
    return first - second


def js_lower_bound(scores: jax.Array) -> jax.Array:
    """NWJ value with the Jensen–Shannon gradient: ``js + stop_gradient(nwj - js)``.

    Training the critic with the JS objective is low-variance; the reported value is the NWJ bound
    at the shifted critic ``f + 1``, as in the reference implementations of Poole et al. (vbmi) and
    Song & Ermon: the JS optimum is ``f = log r`` while NWJ's is ``1 + log r``, so the shift makes
    the reported value tight (equal to I in expectation) at the JS optimum.

    Args:
      scores: ``(B, B)`` float scores, ``B >= 2``.

    Returns:
      Scalar whose value is ``nwj_lower_bound(scores + 1)`` and whose gradient is that of
      ``js_fgan_lower_bound(scores)``.

    References:
      Poole et al. 2019, I_JS (Sec. 2.3 and reference notebook); Song & Ermon 2020, Sec. 5.

    Example:
      >>> jax.grad(js_lower_bound)(s)  # == jax.grad(js_fgan_lower_bound)(s)
    """
    scores = _check_scores(scores, min_batch=2)
    nwj = nwj_lower_bound(scores + 1.0)
    js = js_fgan_lower_bound(scores)
    return js + jax.lax.stop_gradient(nwj - js)


def smile_lower_bound(scores: jax.Array, clip: float | None = None) -> jax.Array:
    """SMILE(tau): DV with clipped scores in the partition term, gradient from the JS objective.

    Value: ``mean_i S_ii - logmeanexp_nodiag(clip(S, -tau, tau))``; clipping bounds the variance of
    the partition estimate (Song & Ermon's Theorem 2 shows unclipped DV/NWJ variance grows as e^MI).

    Args:
      scores: ``(B, B)`` float scores, ``B >= 2``.
      clip: ``tau > 0`` or ``None`` (no clipping, i.e. DV's value).

    Returns:
      Scalar whose value is the clipped DV estimate and whose gradient is that of
      ``js_fgan_lower_bound(scores)``.

    References:
      Song & Ermon 2020, SMILE estimator (Sec. 5) and its reference code.

    Example:
      >>> smile_lower_bound(s, clip=5.0)
    """
    scores = _check_scores(scores, min_batch=2)
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")
    clipped = scores if clip is None else jnp.clip(scores, -clip, clip)
    dv = _diag_mean(scores) - logmeanexp_nodiag(clipped)
    js = js_fgan_lower_bound(scores)
    return js + jax.lax.stop_gradient(dv - js)


# --------------------------------------------------------------------------------------------------
# Upper bounds on I(X; Y)
# --------------------------------------------------------------------------------------------------


def club_upper_bound(log_q: jax.Array) -> jax.Array:
    """Contrastive log-ratio upper bound (vCLUB): ``mean_i [log_q_ii - mean_j log_q_ij]``.

    The inner mean includes ``j = i``, i.e. ``mean(diag) - mean(all entries)``.

    Args:
      log_q: ``(B, B)`` float, ``log_q[i, j] = log q(y_j | x_i)`` for a variational ``q(y|x)``
        trained by maximum likelihood (see ``gaussian_log_likelihood_matrix``).

    Returns:
      Scalar MI estimate in nats (an upper bound when ``q`` is close to ``p(y|x)``).

    References:
      Cheng et al. 2020, "CLUB": the I_CLUB definition and the vCLUB sample estimator (Sec. 3).

    Example:
      >>> club_upper_bound(gaussian_log_likelihood_matrix(mu, logvar, y))
    """
    log_q = _check_scores(log_q, name="log_q")
    return _diag_mean(log_q) - jnp.mean(log_q)


def nce_club_upper_bound(scores: jax.Array) -> jax.Array:
    """NCE-CLUB upper bound: ``mean_i S_ii - mean_{i,j} S_ij`` with the InfoNCE-trained critic.

    With the InfoNCE-optimal critic ``f* = log p(y|x) + c(x)`` the ``c(x)`` term cancels between the
    two means, leaving CLUB with the true conditional, hence an upper bound on I(X; Y). Use the same
    form with a conditional critic ``f(x, y, c)`` for FactorCL's conditional bound (Eqs. 14, 16).

    Args:
      scores: ``(B, B)`` float scores of a critic trained with InfoNCE (usually ``stop_gradient``-ed
        when the encoders minimise this bound, as in FactorCL Algorithm 3).

    Returns:
      Scalar MI estimate in nats.

    References:
      Liang et al. 2023 (FactorCL), Eq. 11 (Theorem 2); Eqs. 14 and 16 for the conditional forms.

    Example:
      >>> nce_club_upper_bound(scores)
    """
    scores = _check_scores(scores)
    return _diag_mean(scores) - jnp.mean(scores)


def gaussian_log_likelihood_matrix(mu: jax.Array, logvar: jax.Array, y: jax.Array) -> jax.Array:
    """All-pairs diagonal-Gaussian log-likelihoods ``out[i, j] = log N(y_j; mu_i, exp(logvar_i))``.

    Args:
      mu: ``(B, D)`` means of ``q(y | x_i)``.
      logvar: ``(B, D)`` log-variances of ``q(y | x_i)``.
      y: ``(B, D)`` samples ``y_j``.

    Returns:
      ``(B, B)`` float matrix of log-densities in nats (constant ``-D/2 log 2 pi`` included, so the
      diagonal mean is the exact Gaussian log-likelihood used to fit ``q``).

    References:
      Cheng et al. 2020 (vCLUB with a Gaussian variational network).

    Example:
      >>> club_upper_bound(gaussian_log_likelihood_matrix(mu, logvar, y))
    """
    mu, logvar = _check_pair("mu", mu, "logvar", logvar)
    mu, y = _check_pair("mu", mu, "y", y)
    # Direct (B, B, D) broadcast rather than the expanded quadratic form: it avoids catastrophic
    # cancellation in float32 when |y| >> the spread of q, and B^2 D is small at estimator batches.
    diff = y[None, :, :] - mu[:, None, :]
    quad = jnp.sum(diff * diff * jnp.exp(-logvar)[:, None, :], axis=-1)
    d = mu.shape[1]
    return -0.5 * (quad + jnp.sum(logvar, axis=1)[:, None] + d * math.log(2.0 * math.pi))
