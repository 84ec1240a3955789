"""launch.repro_factorcl_synthetic: FactorCL Fig. 1 / Table 1 driver, end to end at smoke scale."""

import json
import math
import os

import numpy as np
import pytest

from jaxmm.experiments import repro_factorcl_synthetic as repro
from launch import repro_factorcl_synthetic as repro_cli


def test_main_writes_fig1_table1_png_and_json(tmp_path, capsys):
    out = tmp_path / "out"
    rc = repro_cli.main(
        [
            "--out",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
            "--tiny",
            "--no-progress",
            "--ratios",
            "1.0",
            "--methods",
            "factorcl_ssl,simclr",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--table1-config",
            "ratio10",
            "--probe-max-iter",
            "20",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "Fig. 1" in text and "Table 1" in text and "FactorCL-SSL ZU1" in text
    png = out / "fig1.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((out / "results.json").read_text())
    assert set(res["fig1"]) == {"input", "factorcl_ssl", "simclr"}
    for per in res["fig1"].values():
        assert 0.0 <= per["1.0"]["accuracy"] <= 100.0
    # FactorCL is probed block by block (App. D.1), the baselines on their unimodal encoders.
    assert set(res["table1"]["factorcl_ssl"]) == {"zu1", "zu2", "zs1", "zs2"}
    assert set(res["table1"]["simclr"]) == {"z1", "z2"}
    for reps in res["table1"].values():
        for cells in reps.values():
            assert set(cells) == {"w1", "w2", "ws"}
            for cell in cells.values():
                bits = np.asarray(cell["per_dim_bits"])
                assert np.all(bits >= 0) and math.isclose(cell["bits"], bits.sum(), rel_tol=1e-9)
    # Each pre-training left a checkpoint that launch.probe can reload.
    assert os.path.isdir(out / "runs" / "ratio10_factorcl_ssl" / "checkpoints")


def test_latent_information_matches_closed_form_gaussian_bound():
    """Z = w + noise of known variance: the linear-Gaussian bound is the channel's capacity,
    1/2 log2(1 + SNR) per coordinate, which ridge regression attains as n grows."""
    rng = np.random.default_rng(0)
    n, k = 20_000, 3
    var_w, var_noise = np.array([0.5, 0.5, 0.5]), np.array([0.5, 0.1, 2.0])
    w = rng.normal(size=(n, k)) * np.sqrt(var_w)
    z = np.concatenate(
        [w + rng.normal(size=(n, k)) * np.sqrt(var_noise), rng.normal(size=(n, 2))], axis=1
    )  # plus two useless features
    res = repro.latent_information(z[:15_000], w[:15_000], z[15_000:], w[15_000:], seed=0)
    expected = 0.5 * np.log2(1 + var_w / var_noise)
    np.testing.assert_allclose(res["per_dim_bits"], expected, atol=0.03)
    np.testing.assert_allclose(res["per_dim_r2"], var_w / (var_w + var_noise), atol=0.02)
    assert res["bits"] == pytest.approx(expected.sum(), abs=0.06)


def test_latent_information_is_zero_for_independent_features():
    rng = np.random.default_rng(1)
    z, w = rng.normal(size=(4000, 5)), rng.normal(size=(4000, 2))
    res = repro.latent_information(z[:3000], w[:3000], z[3000:], w[3000:], seed=0)
    assert res["bits"] < 0.02


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--ratios", "0.3"], "not one of the builder's ratios"),
        (["--methods", "clip"], "unknown"),
        (["--epochs", "0"], "--epochs must be > 0"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, argv, match):
    assert repro_cli.main(["--out", str(tmp_path), *argv]) == 2
    assert match in capsys.readouterr().err


def test_ratio_config_names():
    assert [repro.ratio_config(r) for r in repro.RATIOS] == [
        "ratio00",
        "ratio02",
        "ratio04",
        "ratio06",
        "ratio08",
        "ratio10",
    ]
