"""Synthetic Gaussian data: closed-form (conditional) MI checked against sample covariances."""

import math

import jax
import numpy as np
import pytest

from jaxmm.data import gaussian as g


def _logdet(a):
    sign, val = np.linalg.slogdet(np.atleast_2d(a))
    assert sign > 0
    return val


def _gaussian_mi_from_samples(x, y):
    """I(X;Y) = 1/2 log(det S_x det S_y / det S_xy) from the sample covariance (independent)."""
    joint = np.cov(np.concatenate([x, y], axis=1).astype(np.float64), rowvar=False)
    dx = x.shape[1]
    return 0.5 * (_logdet(joint[:dx, :dx]) + _logdet(joint[dx:, dx:]) - _logdet(joint))


def _gaussian_cmi_from_samples(x1, x2, c):
    """I(X1;X2|C) = 1/2 log(det S_1C det S_2C / (det S_C det S_12C)), sample covariances."""
    data = np.concatenate([x1, x2, c], axis=1).astype(np.float64)
    s = np.cov(data, rowvar=False)
    d1, d2 = x1.shape[1], x2.shape[1]
    i1 = list(range(d1))
    i2 = list(range(d1, d1 + d2))
    ic = list(range(d1 + d2, data.shape[1]))
    sub = lambda idx: s[np.ix_(idx, idx)]
    return 0.5 * (_logdet(sub(i1 + ic)) + _logdet(sub(i2 + ic)) - _logdet(sub(ic)) - _logdet(s))


@pytest.mark.parametrize("dim", [1, 20, 200])
@pytest.mark.parametrize("mi", [0.0, 0.5, 2.0, 10.0])
def test_rho_mi_round_trip(mi, dim):
    rho = g.rho_for_mi(mi, dim)
    assert 0.0 <= rho < 1.0  # tolerance: at I = 10 nats in d = 1, 1 - rho^2 ~ 2e-9 in float64
    assert g.mi_for_rho(rho, dim) == pytest.approx(mi, abs=1e-6)
    # Poole et al. 2019, Sec. 4: I = -d/2 log(1 - rho^2), written out independently.
    assert -0.5 * dim * math.log(1 - rho**2) == pytest.approx(mi, abs=1e-6)


def test_rho_for_mi_rejects_bad_input():
    with pytest.raises(ValueError, match="mi"):
        g.rho_for_mi(-1.0, 20)
    with pytest.raises(ValueError, match="dim"):
        g.rho_for_mi(2.0, 0)
    with pytest.raises(ValueError, match="rho"):
        g.mi_for_rho(1.0, 20)


@pytest.mark.parametrize("mi", [2.0, 6.0])
def test_numpy_samples_have_requested_mi(mi):
    dim, n = 10, 200_000
    x, y = g.sample_correlated_gaussian_np(np.random.default_rng(0), n, dim, g.rho_for_mi(mi, dim))
    assert x.shape == y.shape == (n, dim) and x.dtype == np.float32
    assert _gaussian_mi_from_samples(x, y) == pytest.approx(mi, abs=0.05)


def test_jax_samples_have_requested_mi_and_jit():
    dim, n, mi = 10, 100_000, 4.0
    sample = jax.jit(g.sample_correlated_gaussian, static_argnums=(1, 2, 4))
    x, y = sample(jax.random.key(1), n, dim, g.rho_for_mi(mi, dim), False)
    assert x.shape == (n, dim)
    assert _gaussian_mi_from_samples(np.asarray(x), np.asarray(y)) == pytest.approx(mi, abs=0.05)


def test_cubic_transform_is_the_cube_of_the_gaussian_samples():
    key = jax.random.key(3)
    rho = g.rho_for_mi(4.0, 8)
    x0, y0 = g.sample_correlated_gaussian(key, 32, 8, rho)
    x3, y3 = g.sample_correlated_gaussian(key, 32, 8, rho, cubic=True)
    np.testing.assert_array_equal(np.asarray(x0), np.asarray(x3))
    np.testing.assert_allclose(np.asarray(y3), np.asarray(y0) ** 3, rtol=1e-6)


def test_conditional_mi_closed_form_matches_paper_setting():
    # FactorCL Tables 9-10 report 2.32; the exact value of the CCMI Model I data is 1/2 log 101.
    assert g.conditional_mi() == pytest.approx(0.5 * math.log(101.0), abs=1e-12)
    assert abs(g.conditional_mi() - 2.32) < 0.015
    assert g.conditional_mi(0.1, dim=3) == pytest.approx(3 * 0.5 * math.log(101.0))


@pytest.mark.parametrize("cond_dim,dim", [(20, 1), (1, 1), (5, 3)])
def test_conditional_samples_match_closed_form_cmi(cond_dim, dim):
    out = g.sample_conditional_gaussian_np(np.random.default_rng(7), 200_000, cond_dim, 0.1, dim)
    assert out["x1"].shape == (200_000, dim) and out["c"].shape == (200_000, cond_dim)
    est = _gaussian_cmi_from_samples(out["x1"], out["x2"], out["c"])
    assert est == pytest.approx(g.conditional_mi(0.1, dim), abs=0.03 * dim)
    # Without conditioning, c_1 adds variance to x2, so the plain MI is strictly smaller.
    assert _gaussian_mi_from_samples(out["x1"], out["x2"]) < est - 0.5


def test_conditional_jax_twin_matches_closed_form():
    out = jax.jit(g.sample_conditional_gaussian, static_argnums=(1, 2))(
        jax.random.key(0), 100_000, 4
    )
    out = {k: np.asarray(v) for k, v in out.items()}
    assert np.all(np.abs(out["c"]) <= 0.5)
    est = _gaussian_cmi_from_samples(out["x1"], out["x2"], out["c"])
    assert est == pytest.approx(g.conditional_mi(), abs=0.03)


def test_samplers_reject_bad_input():
    with pytest.raises(ValueError, match="rng"):
        g.sample_correlated_gaussian_np(0, 10, 2, 0.5)
    with pytest.raises(ValueError, match="noise_std"):
        g.sample_conditional_gaussian_np(np.random.default_rng(0), 10, noise_std=0.0)
    with pytest.raises(ValueError, match="cond_dim"):
        g.sample_conditional_gaussian_np(np.random.default_rng(0), 10, cond_dim=0)
