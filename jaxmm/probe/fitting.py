"""Fitting linear probes: L-BFGS logistic / multilabel fits and closed-form ridge.

All three minimise the same per-sample-scaled objective on standardised features (``n`` rows):

    J(W, b) = (1/n) sum_i loss_i(W x_i + b) + (l2 / 2) ||W||_F^2                         (*)

with loss = softmax cross-entropy, sum of per-label binary cross-entropies, or half the squared
error. In scikit-learn's convention (``C * sum_i loss_i + ||w||^2 / 2``) this is ``C = 1 / (l2 n)``.
The logistic fits run L-BFGS (Nocedal & Wright 2006, Alg. 7.5) via ``optax.lbfgs`` and its zoom
line search inside ``jax.lax.while_loop``, preconditioned by the features' Gram matrix (a change
of variables that leaves the problem and the stopping test as they are, see ``_fit_one``); a path
of strengths is fitted in one program, each fit warm-started at the previous (stronger)
strength's solution; ridge is vmapped.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

# Defaults of the iterative fits: an iteration cap that a well-posed probe does not reach, a
# gradient-norm tolerance and a relative-reduction tolerance (L-BFGS-B's default, float64).
MAX_ITER = 500
TOL = 1e-5
RTOL = 1e-9


class LinearFit(NamedTuple):
    """A fitted linear map ``x @ w + b``.

    ``num_iter`` (L-BFGS iterations), ``grad_norm`` (final gradient norm of the objective) and
    ``converged`` (stopped by a tolerance, not by the iteration cap) are None for closed forms.
    """

    w: jax.Array
    b: jax.Array
    num_iter: jax.Array | None = None
    grad_norm: jax.Array | None = None
    converged: jax.Array | None = None


def standardize(
    x: Any, mean: Any = None, std: Any = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Z-score features with statistics of the data they are fitted on.

    Constant features get ``std = 1`` so they map to zero instead of NaN.

    Args:
      x: ``(n, d)`` features.
      mean, std: ``(d,)`` statistics to reuse (e.g. the training ones on the test set); computed
        from ``x`` when None.

    Returns:
      ``(x_standardised, mean, std)``.
    """
    x = _as_float(x)
    if mean is None:
        mean, std = _moments(x)
    return _zscore(x, mean, std), mean, std


@jax.jit
def _moments(x):
    std = jnp.std(x, axis=0)
    return jnp.mean(x, axis=0), jnp.where(std > 0, std, 1.0)


@jax.jit
def _zscore(x, mean, std):
    return (x - mean) / std


def _lbfgs_minimize(fun, init, max_iter: int, tol: float, rtol: float, grad_norm=otu.tree_norm):
    """Minimise ``fun`` with L-BFGS + zoom line search from ``init``.

    Stops at the first of: ``grad_norm(grad) < tol``; a step that lowers the objective by no more
    than ``rtol * |f|`` (the relative-reduction test of L-BFGS-B, Byrd et al. 1995, whose default
    ``factr * eps`` is 2.2e-9 in float64; in float32, whose resolution is ~1e-7, it only fires on a
    step that gains nothing, which an over-tight ``tol`` otherwise repeats up to the cap);
    ``max_iter`` iterations. Either tolerance counts as converged, the cap does not. A
    ``while_loop`` (not a Python loop) so the whole fit is one XLA program. ``grad_norm`` maps the
    gradient in ``fun``'s parameters to the norm the tolerance is stated in (the gradient of the
    original parameters when ``fun`` is a reparametrisation, see ``_warm_path``).

    Returns:
      ``(params, num_iter, grad_norm, converged)``.
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        params, state, _ = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state, value

    def keep_going(carry):
        _, state, previous = carry
        count = otu.tree_get(state, "count")
        norm = grad_norm(otu.tree_get(state, "grad"))
        value = otu.tree_get(state, "value")  # objective at the current params
        progress = previous - value > rtol * jnp.abs(value)
        return (count == 0) | ((count < max_iter) & (norm >= tol) & progress)

    inf = jnp.asarray(jnp.inf, jax.tree.leaves(init)[0].dtype)
    params, state, _ = jax.lax.while_loop(keep_going, step, (init, opt.init(init), inf))
    norm, count = grad_norm(otu.tree_get(state, "grad")), otu.tree_get(state, "count")
    # Converged: stopped by either tolerance, i.e. before the cap (or at it with a small gradient).
    return params, count, norm, (norm < tol) | (count < max_iter)


def _softmax_loss(logits, targets, rows):
    # The data term of objective (*) with multinomial cross-entropy (Bishop 2006, PRML Eq. 4.108),
    # averaged over the rows weighted by `rows` (0/1: which rows are fitted); `targets` are
    # one-hot rows scaled by the class weights. The bias is unpenalised so the regulariser does
    # not pull predictions towards uniform class frequencies.
    ce = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return jnp.sum(rows * ce) / jnp.sum(rows)


def _sigmoid_loss(logits, targets, rows):
    # One binary cross-entropy per label; the labels share no parameters, so the minimiser is the
    # set of independent per-label logistic regressions.
    bce = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, targets), axis=-1)
    return jnp.sum(rows * bce) / jnp.sum(rows)


def _objective(loss, x, targets, rows, lam, params):
    w, b = params
    return loss(x @ w + b, targets, rows) + 0.5 * lam * jnp.sum(w * w)


def _fit_one(loss, curvature, x, targets, rows, lam, start, max_iter, tol, rtol):
    """One L-BFGS fit of objective (*) at strength ``lam`` from ``start = (W, b)``, preconditioned.

    L-BFGS is not invariant to a linear change of variables, and on correlated embeddings (a
    random-init encoder: the eigenvalues ``e_j`` of the Gram matrix ``G = X^T X / n`` spread over
    decades) the weakly regularised fits crawl to the iteration cap. The fit therefore runs in the
    variables ``V`` of ``W = U diag(s)^-1/2 V``, ``G = U diag(e) U^T``, ``s_j = e_j + lam / c``:
    the Hessian of the data term is about ``c G (x) I`` (``c`` = ``curvature``, the loss's
    curvature at uniform predictions: ``1/K`` for the softmax, ``1/4`` per sigmoid), so the
    Hessian of (*) in ``V`` is about ``c I`` near the start of a path. The data term sees
    ``X U diag(s)^-1/2`` and the penalty becomes ``sum_j ||V_j||^2 / s_j``. It is the same
    problem re-expressed: the minimiser maps back exactly, and the stopping test uses the gradient
    norm in ``(W, b)`` (``||g_W||^2 = sum_j s_j ||g_{V,j}||^2``), so ``tol`` means what it meant
    unpreconditioned; only the iteration count changes.
    """
    evals, evecs = jnp.linalg.eigh((x * rows[:, None]).T @ x / jnp.sum(rows))
    # Round-off can put the eigenvalues of a rank-deficient Gram matrix just below zero.
    scale = jnp.maximum(evals, 0.0) + lam / curvature
    root = jnp.sqrt(scale)[:, None]
    xv = (x @ evecs) / root.T

    def fun(params):
        v, b = params
        return loss(xv @ v + b, targets, rows) + 0.5 * lam * jnp.sum(v * v / root**2)

    def w_grad_norm(grad):
        g_v, g_b = grad
        return jnp.sqrt(jnp.sum(root**2 * g_v * g_v) + jnp.sum(g_b * g_b))

    w0, b0 = start
    (v, b), n_iter, grad_norm, ok = _lbfgs_minimize(
        fun, (root * (evecs.T @ w0), b0), max_iter, tol, rtol, w_grad_norm
    )
    return LinearFit(evecs @ (v / root), b, n_iter, grad_norm, ok)


def _zeros_start(x, k):
    return jnp.zeros((x.shape[1], k), x.dtype), jnp.zeros((k,), x.dtype)


def _warm_path(loss, x, targets, l2, init, max_iter, tol, rtol, curvature) -> LinearFit:
    """Fits of objective (*) for a scalar ``l2`` or, warm-started, for each of an ``(L,)`` path.

    The path runs from the strongest strength to the weakest (``lax.scan``), each fit starting at
    the previous one's solution, which is close to its own. The problem is strictly convex in
    ``W`` for ``l2 > 0``, so the start changes the minimiser reached only within the tolerance.
    Each fit is preconditioned (``_fit_one``). Results come back in the order of ``l2``.
    """
    rows = jnp.ones((x.shape[0],), x.dtype)
    init = _zeros_start(x, targets.shape[1]) if init is None else init

    def fit_one(start, lam):
        fit = _fit_one(loss, curvature, x, targets, rows, lam, start, max_iter, tol, rtol)
        return (fit.w, fit.b), fit

    if l2.ndim == 0:
        return fit_one(init, l2)[1]
    order = jnp.argsort(-l2)
    _, fits = jax.lax.scan(fit_one, init, l2[order])
    inverse = jnp.argsort(order)
    return jax.tree.map(lambda a: a[inverse], fits)


def _onehot_targets(labels, num_classes, class_weights, dtype):
    # Class weights scale the one-hot targets: the objective's data term becomes
    # mean_i weight[y_i] CE_i (scikit-learn's per-class `class_weight`).
    onehot = jax.nn.one_hot(labels, num_classes, dtype=dtype)
    return onehot if class_weights is None else onehot * jnp.asarray(class_weights, dtype)


@partial(jax.jit, static_argnames=("num_classes", "max_iter", "tol", "rtol"))
def _fit_softmax(x, labels, l2, init=None, class_weights=None, *, num_classes, max_iter, tol, rtol):
    onehot = _onehot_targets(labels, num_classes, class_weights, x.dtype)
    return _warm_path(_softmax_loss, x, onehot, l2, init, max_iter, tol, rtol, 1.0 / num_classes)


def balanced_class_weights(labels: Any, num_classes: int) -> np.ndarray:
    """``n / (K n_c)`` per class (0 for a class absent from ``labels``): scikit-learn's
    ``class_weight="balanced"``; every class then carries the same total weight."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
    n = counts.sum()
    return np.where(counts > 0, n / (num_classes * np.maximum(counts, 1.0)), 0.0)


@partial(jax.jit, static_argnames=("max_iter", "tol", "rtol"))
def _fit_sigmoid(x, targets, l2, init=None, *, max_iter, tol, rtol):
    return _warm_path(_sigmoid_loss, x, targets, l2, init, max_iter, tol, rtol, 0.25)


def _ridge(x, y, l2, rows):
    # Centring removes the intercept from the penalised problem: the stationarity conditions of (*)
    # with half squared error are (Xc^T Xc / n + l2 I) w = Xc^T yc / n and b = mean(y) - mean(x) w
    # (Hastie et al. 2009, ESL Eq. 3.44 and the remark on centring below it); means and sums run
    # over the rows weighted by `rows` (0/1: which rows are fitted).
    d = x.shape[1]
    n = jnp.sum(rows)
    r = rows.reshape((-1,) + (1,) * (y.ndim - 1))
    x_mean, y_mean = rows @ x / n, jnp.sum(r * y, axis=0) / n
    xc, yc = x - x_mean, y - y_mean
    gram = (xc * rows[:, None]).T @ xc / n
    rhs = (xc * rows[:, None]).T @ yc / n

    def fit_one(lam):
        w = jax.scipy.linalg.solve(gram + lam * jnp.eye(d, dtype=x.dtype), rhs, assume_a="pos")
        return LinearFit(w, y_mean - x_mean @ w)

    return jax.vmap(fit_one)(l2) if l2.ndim == 1 else fit_one(l2)


@jax.jit
def _fit_ridge(x, y, l2):
    return _ridge(x, y, l2, jnp.ones((x.shape[0],), x.dtype))


def _as_float(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


def fit_logistic(
    x: Any,
    labels: Any,
    l2: float,
    *,
    num_classes: int,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    rtol: float = RTOL,
    class_weights: Any = None,
) -> LinearFit:
    """Multinomial logistic regression minimising objective (*) with L-BFGS.

    Minimises ``mean_i CE(softmax(x_i W + b), y_i) + l2/2 ||W||^2`` (Bishop 2006, PRML Eq. 4.108
    plus a Gaussian prior on ``W``); equivalent to scikit-learn's multinomial
    ``LogisticRegression(C=1/(l2 * n))``. Features are used as given (standardise first).

    Args:
      x: ``(n, d)`` features.
      labels: ``(n,)`` ints in ``[0, num_classes)``.
      l2: positive L2 strength.
      num_classes: number of classes ``K``.
      max_iter: L-BFGS iteration cap.
      tol: stop once the gradient's L2 norm falls below this.
      rtol: stop after a step that lowers the objective by no more than ``rtol`` times its value
        (meaningful in float64, as `jaxmm.probe.probe` fits; in float32 it detects a stall).
      class_weights: optional ``(K,)`` weights; the data term becomes
        ``mean_i class_weights[y_i] CE_i`` (scikit-learn's ``class_weight``; see
        :func:`balanced_class_weights`).

    Returns:
      ``LinearFit(w (d, K), b (K,), num_iter, grad_norm, converged)``.

    Example:
      >>> fit = fit_logistic(x, y, 1e-3, num_classes=3)
      >>> probs = jax.nn.softmax(x @ fit.w + fit.b)
    """
    x = _as_float(x)
    return _fit_softmax(
        x,
        jnp.asarray(labels, jnp.int32),
        jnp.asarray(l2, x.dtype),
        None,
        None if class_weights is None else jnp.asarray(class_weights, x.dtype),
        num_classes=int(num_classes),
        max_iter=int(max_iter),
        tol=float(tol),
        rtol=float(rtol),
    )


def _check_path(l2s):
    l2s = _as_float(l2s)
    if l2s.ndim != 1:
        raise ValueError(f"l2s must be 1-D, got shape {l2s.shape}")
    return l2s


def fit_logistic_path(
    x: Any,
    labels: Any,
    l2s: Any,
    *,
    num_classes: int,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    rtol: float = RTOL,
) -> LinearFit:
    """:func:`fit_logistic` for every strength in ``l2s``; leading axis L, in the order of ``l2s``.

    One XLA program fits the strengths from the strongest to the weakest, each warm-started at
    the previous solution (see ``_warm_path``), so the path costs little more than its slowest fit.
    """
    x = _as_float(x)
    return _fit_softmax(
        x,
        jnp.asarray(labels, jnp.int32),
        _check_path(l2s),
        num_classes=int(num_classes),
        max_iter=int(max_iter),
        tol=float(tol),
        rtol=float(rtol),
    )


def fit_multilabel_logistic(
    x: Any,
    targets: Any,
    l2: float,
    *,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    rtol: float = RTOL,
) -> LinearFit:
    """Independent binary logistic regressions (one sigmoid per label) minimising objective (*).

    Minimises ``mean_i sum_k BCE(sigmoid(x_i w_k + b_k), t_ik) + l2/2 ||W||^2``; per label this is
    scikit-learn's binary ``LogisticRegression(C=1/(l2 * n))``. CoMM App. B.4 trains the MM-IMDb
    head with "a cross-entropy loss for each label"; this is its linear-probe counterpart.

    Args:
      x: ``(n, d)`` features.
      targets: ``(n, k)`` 0/1 indicators.
      l2: positive L2 strength.
      max_iter, tol, rtol: as in :func:`fit_logistic`.

    Returns:
      ``LinearFit(w (d, k), b (k,), num_iter, grad_norm, converged)``.
    """
    x = _as_float(x)
    return _fit_sigmoid(
        x,
        jnp.asarray(targets, x.dtype),
        jnp.asarray(l2, x.dtype),
        max_iter=int(max_iter),
        tol=float(tol),
        rtol=float(rtol),
    )


def fit_multilabel_logistic_path(
    x: Any,
    targets: Any,
    l2s: Any,
    *,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    rtol: float = RTOL,
) -> LinearFit:
    """:func:`fit_multilabel_logistic` for every strength in ``l2s`` (warm-started path)."""
    x = _as_float(x)
    return _fit_sigmoid(
        x,
        jnp.asarray(targets, x.dtype),
        _check_path(l2s),
        max_iter=int(max_iter),
        tol=float(tol),
        rtol=float(rtol),
    )


def fit_ridge(x: Any, y: Any, l2: float) -> LinearFit:
    """Ridge regression with an unpenalised intercept, in closed form.

    Minimises ``mean_i ||y_i - x_i W - b||^2 / 2 + l2/2 ||W||^2`` (objective (*)), i.e. solves
    ``(Xc^T Xc + n l2 I) W = Xc^T yc`` on centred data (Hoerl & Kennard 1970; Hastie et al. 2009,
    ESL Eq. 3.44) and sets ``b = mean(y) - mean(x) W``.

    Args:
      x: ``(n, d)`` features.
      y: ``(n,)`` or ``(n, k)`` targets.
      l2: positive L2 strength.

    Returns:
      ``LinearFit(w (d,) or (d, k), b () or (k,))``.
    """
    x = _as_float(x)
    return _fit_ridge(x, jnp.asarray(y, x.dtype), jnp.asarray(l2, x.dtype))


def fit_ridge_path(x: Any, y: Any, l2s: Any) -> LinearFit:
    """:func:`fit_ridge` for every strength in ``l2s`` at once (``jax.vmap``); leading axis L."""
    x, l2s = _as_float(x), _as_float(l2s)
    if l2s.ndim != 1:
        raise ValueError(f"l2s must be 1-D, got shape {l2s.shape}")
    return _fit_ridge(x, jnp.asarray(y, x.dtype), l2s)
