"""Model selection and the probe itself: hold-out splits, the L2 sweep, refit and test.

The L2 strength is picked on a validation hold-out carved out of the training set (stratified by
class for classification, random otherwise) by the task's selection metric, with all strengths of
the grid fitted as a warm-started path; the probe is then refitted on train + validation with the
chosen strength and evaluated once on the test set. All of it (path, selection, refit, test
metrics) is one XLA program per task kind and class count (`_select_and_test`), with the hold-out
carried as row weights, so the tasks and runs of a dataset compile it once and each probe syncs
with the host once.
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

from jaxmm.probe import fitting
from jaxmm.probe.fitting import MAX_ITER, RTOL, TOL, _as_float, balanced_class_weights
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


def _standardise(x, rows):
    # Z-scores with the mean and (population) standard deviation of the rows weighted by `rows`;
    # a constant feature gets std 1 so it maps to zero instead of NaN.
    n = jnp.sum(rows)
    mean = rows @ x / n
    std = jnp.sqrt(rows @ (x - mean) ** 2 / n)
    std = jnp.where(std > 0, std, 1.0)
    return lambda z: (z - mean) / std


_CURVATURE = {"multilabel": lambda k: 0.25, "classification": lambda k: 1.0 / k}
_LOSS = {"multilabel": fitting._sigmoid_loss, "classification": fitting._softmax_loss}


@partial(
    jax.jit,
    static_argnames=("kind", "metric", "num_classes", "select", "max_iter", "tol", "rtol"),
)
def _select_and_test(
    x_tr,
    y_tr,
    fit_rows,
    weights_fit,
    weights_all,
    x_te,
    y_te,
    grid,
    *,
    kind,
    metric,
    num_classes,
    select,
    max_iter,
    tol,
    rtol,
):
    """The whole probe of one task as one XLA program: the L2 path on the fitted rows, the
    selection on the hold-out, the refit on all training rows and the test metrics.

    The hold-out is carried as 0/1 row weights (``fit_rows``; the hold-out is ``1 - fit_rows``)
    rather than as gathered rows, so the program's shapes are those of the dataset alone and every
    task of a dataset (whatever the size of its stratified hold-out) and every run probed on it
    share one compilation per task kind and class count. For the iterative kinds the path and the
    refit are steps of one ``lax.scan`` over one L-BFGS body: ``L`` path steps (``grid`` sorted
    from the strongest strength to the weakest, each warm-started at the previous solution, each
    scored on the hold-out), then the refit at the chosen strength, warm-started at its path
    solution, on all rows standardised with their own statistics. Ties of the selection metric go
    to the strongest strength (the first in ``grid``'s order). ``weights_fit`` / ``weights_all``
    are the class weights of the fitted rows / of all rows (ones when unweighted).

    Returns:
      ``{"w", "b", "num_iter", "grad_norm", "converged"}`` of the final fit, ``"path_*"`` the
      same over ``grid``, ``"scores"`` (hold-out metric per strength), ``"best"`` (index into
      ``grid``) and ``"metrics"`` (every test metric of the kind).
    """
    dtype = x_tr.dtype
    all_rows = jnp.ones_like(fit_rows)
    held_out = all_rows - fit_rows
    to_fit, to_all = _standardise(x_tr, fit_rows), _standardise(x_tr, all_rows)
    x_fit, x_all, x_test = to_fit(x_tr), to_all(x_tr), to_all(x_te)
    lower = metric in _LOWER_IS_BETTER
    n_path = grid.shape[0] if select else 0

    def pick(scores):
        signed = -scores if lower else scores
        return jnp.argmax(jnp.where(jnp.isnan(signed), -jnp.inf, signed))

    def score(fit):
        out = x_fit @ fit.w + fit.b
        return _metrics(kind, y_tr, out, num_classes, held_out)[metric]

    out = {}
    if kind == "regression":
        if select:
            path = fitting._ridge(x_fit, y_tr, grid, fit_rows)
            scores = jax.vmap(score)(path)
            best = pick(scores)
            out.update(scores=scores, best=best)
            lam = grid[best]
        else:
            lam = grid[0]
        final = fitting._ridge(x_all, y_tr, lam, all_rows)
    else:
        loss, curvature = _LOSS[kind], _CURVATURE[kind](num_classes)
        if kind == "classification":
            targets_fit = fitting._onehot_targets(y_tr, num_classes, weights_fit, dtype)
            targets_all = fitting._onehot_targets(y_tr, num_classes, weights_all, dtype)
        else:
            targets_fit = targets_all = y_tr
        start = fitting._zeros_start(x_tr, targets_all.shape[1])

        def step(carry, j):
            # Steps 0..n_path-1 fit the path on the fitted rows; step n_path refits on all rows.
            start, path_w, path_b, scores = carry
            refit = j == n_path
            lam = grid[jnp.minimum(j, grid.shape[0] - 1)]
            if select:
                best = pick(scores)
                lam = jnp.where(refit, grid[best], lam)
                start = jax.tree.map(
                    lambda a, b: jnp.where(refit, a, b), (path_w[best], path_b[best]), start
                )
            x, targets, rows = jax.tree.map(
                lambda a, b: jnp.where(refit, a, b),
                (x_all, targets_all, all_rows),
                (x_fit, targets_fit, fit_rows),
            )
            if select and n_path > 2:
                # Along the path the solution moves about linearly in log(l2) (on near-separable
                # tasks the weights grow like log(1/l2)): start from the extrapolation of the
                # last two solutions when it has the lower objective.
                j1, j2 = jnp.maximum(j - 1, 0), jnp.maximum(j - 2, 0)
                t = jnp.log(grid[j1] / lam) / jnp.log(grid[j2] / grid[j1])
                guess = (
                    path_w[j1] + t * (path_w[j1] - path_w[j2]),
                    path_b[j1] + t * (path_b[j1] - path_b[j2]),
                )
                better = (j >= 2) & ~refit
                obj = partial(fitting._objective, loss, x, targets, rows, lam)
                better &= obj(guess) < obj(start)
                start = jax.tree.map(lambda a, b: jnp.where(better, a, b), guess, start)
            fit = fitting._fit_one(
                loss, curvature, x, targets, rows, lam, start, max_iter, tol, rtol
            )
            if select:
                i = jnp.minimum(j, n_path - 1)
                keep = lambda buf, new: jnp.where(refit, buf, buf.at[i].set(new))  # noqa: E731
                path_w, path_b = keep(path_w, fit.w), keep(path_b, fit.b)
                scores = keep(scores, score(fit))
            info = (fit.num_iter, fit.grad_norm, fit.converged)
            return ((fit.w, fit.b), path_w, path_b, scores), info

        buffers = (
            jnp.zeros((n_path, *start[0].shape), dtype),
            jnp.zeros((n_path, *start[1].shape), dtype),
            jnp.full((n_path,), jnp.nan, dtype),
        )
        ((w, b), _, _, scores), (n_iter, grad_norm, ok) = jax.lax.scan(
            step, (start, *buffers), jnp.arange(n_path + 1)
        )
        final = fitting.LinearFit(w, b, n_iter[-1], grad_norm[-1], ok[-1])
        out.update(num_iter=n_iter[-1], grad_norm=grad_norm[-1], converged=ok[-1])
        if select:
            out.update(
                scores=scores,
                best=pick(scores),
                path_num_iter=n_iter[:-1],
                path_grad_norm=grad_norm[:-1],
                path_converged=ok[:-1],
            )
    out.update(w=final.w, b=final.b)
    out["metrics"] = _metrics(kind, y_te, x_test @ final.w + final.b, num_classes)
    return out


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
    kind, metric = task.kind, task.selection_metric
    max_iter, tol, rtol = int(max_iter), float(tol), float(rtol)
    select = grid.size > 1
    fit_rows = np.ones(x_tr.shape[0])
    if select:
        key = jax.random.key(seed)
        if kind == "classification":
            _, val_idx = stratified_split(y_tr, val_fraction, key)
        else:
            _, val_idx = random_split(x_tr.shape[0], val_fraction, key)
        fit_rows[val_idx] = 0.0
    # The path runs from the strongest strength to the weakest (stable, so equal strengths keep
    # their order); `order[i]` is the grid index of path step i.
    order = np.argsort(-grid, kind="stable")
    weights_fit = weights_all = np.ones(k or 1)
    if task.class_weight == "balanced":
        weights_fit = balanced_class_weights(y_tr[fit_rows > 0], k)
        weights_all = balanced_class_weights(y_tr, k)
    label_dtype = jnp.int32 if kind == "classification" else _as_float(0.0).dtype
    res = jax.device_get(
        _select_and_test(
            _as_float(x_tr),
            jnp.asarray(y_tr, label_dtype),
            _as_float(fit_rows),
            _as_float(weights_fit),
            _as_float(weights_all),
            _as_float(x_te),
            jnp.asarray(y_te, label_dtype),
            _as_float(grid[order]),
            kind=kind,
            metric=metric,
            num_classes=k,
            select=select,
            max_iter=max_iter,
            tol=tol,
            rtol=rtol,
        )
    )
    val_scores: dict[float, float] = {}
    best = float(grid[0])
    path_info: dict[str, list] = {}
    if select:
        best = float(grid[order[int(res["best"])]])
        inverse = np.argsort(order)  # grid index -> path step
        val_scores = {float(lam): float(res["scores"][inverse[i]]) for i, lam in enumerate(grid)}
        if kind != "regression":
            path_info = {
                "path_num_iter": [int(res["path_num_iter"][j]) for j in inverse],
                "path_grad_norm": [float(res["path_grad_norm"][j]) for j in inverse],
                "path_converged": [bool(res["path_converged"][j]) for j in inverse],
            }
            conv = path_info["path_converged"]
            bad = [f"{lam:g}" for lam, c in zip(grid, conv, strict=True) if not c]
            if bad:
                _warn_unconverged(task, "selection fit(s) at l2", ", ".join(bad), max_iter, tol)
    fit_info = {}
    if kind != "regression":
        fit_info = {
            "num_iter": int(res["num_iter"]),
            "grad_norm": float(res["grad_norm"]),
            "converged": bool(res["converged"]),
            "max_iter": max_iter,
            "tol": tol,
            **path_info,
        }
        if not fit_info["converged"]:
            why = f"{fit_info['num_iter']} iterations, gradient norm {fit_info['grad_norm']:.1e}"
            _warn_unconverged(task, f"final fit at l2={best:g}", why, max_iter, tol)
    test_metrics = res["metrics"]
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
