"""launch.repro_factorcl_synthetic: FactorCL calibration / Fig. 1 / Table 1, end to end at tiny
scale, and the pieces of the in-memory protocol against independent computations."""

import json
import math

import numpy as np
import pytest

from jaxmm.experiments import factorcl_synthetic as fs
from jaxmm.experiments import repro_factorcl_synthetic as repro
from launch import repro_factorcl_synthetic as repro_cli


def test_main_writes_calibration_fig1_table1_png_and_json(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--out", str(out), "--tiny", "--ratios", "0,1", "--methods", "simclr", "--seeds", "2"]
    assert repro_cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "Calibration" in text and "Fig. 1" in text and "Table 1" in text
    png = out / "fig1.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((out / "results.json").read_text())
    # The schema: calibration {method: acc}, fig1 {method: {"<r>": acc}}, in %.
    assert set(res["calibration"]) == {"simclr", "factorcl_ssl", "factorcl_sup"}
    assert all(0 <= v <= 100 for v in res["calibration"].values())
    assert set(res["fig1"]) == {"simclr"} and set(res["fig1"]["simclr"]) == {"0", "1"}
    for r, per in res["fig1_detail"].items():
        st = per["methods"]["simclr"]
        assert len(st["values"]) == 2 and st["mean"] == pytest.approx(np.mean(st["values"]))
        assert res["fig1"]["simclr"][r] == pytest.approx(st["mean"])
    assert res["fig1_detail"]["1"]["shared_only_bayes"] == pytest.approx(50.0)
    assert set(res["table1"]["factorcl_ssl"]) == {"zs1", "zu1", "zs2", "zu2"}
    assert set(res["table1"]["simclr"]) == {"z1", "z2"}
    for reps in res["table1"].values():
        for cells in reps.values():
            for cell in cells.values():
                bits = np.asarray(cell["per_dim_bits"])
                assert np.all(bits >= 0) and math.isclose(cell["bits"], bits.sum(), rel_tol=1e-9)


@pytest.mark.parametrize("ls,lu", [(10, 0), (6, 2), (4, 3), (2, 4), (0, 5), (10, 6)])
def test_shared_only_bayes_accuracy_matches_monte_carlo(ls, lu):
    """The best guess from ws is sign(A): its accuracy by simulation of the label itself."""
    rng = np.random.default_rng(0)
    n = 400_000
    a = rng.normal(scale=np.sqrt(0.5), size=(n, ls)).sum(1) if ls else np.zeros(n)
    u = rng.normal(scale=np.sqrt(0.5), size=(n, 2 * lu)).sum(1) if lu else np.zeros(n)
    y = (a + u) >= 0
    guess = a >= 0 if ls else rng.random(n) < 0.5
    assert fs.shared_only_bayes_accuracy(ls, lu) == pytest.approx(
        100 * np.mean(guess == y), abs=0.3
    )


def test_official_augment_applies_one_of_four_transforms_per_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 100)).astype(np.float32)
    out = fs.official_augment(x, np.random.default_rng(1))
    kinds = []
    for row, orig in zip(out, x, strict=True):
        if np.array_equal(row, orig):
            kinds.append("identity")
        elif np.array_equal(row, np.concatenate([orig[50:], orig[:50]])):
            kinds.append("swap")
        elif np.sum(row == 0) == 10 and np.array_equal(row[row != 0], orig[row != 0]):
            kinds.append("drop")
        else:
            assert np.abs(row - orig).max() < 0.06 and np.std(row - orig) == pytest.approx(
                0.01, rel=0.3
            )
            kinds.append("noise")
    counts = {k: kinds.count(k) for k in ("identity", "swap", "drop", "noise")}
    assert all(400 < c < 600 for c in counts.values()), counts


def test_make_data_is_the_generator_split_80_20_with_its_label():
    p = fs.Protocol(num_samples=1000)
    data = fs.make_data("ratio04", seed=3, protocol=p)
    tr, te = data["train"], data["test"]
    assert len(tr["label"]) == 800 and len(te["label"]) == 200
    # ratio 0.4: the label reads ws[:6], w1[:2], w2[:2] (mean >= 0).
    read = np.concatenate([tr["ws"][:, :6], tr["w1"][:, :2], tr["w2"][:, :2]], 1)
    np.testing.assert_array_equal(tr["label"], (read.mean(1) >= 0).astype(np.int32))
    # x1 is linear in [ws, w1] (no noise): least squares leaves nothing.
    lat = np.concatenate([tr["ws"], tr["w1"]], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(lat, tr["x1"].astype(np.float64), rcond=None)
    assert np.abs(lat @ coef - tr["x1"]).max() < 1e-4
    assert data["config"]["unique_ratio"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no config 'ratio05'"):
        fs.make_data("ratio05", seed=0, protocol=p)


def test_torch_linear_init_draws_uniform_kernels_and_biases_by_fan_in():
    import jax

    from jaxmm.methods.base import path_names

    method = fs.build_method("simclr", fs.Protocol(encoder_hidden=(64,), embed_dim=8))
    batch = next(
        fs.batches(
            fs.make_data("official", seed=0, protocol=fs.Protocol(num_samples=100))["train"],
            16,
            seed=0,
            augment=False,
        )
    )
    params = method.init(jax.random.key(0), batch)
    new = fs.torch_linear_init(params, jax.random.key(1))
    leaves = jax.tree_util.tree_flatten_with_path(new)[0]
    flat = {tuple(n for n in path_names(p) if n != "value"): np.asarray(x) for p, x in leaves}
    enc = [k for k in flat if "encoders" in k and k[-1] == "kernel"]
    assert enc
    for k in enc:
        w, b = flat[k], flat[(*k[:-1], "bias")]
        bound = 1 / np.sqrt(w.shape[0])
        assert np.abs(w).max() <= bound and np.abs(b).max() <= bound and np.abs(b).max() > 0
        assert np.std(w) == pytest.approx(bound / np.sqrt(3), rel=0.1)


def test_batches_drop_last_and_cover_each_epoch_once():
    split = {k: np.arange(10, dtype=np.float32)[:, None] for k in ("x1", "x2")}
    split["label"] = np.arange(10, dtype=np.int32)
    it = fs.batches(split, 3, seed=0, augment=False)
    epoch = [next(it)["labels"]["label"] for _ in range(3)]
    seen = np.concatenate(epoch)
    assert len(seen) == 9 and len(set(seen.tolist())) == 9  # 3 full batches, one row dropped


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
        (["--seeds", "0"], "must be > 0"),
        (["--parts", "fig2"], "unknown"),
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
