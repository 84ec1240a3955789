"""Your own data (README "Your own data"): .npz convention, checks, statistics, configs, runs.

Files are generated here, tiny: tabular (N, d), sequence (N, T, d) with a step mask, image
(N, H, W, C). Runs use the smoke configs (width 8, 4 steps).
"""

import io
import json
import os

import numpy as np
import pytest

from jaxmm import configs, own_data, validation
from jaxmm import experiment as ex
from jaxmm import probe_checkpoint as pc
from jaxmm.data import arrays as arrays_lib
from jaxmm.data import inputs
from launch import embed as launch_embed
from launch import probe as launch_probe
from launch import train as launch_train

N = 40


def _tabular(rng, n=N):
    y = rng.integers(0, 2, n)
    return {
        "a": (rng.normal(size=(n, 5)) * 3 + 7 + y[:, None]).astype(np.float32),
        "b": rng.normal(size=(n, 3)).astype(np.float32),
        "label": np.where(y == 1, 7, 3),  # class values 3 / 7, not 0..K-1
        "target": rng.normal(size=n).astype(np.float32),
    }


def _write(tmp_path, arrays, name="d.npz"):
    path = str(tmp_path / name)
    np.savez(path, **arrays)
    return path


def _cfg(path, method="comm", overrides=()):
    cfg = configs.get_config(f"{method}_arrays", "smoke")
    return own_data.resolve_data(ex.override(cfg, [f"data.path={path}", *overrides]))


def test_every_method_has_an_arrays_config_that_validates(tmp_path):
    path = _write(tmp_path, _tabular(np.random.default_rng(0)))
    for method in own_data.METHODS:
        assert configs.method_name(f"{method}_arrays") == method
        cfg = _cfg(path, method)
        validation.validate(cfg)  # traces init + loss abstractly on the inferred batch
    # SupCon reads the first classification label of the file when its default is absent.
    renamed = {
        ("y" if k == "label" else k): v for k, v in _tabular(np.random.default_rng(0)).items()
    }
    cfg = _cfg(_write(tmp_path, renamed, "renamed.npz"), "supcon")
    assert cfg.method.config.label_key == "y"
    validation.validate(cfg)


def test_inferred_modalities_labels_and_training_statistics(tmp_path):
    rng = np.random.default_rng(1)
    arrays = _tabular(rng)
    arrays["seq"] = rng.normal(2.0, 5.0, size=(N, 6, 4)).astype(np.float32)
    valid = rng.uniform(size=(N, 6)) < 0.7
    valid[:, 0] = True
    arrays["seq_valid"] = valid
    arrays["img"] = rng.integers(0, 255, size=(N, 8, 8, 2)).astype(np.uint8)
    path = _write(tmp_path, arrays)
    cfg = _cfg(path)
    kinds = {m.name: m.kind for m in cfg.data.modalities}
    assert kinds == {"a": "tabular", "b": "tabular", "seq": "time_series", "img": "image"}
    encoders = {m.name: m.encoder for m in cfg.model.modalities}
    assert encoders == {"a": "mlp", "b": "mlp", "seq": "transformer", "img": "alexnet"}
    assert cfg.data.labels == ("label", "target")
    stats = cfg.data.stats
    assert stats["labels"]["label"] == {"kind": "classification", "classes": [3, 7]}
    assert stats["labels"]["target"]["kind"] == "regression"
    ds = inputs.arrays_dataset(cfg)
    train = ds.index["train"]
    assert len(train) + len(ds.index["test"]) == N and len(ds.index["test"]) == 8
    # Independent computation of the standardisation: training rows only.
    a = arrays["a"][train].astype(np.float64)
    np.testing.assert_allclose(stats["modalities"]["a"]["mean"], a.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["modalities"]["a"]["std"], a.std(0), rtol=1e-5)
    seq_mean = [arrays["seq"][train][valid[train]][:, j].mean() for j in range(4)]
    np.testing.assert_allclose(stats["modalities"]["seq"]["mean"], seq_mean, rtol=1e-4)
    img = arrays["img"][train].astype(np.float64)
    np.testing.assert_allclose(stats["modalities"]["img"]["std"], img.std((0, 1, 2)), rtol=1e-4)
    src = ds.as_data_source("test")
    row = ds.index["test"][0]
    want = (arrays["a"][row] - a.mean(0)) / a.std(0)
    np.testing.assert_allclose(src[0]["a"], want, rtol=1e-4, atol=1e-5)
    assert src[0]["label"] == (arrays["label"][row] == 7)  # class index
    validation.validate(cfg)
    # The stored config round-trips through JSON and opens the same data.
    back = ex.ExperimentConfig.from_json(cfg.to_json())
    assert back == cfg


def test_file_split_selection_and_stratified_default(tmp_path):
    rng = np.random.default_rng(2)
    arrays = _tabular(rng)
    arrays["split"] = np.array(["train"] * 30 + ["test"] * 10)
    cfg = _cfg(_write(tmp_path, arrays), overrides=["data.modalities=b,a", "data.labels=label"])
    assert [m.name for m in cfg.data.modalities] == ["b", "a"]
    assert cfg.data.labels == ("label",)
    ds = inputs.arrays_dataset(cfg)
    np.testing.assert_array_equal(ds.index["test"], np.arange(30, 40))
    # Default split: stratified, seeded, 20%.
    y = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    data = {"x": rng.normal(size=(100, 2, 2)), "y": y}
    tr, te, how = arrays_lib.split_indices(data, {"y": "classification"}, seed=0, test_fraction=0.2)
    assert "stratified" in how and len(te) == 20
    assert [int((y[te] == c).sum()) for c in range(4)] == [10, 6, 3, 1]
    tr2, te2, _ = arrays_lib.split_indices(data, {"y": "classification"}, seed=0, test_fraction=0.2)
    np.testing.assert_array_equal(te, te2)


@pytest.mark.parametrize(
    "case, method, overrides, pattern",
    [
        ("nan", "comm", (), r"'a' \(40, 5\) float32 has 1 NaN/inf"),
        ("short", "comm", (), r"different numbers of examples.*'b' \(39, 3\)"),
        ("no_label", "comm", (), r"has no label"),
        (
            "one_modality",
            "comm",
            ("data.modalities=a",),
            r"'comm' needs at least 2 .*'a' \(40, 5\)",
        ),
        ("missing", "comm", ("data.modalities=a,c",), r"names 'c', which .* lacks.*'b' \(40, 3\)"),
        ("bad_split", "comm", (), r"'split' \(40,\) int64 must hold 0/1.*\[2\]"),
        ("bad_label", "comm", ("data.labels=a",), r"data.labels names 'a' \(40, 5\) float32"),
        ("factorcl3", "factorcl", (), r"FactorCL models two modalities"),
    ],
)
def test_bad_files_get_one_line_naming_key_and_shape(tmp_path, case, method, overrides, pattern):
    rng = np.random.default_rng(3)
    arrays = _tabular(rng)
    if case == "nan":
        arrays["a"][4, 2] = np.nan
    elif case == "short":
        arrays["b"] = arrays["b"][:-1]
    elif case == "no_label":
        del arrays["label"], arrays["target"]
    elif case == "bad_split":
        arrays["split"] = np.array([0, 1, 2, 0] * 10)
    elif case == "factorcl3":
        arrays["c"] = rng.normal(size=(N, 2)).astype(np.float32)
    path = _write(tmp_path, arrays)
    with pytest.raises(ValueError, match=pattern) as e:
        _cfg(path, method, overrides)
    assert "\n" not in str(e.value)
    # launch.train reports it as one error line and exit code 2.
    argv = ["--config", f"{method}_arrays", "--variant", "smoke", "--set", f"data.path={path}"]
    argv += [x for o in overrides for x in ("--set", o)]
    assert launch_train.main([*argv, "--workdir", str(tmp_path / "w")]) == 2


def test_missing_path_and_changed_file_are_named(tmp_path):
    with pytest.raises(ValueError, match="--set data.path=FILE.npz"):
        validation.validate(configs.get_config("comm_arrays", "smoke"))
    arrays = _tabular(np.random.default_rng(4))
    path = _write(tmp_path, arrays)
    cfg = _cfg(path)
    arrays["a"][0, 0] += 1.0
    _write(tmp_path, arrays)
    inputs._ARRAYS_CACHE.clear()
    with pytest.raises(ValueError, match="changed since the run's statistics"):
        inputs.arrays_dataset(cfg)


def test_tabular_cli_train_probe_embed(tmp_path, capsys):
    arrays = _tabular(np.random.default_rng(5))
    path, workdir = _write(tmp_path, arrays), str(tmp_path / "run")
    argv = ["--config", "comm_arrays", "--variant", "smoke", "--set", f"data.path={path}"]
    assert launch_train.main([*argv, "--workdir", workdir]) == 0
    out = os.path.join(workdir, "probe.json")
    assert launch_probe.main(["--workdir", workdir, "--out", out]) == 0
    with open(out) as f:
        report = json.load(f)
    assert set(report["tasks"]) == {"label", "target"}
    assert report["tasks"]["label"]["kind"] == "classification"
    assert report["tasks"]["label"]["num_classes"] == 2
    assert report["tasks"]["target"]["kind"] == "regression"
    assert (report["num_train"], report["num_test"]) == (32, 8)
    emb_path = str(tmp_path / "emb.npz")
    assert launch_embed.main(["--workdir", workdir, "--out", emb_path]) == 0
    with np.load(emb_path) as e:
        assert e["train_embedding"].shape == (32, 8) and e["test_embedding"].shape == (8, 8)
        np.testing.assert_array_equal(e["test_label"], arrays["label"][e["test_index"]])
        np.testing.assert_allclose(e["test_target"], arrays["target"][e["test_index"]])
        assert np.isfinite(e["train_embedding"]).all()
    assert launch_embed.main(["--workdir", str(tmp_path / "nothing"), "--out", emb_path]) == 2
    # Outputs on object storage: the same .npz and report through epath, on a gs:// stand-in.
    from fake_gcs import fake_gcs

    with fake_gcs() as fs:
        assert launch_embed.main(["--workdir", workdir, "--out", "gs://b/out/emb.npz"]) == 0
        with np.load(io.BytesIO(fs.files()["gs://b/out/emb.npz"])) as e, np.load(emb_path) as want:
            for k in want.files:
                np.testing.assert_array_equal(e[k], want[k])


def test_python_fit_in_memory_sequence_and_image_then_launch_probe(tmp_path):
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, N)
    # One run covers both other kinds (one compilation): a sequence and a 1-channel image.
    arrays = {
        "s": rng.normal(size=(N, 5, 3)).astype(np.float32),
        "i": rng.normal(size=(N, 8, 8, 1)).astype(np.float32),
    }
    arrays["y"] = y
    workdir = str(tmp_path / "run")
    cfg = own_data.fit(arrays, workdir=workdir, config=own_data.default_config(smoke=True))
    assert cfg.data.path == os.path.join(workdir, own_data.DATA_FILE)
    saved = pc.load_run(workdir).config
    assert saved == cfg  # the full experiment config, with the statistics, in the checkpoint
    out = os.path.join(workdir, "probe.json")
    assert launch_probe.main(["--workdir", workdir, "--out", out]) == 0
    with open(out) as f:
        assert json.load(f)["tasks"]["y"]["num_classes"] == 3
    emb = own_data.embed(workdir)
    np.testing.assert_array_equal(emb["train_y"], y[emb["train_index"]])
