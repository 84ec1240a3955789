"""Mutual-information bounds and contrastive losses as pure, jit-able, differentiable functions.

Conventions
-----------
* Score matrices: ``scores[i, j] = f(x_i, y_j)`` for a batch of ``B`` joint samples
  ``(x_i, y_i)``. The diagonal holds the ``B`` samples of the joint ``p(x, y)``; the ``B (B - 1)``
  off-diagonal entries are samples of the product of marginals ``p(x) p(y)``. Row ``i`` lists
  anchor ``x_i``'s candidates.
* ``*_lower_bound`` / ``*_upper_bound`` return a scalar MI estimate in **nats** (to maximise /
  minimise as a bound). ``*_loss`` return a scalar to **minimise**.
* Embedding losses take per-example embeddings (``(B, D)`` arrays). With ``axis_name=None`` they
  compute the loss of the batch they are given. With ``axis_name`` set they must be called inside
  ``jax.shard_map`` over a data axis (default ``check_vma=True``): every device all-gathers the
  other side's embeddings, scores only its own ``B_local x B_global`` block, and the function
  returns the **global-batch loss, already reduced over ``axis_name``** (identical on every
  device). Its value and its gradient (w.r.t. local embeddings and w.r.t. replicated parameters)
  equal the single-device computation on the concatenated global batch, so callers differentiate
  it directly — never ``pmean`` a gradient.

Bad input
---------
* Shapes, dtypes and batch sizes are checked statically (at trace time) and raise one
  ``ValueError`` naming the argument: every bound and loss needs ``B >= 2`` (the global batch,
  with ``axis_name``), since with one sample there is no negative and InfoNCE, NT-Xent, SupCon
  or NCE-CLUB would return a meaningless 0.
* ``temperature`` must be > 0: a Python number or a concrete array is checked at call time; a
  *traced* temperature (learned, or an argument of a jitted function) has no value at trace
  time, so ``T = 0`` there gives ``inf``/``nan`` logits — wrap the function with ``checked``.
* NaN / inf inputs are **not** replaced or masked: they propagate (the value is ``nan``), as a
  silent fix would hide a bug upstream. The trainer skips such steps (``jaxmm.train``). To find
  the culprit, ``checked(fn)`` runs ``fn`` with runtime checks (``jax.experimental.checkify``)
  that raise one error naming the function and the offending argument (``za has 3 non-finite
  value(s)``, ``temperature must be > 0``), or a non-finite result of finite inputs.

References: Poole et al. 2019, "On Variational Bounds of Mutual Information" (ICML); van den Oord
et al. 2018 (CPC); Song & Ermon 2020, "Understanding the Limitations of Variational MI Estimators"
(SMILE); Cheng et al. 2020 (CLUB); Liang et al. 2023 (FactorCL); Radford et al. 2021 (CLIP); Chen
et al. 2020 (SimCLR); Khosla et al. 2020 (SupCon); Liu et al. 2021 (TupleInfoNCE).
"""

from __future__ import annotations

import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = [
    "checked",
    "logmeanexp_nodiag",
    "infonce_lower_bound",
    "nwj_lower_bound",
    "tuba_lower_bound",
    "dv_lower_bound",
    "js_fgan_lower_bound",
    "js_lower_bound",
    "smile_lower_bound",
    "club_upper_bound",
    "nce_club_upper_bound",
    "gaussian_log_likelihood_matrix",
    "infonce_from_scores_loss",
    "l2_normalize",
    "infonce_loss",
    "clip_loss",
    "ntxent_loss",
    "supcon_loss",
    "tuple_infonce_loss",
]


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _check_float(name: str, x) -> None:
    if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
        raise ValueError(f"{name} must have a floating dtype, got {jnp.asarray(x).dtype}")


def _check_scores(scores, name: str = "scores", min_batch: int = 2) -> jax.Array:
    scores = jnp.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"{name} must be a square (B, B) matrix, got shape {scores.shape}")
    if scores.shape[0] < min_batch:
        raise ValueError(f"{name} needs B >= {min_batch}, got shape {scores.shape}")
    _check_float(name, scores)
    return scores


def _check_pair(name_a: str, a, name_b: str, b) -> tuple[jax.Array, jax.Array]:
    a, b = jnp.asarray(a), jnp.asarray(b)
    for name, x in ((name_a, a), (name_b, b)):
        if x.ndim != 2:
            raise ValueError(f"{name} must have shape (B, D), got shape {x.shape}")
        _check_float(name, x)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (B, D), got {a.shape} and {b.shape}"
        )
    return a, b


def _check_temperature(temperature) -> None:
    if isinstance(temperature, jax.core.Tracer):
        return  # no value at trace time: see the module docstring and `checked`
    value = np.asarray(temperature)
    if value.ndim == 0 and not value > 0:
        raise ValueError(f"temperature must be > 0, got {value.item()}")


def _check_batch(name: str, b: int, axis_name) -> None:
    """Contrastive estimates need >= 2 samples of the global batch (a negative per anchor)."""
    total = b * (jax.lax.axis_size(axis_name) if axis_name is not None else 1)
    if total < 2:
        raise ValueError(f"{name} needs a batch of B >= 2 samples (negatives), got B = {total}")


def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def checked(fn):
    """``fn`` (an estimator or loss of this module) with runtime checks of its inputs and result.

    Every floating array argument must be finite and ``temperature`` > 0 (even traced); the
    result must be finite. Outside a trace the checks run under ``checkify.checkify`` and raise
    ``checkify.JaxRuntimeError`` naming the function and the argument. Inside a trace (a jitted
    caller), the checks are plain ``checkify.check``s: functionalise the caller with
    ``checkify.checkify`` to get the error out. The static checks (shapes, ``B >= 2``) still
    raise ``ValueError`` first.

    Example:
      >>> checked(infonce_loss)(za, zb, temperature=t)  # "infonce_loss: za has 3 non-finite..."
    """
    sig = inspect.signature(fn)
    name = fn.__name__

    def run_checks(dynamic, static):
        args = {**static, **dynamic}
        for arg, value in dynamic.items():
            x = jnp.asarray(value)
            if arg == "temperature":
                checkify.check(jnp.all(x > 0), f"{name}: temperature must be > 0, got {{t}}", t=x)
            elif jnp.issubdtype(x.dtype, jnp.inexact):
                bad = jnp.sum(~jnp.isfinite(x))
                checkify.check(
                    bad == 0,
                    f"{name}: {arg} has {{n}} non-finite value(s) (shape {x.shape})",
                    n=bad,
                )
        out = fn(**args)
        checkify.check(jnp.all(jnp.isfinite(out)), f"{name}: non-finite result of finite inputs")
        return out

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        dynamic = {k: v for k, v in bound.arguments.items() if _is_array(v)}
        static = {k: v for k, v in bound.arguments.items() if k not in dynamic}
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(dynamic)):
            return run_checks(dynamic, static)
        # Under jit, so that the estimator sees tracers (eager checkify passes concrete values).
        err, out = checkify.checkify(jax.jit(functools.partial(run_checks, static=static)))(dynamic)
        err.throw()
        return out

    return wrapper


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


# --------------------------------------------------------------------------------------------------
# Contrastive losses on embeddings
# --------------------------------------------------------------------------------------------------


def _cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-row softmax cross-entropy with integer targets, shape ``(rows,)``."""
    picked = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - picked


def infonce_from_scores_loss(scores: jax.Array) -> jax.Array:
    """InfoNCE loss on a score matrix: ``mean_i [logsumexp_j S_ij - S_ii]`` (= log B - I_NCE).

    Args:
      scores: ``(B, B)`` float logits, positives on the diagonal.

    Returns:
      Scalar loss to minimise.

    References:
      van den Oord et al. 2018, Eq. 4.

    Example:
      >>> infonce_from_scores_loss(critic(x, y))
    """
    scores = _check_scores(scores)
    return jnp.mean(_cross_entropy(scores, jnp.arange(scores.shape[0])))


def _gather(x: jax.Array, axis_name, axis: int = 0) -> tuple[jax.Array, jax.Array | int]:
    """All-gather ``x`` along ``axis`` and return it with this device's row offset."""
    if axis_name is None:
        return x, 0
    gathered = jax.lax.all_gather(x, axis_name, axis=axis, tiled=True)
    return gathered, jax.lax.axis_index(axis_name) * x.shape[axis]


def _global_mean(local_mean: jax.Array, axis_name) -> jax.Array:
    # Equal local batch sizes (required by tiled all_gather) make the mean of means the global mean.
    return local_mean if axis_name is None else jax.lax.pmean(local_mean, axis_name)


def infonce_loss(
    za: jax.Array,
    zb: jax.Array,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """One-directional InfoNCE: anchors ``za_i``, candidates all ``zb_j``, positive ``zb_i``.

    ``loss = mean_i [logsumexp_j (za_i . zb_j / T) - za_i . zb_i / T]``.

    Args:
      za: ``(B, D)`` anchor embeddings.
      zb: ``(B, D)`` candidate embeddings, ``zb_i`` paired with ``za_i``.
      temperature: ``T > 0`` (may be a traced scalar).
      normalize: L2-normalise both sides first (cosine similarities).
      axis_name: data axis inside ``jax.shard_map``; candidates are then the global batch and the
        returned value is the global-batch loss, identical on every device (see module docstring).

    Returns:
      Scalar loss.

    References:
      van den Oord et al. 2018, Eq. 4; Poole et al. 2019, InfoNCE bound.

    Example:
      >>> infonce_loss(za, zb, temperature=0.1)
    """
    za, zb = _check_pair("za", za, "zb", zb)
    _check_batch("infonce_loss", za.shape[0], axis_name)
    _check_temperature(temperature)
    if normalize:
        za, zb = l2_normalize(za), l2_normalize(zb)
    zb_all, offset = _gather(zb, axis_name)
    logits = za @ zb_all.T / temperature
    targets = offset + jnp.arange(za.shape[0])
    return _global_mean(jnp.mean(_cross_entropy(logits, targets)), axis_name)


def clip_loss(
    za: jax.Array,
    zb: jax.Array,
    *,
    temperature: float | jax.Array | None = None,
    logit_scale: jax.Array | None = None,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """Symmetric CLIP loss: mean of the a→b and b→a InfoNCE cross-entropies.

    Logits are ``s * za_i . zb_j`` with ``s = 1 / temperature`` or ``s = exp(logit_scale)``
    (CLIP learns ``logit_scale``, the log inverse temperature, and clips ``s`` at 100 — clipping is
    left to the caller).

    Args:
      za: ``(B, D)`` embeddings of modality a.
      zb: ``(B, D)`` embeddings of modality b, row-aligned with ``za``.
      temperature: fixed temperature; exactly one of ``temperature`` and ``logit_scale``.
      logit_scale: scalar (possibly traced, learnable) log inverse temperature.
      normalize: L2-normalise both sides first.
      axis_name: data axis inside ``jax.shard_map`` (global-batch value, see module docstring).

    Returns:
      Scalar loss ``(CE(rows) + CE(columns)) / 2`` of the global ``B x B`` logit matrix.

    References:
      Radford et al. 2021 (CLIP), Figure 3 pseudocode.

    Example:
      >>> clip_loss(za, zb, logit_scale=params["logit_scale"])
    """
    za, zb = _check_pair("za", za, "zb", zb)
    _check_batch("clip_loss", za.shape[0], axis_name)
    if (temperature is None) == (logit_scale is None):
        raise ValueError("clip_loss needs exactly one of temperature and logit_scale")
    if temperature is not None:
        _check_temperature(temperature)
        scale = 1.0 / temperature
    else:
        if jnp.ndim(logit_scale) != 0:
            raise ValueError(f"logit_scale must be a scalar, got shape {jnp.shape(logit_scale)}")
        scale = jnp.exp(logit_scale)
    if normalize:
        za, zb = l2_normalize(za), l2_normalize(zb)
    za_all, offset = _gather(za, axis_name)
    zb_all, _ = _gather(zb, axis_name)
    targets = offset + jnp.arange(za.shape[0])
    # The b->a cross-entropy of local rows equals the column cross-entropy of the global matrix.
    loss_a = jnp.mean(_cross_entropy(scale * (za @ zb_all.T), targets))
    loss_b = jnp.mean(_cross_entropy(scale * (zb @ za_all.T), targets))
    return _global_mean(0.5 * (loss_a + loss_b), axis_name)


def ntxent_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """SimCLR NT-Xent: 2N anchors, each with 1 positive (its other view) and 2N − 2 negatives.

    For anchor ``z1_i``: positive ``z2_i``, negatives every other embedding of both views except
    ``z1_i`` itself; symmetrically for ``z2_i``. Averaged over all ``2N`` anchors.

    Args:
      z1: ``(N, D)`` first-view embeddings.
      z2: ``(N, D)`` second-view embeddings.
      temperature: ``T > 0``.
      normalize: L2-normalise (SimCLR uses cosine similarity).
      axis_name: data axis inside ``jax.shard_map``; negatives are then both views of all devices
        (global batch), and the global-batch value is returned (see module docstring).

    Returns:
      Scalar loss.

    References:
      Chen et al. 2020 (SimCLR), Eq. 1 and Algorithm 1.

    Example:
      >>> ntxent_loss(z1, z2, temperature=0.5)
    """
    z1, z2 = _check_pair("z1", z1, "z2", z2)
    _check_batch("ntxent_loss", z1.shape[0], axis_name)
    _check_temperature(temperature)
    if normalize:
        z1, z2 = l2_normalize(z1), l2_normalize(z2)
    n = z1.shape[0]
    z1_all, offset = _gather(z1, axis_name)
    z2_all, _ = _gather(z2, axis_name)
    n_global = z1_all.shape[0]
    anchors = jnp.concatenate([z1, z2], axis=0)  # (2n, D)
    candidates = jnp.concatenate([z1_all, z2_all], axis=0)  # (2N, D)
    logits = anchors @ candidates.T / temperature
    local = offset + jnp.arange(n)
    self_idx = jnp.concatenate([local, n_global + local])
    pos_idx = jnp.concatenate([n_global + local, local])
    cols = jnp.arange(2 * n_global)
    logits = jnp.where(cols[None, :] == self_idx[:, None], -jnp.inf, logits)
    return _global_mean(jnp.mean(_cross_entropy(logits, pos_idx)), axis_name)


def supcon_loss(
    features: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """Supervised contrastive loss L_out: mean over positives *outside* the log.

    Every view of every sample is an anchor ``a``; ``A(a)`` = all other views in the batch,
    ``P(a)`` = those with the anchor's label. Per anchor
    ``l_a = -(T / T_base) / |P(a)| * sum_{p in P(a)} log softmax_{A(a)}(z_a . z_p / T)``.

    Anchors with no positive (a label seen once with ``V = 1``) have an undefined ``l_a``; they are
    **excluded**: the loss is the mean of ``l_a`` over anchors with ``|P(a)| >= 1`` (0 if none).
    Distributed, that count is global, so the value equals the single-device one.

    Args:
      features: ``(B, V, D)`` embeddings, ``V`` views per sample.
      labels: ``(B,)`` integer class labels.
      temperature: ``T > 0``.
      base_temperature: ``T_base`` of the reference code's ``T / T_base`` factor; ``None`` means
        ``T`` (factor 1, the paper's Eq. 2).
      normalize: L2-normalise the embeddings (the paper assumes unit vectors).
      axis_name: data axis inside ``jax.shard_map`` (global-batch value, see module docstring).

    Returns:
      Scalar loss.

    References:
      Khosla et al. 2020, "Supervised Contrastive Learning", Eq. 2 (L_out^sup).

    Example:
      >>> supcon_loss(jnp.stack([z1, z2], axis=1), labels)
    """
    features = jnp.asarray(features)
    labels = jnp.asarray(labels)
    if features.ndim != 3:
        raise ValueError(f"features must have shape (B, V, D), got shape {features.shape}")
    _check_float("features", features)
    if labels.shape != features.shape[:1]:
        raise ValueError(
            f"labels must have shape ({features.shape[0]},) to match features {features.shape}, "
            f"got {labels.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    _check_batch("supcon_loss", features.shape[0], axis_name)
    _check_temperature(temperature)
    scale = 1.0 if base_temperature is None else temperature / base_temperature
    if normalize:
        features = l2_normalize(features)
    b, v, d = features.shape
    feats_all, offset = _gather(features, axis_name)
    labels_all, _ = _gather(labels, axis_name)
    # Sample-major flattening: row (i, view) -> i * V + view, in both anchors and candidates.
    anchors = features.reshape(b * v, d)
    candidates = feats_all.reshape(-1, d)
    anchor_labels = jnp.repeat(labels, v)
    cand_labels = jnp.repeat(labels_all, v)
    logits = anchors @ candidates.T / temperature
    self_idx = offset * v + jnp.arange(b * v)
    is_self = jnp.arange(candidates.shape[0])[None, :] == self_idx[:, None]
    log_norm = jax.nn.logsumexp(jnp.where(is_self, -jnp.inf, logits), axis=1, keepdims=True)
    log_prob = logits - log_norm
    pos = (anchor_labels[:, None] == cand_labels[None, :]) & ~is_self
    n_pos = jnp.sum(pos, axis=1)
    has_pos = n_pos > 0
    mean_log_prob_pos = jnp.sum(jnp.where(pos, log_prob, 0.0), axis=1) / jnp.maximum(n_pos, 1)
    per_anchor = jnp.where(has_pos, -scale * mean_log_prob_pos, 0.0)
    total, count = jnp.sum(per_anchor), jnp.sum(has_pos).astype(per_anchor.dtype)
    if axis_name is not None:
        total, count = jax.lax.psum((total, count), axis_name)
    return total / jnp.maximum(count, 1.0)


def tuple_infonce_loss(
    anchors: jax.Array,
    positives: jax.Array,
    negatives: jax.Array | None = None,
    *,
    negative_log_weights: jax.Array | None = None,
    temperature: float = 0.07,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """TupleInfoNCE: InfoNCE whose candidates add K blocks of disturbed-tuple negatives.

    Candidates of anchor ``i``: the ``B`` positives ``p_j`` (own one is the target) and the
    ``K * B`` negatives ``n_kj`` (block ``k`` row ``j`` = scene ``j`` with modality ``k`` swapped in
    from another scene). Block ``k``'s logits get ``+ negative_log_weights[k]``: drawing the block
    with multiplicity ``alpha_k`` in the negative distribution ``q_alpha`` is the same as
    duplicating it ``alpha_k`` times, i.e. adding ``log alpha_k`` to its logits. Gradients flow into
    ``negatives``; pass ``stop_gradient`` copies to mimic the reference code's frozen encoder.

    Args:
      anchors: ``(B, D)`` fused embeddings of the anchor tuples.
      positives: ``(B, D)`` fused embeddings of the augmented tuples.
      negatives: optional ``(K, B, D)`` disturbed-tuple embeddings.
      negative_log_weights: optional ``(K,)`` log multiplicities ``log alpha_k`` (traced allowed);
        ``-inf`` (alpha_k = 0) removes block ``k``, and ``-inf`` everywhere is plain InfoNCE.
      temperature: ``T > 0`` (0.07 in the paper).
      normalize: L2-normalise all embeddings (the paper uses cosine similarity).
      axis_name: data axis inside ``jax.shard_map``; positives and every negative block are then
        gathered over the global batch (global-batch value, see module docstring).

    Returns:
      Scalar loss.

    References:
      Liu et al. 2021 (TupleInfoNCE), the loss with negative distribution ``q_alpha``;
      van den Oord et al. 2018, Eq. 4.

    Example:
      >>> tuple_infonce_loss(z_anchor, z_pos, jnp.stack([z_swap_rgb, z_swap_depth]),
      ...                    negative_log_weights=jnp.log(jnp.array([1.0, 2.0])))
    """
    anchors, positives = _check_pair("anchors", anchors, "positives", positives)
    _check_batch("tuple_infonce_loss", anchors.shape[0], axis_name)
    _check_temperature(temperature)
    b, d = anchors.shape
    if negatives is not None:
        negatives = jnp.asarray(negatives)
        if negatives.ndim != 3 or negatives.shape[1:] != (b, d):
            raise ValueError(
                f"negatives must have shape (K, {b}, {d}) to match anchors, got {negatives.shape}"
            )
        _check_float("negatives", negatives)
    if negative_log_weights is not None:
        if negatives is None:
            raise ValueError("negative_log_weights needs negatives")
        negative_log_weights = jnp.asarray(negative_log_weights)
        if negative_log_weights.shape != negatives.shape[:1]:
            raise ValueError(
                f"negative_log_weights must have shape ({negatives.shape[0]},), "
                f"got {negative_log_weights.shape}"
            )
        _check_float("negative_log_weights", negative_log_weights)
    if normalize:
        anchors, positives = l2_normalize(anchors), l2_normalize(positives)
        if negatives is not None:
            negatives = l2_normalize(negatives)
    pos_all, offset = _gather(positives, axis_name)
    logits = anchors @ pos_all.T / temperature  # (b, B_global)
    if negatives is not None:
        neg_all, _ = _gather(negatives, axis_name, axis=1)  # (K, B_global, D)
        neg_logits = jnp.einsum("id,kjd->ikj", anchors, neg_all) / temperature
        if negative_log_weights is not None:
            # log alpha_k = -inf (alpha_k = 0) removes block k exactly; `where` keeps its gradient
            # (to the embeddings and to the weights) at zero instead of inf - inf.
            w = negative_log_weights[None, :, None]
            neg_logits = jnp.where(
                jnp.isneginf(w), -jnp.inf, neg_logits + jnp.where(jnp.isneginf(w), 0.0, w)
            )
        logits = jnp.concatenate([logits, neg_logits.reshape(b, -1)], axis=1)
    targets = offset + jnp.arange(b)
    return _global_mean(jnp.mean(_cross_entropy(logits, targets)), axis_name)
