"""What a probe predicts and reports: task and result containers, the input checks.

Each task kind has its metrics (`jaxmm.probe.metrics`) and a default selection metric for the L2
sweep (`jaxmm.probe.selection`). The checks turn bad input into one error line naming the field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

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
      class_weight: classification only. None weighs every example alike (the official CoMM
        probe); ``"balanced"`` weighs class ``c`` by ``n / (K n_c)`` (scikit-learn's
        ``class_weight="balanced"``), so the fitted objective is the one balanced accuracy
        scores: on a rare class (the synergy task's 10% positives) an unweighted fit puts its
        threshold where it predicts the majority class, whatever the ranking (AUROC) says.
    """

    name: str
    kind: str
    num_classes: int | None = None
    select_by: str | None = None
    class_weight: str | None = None

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
        if self.class_weight not in (None, "balanced"):
            raise ValueError(
                f"ProbeTask {self.name!r}: class_weight must be None or 'balanced', "
                f"got {self.class_weight!r}"
            )
        if self.class_weight is not None and self.kind != "classification":
            raise ValueError(
                f"ProbeTask {self.name!r}: class_weight applies to classification, not "
                f"{self.kind!r}"
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
