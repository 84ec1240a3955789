"""Estimators and losses vs independent NumPy loops, closed forms and known MI bounds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmm import estimators as E

RTOL, ATOL = 2e-5, 2e-5


def _rand(seed, *shape, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# NumPy references: explicit Python loops over samples, float64.
# --------------------------------------------------------------------------------------------------


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def np_logmeanexp_nodiag(s):
    b = s.shape[0]
    off = [float(s[i, j]) for i in range(b) for j in range(b) if i != j]
    return _lse(off) - math.log(len(off))


def np_infonce(s):
    b = s.shape[0]
    terms = [float(s[i, i]) - _lse([float(s[i, j]) for j in range(b)]) for i in range(b)]
    return math.log(b) + sum(terms) / b


def np_tuba(s, a=None):
    b = s.shape[0]
    a = np.zeros(b) if a is None else a
    joint = sum(float(s[i, i]) - a[i] for i in range(b)) / b
    marg = sum(math.exp(float(s[i, j]) - a[i]) for i in range(b) for j in range(b) if i != j)
    return 1.0 + joint - marg / (b * (b - 1))


def np_nwj(s):
    return np_tuba(np.asarray(s, np.float64) - 1.0)


def np_dv(s, clip=None):
    b = s.shape[0]
    sc = np.asarray(s, np.float64) if clip is None else np.clip(s, -clip, clip).astype(np.float64)
    return sum(float(s[i, i]) for i in range(b)) / b - np_logmeanexp_nodiag(sc)


def _softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def np_js_fgan(s):
    b = s.shape[0]
    first = sum(-_softplus(-float(s[i, i])) for i in range(b)) / b
    second = sum(_softplus(float(s[i, j])) for i in range(b) for j in range(b) if i != j)
    return first - second / (b * (b - 1))


def np_club(s):
    b = s.shape[0]
    return sum(float(s[i, i]) - sum(float(s[i, j]) for j in range(b)) / b for i in range(b)) / b


def np_gauss_ll(mu, logvar, y):
    b, d = mu.shape
    out = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            tot = 0.0
            for k in range(d):
                var = math.exp(float(logvar[i, k]))
                tot += -0.5 * ((float(y[j, k]) - float(mu[i, k])) ** 2 / var)
                tot += -0.5 * (math.log(2 * math.pi) + float(logvar[i, k]))
            out[i, j] = tot
    return out


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def np_infonce_loss(za, zb, t, normalize=True):
    za = [_unit(v) if normalize else np.float64(v) for v in za]
    zb = [_unit(v) if normalize else np.float64(v) for v in zb]
    b = len(za)
    total = 0.0
    for i in range(b):
        logits = [float(za[i] @ zb[j]) / t for j in range(b)]
        total += _lse(logits) - logits[i]
    return total / b


def np_clip_loss(za, zb, scale):
    za, zb = [_unit(v) for v in za], [_unit(v) for v in zb]
    b = len(za)
    rows = cols = 0.0
    for i in range(b):
        row = [scale * float(za[i] @ zb[j]) for j in range(b)]
        col = [scale * float(za[j] @ zb[i]) for j in range(b)]
        rows += _lse(row) - row[i]
        cols += _lse(col) - col[i]
    return 0.5 * (rows + cols) / b


def np_ntxent(z1, z2, t):
    zs = [_unit(v) for v in z1] + [_unit(v) for v in z2]
    n = len(z1)
    total = 0.0
    for a in range(2 * n):
        pos = a + n if a < n else a - n
        others = [float(zs[a] @ zs[k]) / t for k in range(2 * n) if k != a]
        total += _lse(others) - float(zs[a] @ zs[pos]) / t
    return total / (2 * n)


def np_supcon(features, labels, t, base_t=None):
    base_t = t if base_t is None else base_t
    b, v, _ = features.shape
    items = [(_unit(features[i, w]), int(labels[i])) for i in range(b) for w in range(v)]
    losses = []
    for a, (za, la) in enumerate(items):
        others = [k for k in range(len(items)) if k != a]
        positives = [k for k in others if items[k][1] == la]
        if not positives:
            continue
        log_den = _lse([float(za @ items[k][0]) / t for k in others])
        mean_lp = sum(float(za @ items[p][0]) / t - log_den for p in positives) / len(positives)
        losses.append(-(t / base_t) * mean_lp)
    return sum(losses) / len(losses) if losses else 0.0


def np_tuple_infonce_duplicated(anchors, positives, negatives, multiplicities, t):
    """Literal duplication: block k appears multiplicities[k] times among the candidates."""
    b = anchors.shape[0]
    total = 0.0
    for i in range(b):
        a = _unit(anchors[i])
        cands = [_unit(positives[j]) for j in range(b)]
        for k, m in enumerate(multiplicities):
            for _ in range(m):
                cands += [_unit(negatives[k, j]) for j in range(b)]
        logits = [float(a @ c) / t for c in cands]
        total += _lse(logits) - logits[i]
    return total / b


# --------------------------------------------------------------------------------------------------
# Bounds vs loops
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, ref",
    [
        (E.logmeanexp_nodiag, np_logmeanexp_nodiag),
        (E.infonce_lower_bound, np_infonce),
        (E.nwj_lower_bound, np_nwj),
        (E.tuba_lower_bound, np_tuba),
        (E.dv_lower_bound, np_dv),
        (E.js_fgan_lower_bound, np_js_fgan),
        (E.js_lower_bound, lambda s: np_nwj(s + 1.0)),  # value of JS is NWJ's at f + 1
        (E.smile_lower_bound, np_dv),  # clip=None: value of SMILE is DV's
        (E.club_upper_bound, np_club),
        (E.nce_club_upper_bound, np_club),
        (E.infonce_from_scores_loss, lambda s: math.log(s.shape[0]) - np_infonce(s)),
    ],
)
def test_bound_matches_loop_reference(fn, ref):
    s = _rand(0, 7, 7, scale=2.0)
    np.testing.assert_allclose(jax.jit(fn)(s), ref(s), rtol=RTOL, atol=ATOL)


def test_tuba_with_baseline_matches_loops():
    s, a = _rand(1, 6, 6), _rand(2, 6)
    got = jax.jit(E.tuba_lower_bound)(s, a)
    np.testing.assert_allclose(got, np_tuba(s, a.astype(np.float64)), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("clip", [0.5, 1.0, 5.0])
def test_smile_value_is_clipped_dv(clip):
    s = _rand(3, 8, 8, scale=3.0)
    got = jax.jit(E.smile_lower_bound, static_argnames="clip")(s, clip=clip)
    np.testing.assert_allclose(got, np_dv(s, clip=clip), rtol=RTOL, atol=ATOL)


def test_gaussian_log_likelihood_matrix_matches_loops():
    mu, logvar, y = _rand(4, 5, 3), _rand(5, 5, 3, scale=0.5), _rand(6, 5, 3)
    got = jax.jit(E.gaussian_log_likelihood_matrix)(mu, logvar, y)
    np.testing.assert_allclose(got, np_gauss_ll(mu, logvar, y), rtol=RTOL, atol=1e-4)


def _js_reference(s):
    """Loop-free JS f-GAN bound, written independently of the library (mask instead of sums)."""
    b = s.shape[0]
    off = 1.0 - jnp.eye(b)
    pos = -jnp.mean(jax.nn.softplus(-jnp.diagonal(s)))
    neg = jnp.sum(off * jnp.logaddexp(0.0, s)) / jnp.sum(off)
    return pos - neg


@pytest.mark.parametrize(
    "fn", [E.js_lower_bound, lambda s: E.smile_lower_bound(s, clip=1.0), E.smile_lower_bound]
)
def test_js_and_smile_gradient_is_the_js_gradient(fn):
    s = _rand(7, 6, 6, scale=2.0)
    np.testing.assert_allclose(
        jax.jit(jax.grad(fn))(s), jax.grad(_js_reference)(s), rtol=1e-5, atol=1e-7
    )
    # and differs from the gradient of the value it reports
    assert not np.allclose(jax.grad(E.nwj_lower_bound)(s), jax.grad(_js_reference)(s), atol=1e-4)


# --------------------------------------------------------------------------------------------------
# Losses vs loops
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_infonce_loss_matches_loops(normalize):
    za, zb = _rand(10, 6, 4), _rand(11, 6, 4)
    f = jax.jit(lambda a, b: E.infonce_loss(a, b, temperature=0.3, normalize=normalize))
    np.testing.assert_allclose(f(za, zb), np_infonce_loss(za, zb, 0.3, normalize), rtol=RTOL)


def test_clip_loss_matches_loops_for_temperature_and_logit_scale():
    za, zb = _rand(12, 6, 4), _rand(13, 6, 4)
    by_t = jax.jit(lambda a, b: E.clip_loss(a, b, temperature=0.2))(za, zb)
    by_s = jax.jit(lambda a, b, s: E.clip_loss(a, b, logit_scale=s))(za, zb, jnp.log(5.0))
    ref = np_clip_loss(za, zb, 5.0)
    np.testing.assert_allclose(by_t, ref, rtol=RTOL)
    np.testing.assert_allclose(by_s, ref, rtol=RTOL)
    # logit_scale is learnable: d loss / d logit_scale matches a central finite difference in f64.
    g = jax.grad(lambda s: E.clip_loss(za, zb, logit_scale=s))(jnp.log(5.0))
    h = 1e-4
    fd = np_clip_loss(za, zb, math.exp(math.log(5.0) + h)) - np_clip_loss(za, zb, 5.0 / math.exp(h))
    np.testing.assert_allclose(g, fd / (2 * h), rtol=1e-3)


def test_ntxent_matches_loops():
    z1, z2 = _rand(14, 5, 3), _rand(15, 5, 3)
    got = jax.jit(lambda a, b: E.ntxent_loss(a, b, temperature=0.5))(z1, z2)
    np.testing.assert_allclose(got, np_ntxent(z1, z2, 0.5), rtol=RTOL)


def test_ntxent_equals_optax_with_two_views_and_supcon_with_unique_labels():
    # With exactly one positive per anchor, SimCLR's NT-Xent, optax.ntxent and SupCon coincide.
    z1, z2 = _rand(16, 5, 3), _rand(17, 5, 3)
    ours = jax.jit(lambda a, b: E.ntxent_loss(a, b, temperature=0.5))(z1, z2)
    labels = np.concatenate([np.arange(5), np.arange(5)]).astype(np.int32)
    ref = jax.jit(lambda z, y: optax.losses.ntxent(z, y, temperature=0.5))(
        jnp.concatenate([z1, z2]), jnp.asarray(labels)
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    sup = jax.jit(lambda f, y: E.supcon_loss(f, y, temperature=0.5))(
        np.stack([z1, z2], 1), np.arange(5, dtype=np.int32)
    )
    np.testing.assert_allclose(sup, ours, rtol=1e-5)


def test_supcon_matches_loops_with_many_positives_and_differs_from_optax():
    # 8 samples, 3 labels (3, 3, 2 samples), 2 views: anchors have 3 to 5 positives each.
    feats = _rand(18, 8, 2, 4)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    f = jax.jit(lambda x, y: E.supcon_loss(x, y, temperature=0.3, base_temperature=0.07))
    np.testing.assert_allclose(f(feats, labels), np_supcon(feats, labels, 0.3, 0.07), rtol=RTOL)
    plain = jax.jit(lambda x, y: E.supcon_loss(x, y, temperature=0.3))(feats, labels)
    np.testing.assert_allclose(plain, np_supcon(feats, labels, 0.3), rtol=RTOL)
    # optax.ntxent keeps only one positive in each denominator (other positives are dropped), so
    # with > 2 samples per label it is a different loss from Khosla et al.'s L_out.
    flat = feats.reshape(16, 4)
    optax_val = jax.jit(lambda z, y: optax.losses.ntxent(z, y, temperature=0.3))(
        jnp.asarray(flat), jnp.repeat(labels, 2)
    )
    assert abs(float(optax_val) - float(plain)) > 1e-2


def test_supcon_excludes_anchors_without_positives():
    # Single view; label 7 appears once so that anchor has no positive and is left out.
    feats = _rand(19, 5, 1, 3)
    labels = np.array([0, 0, 1, 1, 7], np.int32)
    got = E.supcon_loss(feats, labels, temperature=0.5)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, np_supcon(feats, labels, 0.5), rtol=RTOL)
    none = E.supcon_loss(feats, np.arange(5, dtype=np.int32), temperature=0.5)
    assert float(none) == 0.0


def test_tuple_infonce_log_weights_equal_literal_duplication():
    b, k, d = 4, 3, 5
    anc, pos, neg = _rand(20, b, d), _rand(21, b, d), _rand(22, k, b, d)
    mult = [1, 3, 2]
    f = jax.jit(
        lambda a, p, n, w: E.tuple_infonce_loss(a, p, n, negative_log_weights=w, temperature=0.2)
    )
    got = f(anc, pos, neg, jnp.log(jnp.asarray(mult, jnp.float32)))
    np.testing.assert_allclose(
        got, np_tuple_infonce_duplicated(anc, pos, neg, mult, 0.2), rtol=RTOL
    )
    # no weights == all multiplicities 1; no negatives == plain InfoNCE
    np.testing.assert_allclose(
        E.tuple_infonce_loss(anc, pos, neg, temperature=0.2),
        np_tuple_infonce_duplicated(anc, pos, neg, [1, 1, 1], 0.2),
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        E.tuple_infonce_loss(anc, pos, temperature=0.2),
        np_infonce_loss(anc, pos, 0.2),
        rtol=RTOL,
    )


# --------------------------------------------------------------------------------------------------
# Known bounds on correlated Gaussians with the analytic optimal critic
# --------------------------------------------------------------------------------------------------


def _gaussian_batches(seed, n_batches, b, d, rho):
    kx, ke = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (n_batches, b, d))
    y = rho * x + math.sqrt(1 - rho**2) * jax.random.normal(ke, (n_batches, b, d))
    return x, y


def _analytic_log_ratio(x, y, rho):
    """scores[i, j] = log p(y_j | x_i) - log p(y_j), the InfoNCE/DV-optimal critic (up to c(x))."""
    v = 1 - rho**2
    diff = y[None, :, :] - rho * x[:, None, :]
    cond = -0.5 * jnp.sum(diff**2, -1) / v - 0.5 * x.shape[-1] * math.log(v)
    marg = -0.5 * jnp.sum(y**2, -1)[None, :]
    return cond - marg


def _rho_for_mi(mi, d):
    return math.sqrt(1 - math.exp(-2 * mi / d))


def _batch_estimates(fn, mi, d=4, b=64, n_batches=200, seed=0, shift=0.0):
    rho = _rho_for_mi(mi, d)
    x, y = _gaussian_batches(seed, n_batches, b, d, rho)
    vals = jax.jit(jax.vmap(lambda xx, yy: fn(_analytic_log_ratio(xx, yy, rho) + shift)))(x, y)
    vals = np.asarray(vals, np.float64)
    return vals.mean(), vals.std(ddof=1) / math.sqrt(len(vals)), rho


@pytest.mark.parametrize("mi", [1.0, 2.0, 8.0])
def test_infonce_lower_bounds_min_of_true_mi_and_log_batch(mi):
    mean, se, _ = _batch_estimates(E.infonce_lower_bound, mi)
    # E[I_NCE] <= min(I, log B) holds exactly for the expectation; tolerance = 4 standard errors
    # of the 200-batch mean (seeded; a false failure would need a > 4-sigma fluctuation).
    assert mean <= min(mi, math.log(64)) + 4 * se
    # and the analytic critic makes it tight-ish when I << log B (sanity that the critic is right).
    if mi < 3:
        assert mean >= mi - 0.3


@pytest.mark.parametrize("mi", [1.0, 4.0, 8.0])
def test_nce_club_upper_bounds_true_mi_on_gaussians(mi):
    d, b = 4, 64
    mean, se, rho = _batch_estimates(E.nce_club_upper_bound, mi, d=d, b=b)
    assert mean >= mi - 4 * se  # FactorCL Theorem 2 / Eq. 12
    # Closed form: E[diag mean - full mean] = (1 - 1/B) (E_p[f] - E_{p(x)p(y)}[f]) and, per
    # dimension, E_p[f] - E_{pxpy}[f] = I + KL(p(x)p(y) || p(x, y)) = rho^2 / (1 - rho^2).
    expected = (1 - 1 / b) * d * rho**2 / (1 - rho**2)
    assert abs(mean - expected) <= 4 * se + 1e-3 * expected


def test_nwj_is_unbiased_with_the_optimal_critic():
    # NWJ's optimal critic is 1 + log ratio; its batch value is unbiased because the off-diagonal
    # mean of exp(f - 1) = p(x,y)/(p(x)p(y)) has expectation exactly 1. MI kept small (1 nat) so the
    # e^MI variance is tame; tolerance 4 empirical standard errors over 400 batches.
    mean, se, _ = _batch_estimates(E.nwj_lower_bound, 1.0, n_batches=400, seed=1, shift=1.0)
    assert abs(mean - 1.0) <= 4 * se
    assert se < 0.05  # the test has power: 4 se is well below the 1-nat signal
    # The JS-optimal critic is log r (no +1 shift); js_lower_bound reports NWJ at f + 1, so at the
    # JS optimum it is unbiased too (as in vbmi), not I - 1/e.
    mean0, se0, _ = _batch_estimates(E.js_lower_bound, 1.0, n_batches=400, seed=1)
    assert abs(mean0 - 1.0) <= 4 * se0


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------

_BOUNDS = [
    E.infonce_lower_bound,
    E.nwj_lower_bound,
    E.tuba_lower_bound,
    E.dv_lower_bound,
    E.js_lower_bound,
    E.smile_lower_bound,
    E.club_upper_bound,
    E.nce_club_upper_bound,
    E.logmeanexp_nodiag,
]


@pytest.mark.parametrize("fn", _BOUNDS)
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4,), np.float32), r"square .* shape \(4,\)"),
        (np.zeros((4, 3), np.float32), r"square .* shape \(4, 3\)"),
        (np.zeros((2, 4, 4), np.float32), r"square .* shape \(2, 4, 4\)"),
        (np.zeros((4, 4), np.int32), "floating dtype"),
    ],
)
def test_bounds_reject_bad_scores(fn, bad, match):
    with pytest.raises(ValueError, match=match):
        fn(bad)


def test_nodiag_bounds_need_two_samples():
    with pytest.raises(ValueError, match="B >= 2"):
        E.nwj_lower_bound(np.zeros((1, 1), np.float32))


def test_bad_baseline_and_clip():
    with pytest.raises(ValueError, match=r"log_baseline must have shape \(4,\)"):
        E.tuba_lower_bound(np.zeros((4, 4), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="clip must be > 0"):
        E.smile_lower_bound(np.zeros((4, 4), np.float32), clip=0.0)


_Z = np.zeros((4, 3), np.float32)
_LOSSES = [
    lambda a, b: E.infonce_loss(a, b),
    lambda a, b: E.clip_loss(a, b, temperature=0.1),
    lambda a, b: E.ntxent_loss(a, b),
    lambda a, b: E.tuple_infonce_loss(a, b),
    lambda a, b: E.gaussian_log_likelihood_matrix(a, a, b),
]


@pytest.mark.parametrize("loss", _LOSSES)
@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((4,), np.float32), _Z, r"shape \(B, D\), got shape \(4,\)"),
        (_Z, np.zeros((5, 3), np.float32), r"same shape .* \(4, 3\) and \(5, 3\)"),
        (_Z, _Z.astype(np.int32), "floating dtype, got int32"),
    ],
)
def test_losses_reject_bad_embeddings(loss, a, b, match):
    with pytest.raises(ValueError, match=match):
        loss(a, b)


def test_loss_specific_validation():
    with pytest.raises(ValueError, match="exactly one of temperature and logit_scale"):
        E.clip_loss(_Z, _Z)
    with pytest.raises(ValueError, match="exactly one"):
        E.clip_loss(_Z, _Z, temperature=0.1, logit_scale=0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        E.infonce_loss(_Z, _Z, temperature=0.0)
    with pytest.raises(ValueError, match=r"features must have shape \(B, V, D\)"):
        E.supcon_loss(_Z, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        E.supcon_loss(np.zeros((4, 2, 3), np.float32), np.zeros(5, np.int32))
    with pytest.raises(ValueError, match="labels must have an integer dtype"):
        E.supcon_loss(np.zeros((4, 2, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"negatives must have shape \(K, 4, 3\)"):
        E.tuple_infonce_loss(_Z, _Z, np.zeros((2, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"negative_log_weights must have shape \(2,\)"):
        E.tuple_infonce_loss(
            _Z, _Z, np.zeros((2, 4, 3), np.float32), negative_log_weights=np.zeros(3, np.float32)
        )
