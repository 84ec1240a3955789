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
the grid fitted in one XLA program as a path warm-started from the strongest strength down; each
L-BFGS fit stops on a gradient-norm tolerance (or a stall, or its cap, with a warning). The probe
is then refitted on train + validation with the chosen strength and evaluated once on the test set.

The package is split along those ideas: `jaxmm.probe.tasks` (task / result containers, input
checks), `jaxmm.probe.fitting` (the fits of objective (*)), `jaxmm.probe.metrics`,
`jaxmm.probe.selection` (splits, the L2 sweep, `probe`, `probe_many`) and
`jaxmm.probe.reporting` (tables). Every public name is re-exported here.
"""

from jaxmm.probe.fitting import (
    LinearFit,
    balanced_class_weights,
    fit_logistic,
    fit_logistic_path,
    fit_multilabel_logistic,
    fit_multilabel_logistic_path,
    fit_ridge,
    fit_ridge_path,
    standardize,
)
from jaxmm.probe.metrics import (
    accuracy,
    balanced_accuracy,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    multilabel_f1,
    roc_auc,
    roc_auc_ovr,
)
from jaxmm.probe.reporting import format_table
from jaxmm.probe.selection import (
    DEFAULT_L2_GRID,
    ProbeConvergenceWarning,
    probe,
    probe_many,
    random_split,
    stratified_split,
)
from jaxmm.probe.tasks import ProbeResult, ProbeTask

__all__ = [
    "DEFAULT_L2_GRID",
    "LinearFit",
    "ProbeConvergenceWarning",
    "ProbeResult",
    "ProbeTask",
    "accuracy",
    "balanced_accuracy",
    "balanced_class_weights",
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
