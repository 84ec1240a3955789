"""Tests of jaxmm.probe against independent computations (scikit-learn, numpy.linalg, by hand).

Shapes are shared between tests on purpose: the jitted L-BFGS fits compile once per shape.
"""

import math

import jax
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from jaxmm import probe as P

D, K = 16, 4  # embedding size and classes of the end-to-end probes
N_TRAIN = 1000


def _linear_task(rng, n, a, noise=0.05):
    """Gaussian embeddings labelled by the argmax of a fixed random linear map (plus noise)."""
    x = rng.normal(size=(n, a.shape[0])).astype(np.float32)
    return x, np.argmax(x @ a + noise * rng.normal(size=(n, a.shape[1])), axis=-1)


def _small_problem(seed=0, n=200, d=5, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    logits = x @ rng.normal(size=(d, k)) + rng.gumbel(size=(n, k))
    return x, np.argmax(logits, axis=-1), (logits > 0.5).astype(np.float32)


# ------------------------------------------------------------------------------------- probes


def test_probe_recovers_linear_structure_and_selects_l2_from_grid():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(D, K))
    x_tr, y_tr = _linear_task(rng, N_TRAIN, a)
    x_te, y_te = _linear_task(rng, 1000, a)
    res = P.probe(x_tr, y_tr, x_te, y_te, P.ProbeTask("lin", "classification", num_classes=K))
    assert res.metrics["balanced_accuracy"] > 0.95
    assert res.metrics["auroc"] > 0.99
    assert res.l2 in P.DEFAULT_L2_GRID
    assert sorted(res.val_scores) == sorted(P.DEFAULT_L2_GRID)
    assert res.val_scores[res.l2] == max(res.val_scores.values())
    assert res.fit_info["grad_norm"] < 1e-3


def test_probe_on_random_labels_stays_at_chance():
    rng = np.random.default_rng(1)
    n_te = 2000
    x_tr, x_te = rng.normal(size=(N_TRAIN, D)), rng.normal(size=(n_te, D))
    y_tr, y_te = rng.integers(0, K, N_TRAIN), rng.integers(0, K, n_te)
    task = P.ProbeTask("noise", "classification", num_classes=K)
    res = P.probe(x_tr, y_tr, x_te, y_te, task, l2_grid=(1e-2,))
    # The probe never sees the test labels, so any of its predictions is independent of them:
    # E[balanced acc] = E[acc] = 1/K exactly (uniform labels). Each is a mean of per-class
    # binomial recalls with variance <= 1/(4 n_te), so 4 standard deviations is 2/sqrt(n_te).
    tol = 4 * 0.5 / math.sqrt(n_te)
    assert abs(res.metrics["balanced_accuracy"] - 1 / K) < tol
    assert abs(res.metrics["accuracy"] - 1 / K) < tol
    assert res.val_scores == {} and res.l2 == 1e-2
    assert res.chance["balanced_accuracy"] == 1 / K
    majority = np.argmax(np.bincount(y_tr, minlength=K))
    assert res.chance["accuracy"] == pytest.approx(np.mean(y_te == majority))


def test_probe_many_regression_and_table():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(D, K))
    x_tr, y_tr = _linear_task(rng, N_TRAIN, a)
    x_te, y_te = _linear_task(rng, 300, a)
    beta = rng.normal(size=(D, 2))
    train = {"cls": y_tr, "pos": x_tr @ beta + 1.0 + 0.1 * rng.normal(size=(N_TRAIN, 2))}
    test = {"cls": y_te, "pos": x_te @ beta + 1.0}
    tasks = [P.ProbeTask("cls", "classification"), P.ProbeTask("pos", "regression")]
    res = P.probe_many(x_tr, train, x_te, test, tasks, l2_grid=(1e-2,))
    assert list(res) == ["cls", "pos"]
    # Noise variance 0.01 and a well-conditioned design: test MSE near 0, chance near ||beta||^2/2.
    assert res["pos"].metrics["mse"] < 0.01 < res["pos"].chance["mse"]
    table = P.format_table(res, chance={"cls": {"f1_macro": 0.25}})
    lines = table.splitlines()
    assert lines[0].split() == ["task", "metric", "value", "chance", "l2"]
    row = next(ln.split() for ln in lines if ln.split()[:2] == ["cls", "balanced_accuracy"])
    assert row[3] == "0.2500"
    row = next(ln.split() for ln in lines if ln.split()[:2] == ["cls", "f1_macro"])
    assert row[3] == "0.2500"
    row = next(ln.split() for ln in lines if ln.split()[:2] == ["cls", "f1_weighted"])
    assert row[3] == "-"


def test_probe_multilabel_selects_on_macro_f1():
    x, _, t = _small_problem(seed=3)
    task = P.ProbeTask("genres", "multilabel")
    res = P.probe(x, t, x, t, task, l2_grid=(1e-3, 1e-1))
    assert set(res.val_scores) == {1e-3, 1e-1}
    assert res.val_scores[res.l2] == max(res.val_scores.values())
    assert set(res.metrics) == {"f1_weighted", "f1_macro", "f1_micro", "auroc"}
    assert res.metrics["auroc"] > 0.8


def test_probe_holdout_as_row_weights_equals_fitting_the_gathered_rows():
    # The probe carries its validation hold-out as 0/1 row weights inside one program; the
    # selection must be the one of the textbook protocol: standardise and fit the path on the
    # gathered training rows, score each strength on the gathered hold-out rows.
    rng = np.random.default_rng(7)
    a = rng.normal(size=(D, K))
    x_tr, y_tr = _linear_task(rng, N_TRAIN, a, noise=1.0)
    x_te, y_te = _linear_task(rng, 300, a, noise=1.0)
    grid = (1e-4, 1e-2, 1.0)
    task = P.ProbeTask("lin", "classification", num_classes=K)
    res = P.probe(x_tr, y_tr, x_te, y_te, task, l2_grid=grid, seed=3, tol=1e-8)
    fit_idx, val_idx = P.stratified_split(y_tr, 0.2, jax.random.key(3))
    with jax.enable_x64(True):
        xs, mean, std = P.standardize(x_tr[fit_idx].astype(np.float64))
        xv, _, _ = P.standardize(x_tr[val_idx].astype(np.float64), mean, std)
        path = P.fit_logistic_path(xs, y_tr[fit_idx], np.array(grid), num_classes=K, tol=1e-8)
        for i, lam in enumerate(grid):
            pred = np.argmax(np.asarray(xv @ path.w[i] + path.b[i]), axis=-1)
            ref = skm.balanced_accuracy_score(y_tr[val_idx], pred)
            assert res.val_scores[lam] == pytest.approx(ref, abs=1e-9)


def test_tasks_with_unequal_holdouts_share_one_compiled_probe():
    # Stratified hold-outs differ in size from task to task (per-class rounding); the probe's
    # program depends on the dataset's shapes only, so the second task compiles nothing.
    rng = np.random.default_rng(8)
    a = rng.normal(size=(D, K))
    x_tr, y_tr = _linear_task(rng, N_TRAIN, a, noise=1.0)
    x_te, y_te = _linear_task(rng, 300, a, noise=1.0)
    # Class counts 252 x 3 + 244 hold out 50 x 3 + 49 rows; 250 x 4 hold out 200.
    y_tr = rng.permutation(np.repeat(np.arange(K), [250, 250, 250, 250]))
    y2_tr = rng.permutation(np.repeat(np.arange(K), [252, 252, 252, 244]))
    y2_te = rng.integers(0, K, y_te.shape[0])
    sizes = {len(P.stratified_split(y, 0.2, jax.random.key(0))[1]) for y in (y_tr, y2_tr)}
    assert len(sizes) == 2
    labels_tr, labels_te = {"a": y_tr, "b": y2_tr}, {"a": y_te, "b": y2_te}
    tasks = [P.ProbeTask(n, "classification", num_classes=K) for n in ("a", "b")]
    P.probe_many(x_tr, labels_tr, x_te, labels_te, tasks[:1])
    compiled = P.selection._select_and_test._cache_size()
    P.probe_many(x_tr, labels_tr, x_te, labels_te, tasks)
    assert P.selection._select_and_test._cache_size() == compiled


def test_preconditioned_fit_converges_on_correlated_features():
    # Nearly collinear features (as a random-init encoder's): the Gram matrix's eigenvalues span
    # eight decades. The preconditioned L-BFGS fit must still stop on its tolerance well before
    # the cap and agree with scikit-learn's solution of the same objective.
    rng = np.random.default_rng(10)
    n, d, k = 1500, 8, 3
    base = rng.normal(size=(n, 2))
    x = base @ rng.normal(size=(2, d)) + 1e-4 * rng.normal(size=(n, d))
    x = (x - x.mean(0)) / x.std(0)
    y = np.argmax(base @ rng.normal(size=(2, k)) + rng.gumbel(size=(n, k)), axis=-1)
    l2 = 1e-4
    with jax.enable_x64(True):
        fit = P.fit_logistic(x, y, l2, num_classes=k, tol=1e-7)
    assert bool(fit.converged) and int(fit.num_iter) < 200
    ref = LogisticRegression(C=1.0 / (l2 * n), tol=1e-12, max_iter=100_000).fit(x, y)
    probs = np.asarray(jax.nn.softmax(x @ np.asarray(fit.w) + np.asarray(fit.b)))
    np.testing.assert_allclose(probs, ref.predict_proba(x), atol=1e-4)


# ------------------------------------------------------------------------------------- fits


def test_logistic_matches_sklearn_with_equivalent_c():
    x, y, _ = _small_problem()
    n, l2 = x.shape[0], 0.05
    fit = P.fit_logistic(x, y, l2, num_classes=3, tol=1e-6)
    # Ours: mean CE + l2/2 ||W||^2. sklearn: C * sum CE + 1/2 ||W||^2, same argmin for C = 1/(l2 n).
    ref = LogisticRegression(C=1.0 / (l2 * n), tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(np.asarray(fit.w), ref.coef_.T, atol=2e-4)
    # Softmax intercepts are identified only up to a shared constant.
    b = np.asarray(fit.b)
    np.testing.assert_allclose(b - b.mean(), ref.intercept_ - ref.intercept_.mean(), atol=2e-4)
    probs = np.asarray(jax.nn.softmax(x @ fit.w + fit.b))
    np.testing.assert_allclose(probs, ref.predict_proba(x), atol=1e-4)


def test_logistic_path_warm_start_equals_separate_fits():
    # The path is warm-started from the strongest strength down; in float64 (as `probe` fits)
    # each strength must land where a cold fit from zero does.
    x, y, _ = _small_problem()
    grid = np.array([1e-3, 5e-2, 1.0])
    with jax.enable_x64(True):
        path = P.fit_logistic_path(x.astype(np.float64), y, grid, num_classes=3, tol=1e-8)
        for i, lam in enumerate(grid):
            one = P.fit_logistic(x.astype(np.float64), y, lam, num_classes=3, tol=1e-8)
            np.testing.assert_allclose(path.w[i], one.w, atol=1e-5)
            np.testing.assert_allclose(path.b[i], one.b, atol=1e-5)
    assert bool(np.all(path.converged))


def test_probe_fit_converges_to_sklearn_solution_below_tolerance():
    # The demo's failure mode (issue 16): fits stopping at the iteration cap. The probe's final
    # fit must stop on a tolerance, with the gradient norm it reports, at the optimum of the same
    # penalised objective as scikit-learn's (C = 1 / (l2 n), n = all training rows).
    rng = np.random.default_rng(9)
    a = rng.normal(size=(D, K))
    x_tr, y_tr = _linear_task(rng, N_TRAIN, a, noise=1.0)
    x_te, y_te = _linear_task(rng, 500, a, noise=1.0)
    task = P.ProbeTask("lin", "classification", num_classes=K)
    res = P.probe(x_tr, y_tr, x_te, y_te, task)
    info = res.fit_info
    assert info["converged"] and info["num_iter"] < info["max_iter"]
    assert all(info["path_converged"]) and len(info["path_num_iter"]) == len(P.DEFAULT_L2_GRID)
    mean, std = x_tr.mean(0), x_tr.std(0)
    z_tr, z_te = (x_tr - mean) / std, (x_te - mean) / std
    ref = LogisticRegression(C=1.0 / (res.l2 * N_TRAIN), tol=1e-10, max_iter=10_000)
    ref.fit(z_tr, y_tr)
    with jax.enable_x64(True):
        fit = P.fit_logistic(z_tr.astype(np.float64), y_tr, res.l2, num_classes=K)
    assert float(fit.grad_norm) < P.fitting.TOL or int(fit.num_iter) < P.fitting.MAX_ITER
    np.testing.assert_allclose(np.asarray(fit.w), ref.coef_.T, atol=1e-3)
    acc_ref = skm.balanced_accuracy_score(y_te, ref.predict(z_te))
    assert res.metrics["balanced_accuracy"] == pytest.approx(acc_ref, abs=0.005)


def test_probe_warns_when_a_fit_hits_its_cap():
    x, y, _ = _small_problem()
    task = P.ProbeTask("t", "classification", num_classes=3)
    with pytest.warns(P.ProbeConvergenceWarning, match="'t': final fit at l2=0.001"):
        res = P.probe(x, y, x, y, task, l2_grid=(1e-3,), max_iter=2)
    assert res.fit_info["num_iter"] == 2 and not res.fit_info["converged"]


def test_multilabel_equals_independent_binary_fits():
    x, _, t = _small_problem()
    n, l2 = x.shape[0], 0.05
    joint = P.fit_multilabel_logistic(x, t, l2, tol=1e-6)
    for j in range(t.shape[1]):
        ref = LogisticRegression(C=1.0 / (l2 * n), tol=1e-10, max_iter=10_000).fit(x, t[:, j])
        np.testing.assert_allclose(np.asarray(joint.w[:, j]), ref.coef_[0], atol=2e-4)
        np.testing.assert_allclose(float(joint.b[j]), ref.intercept_[0], atol=2e-4)


@pytest.mark.parametrize("outputs", [None, 2])
def test_ridge_matches_lstsq_on_augmented_system(outputs):
    rng = np.random.default_rng(4)
    n, d, l2 = 100, 6, 0.3
    x = rng.normal(size=(n, d)) * 2 + 1
    y = rng.normal(size=(n,) if outputs is None else (n, outputs))
    fit = P.fit_ridge(x.astype(np.float32), y.astype(np.float32), l2)
    # (1/n) sum ||y - xw - b||^2/2 + l2/2 ||w||^2  ==  least squares on [X 1; sqrt(n l2) I 0].
    aug = np.block([[x, np.ones((n, 1))], [math.sqrt(n * l2) * np.eye(d), np.zeros((d, 1))]])
    rhs = np.concatenate([y, np.zeros((d,) + y.shape[1:])])
    sol = np.linalg.lstsq(aug, rhs, rcond=None)[0]
    np.testing.assert_allclose(np.asarray(fit.w), sol[:d], atol=1e-4)
    np.testing.assert_allclose(np.asarray(fit.b), sol[d], atol=1e-4)
    path = P.fit_ridge_path(x, y, np.array([l2, 10 * l2]))
    np.testing.assert_allclose(path.w[0], fit.w, atol=1e-4)


# ------------------------------------------------------------------------------------- metrics


def test_metrics_by_hand_on_tiny_example():
    y, p = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
    assert float(P.accuracy(y, p)) == pytest.approx(3 / 4)
    # recalls 2/3 and 1/1
    assert float(P.balanced_accuracy(y, p, 2)) == pytest.approx((2 / 3 + 1) / 2)
    # class 0: TP=2 FP=0 FN=1 -> F1 = 4/5; class 1: TP=1 FP=1 FN=0 -> F1 = 2/3
    assert float(P.f1_score(y, p, 2, "macro")) == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert float(P.f1_score(y, p, 2, "weighted")) == pytest.approx((3 * 4 / 5 + 2 / 3) / 4)
    # Positive/negative pairs: (0.35 vs 0.1) win, (0.35 vs 0.4) loss, 0.8 wins both -> 3/4.
    assert float(P.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # Ties count one half: pos 0.5 ties both negatives (1/2 + 1/2), pos 0.9 beats both -> 3/4.
    assert float(P.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.9])) == pytest.approx(0.75)
    t = np.array([[1, 0], [1, 1], [0, 0]])
    q = np.array([[1, 1], [0, 1], [0, 0]])
    # label 0: TP=1 FN=1 -> 2/3; label 1: TP=1 FP=1 -> 2/3; pooled TP=2 FP=1 FN=1 -> 4/6
    assert float(P.multilabel_f1(t, q, "macro")) == pytest.approx(2 / 3)
    assert float(P.multilabel_f1(t, q, "micro")) == pytest.approx(2 / 3)
    assert float(P.mean_squared_error([1.0, 3.0], [0.0, 0.0])) == pytest.approx(5.0)
    assert float(P.mean_absolute_error([1.0, -3.0], [0.0, 0.0])) == pytest.approx(2.0)


def test_classification_metrics_match_sklearn_on_random_predictions():
    rng = np.random.default_rng(5)
    n, k = 300, 5
    y = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.4, y, rng.integers(0, k, n))
    p[p == 4] = 3  # a class never predicted: exercises the zero-division conventions
    assert float(P.accuracy(y, p)) == pytest.approx(skm.accuracy_score(y, p))
    assert float(P.balanced_accuracy(y, p, k)) == pytest.approx(
        skm.balanced_accuracy_score(y, p), abs=1e-6
    )
    for avg in ("macro", "weighted"):
        ref = skm.f1_score(y, p, average=avg, zero_division=0)
        assert float(P.f1_score(y, p, k, avg)) == pytest.approx(ref, abs=1e-6)
    # Scores rounded to one decimal place so that many ties occur.
    s = np.round(rng.random(n) + 0.3 * (y == 1), 1)
    ref = skm.roc_auc_score(y == 1, s)
    assert float(P.roc_auc(y == 1, s)) == pytest.approx(ref, abs=1e-6)
    logits = rng.normal(size=(n, k)) + np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert float(P.roc_auc_ovr(y, probs)) == pytest.approx(ref, abs=1e-5)


def test_multilabel_and_regression_metrics_match_sklearn():
    rng = np.random.default_rng(6)
    t = (rng.random((200, 6)) < 0.3).astype(int)
    q = np.where(rng.random((200, 6)) < 0.7, t, 1 - t)
    for avg in ("micro", "macro", "weighted"):
        ref = skm.f1_score(t, q, average=avg, zero_division=0)
        assert float(P.multilabel_f1(t, q, avg)) == pytest.approx(ref, abs=1e-6)
    y, yhat = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert float(P.mean_squared_error(y, yhat)) == pytest.approx(
        skm.mean_squared_error(y, yhat), rel=1e-5
    )
    assert float(P.mean_absolute_error(y, yhat)) == pytest.approx(
        skm.mean_absolute_error(y, yhat), rel=1e-5
    )


def test_weighted_metrics_match_sklearn_sample_weight():
    # The probe scores its hold-out as 0/1 row weights: every metric must equal scikit-learn's
    # with the same sample_weight, for 0/1 weights (= the subset) and for general weights.
    rng = np.random.default_rng(11)
    n, k = 400, 4
    y = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.5, y, rng.integers(0, k, n))
    s = np.round(rng.random(n) + 0.3 * (y == 1), 1)  # ties
    logits = rng.normal(size=(n, k)) + np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    t = (rng.random((n, 3)) < 0.3).astype(int)
    q = np.where(rng.random((n, 3)) < 0.7, t, 1 - t)
    r, rhat = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    for w in ((rng.random(n) < 0.3).astype(float), rng.random(n)):
        assert float(P.accuracy(y, p, w)) == pytest.approx(
            skm.accuracy_score(y, p, sample_weight=w)
        )
        ref = skm.balanced_accuracy_score(y, p, sample_weight=w)
        assert float(P.balanced_accuracy(y, p, k, w)) == pytest.approx(ref, abs=1e-6)
        for avg in ("macro", "weighted"):
            ref = skm.f1_score(y, p, average=avg, sample_weight=w, zero_division=0)
            assert float(P.f1_score(y, p, k, avg, w)) == pytest.approx(ref, abs=1e-6)
        ref = skm.roc_auc_score(y == 1, s, sample_weight=w)
        assert float(P.roc_auc(y == 1, s, w)) == pytest.approx(ref, abs=1e-6)
        ref = skm.roc_auc_score(y, probs, multi_class="ovr", sample_weight=w)
        assert float(P.roc_auc_ovr(y, probs, w)) == pytest.approx(ref, abs=1e-5)
        for avg in ("micro", "macro", "weighted"):
            ref = skm.f1_score(t, q, average=avg, sample_weight=w, zero_division=0)
            assert float(P.multilabel_f1(t, q, avg, w)) == pytest.approx(ref, abs=1e-6)
        ref = skm.mean_squared_error(r, rhat, sample_weight=w)
        assert float(P.mean_squared_error(r, rhat, w)) == pytest.approx(ref, rel=1e-5)
        ref = skm.mean_absolute_error(r, rhat, sample_weight=w)
        assert float(P.mean_absolute_error(r, rhat, w)) == pytest.approx(ref, rel=1e-5)


# ------------------------------------------------------------------------------------- splits


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    np.random.default_rng(7).shuffle(labels)
    tr, va = P.stratified_split(labels, 0.2, jax.random.key(0))
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(labels.size))
    assert np.bincount(labels[va]).tolist() == [100, 60, 40]
    assert np.bincount(labels[tr]).tolist() == [400, 240, 160]
    tr2, va2 = P.stratified_split(labels, 0.2, jax.random.key(1))
    assert not np.array_equal(va, va2)
    # A singleton class stays in the training part.
    tr3, va3 = P.stratified_split(np.array([0, 0, 0, 0, 1]), 0.5, jax.random.key(0))
    assert 4 in tr3 and 4 not in va3
    tr4, va4 = P.random_split(10, 0.3, jax.random.key(0))
    assert len(va4) == 3 and len(tr4) == 7 and not set(tr4) & set(va4)


# ------------------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(20, 3)), np.arange(20) % 2
    task = P.ProbeTask("t", "classification")
    with pytest.raises(ValueError, match="train_emb has 20 rows"):
        P.probe(x, y[:-1], x, y, task)
    bad = x.copy()
    bad[[3, 7], 1] = np.nan
    bad[5, 0] = np.inf
    with pytest.raises(ValueError, match="train_emb has 3 of 20 rows containing NaN or inf"):
        P.probe(bad, y, x, y, task)
    with pytest.raises(ValueError, match=r"test_labels\['t'\] must lie in \[0, 2\)"):
        P.probe(x, y, x, y + 1, task)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] of task 't' never occur"):
        P.probe(x, y, x, y, P.ProbeTask("t", "classification", num_classes=3))
    with pytest.raises(ValueError, match="dimension 3 but test_emb has 2"):
        P.probe(x, y, x[:, :2], y, task)
    with pytest.raises(ValueError, match="integer class indices"):
        P.probe(x, y + 0.5, x, y, task)
    with pytest.raises(ValueError, match="l2_grid must be"):
        P.probe(x, y, x, y, task, l2_grid=(1.0, 0.0))
    with pytest.raises(ValueError, match="val_fraction"):
        P.probe(x, y, x, y, task, val_fraction=1.0)
    with pytest.raises(ValueError, match="0/1 indicators"):
        P.probe(x, np.full((20, 2), 2.0), x, np.zeros((20, 2)), P.ProbeTask("m", "multilabel"))
    with pytest.raises(ValueError, match="kind must be one of"):
        P.ProbeTask("t", "ranking")
    with pytest.raises(ValueError, match="select_by"):
        P.ProbeTask("t", "regression", select_by="accuracy")
    with pytest.raises(ValueError, match=r"test_labels has no entry for task\(s\) \['t'\]"):
        P.probe_many(x, {"t": y}, x, {"u": y}, [task])


def test_class_balanced_logistic_matches_sklearn_balanced():
    # An imbalanced 2-class problem (10% positives, as the Trifeature synergy task): the weighted
    # fit minimises mean_i w[y_i] CE_i + l2/2 ||W||^2 with w_c = n / (K n_c), which is
    # scikit-learn's class_weight="balanced". sklearn fits one binary weight vector b = w1 - w0;
    # at our optimum w0 = -w1 = -b/2, so our penalty is l2/4 ||b||^2: C = 2/(l2 n).
    rng = np.random.default_rng(3)
    n, d = 600, 5
    y = (rng.uniform(size=n) < 0.1).astype(np.int64)
    x = rng.normal(size=(n, d)) + 0.6 * y[:, None] * np.linspace(1, 0, d)
    l2 = 0.01
    w = P.balanced_class_weights(y, 2)
    np.testing.assert_allclose(w, n / (2 * np.bincount(y)))
    with jax.enable_x64(True):
        fit = P.fit_logistic(x, y, l2, num_classes=2, tol=1e-9, class_weights=w)
    ref = LogisticRegression(
        C=2.0 / (l2 * n), class_weight="balanced", tol=1e-12, max_iter=10_000
    ).fit(x, y)
    # sklearn's binary model is the difference of our two softmax columns.
    np.testing.assert_allclose(np.asarray(fit.w[:, 1] - fit.w[:, 0]), ref.coef_[0], atol=1e-4)
    np.testing.assert_allclose(float(fit.b[1] - fit.b[0]), ref.intercept_[0], atol=1e-4)


def test_balanced_probe_recovers_the_rare_class_an_unweighted_probe_misses():
    # A weak signal on a 10%-positive task: the unweighted probe predicts the majority class
    # (balanced accuracy ~0.5) although the ranking is informative; the balanced one does not.
    rng = np.random.default_rng(4)

    def draw(n):
        y = (rng.uniform(size=n) < 0.1).astype(np.int64)
        return rng.normal(size=(n, 8)) + 0.8 * y[:, None] * (np.arange(8) == 0), y

    (xtr, ytr), (xte, yte) = draw(4000), draw(4000)
    plain = P.probe(xtr, ytr, xte, yte, P.ProbeTask("s", "classification", 2))
    bal = P.probe(
        xtr, ytr, xte, yte, P.ProbeTask("s", "classification", 2, class_weight="balanced")
    )
    assert plain.metrics["balanced_accuracy"] < 0.56
    assert bal.metrics["balanced_accuracy"] > 0.62
    assert abs(bal.metrics["auroc"] - plain.metrics["auroc"]) < 0.02
    with pytest.raises(ValueError, match="class_weight"):
        P.ProbeTask("s", "regression", class_weight="balanced")
