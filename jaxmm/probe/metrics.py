"""Probe metrics as jitted JAX functions: accuracy, balanced accuracy, F1, AUROC, MSE / MAE.

Each is tested against scikit-learn; ``_metrics`` gathers those of one task kind.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxmm.probe.fitting import _as_float


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
