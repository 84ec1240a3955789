"""Probe metrics as jitted JAX functions: accuracy, balanced accuracy, F1, AUROC, MSE / MAE.

Each is tested against scikit-learn; ``_metrics`` gathers those of one task kind. Every metric
takes an optional ``sample_weight`` (scikit-learn's argument): the probe scores its validation
hold-out as the 0/1-weighted rows of the training set, so that every task of a dataset shares one
compiled program whatever the size of its stratified hold-out.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxmm.probe.fitting import _as_float


def _weights(sample_weight, n):
    return jnp.ones((n,), jnp.float32) if sample_weight is None else _as_float(sample_weight)


def _confusion(labels, pred, num_classes: int, sample_weight=None) -> jax.Array:
    labels, pred = jnp.asarray(labels, jnp.int32), jnp.asarray(pred, jnp.int32)
    w = _weights(sample_weight, labels.shape[0])
    return jnp.zeros((num_classes, num_classes), w.dtype).at[labels, pred].add(w)


@jax.jit
def accuracy(labels: Any, pred: Any, sample_weight: Any = None) -> jax.Array:
    """(Weighted) fraction of exact matches between integer ``labels`` and ``pred``."""
    hit = jnp.asarray(labels) == jnp.asarray(pred)
    w = _weights(sample_weight, hit.shape[0])
    return jnp.sum(w * hit) / jnp.sum(w)


@partial(jax.jit, static_argnames=("num_classes",))
def balanced_accuracy(
    labels: Any, pred: Any, num_classes: int, sample_weight: Any = None
) -> jax.Array:
    """Mean per-class recall over the classes present in ``labels``.

    Brodersen et al. 2010 ("The balanced accuracy and its posterior distribution", Eq. 1); a
    label-blind predictor scores ``1/K`` in expectation whatever the class imbalance.
    """
    cm = _confusion(labels, pred, num_classes, sample_weight)
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
def f1_score(
    labels: Any, pred: Any, num_classes: int, average: str = "macro", sample_weight: Any = None
) -> jax.Array:
    """Multi-class F1 (van Rijsbergen 1979), averaged over classes.

    Args:
      labels, pred: ``(n,)`` ints in ``[0, num_classes)``.
      num_classes: ``K``.
      average: ``"macro"`` -- unweighted mean over classes occurring in ``labels`` or ``pred``;
        ``"weighted"`` -- mean weighted by each class's support in ``labels``.
      sample_weight: optional ``(n,)`` row weights.
    """
    cm = _confusion(labels, pred, num_classes, sample_weight)
    tp = jnp.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    f1 = _f1_from_counts(tp, predicted - tp, support - tp)
    if average == "macro":
        seen = (support > 0) | (predicted > 0)
        return jnp.sum(jnp.where(seen, f1, 0.0)) / jnp.sum(seen)
    if average == "weighted":
        return jnp.sum(f1 * support) / jnp.sum(support)
    raise ValueError(f"average must be 'macro' or 'weighted', got {average!r}")


@jax.jit
def roc_auc(labels: Any, scores: Any, sample_weight: Any = None) -> jax.Array:
    """Binary AUROC via the Mann-Whitney U statistic, ties counting one half.

    ``AUC = U / (P N)`` with ``U`` the number of (positive, negative) pairs ranked in the right
    order plus half the tied ones (Hanley & McNeil 1982, Eq. 2: the rank-sum form with average
    ranks for ties). With ``sample_weight`` each pair counts the product of its weights and ``P``,
    ``N`` are weighted counts (scikit-learn's weighted ROC curve, whose trapezoidal area this is).
    NaN if a class is absent.

    Args:
      labels: ``(n,)`` 0/1 (or bool).
      scores: ``(n,)`` real scores, larger meaning "more positive".
      sample_weight: optional ``(n,)`` row weights.
    """
    pos = jnp.asarray(labels).astype(bool)
    scores = _as_float(scores)
    w = _weights(sample_weight, pos.shape[0]).astype(scores.dtype)
    w_pos, w_neg = jnp.where(pos, w, 0.0), jnp.where(pos, 0.0, w)
    # Weighted negatives strictly below / up to each score, from the sorted scores' cumulative sum.
    order = jnp.argsort(scores)
    srt = scores[order]
    cum_neg = jnp.concatenate([jnp.zeros((1,), w.dtype), jnp.cumsum(w_neg[order])])
    below = cum_neg[jnp.searchsorted(srt, scores, side="left")]
    up_to = cum_neg[jnp.searchsorted(srt, scores, side="right")]
    u = jnp.sum(w_pos * (below + 0.5 * (up_to - below)))
    return u / (jnp.sum(w_pos) * jnp.sum(w_neg))


@jax.jit
def roc_auc_ovr(labels: Any, probs: Any, sample_weight: Any = None) -> jax.Array:
    """One-vs-rest macro AUROC: mean of :func:`roc_auc` of column ``c`` for ``labels == c``.

    Averages over the classes that have both positives and negatives in ``labels`` (the others
    have no defined AUROC); equals scikit-learn's ``roc_auc_score(multi_class="ovr")`` when every
    class occurs.

    Args:
      labels: ``(n,)`` ints in ``[0, K)``.
      probs: ``(n, K)`` class scores.
      sample_weight: optional ``(n,)`` row weights.
    """
    probs = _as_float(probs)
    labels = jnp.asarray(labels, jnp.int32)
    onehot = labels[:, None] == jnp.arange(probs.shape[1])
    w = _weights(sample_weight, labels.shape[0])
    aucs = jax.vmap(roc_auc, in_axes=(1, 1, None))(onehot, probs, w)
    return jnp.nanmean(aucs)


def _weighted_mean(values, sample_weight):
    if sample_weight is None:
        return jnp.mean(values)
    w = _as_float(sample_weight).reshape((-1,) + (1,) * (values.ndim - 1))
    return jnp.sum(w * values) / (jnp.sum(w) * (values.size // values.shape[0]))


@jax.jit
def mean_squared_error(y: Any, pred: Any, sample_weight: Any = None) -> jax.Array:
    """(Row-weighted) mean over samples and outputs of ``(y - pred)^2``."""
    return _weighted_mean((_as_float(y) - _as_float(pred)) ** 2, sample_weight)


@jax.jit
def mean_absolute_error(y: Any, pred: Any, sample_weight: Any = None) -> jax.Array:
    """(Row-weighted) mean over samples and outputs of ``|y - pred|``."""
    return _weighted_mean(jnp.abs(_as_float(y) - _as_float(pred)), sample_weight)


@partial(jax.jit, static_argnames=("average",))
def multilabel_f1(
    targets: Any, pred: Any, average: str = "macro", sample_weight: Any = None
) -> jax.Array:
    """F1 for ``(n, k)`` 0/1 indicator matrices (MM-IMDb, CoMM Table 2).

    Args:
      targets, pred: ``(n, k)`` 0/1 indicators.
      average: ``"micro"`` -- F1 of the TP/FP/FN pooled over labels; ``"macro"`` -- unweighted
        mean of per-label F1 (a label never present nor predicted scores 0); ``"weighted"`` --
        per-label F1 weighted by label support.
      sample_weight: optional ``(n,)`` row weights.
    """
    t, p = _as_float(targets), _as_float(pred)
    w = _weights(sample_weight, t.shape[0]).astype(t.dtype)[:, None]
    tp = jnp.sum(w * t * p, axis=0)
    fp = jnp.sum(w * (1 - t) * p, axis=0)
    fn = jnp.sum(w * t * (1 - p), axis=0)
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
def _metrics(
    kind: str, y, out, num_classes: int | None, sample_weight=None
) -> dict[str, jax.Array]:
    """All metrics of a task kind from labels ``y`` and linear outputs ``out`` (logits/preds),
    optionally over weighted rows (the validation hold-out as 0/1 weights)."""
    w = sample_weight
    if kind == "classification":
        pred = jnp.argmax(out, axis=-1)
        probs = jax.nn.softmax(out, axis=-1)
        if num_classes == 2:
            auroc = roc_auc(y == 1, probs[:, 1], w)
        else:
            auroc = roc_auc_ovr(y, probs, w)
        return {
            "balanced_accuracy": balanced_accuracy(y, pred, num_classes, w),
            "accuracy": accuracy(y, pred, w),
            "f1_weighted": f1_score(y, pred, num_classes, "weighted", w),
            "f1_macro": f1_score(y, pred, num_classes, "macro", w),
            "auroc": auroc,
        }
    if kind == "regression":
        return {"mse": mean_squared_error(y, out, w), "mae": mean_absolute_error(y, out, w)}
    pred = (out > 0).astype(jnp.float32)  # sigmoid(out) > 0.5
    ones = _weights(w, y.shape[0])
    aucs = jax.vmap(roc_auc, in_axes=(1, 1, None))(y, out, ones)
    return {
        "f1_weighted": multilabel_f1(y, pred, "weighted", w),
        "f1_macro": multilabel_f1(y, pred, "macro", w),
        "f1_micro": multilabel_f1(y, pred, "micro", w),
        "auroc": jnp.nanmean(aucs),
    }
