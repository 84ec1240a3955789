"""Model selection and the probe itself: hold-out splits, the L2 sweep, refit and test.

The L2 strength is picked on a validation hold-out carved out of the training set (stratified by
class for classification, random otherwise) by the task's selection metric, with all strengths of
the grid fitted in one program (a warm-started path); the probe is then refitted on train +
validation with the chosen strength and evaluated once on the test set.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.probe.fitting import MAX_ITER, RTOL, TOL, _as_float, _fit_kind, standardize
from jaxmm.probe.metrics import _metrics
from jaxmm.probe.tasks import _LOWER_IS_BETTER, _METRICS, ProbeResult, ProbeTask, _check_inputs

log = logging.getLogger(__name__)

# Per-sample-scaled L2 strengths of objective (*): 1e-6 is almost unregularised on standardised
# features, 1 shrinks a probe to nearly the class prior.
DEFAULT_L2_GRID: tuple[float, ...] = tuple(float(10.0**e) for e in range(-6, 1))


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


class ProbeConvergenceWarning(RuntimeWarning):
    """An L-BFGS probe fit stopped at its iteration cap, not on a tolerance."""


def _warn_unconverged(task, what, detail, max_iter, tol):
    warnings.warn(
        f"probe {task.name!r}: {what} {detail} stopped at the L-BFGS cap max_iter={max_iter} "
        f"without meeting its tolerances (gradient norm < {tol:g} or relative reduction); its "
        "metrics may move on rerun: raise max_iter or the smallest l2",
        ProbeConvergenceWarning,
        stacklevel=3,
    )


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
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    rtol: float = RTOL,
) -> ProbeResult:
    """Linear-probe evaluation of frozen embeddings on one task (CoMM Sec. 4, "Evaluation").

    1. Hold out ``val_fraction`` of the training rows (stratified by class for classification).
    2. Standardise with the remaining rows' statistics and fit one probe per strength of
       ``l2_grid`` in one program (a path warm-started from the strongest strength, see
       :func:`~jaxmm.probe.fitting.fit_logistic_path`); score each on the hold-out by
       ``task.selection_metric`` (ties go to the strongest regularisation).
    3. Refit on all training rows (train + validation) with the chosen strength, standardising
       with their statistics (warm-started at the chosen path solution), and report every
       metric of the task kind on the test set.

    The fits run in float64 and stop on their gradient-norm or relative-reduction tolerance; one
    that reaches the iteration cap instead raises a :class:`ProbeConvergenceWarning` naming
    the task and strength, and ``fit_info`` reports each fit's iteration count and gradient norm.

    A single-strength ``l2_grid`` skips steps 1-2.

    Args:
      train_emb, test_emb: ``(n, d)`` embeddings (numpy or jax).
      train_labels, test_labels: labels of ``task`` (see :class:`ProbeTask`).
      task: what to predict.
      l2_grid: positive strengths of objective (*) to choose from.
      val_fraction: hold-out fraction for the selection.
      seed: seed of the hold-out split.
      max_iter, tol, rtol: L-BFGS cap and tolerances of the logistic fits (see
        :func:`~jaxmm.probe.fitting.fit_logistic`).

    The result's ``fit_info`` (iterative kinds only) holds ``num_iter``, ``grad_norm`` and
    ``converged`` of the final fit, ``max_iter`` and ``tol``, and ``path_num_iter`` /
    ``path_grad_norm`` / ``path_converged`` lists over ``l2_grid`` for the selection fits.

    Returns:
      A :class:`ProbeResult`.

    Example:
      >>> task = ProbeTask("shape", "classification", num_classes=10)
      >>> res = probe(z_train, y_train, z_test, y_test, task)
      >>> res.metrics["balanced_accuracy"], res.l2
    """
    with _float64():
        return _probe(
            train_emb,
            train_labels,
            test_emb,
            test_labels,
            task,
            l2_grid=l2_grid,
            val_fraction=val_fraction,
            seed=seed,
            max_iter=max_iter,
            tol=tol,
            rtol=rtol,
        )


def _float64():
    """Probes fit in float64 (a context, not a global flag): in float32 the objective has ~7
    digits, so the line search stops seeing decreases at gradient norms of ~1e-4 (measured on the
    demo's 10-class probes) and a 1e-5 tolerance is unreachable; in float64 it is reached in tens
    of iterations, at about the float32 cost on these small problems."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # older jax: the experimental spelling
        from jax.experimental import enable_x64 as enable
    return enable(True)


def _probe(
    train_emb,
    train_labels,
    test_emb,
    test_labels,
    task,
    *,
    l2_grid,
    val_fraction,
    seed,
    max_iter,
    tol,
    rtol,
) -> ProbeResult:
    x_tr, y_tr, x_te, y_te, k = _check_inputs(train_emb, train_labels, test_emb, test_labels, task)
    grid = np.asarray(l2_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError(
            f"l2_grid must be a non-empty 1-D sequence of positive numbers, got {grid}"
        )
    kind, metric, cw = task.kind, task.selection_metric, task.class_weight
    max_iter, tol, rtol = int(max_iter), float(tol), float(rtol)
    path_info: dict[str, list] = {}
    init = None

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
        fits = _fit_kind(kind, xs, y_tr[fit_idx], _as_float(grid), k, max_iter, tol, rtol, None, cw)
        scores = np.asarray(
            _validation_scores(kind, metric, k, jnp.asarray(y_tr[val_idx]), xv, fits.w, fits.b),
            dtype=np.float64,
        )
        val_scores = {float(lam): float(s) for lam, s in zip(grid, scores, strict=True)}
        signed = -scores if metric in _LOWER_IS_BETTER else scores
        signed = np.where(np.isnan(signed), -np.inf, signed)
        winners = np.flatnonzero(signed == signed.max())
        i_best = int(winners[np.argmax(grid[winners])])
        best = float(grid[i_best])
        if fits.num_iter is not None:
            init = (fits.w[i_best], fits.b[i_best])
            path_info = {
                "path_num_iter": [int(n) for n in np.asarray(fits.num_iter)],
                "path_grad_norm": [float(g) for g in np.asarray(fits.grad_norm)],
                "path_converged": [bool(c) for c in np.asarray(fits.converged)],
            }
            conv = path_info["path_converged"]
            bad = [f"{lam:g}" for lam, c in zip(grid, conv, strict=True) if not c]
            if bad:
                _warn_unconverged(task, "selection fit(s) at l2", ", ".join(bad), max_iter, tol)

    xs, mean, std = standardize(x_tr)
    xt, _, _ = standardize(x_te, mean, std)
    fit = _fit_kind(kind, xs, y_tr, jnp.asarray(best, xs.dtype), k, max_iter, tol, rtol, init, cw)
    test_metrics = _metrics(kind, jnp.asarray(y_te), xt @ fit.w + fit.b, k)
    fit_info = {}
    if fit.num_iter is not None:
        fit_info = {
            "num_iter": int(fit.num_iter),
            "grad_norm": float(fit.grad_norm),
            "converged": bool(fit.converged),
            "max_iter": max_iter,
            "tol": tol,
            **path_info,
        }
        if not fit_info["converged"]:
            why = f"{fit_info['num_iter']} iterations, gradient norm {fit_info['grad_norm']:.1e}"
            _warn_unconverged(task, f"final fit at l2={best:g}", why, max_iter, tol)
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
    out = {}
    for i, t in enumerate(tasks):
        t0 = time.perf_counter()
        res = probe(train_emb, train_labels[t.name], test_emb, test_labels[t.name], t, **kwargs)
        out[t.name] = res
        # Progress a person can follow: probing a run takes seconds to minutes per task.
        log.info(
            "probe %d/%d %s: %s in %.1f s",
            i + 1,
            len(tasks),
            t.name,
            ", ".join(f"{k} {v:.4f}" for k, v in res.metrics.items()),
            time.perf_counter() - t0,
        )
    return out
