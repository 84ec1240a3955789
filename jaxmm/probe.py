"""Linear probes on frozen embeddings: fitting, model selection, metrics, tables.

CoMM (Dufumier, Castillo-Navarro et al., ICLR 2025), Sec. 4 "Evaluation": a pre-trained encoder is
frozen and "we train a linear layer to minimize the classification or regression loss (depending on
the task)". FactorCL (Liang et al., NeurIPS 2023), Sec. 3 uses the same protocol ("the learned Zs
can then be used as input to a linear classifier"). This module implements that layer for the
three task kinds the papers report:

* ``classification`` -- multinomial logistic regression (softmax cross-entropy + L2 on the weights,
  not the bias), fitted full-batch with L-BFGS (Nocedal & Wright 2006, Alg. 7.5) via ``optax.lbfgs``
  and its zoom line search, inside ``jax.lax.while_loop``. Reported as balanced accuracy (the
  default selection metric, as in CoMM's evaluation; the paper's text says "top-1 accuracy"),
  plain accuracy, weighted / macro F1 and AUROC.
* ``regression`` -- ridge regression in closed form with an unpenalised intercept (Vision&Touch
  end-effector position, reported as MSE).
* ``multilabel`` -- independent sigmoids with binary cross-entropy (MM-IMDb genres, reported as
  weighted / macro F1, CoMM Table 2).

All three minimise the same per-sample-scaled objective, so one L2 grid means the same thing for
every kind (standardised features, ``n`` training rows):

    J(W, b) = (1/n) sum_i loss_i(W x_i + b) + (l2 / 2) ||W||_F^2                         (*)

with loss = softmax cross-entropy, sum of per-label binary cross-entropies, or half the squared
error. In scikit-learn's convention (``C * sum_i loss_i + ||w||^2 / 2``) this is ``C = 1 / (l2 n)``.

The L2 strength is picked on a validation hold-out carved out of the training set (stratified by
class for classification, random otherwise) by the task's selection metric, with all strengths of
the grid fitted at once under ``jax.vmap``; the probe is then refitted on train + validation with
the chosen strength and evaluated once on the test set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

__all__ = [
    "DEFAULT_L2_GRID",
    "LinearFit",
    "ProbeResult",
    "ProbeTask",
    "accuracy",
    "balanced_accuracy",
    "f1_score",
    "fit_logistic",
    "fit_logistic_path",
    "fit_multilabel_logistic",
    "fit_multilabel_logistic_path",
    "fit_ridge",
    "fit_ridge_path",
    "format_table",
    "mean_absolute_error",
    "mean_squared_error",
    "multilabel_f1",
    "probe",
    "probe_many",
    "random_split",
    "roc_auc",
    "roc_auc_ovr",
    "standardize",
    "stratified_split",
]

# Per-sample-scaled L2 strengths of objective (*): 1e-6 is almost unregularised on standardised
# features, 1 shrinks a probe to nearly the class prior.
DEFAULT_L2_GRID: tuple[float, ...] = tuple(float(10.0**e) for e in range(-6, 1))

_KINDS = ("classification", "regression", "multilabel")
_METRICS = {
    "classification": ("balanced_accuracy", "accuracy", "f1_weighted", "f1_macro", "auroc"),
    "regression": ("mse", "mae"),
    "multilabel": ("f1_weighted", "f1_macro", "f1_micro", "auroc"),
}
_DEFAULT_SELECT = {
    "classification": "balanced_accuracy",
    "regression": "mse",
    "multilabel": "f1_macro",
}
_LOWER_IS_BETTER = frozenset({"mse", "mae"})


# --------------------------------------------------------------------------------------------
# Task and result containers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProbeTask:
    """One downstream task read from the label dict.

    Attributes:
      name: key of the task in the label dicts (e.g. ``"shape"``, ``"label"``).
      kind: ``"classification"`` (int labels ``(n,)``), ``"regression"`` (float ``(n,)`` or
        ``(n, k)``) or ``"multilabel"`` (0/1 indicators ``(n, k)``).
      num_classes: number of classes (classification) or labels (multilabel); inferred from the
        training labels when None.
      select_by: metric that picks the L2 strength on the validation hold-out; defaults to
        balanced accuracy / MSE / macro F1 for the three kinds.
    """

    name: str
    kind: str
    num_classes: int | None = None
    select_by: str | None = None

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"ProbeTask.kind must be one of {_KINDS}, got {self.kind!r}")
        if self.num_classes is not None:
            if self.kind == "regression":
                raise ValueError(
                    f"ProbeTask {self.name!r}: num_classes is meaningless for regression"
                )
            minimum = 2 if self.kind == "classification" else 1
            if int(self.num_classes) < minimum:
                raise ValueError(
                    f"ProbeTask {self.name!r}: num_classes must be >= {minimum}, "
                    f"got {self.num_classes}"
                )
        if self.select_by is not None and self.select_by not in _METRICS[self.kind]:
            raise ValueError(
                f"ProbeTask {self.name!r}: select_by must be one of {_METRICS[self.kind]} for "
                f"kind {self.kind!r}, got {self.select_by!r}"
            )

    @property
    def selection_metric(self) -> str:
        return self.select_by or _DEFAULT_SELECT[self.kind]


@dataclasses.dataclass
class ProbeResult:
    """Outcome of one probe.

    Attributes:
      task: the task probed.
      metrics: test-set metrics by name (floats).
      l2: L2 strength of the final (refitted) probe.
      val_scores: validation value of ``task.selection_metric`` per L2 strength of the grid (empty
        when the grid has a single strength, i.e. no selection happened).
      chance: test-set value of each metric for a label-blind predictor, where one is defined:
        ``1/K`` for balanced accuracy, the train-majority class's test frequency for accuracy, 0.5
        for AUROC, and the error of the best training constant for MSE / MAE.
      fit_info: diagnostics of the final fit (``num_iter``, ``grad_norm`` for the iterative fits).
    """

    task: ProbeTask
    metrics: dict[str, float]
    l2: float
    val_scores: dict[float, float]
    chance: dict[str, float]
    fit_info: dict[str, float]


class LinearFit(NamedTuple):
    """A fitted linear map ``x @ w + b``; ``num_iter``/``grad_norm`` are None for closed forms."""

    w: jax.Array
    b: jax.Array
    num_iter: jax.Array | None = None
    grad_norm: jax.Array | None = None


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


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


def _lbfgs_minimize(fun, init, max_iter: int, tol: float):
    """Minimise ``fun`` with L-BFGS + zoom line search until ``||grad|| < tol`` or ``max_iter``.

    A ``while_loop`` (not a Python loop) so the whole fit is one XLA program and ``vmap``-able: the
    batched loop keeps stepping until every member has converged, but a converged member's carry
    is frozen by the batched predicate, so each strength ends exactly where its own fit would.
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state

    def keep_going(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        grad_norm = otu.tree_norm(otu.tree_get(state, "grad"))
        return (count == 0) | ((count < max_iter) & (grad_norm >= tol))

    params, state = jax.lax.while_loop(keep_going, step, (init, opt.init(init)))
    return params, otu.tree_get(state, "count"), otu.tree_norm(otu.tree_get(state, "grad"))


def _softmax_objective(params, x, onehot, l2):
    # Objective (*) with multinomial cross-entropy (Bishop 2006, PRML Eq. 4.108); bias unpenalised
    # so the regulariser does not pull predictions towards uniform class frequencies.
    w, b = params
    log_probs = jax.nn.log_softmax(x @ w + b, axis=-1)
    return -jnp.mean(jnp.sum(onehot * log_probs, axis=-1)) + 0.5 * l2 * jnp.sum(w * w)


def _sigmoid_objective(params, x, targets, l2):
    # Objective (*) with one binary cross-entropy per label; the labels share no parameters, so
    # the minimiser is the set of independent per-label logistic regressions.
    w, b = params
    bce = optax.sigmoid_binary_cross_entropy(x @ w + b, targets)
    return jnp.mean(jnp.sum(bce, axis=-1)) + 0.5 * l2 * jnp.sum(w * w)


@partial(jax.jit, static_argnames=("num_classes", "max_iter", "tol"))
def _fit_softmax(x, labels, l2, *, num_classes, max_iter, tol):
    onehot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
    init = (jnp.zeros((x.shape[1], num_classes), x.dtype), jnp.zeros((num_classes,), x.dtype))

    def fit_one(lam):
        fun = partial(_softmax_objective, x=x, onehot=onehot, l2=lam)
        (w, b), n_iter, g = _lbfgs_minimize(fun, init, max_iter, tol)
        return LinearFit(w, b, n_iter, g)

    return jax.vmap(fit_one)(l2) if l2.ndim == 1 else fit_one(l2)


@partial(jax.jit, static_argnames=("max_iter", "tol"))
def _fit_sigmoid(x, targets, l2, *, max_iter, tol):
    k = targets.shape[1]
    init = (jnp.zeros((x.shape[1], k), x.dtype), jnp.zeros((k,), x.dtype))

    def fit_one(lam):
        fun = partial(_sigmoid_objective, x=x, targets=targets, l2=lam)
        (w, b), n_iter, g = _lbfgs_minimize(fun, init, max_iter, tol)
        return LinearFit(w, b, n_iter, g)

    return jax.vmap(fit_one)(l2) if l2.ndim == 1 else fit_one(l2)


@jax.jit
def _fit_ridge(x, y, l2):
    # Centring removes the intercept from the penalised problem: the stationarity conditions of (*)
    # with half squared error are (Xc^T Xc / n + l2 I) w = Xc^T yc / n and b = mean(y) - mean(x) w
    # (Hastie et al. 2009, ESL Eq. 3.44 and the remark on centring below it).
    n, d = x.shape
    x_mean, y_mean = jnp.mean(x, axis=0), jnp.mean(y, axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc / n
    rhs = xc.T @ yc / n

    def fit_one(lam):
        w = jax.scipy.linalg.solve(gram + lam * jnp.eye(d, dtype=x.dtype), rhs, assume_a="pos")
        return LinearFit(w, y_mean - x_mean @ w)

    return jax.vmap(fit_one)(l2) if l2.ndim == 1 else fit_one(l2)


def _as_float(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


def fit_logistic(
    x: Any, labels: Any, l2: float, *, num_classes: int, max_iter: int = 500, tol: float = 1e-5
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

    Returns:
      ``LinearFit(w (d, K), b (K,), num_iter, grad_norm)``.

    Example:
      >>> fit = fit_logistic(x, y, 1e-3, num_classes=3)
      >>> probs = jax.nn.softmax(x @ fit.w + fit.b)
    """
    return _fit_softmax(
        _as_float(x),
        jnp.asarray(labels, jnp.int32),
        jnp.asarray(l2, _as_float(x).dtype),
        num_classes=int(num_classes),
        max_iter=int(max_iter),
        tol=float(tol),
    )


def fit_logistic_path(
    x: Any, labels: Any, l2s: Any, *, num_classes: int, max_iter: int = 500, tol: float = 1e-5
) -> LinearFit:
    """:func:`fit_logistic` for every strength in ``l2s`` at once (``jax.vmap``); leading axis L."""
    l2s = _as_float(l2s)
    if l2s.ndim != 1:
        raise ValueError(f"l2s must be 1-D, got shape {l2s.shape}")
    return _fit_softmax(
        _as_float(x),
        jnp.asarray(labels, jnp.int32),
        l2s,
        num_classes=int(num_classes),
        max_iter=int(max_iter),
        tol=float(tol),
    )


def fit_multilabel_logistic(
    x: Any, targets: Any, l2: float, *, max_iter: int = 500, tol: float = 1e-5
) -> LinearFit:
    """Independent binary logistic regressions (one sigmoid per label) minimising objective (*).

    Minimises ``mean_i sum_k BCE(sigmoid(x_i w_k + b_k), t_ik) + l2/2 ||W||^2``; per label this is
    scikit-learn's binary ``LogisticRegression(C=1/(l2 * n))``. CoMM App. B.4 trains the MM-IMDb
    head with "a cross-entropy loss for each label"; this is its linear-probe counterpart.

    Args:
      x: ``(n, d)`` features.
      targets: ``(n, k)`` 0/1 indicators.
      l2: positive L2 strength.
      max_iter, tol: as in :func:`fit_logistic`.

    Returns:
      ``LinearFit(w (d, k), b (k,), num_iter, grad_norm)``.
    """
    x = _as_float(x)
    return _fit_sigmoid(
        x,
        jnp.asarray(targets, x.dtype),
        jnp.asarray(l2, x.dtype),
        max_iter=int(max_iter),
        tol=float(tol),
    )


def fit_multilabel_logistic_path(
    x: Any, targets: Any, l2s: Any, *, max_iter: int = 500, tol: float = 1e-5
) -> LinearFit:
    """:func:`fit_multilabel_logistic` for every strength in ``l2s`` at once; leading axis L."""
    x, l2s = _as_float(x), _as_float(l2s)
    if l2s.ndim != 1:
        raise ValueError(f"l2s must be 1-D, got shape {l2s.shape}")
    return _fit_sigmoid(
        x, jnp.asarray(targets, x.dtype), l2s, max_iter=int(max_iter), tol=float(tol)
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


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _confusion(labels, pred, num_classes: int) -> jax.Array:
    labels, pred = jnp.asarray(labels, jnp.int32), jnp.asarray(pred, jnp.int32)
    return jnp.zeros((num_classes, num_classes), jnp.float32).at[labels, pred].add(1.0)


@jax.jit
def accuracy(labels: Any, pred: Any) -> jax.Array:
    """Fraction of exact matches between integer ``labels`` and ``pred``."""
    return jnp.mean(jnp.asarray(labels) == jnp.asarray(pred))


@partial(jax.jit, static_argnames=("num_classes",))
def balanced_accuracy(labels: Any, pred: Any, num_classes: int) -> jax.Array:
    """Mean per-class recall over the classes present in ``labels``.

    Brodersen et al. 2010 ("The balanced accuracy and its posterior distribution", Eq. 1); a
    label-blind predictor scores ``1/K`` in expectation whatever the class imbalance.
    """
    cm = _confusion(labels, pred, num_classes)
    support = cm.sum(axis=1)
    present = support > 0
    recall = jnp.where(present, jnp.diag(cm) / jnp.where(present, support, 1.0), 0.0)
    return jnp.sum(recall) / jnp.sum(present)


def _f1_from_counts(tp, fp, fn):
    # F1 = 2TP / (2TP + FP + FN); zero when the class is never predicted nor present (sklearn's
    # zero_division=0 convention).
    denom = 2 * tp + fp + fn
    return jnp.where(denom > 0, 2 * tp / jnp.where(denom > 0, denom, 1.0), 0.0)


@partial(jax.jit, static_argnames=("num_classes", "average"))
def f1_score(labels: Any, pred: Any, num_classes: int, average: str = "macro") -> jax.Array:
    """Multi-class F1 (van Rijsbergen 1979), averaged over classes.

    Args:
      labels, pred: ``(n,)`` ints in ``[0, num_classes)``.
      num_classes: ``K``.
      average: ``"macro"`` -- unweighted mean over classes occurring in ``labels`` or ``pred``;
        ``"weighted"`` -- mean weighted by each class's support in ``labels``.
    """
    cm = _confusion(labels, pred, num_classes)
    tp = jnp.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    f1 = _f1_from_counts(tp, predicted - tp, support - tp)
    if average == "macro":
        seen = (support > 0) | (predicted > 0)
        return jnp.sum(jnp.where(seen, f1, 0.0)) / jnp.sum(seen)
    if average == "weighted":
        return jnp.sum(f1 * support) / jnp.sum(support)
    raise ValueError(f"average must be 'macro' or 'weighted', got {average!r}")


def _average_ranks(scores: jax.Array) -> jax.Array:
    # 1-based ranks; tied scores occupy sorted positions [lo, hi) and all get their mean rank.
    srt = jnp.sort(scores)
    lo = jnp.searchsorted(srt, scores, side="left")
    hi = jnp.searchsorted(srt, scores, side="right")
    return (lo + hi + 1) / 2.0


@jax.jit
def roc_auc(labels: Any, scores: Any) -> jax.Array:
    """Binary AUROC via the Mann-Whitney U statistic with average ranks for ties.

    ``AUC = (R_pos - P(P+1)/2) / (P N)`` with ``R_pos`` the rank sum of the P positives among
    P + N scores (Hanley & McNeil 1982, Eq. 2); ties count one half. NaN if a class is absent.

    Args:
      labels: ``(n,)`` 0/1 (or bool).
      scores: ``(n,)`` real scores, larger meaning "more positive".
    """
    pos = jnp.asarray(labels).astype(bool)
    ranks = _average_ranks(_as_float(scores))
    n_pos = jnp.sum(pos).astype(ranks.dtype)
    n_neg = pos.shape[0] - n_pos
    u = jnp.sum(jnp.where(pos, ranks, 0.0)) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


@jax.jit
def roc_auc_ovr(labels: Any, probs: Any) -> jax.Array:
    """One-vs-rest macro AUROC: mean of :func:`roc_auc` of column ``c`` for ``labels == c``.

    Averages over the classes that have both positives and negatives in ``labels`` (the others
    have no defined AUROC); equals scikit-learn's ``roc_auc_score(multi_class="ovr")`` when every
    class occurs.

    Args:
      labels: ``(n,)`` ints in ``[0, K)``.
      probs: ``(n, K)`` class scores.
    """
    probs = _as_float(probs)
    labels = jnp.asarray(labels, jnp.int32)
    onehot = labels[:, None] == jnp.arange(probs.shape[1])
    aucs = jax.vmap(roc_auc, in_axes=1)(onehot, probs)
    return jnp.nanmean(aucs)


@jax.jit
def mean_squared_error(y: Any, pred: Any) -> jax.Array:
    """Mean over samples and outputs of ``(y - pred)^2``."""
    return jnp.mean((_as_float(y) - _as_float(pred)) ** 2)


@jax.jit
def mean_absolute_error(y: Any, pred: Any) -> jax.Array:
    """Mean over samples and outputs of ``|y - pred|``."""
    return jnp.mean(jnp.abs(_as_float(y) - _as_float(pred)))


@partial(jax.jit, static_argnames=("average",))
def multilabel_f1(targets: Any, pred: Any, average: str = "macro") -> jax.Array:
    """F1 for ``(n, k)`` 0/1 indicator matrices (MM-IMDb, CoMM Table 2).

    Args:
      targets, pred: ``(n, k)`` 0/1 indicators.
      average: ``"micro"`` -- F1 of the TP/FP/FN pooled over labels; ``"macro"`` -- unweighted
        mean of per-label F1 (a label never present nor predicted scores 0); ``"weighted"`` --
        per-label F1 weighted by label support.
    """
    t, p = _as_float(targets), _as_float(pred)
    tp = jnp.sum(t * p, axis=0)
    fp = jnp.sum((1 - t) * p, axis=0)
    fn = jnp.sum(t * (1 - p), axis=0)
    if average == "micro":
        return _f1_from_counts(tp.sum(), fp.sum(), fn.sum())
    f1 = _f1_from_counts(tp, fp, fn)
    if average == "macro":
        return jnp.mean(f1)
    if average == "weighted":
        support = tp + fn
        return jnp.sum(f1 * support) / jnp.sum(support)
    raise ValueError(f"average must be 'micro', 'macro' or 'weighted', got {average!r}")


@partial(jax.jit, static_argnums=(0, 3))
def _metrics(kind: str, y, out, num_classes: int | None) -> dict[str, jax.Array]:
    """All metrics of a task kind from labels ``y`` and linear outputs ``out`` (logits/preds)."""
    if kind == "classification":
        pred = jnp.argmax(out, axis=-1)
        probs = jax.nn.softmax(out, axis=-1)
        auroc = roc_auc(y == 1, probs[:, 1]) if num_classes == 2 else roc_auc_ovr(y, probs)
        return {
            "balanced_accuracy": balanced_accuracy(y, pred, num_classes),
            "accuracy": accuracy(y, pred),
            "f1_weighted": f1_score(y, pred, num_classes, "weighted"),
            "f1_macro": f1_score(y, pred, num_classes, "macro"),
            "auroc": auroc,
        }
    if kind == "regression":
        return {"mse": mean_squared_error(y, out), "mae": mean_absolute_error(y, out)}
    pred = (out > 0).astype(jnp.float32)  # sigmoid(out) > 0.5
    aucs = jax.vmap(roc_auc, in_axes=1)(y, out)
    return {
        "f1_weighted": multilabel_f1(y, pred, "weighted"),
        "f1_macro": multilabel_f1(y, pred, "macro"),
        "f1_micro": multilabel_f1(y, pred, "micro"),
        "auroc": jnp.nanmean(aucs),
    }


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")


def stratified_split(
    labels: Any, val_fraction: float, key: jax.Array
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class random hold-out: ``round(val_fraction * n_c)`` of each class ``c`` to validation.

    At least one example of each class stays in the training part, so every class seen in
    ``labels`` can be fitted.

    Args:
      labels: ``(n,)`` ints.
      val_fraction: fraction in (0, 1).
      key: ``jax.random.key`` for the shuffle.

    Returns:
      ``(train_idx, val_idx)``, sorted int arrays partitioning ``range(n)``.
    """
    _check_fraction(val_fraction)
    labels = np.asarray(labels)
    perm = np.asarray(jax.random.permutation(key, labels.shape[0]))
    val = []
    for c in np.unique(labels):
        members = perm[labels[perm] == c]  # class members in shuffled order
        n_val = min(int(round(val_fraction * members.size)), members.size - 1)
        val.append(members[:n_val])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(labels.shape[0]), val_idx)
    return train_idx, val_idx


def random_split(n: int, val_fraction: float, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random hold-out of ``round(val_fraction * n)`` rows; returns sorted index arrays."""
    _check_fraction(val_fraction)
    perm = np.asarray(jax.random.permutation(key, n))
    n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _check_embeddings(name: str, emb: Any) -> np.ndarray:
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {emb.shape}")
    if emb.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {emb.shape})")
    if not np.issubdtype(emb.dtype, np.number) or np.issubdtype(emb.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {emb.dtype}")
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} of {emb.shape[0]} rows containing NaN or inf "
            f"(first at row {int(np.argmax(bad))})"
        )
    return emb


def _check_labels(task: ProbeTask, which: str, y: Any, n: int) -> np.ndarray:
    y = np.asarray(y)
    field = f"{which}_labels[{task.name!r}]"
    if y.shape[:1] != (n,):
        raise ValueError(
            f"{field} has shape {y.shape} but {which}_emb has {n} rows; lengths must match"
        )
    if task.kind == "classification":
        if y.ndim != 1:
            raise ValueError(f"{field} must be 1-D class indices, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
                raise ValueError(f"{field} must hold integer class indices, got dtype {y.dtype}")
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        raise ValueError(f"{field} must be numeric, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise ValueError(f"{field} contains {int((~np.isfinite(y)).sum())} NaN/inf values")
    if task.kind == "regression":
        if y.ndim not in (1, 2):
            raise ValueError(f"{field} must have shape (n,) or (n, k), got {y.shape}")
        return y
    if y.ndim != 2:
        raise ValueError(f"{field} must be a 2-D (n, k) 0/1 indicator matrix, got shape {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{field} must contain only 0/1 indicators")
    return y


def _check_inputs(train_emb, train_labels, test_emb, test_labels, task):
    if not isinstance(task, ProbeTask):
        raise ValueError(f"task must be a ProbeTask, got {type(task).__name__}")
    x_tr = _check_embeddings("train_emb", train_emb)
    x_te = _check_embeddings("test_emb", test_emb)
    if x_tr.shape[1] != x_te.shape[1]:
        raise ValueError(
            f"train_emb has dimension {x_tr.shape[1]} but test_emb has {x_te.shape[1]}"
        )
    y_tr = _check_labels(task, "train", train_labels, x_tr.shape[0])
    y_te = _check_labels(task, "test", test_labels, x_te.shape[0])
    k = task.num_classes
    if task.kind == "classification":
        k = int(y_tr.max()) + 1 if k is None else int(k)
        for which, y in (("train", y_tr), ("test", y_te)):
            if y.min() < 0 or y.max() >= k:
                raise ValueError(
                    f"{which}_labels[{task.name!r}] must lie in [0, {k}), got values in "
                    f"[{y.min()}, {y.max()}]"
                )
        missing = np.setdiff1d(np.arange(k), y_tr)
        if missing.size:
            raise ValueError(
                f"class(es) {missing.tolist()} of task {task.name!r} never occur in train_labels; "
                f"a linear probe cannot learn them (pass the right num_classes or relabel)"
            )
        if k < 2:
            raise ValueError(f"task {task.name!r} needs at least 2 classes, got {k}")
    elif task.kind == "multilabel":
        if k is None:
            k = y_tr.shape[1]
        for which, y in (("train", y_tr), ("test", y_te)):
            if y.shape[1] != k:
                raise ValueError(
                    f"{which}_labels[{task.name!r}] has {y.shape[1]} labels, expected {k}"
                )
    elif y_tr.shape[1:] != y_te.shape[1:]:
        raise ValueError(
            f"train_labels[{task.name!r}] has per-row shape {y_tr.shape[1:]} but test_labels has "
            f"{y_te.shape[1:]}"
        )
    return x_tr, y_tr, x_te, y_te, k


# --------------------------------------------------------------------------------------------
# Probe
# --------------------------------------------------------------------------------------------


def _fit_kind(kind, x, y, l2, num_classes, max_iter, tol) -> LinearFit:
    """Fit one kind of probe; ``l2`` scalar or ``(L,)`` (vmapped)."""
    if kind == "classification":
        return _fit_softmax(
            x, jnp.asarray(y, jnp.int32), l2, num_classes=num_classes, max_iter=max_iter, tol=tol
        )
    if kind == "multilabel":
        return _fit_sigmoid(x, jnp.asarray(y, x.dtype), l2, max_iter=max_iter, tol=tol)
    return _fit_ridge(x, jnp.asarray(y, x.dtype), l2)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _validation_scores(kind, metric, num_classes, y, x, w, b):
    """Selection metric of every strength's probe (leading axis L of ``w``, ``b``) on ``(x, y)``."""
    return jax.vmap(lambda w_, b_: _metrics(kind, y, x @ w_ + b_, num_classes)[metric])(w, b)


def _chance(kind, y_tr, y_te, num_classes) -> dict[str, float]:
    if kind == "classification":
        majority = np.argmax(np.bincount(y_tr, minlength=num_classes))
        return {
            "balanced_accuracy": 1.0 / num_classes,
            "accuracy": float(np.mean(y_te == majority)),
            "auroc": 0.5,
        }
    if kind == "regression":
        # Best constants fitted on train: the mean for squared error, the median for absolute.
        return {
            "mse": float(np.mean((y_te - y_tr.mean(axis=0)) ** 2)),
            "mae": float(np.mean(np.abs(y_te - np.median(y_tr, axis=0)))),
        }
    return {"auroc": 0.5}


def probe(
    train_emb: Any,
    train_labels: Any,
    test_emb: Any,
    test_labels: Any,
    task: ProbeTask,
    *,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-5,
) -> ProbeResult:
    """Linear-probe evaluation of frozen embeddings on one task (CoMM Sec. 4, "Evaluation").

    1. Hold out ``val_fraction`` of the training rows (stratified by class for classification).
    2. Standardise with the remaining rows' statistics and fit one probe per strength of
       ``l2_grid`` at once (``jax.vmap``); score each on the hold-out by
       ``task.selection_metric`` (ties go to the strongest regularisation).
    3. Refit on all training rows (train + validation) with the chosen strength, standardising
       with their statistics, and report every metric of the task kind on the test set.

    A single-strength ``l2_grid`` skips steps 1-2.

    Args:
      train_emb, test_emb: ``(n, d)`` embeddings (numpy or jax).
      train_labels, test_labels: labels of ``task`` (see :class:`ProbeTask`).
      task: what to predict.
      l2_grid: positive strengths of objective (*) to choose from.
      val_fraction: hold-out fraction for the selection.
      seed: seed of the hold-out split.
      max_iter, tol: L-BFGS caps for the logistic fits.

    Returns:
      A :class:`ProbeResult`.

    Example:
      >>> task = ProbeTask("shape", "classification", num_classes=10)
      >>> res = probe(z_train, y_train, z_test, y_test, task)
      >>> res.metrics["balanced_accuracy"], res.l2
    """
    x_tr, y_tr, x_te, y_te, k = _check_inputs(train_emb, train_labels, test_emb, test_labels, task)
    grid = np.asarray(l2_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError(
            f"l2_grid must be a non-empty 1-D sequence of positive numbers, got {grid}"
        )
    kind, metric = task.kind, task.selection_metric
    max_iter, tol = int(max_iter), float(tol)

    val_scores: dict[float, float] = {}
    best = float(grid[0])
    if grid.size > 1:
        key = jax.random.key(seed)
        if kind == "classification":
            fit_idx, val_idx = stratified_split(y_tr, val_fraction, key)
        else:
            fit_idx, val_idx = random_split(x_tr.shape[0], val_fraction, key)
        xs, mean, std = standardize(x_tr[fit_idx])
        xv, _, _ = standardize(x_tr[val_idx], mean, std)
        fits = _fit_kind(kind, xs, y_tr[fit_idx], _as_float(grid), k, max_iter, tol)
        scores = np.asarray(
            _validation_scores(kind, metric, k, jnp.asarray(y_tr[val_idx]), xv, fits.w, fits.b),
            dtype=np.float64,
        )
        val_scores = {float(lam): float(s) for lam, s in zip(grid, scores, strict=True)}
        signed = -scores if metric in _LOWER_IS_BETTER else scores
        signed = np.where(np.isnan(signed), -np.inf, signed)
        winners = np.flatnonzero(signed == signed.max())
        best = float(grid[winners[np.argmax(grid[winners])]])

    xs, mean, std = standardize(x_tr)
    xt, _, _ = standardize(x_te, mean, std)
    fit = _fit_kind(kind, xs, y_tr, jnp.asarray(best, xs.dtype), k, max_iter, tol)
    test_metrics = _metrics(kind, jnp.asarray(y_te), xt @ fit.w + fit.b, k)
    fit_info = {}
    if fit.num_iter is not None:
        fit_info = {"num_iter": int(fit.num_iter), "grad_norm": float(fit.grad_norm)}
    return ProbeResult(
        task=task,
        metrics={name: float(test_metrics[name]) for name in _METRICS[kind]},
        l2=best,
        val_scores=val_scores,
        chance=_chance(kind, y_tr, y_te, k),
        fit_info=fit_info,
    )


def probe_many(
    train_emb: Any,
    train_labels: Mapping[str, Any],
    test_emb: Any,
    test_labels: Mapping[str, Any],
    tasks: Sequence[ProbeTask],
    **kwargs: Any,
) -> dict[str, ProbeResult]:
    """:func:`probe` for several tasks sharing one set of embeddings; ``kwargs`` go to it.

    Returns:
      ``{task.name: ProbeResult}`` in the order of ``tasks``.
    """
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    for which, labels in (("train_labels", train_labels), ("test_labels", test_labels)):
        missing = [n for n in names if n not in labels]
        if missing:
            raise ValueError(f"{which} has no entry for task(s) {missing}; keys: {sorted(labels)}")
    return {
        t.name: probe(train_emb, train_labels[t.name], test_emb, test_labels[t.name], t, **kwargs)
        for t in tasks
    }


def format_table(
    results: Mapping[str, ProbeResult],
    chance: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """Plain-text table: one row per (task, metric) with the test value, chance level and L2.

    Args:
      results: ``{name: ProbeResult}`` as returned by :func:`probe_many`.
      chance: optional ``{task name: {metric: chance}}`` overriding / adding to each result's own
        chance levels (e.g. a published chance level).

    Returns:
      The table as a string (no trailing newline).
    """
    rows = [("task", "metric", "value", "chance", "l2")]
    for name, res in results.items():
        levels = {**res.chance, **dict((chance or {}).get(name, {}))}
        for metric, value in res.metrics.items():
            c = levels.get(metric)
            rows.append(
                (
                    name,
                    metric,
                    f"{value:.4f}",
                    "-" if c is None or math.isnan(c) else f"{c:.4f}",
                    f"{res.l2:.0e}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
