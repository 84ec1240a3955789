"""launch.bounds: the Gaussian staircase job (FactorCL Fig. 3) end to end, on tiny settings."""

import csv
import math

import numpy as np
import pytest

from jaxmm.experiments import bounds
from launch import bounds as bounds_cli

TINY = [
    "--mi-levels",
    "1,4",
    "--steps-per-level",
    "150",
    "--batch-size",
    "16",
    "--hidden",
    "32",
    "--layers",
    "1",
    "--embed-dim",
    "16",
    "--lr",
    "5e-3",
    "--no-progress",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bounds")
    args = bounds_cli.parse_args(["--out", str(out), "--all-bounds", "--seed", "3", *TINY])
    result = bounds.run_and_report(args)
    with open(out / "bounds.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, result, rows


def test_outputs_and_columns(tiny_run):
    out, _, rows = tiny_run
    assert (out / "bounds.png").stat().st_size > 10_000
    assert (out / "summary.csv").exists() and (out / "config.json").exists()
    assert list(rows[0]) == [
        "step",
        "true_mi",
        "infonce",
        "nce_club",
        "club",
        "nwj",
        "tuba",
        "dv",
        "js",
        "smile",
    ]
    assert len(rows) == 300
    assert [int(r["step"]) for r in rows] == list(range(300))
    assert {float(r["true_mi"]) for r in rows[:150]} == {1.0}
    assert {float(r["true_mi"]) for r in rows[150:]} == {4.0}
    assert all(math.isfinite(float(r[c])) for r in rows for c in ("infonce", "nce_club", "club"))


def test_infonce_never_exceeds_log_batch(tiny_run):
    # van den Oord et al. 2018 / Poole et al. 2019: I_NCE <= log K for any critic.
    _, _, rows = tiny_run
    assert max(float(r["infonce"]) for r in rows) <= math.log(16) + 1e-5


def test_nce_club_brackets_infonce_at_low_mi(tiny_run):
    # FactorCL Thm. 2 / Fig. 3: I_NCE <= I <= I_NCE-CLUB once the critic has trained.
    _, result, _ = tiny_run
    late = {r["estimator"]: r["mean"] for r in result["summary"] if r["true_mi"] == 1.0}
    assert late["nce_club"] >= late["infonce"]
    assert late["infonce"] <= 1.0 + 0.1
    assert late["club"] > late["infonce"]


def test_summary_is_the_late_window_mean(tiny_run):
    _, result, rows = tiny_run
    late = [float(r["smile"]) for r in rows[300 - 30 : 300]]  # last 20% of the second level
    row = next(r for r in result["summary"] if r["true_mi"] == 4.0 and r["estimator"] == "smile")
    assert row["mean"] == pytest.approx(np.mean(late), abs=1e-4)
    assert row["bias"] == pytest.approx(row["mean"] - 4.0)


def test_same_seed_same_numbers():
    args = bounds_cli.parse_args(
        [
            "--mi-levels",
            "2",
            "--steps-per-level",
            "10",
            "--batch-size",
            "8",
            "--hidden",
            "16",
            "--layers",
            "1",
            "--embed-dim",
            "8",
            "--no-progress",
            "--seed",
            "5",
        ]
    )
    a, b = bounds.run(args)["table"], bounds.run(args)["table"]
    for col in ("infonce", "nce_club", "club"):
        np.testing.assert_array_equal(a[col], b[col])


def test_club_closed_form_matches_monte_carlo():
    # Independent check of d rho^2 / (1 - rho^2): CLUB with the true Gaussian conditional, by
    # sampling (x, y) jointly and y' independently, with the log-density written out in NumPy.
    dim, mi = 5, 2.0
    rho = bounds.rho_for_mi(mi, dim)
    rng = np.random.default_rng(0)
    n = 400_000
    x = rng.standard_normal((n, dim))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, dim))
    y_ind = rng.standard_normal((n, dim))
    var = 1 - rho**2
    logp = lambda yy: -0.5 * np.sum((yy - rho * x) ** 2 / var + np.log(2 * np.pi * var), axis=1)
    mc = np.mean(logp(y) - logp(y_ind))
    assert bounds.club_at_true_conditional(mi, dim) == pytest.approx(mc, rel=0.02)
    assert bounds.club_at_true_conditional(mi, dim) > mi


def test_ema_matches_weighted_average():
    values = np.random.default_rng(1).standard_normal(50)
    span = 7.0
    alpha = 2 / (span + 1)
    t = 30
    weights = (1 - alpha) ** np.arange(t, -1, -1)
    expected = np.sum(weights * values[: t + 1]) / np.sum(weights)
    assert bounds.ema(values, span)[t] == pytest.approx(expected, rel=1e-12)


def test_chunk_size_divides_steps():
    assert bounds._chunk_size(4000) == 250
    assert bounds._chunk_size(150) == 150
    assert bounds._chunk_size(997) == 1  # prime: one step per scan call, still correct


def test_cli_rejects_bad_options(capsys):
    with pytest.raises(SystemExit) as e:
        bounds_cli.parse_args(["--help"])
    assert e.value.code == 0
    for bad in (
        ["--dim", "30"],
        ["--batch-size", "1"],
        ["--mi-levels", "2,-1"],
        ["--critic", "bilinear"],
    ):
        with pytest.raises(SystemExit) as e:
            bounds_cli.parse_args(bad)
        assert e.value.code == 2
    capsys.readouterr()
