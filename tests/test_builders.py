"""TFDS builders: tiny configs build into tmp_path and read back through grain; MultiBench
readers are fed files written here in the distributed format (pickles, h5 episodes)."""

import dataclasses
import math
import pickle
import random

import grain
import h5py
import numpy as np
import pytest

from jaxmm.data import builders
from jaxmm.data import trifeature_render as tr


def _cfg(builder, base, **changes):
    cls = builders.builder_class(builder)
    return dataclasses.replace(cls.builder_configs[base], **changes)


def _read_all(name, split, data_dir, config):
    src = builders.data_source(name, split, data_dir, config=config)
    ds = grain.MapDataset.source(src).batch(len(src))
    return len(src), ds[0]


def test_unknown_builder_lists_available():
    with pytest.raises(ValueError, match="trifeature"):
        builders.get_builder("nope", data_dir="/tmp")
    assert {"trifeature", "factorcl_synthetic", "gaussian_mi", "multibench"} <= set(
        builders.available()
    )


def test_trifeature_tiny_builds_with_correct_labels(tmp_path):
    base = dict(
        image_size=16, num_per_combination=1, num_train_pairs=60, max_test_pairs=40, supersample=1
    )
    cfg = _cfg("trifeature", "px32", name="tiny", **base)
    cfg_b = _cfg("trifeature", "px32_biased", name="tiny_biased", **base)
    builders.build("trifeature", tmp_path, config=cfg)
    builders.build("trifeature", tmp_path, config=cfg_b)
    mapping = tr.synergy_mapping(cfg.seed)
    meta = builders.get_builder("trifeature", data_dir=tmp_path, config=cfg).info.metadata
    assert meta["synergy_mapping"] == mapping.tolist()
    train_combos = {tuple(c) for c in tr.split_combinations(cfg.seed)[0].tolist()}
    for c, split, want_n in ((cfg, "train", 60), (cfg, "test", 40), (cfg_b, "train", 60)):
        n, b = _read_all("trifeature", split, tmp_path, c)
        assert n == want_n
        assert b["image1"].shape == (n, 16, 16, 3) and b["image1"].dtype == np.uint8
        for k in ("shape", "texture1", "texture2", "color1", "color2", "synergy"):
            assert b[k].shape == (n,) and b[k].dtype == np.int64
        np.testing.assert_array_equal(b["synergy"], mapping[b["texture1"]] == b["color2"])
        for s, t1, c1 in zip(b["shape"], b["texture1"], b["color1"], strict=True):
            assert ((int(s), int(t1), int(c1)) in train_combos) == (split == "train")
        if c is cfg_b:
            assert np.all(b["synergy"] == 1)
    # The biased config keeps the unbiased test split.
    _, t_a = _read_all("trifeature", "test", tmp_path, cfg)
    _, t_b = _read_all("trifeature", "test", tmp_path, cfg_b)
    order = lambda b: np.lexsort([b[k] for k in ("color2", "color1", "texture2", "texture1")])
    for k in t_a:
        np.testing.assert_array_equal(t_a[k][order(t_a)], t_b[k][order(t_b)])


def test_factorcl_synthetic_follows_generator(tmp_path):
    for base in ("official", "ratio04"):
        cfg = _cfg("factorcl_synthetic", base, name=f"tiny_{base}", num_samples=300)
        b = builders.build("factorcl_synthetic", tmp_path, config=cfg)
        meta = b.info.metadata
        n, d = _read_all("factorcl_synthetic", "train", tmp_path, cfg)
        assert n == 240 and b.info.splits["test"].num_examples == 60
        assert d["x1"].shape == (n, 100) and d["x1"].dtype == np.float32
        assert d["ws"].shape == (n, 10) and d["w1"].shape == (n, 6) and d["w2"].shape == (n, 6)
        t1, t2 = np.asarray(meta["T1"]), np.asarray(meta["T2"])
        assert t1.min() >= 0 and t1.max() <= 1
        np.testing.assert_allclose(
            d["x1"], np.hstack([d["ws"], d["w1"]]) @ t1, rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(
            d["x2"], np.hstack([d["ws"], d["w2"]]) @ t2, rtol=1e-4, atol=1e-4
        )
        ls, l1, l2 = (meta["label_dims"][k] for k in ("12", "1", "2"))
        for i in range(n):
            comps = list(d["ws"][i, :ls]) + list(d["w1"][i, :l1]) + list(d["w2"][i, :l2])
            prob = 1 / (1 + math.exp(-sum(comps) / len(comps)))
            assert d["label"][i] == int(prob >= 0.5)
        assert meta["unique_ratio"] == pytest.approx((l1 + l2) / (ls + l1 + l2))
    assert (ls, l1, l2) == (6, 2, 2)
    assert np.var(d["ws"]) == pytest.approx(0.5, rel=0.2)


def test_gaussian_mi_true_values_and_samples(tmp_path):
    cfg = _cfg("gaussian_mi", "d20_mi4", name="tiny_mi", num_train=4000, num_test=10)
    b = builders.build("gaussian_mi", tmp_path, config=cfg)
    rho = b.info.metadata["rho"]
    assert b.info.metadata["true_mi"] == pytest.approx(-10 * math.log(1 - rho**2))
    assert b.info.metadata["true_mi"] == pytest.approx(4.0)
    n, d = _read_all("gaussian_mi", "train", tmp_path, cfg)
    assert d["x"].shape == (4000, 20) and d["y"].dtype == np.float32
    emp = np.mean([np.corrcoef(d["x"][:, k], d["y"][:, k])[0, 1] for k in range(20)])
    assert emp == pytest.approx(rho, abs=0.03)
    ccfg = _cfg("gaussian_mi", "cmi_dz20", name="tiny_cmi", num_train=100, num_test=10)
    cb = builders.build("gaussian_mi", tmp_path, config=ccfg)
    assert cb.info.metadata["true_mi"] == pytest.approx(0.5 * math.log(1 + 1 / 0.1**2))
    _, c = _read_all("gaussian_mi", "train", tmp_path, ccfg)
    assert c["c"].shape == (100, 20) and c["x1"].shape == (100, 1)


# ---------------------------------------------------------------- MultiBench


def _affect_split(rng, n, dv, da, labels):
    vision = rng.standard_normal((n, 50, dv)).astype(np.float32)
    audio = rng.standard_normal((n, 50, da)).astype(np.float32)
    text = rng.standard_normal((n, 50, 300)).astype(np.float32)
    starts = np.arange(n) % 7
    for i, s in enumerate(starts):
        vision[i, :s] = audio[i, :s] = text[i, :s] = 0
    audio[0, -1, 0] = -np.inf
    text[1] = 0  # empty transcript: dropped
    return {
        "vision": vision,
        "audio": audio,
        "text": text,
        "labels": np.asarray(labels, np.float32).reshape(n, 1, 1),
        "id": np.arange(n),
    }, starts


def test_multibench_affect_cleaning(tmp_path):
    rng = np.random.default_rng(0)
    raw, starts = {}, {}
    labels = [-1.5, 2.0, 0.0, 0.6, -0.2, 3.0]
    for key in ("train", "valid", "test"):
        raw[key], starts[key] = _affect_split(rng, 6, 20, 5, labels)
    with open(tmp_path / "mosi_data.pkl", "wb") as f:
        pickle.dump(raw, f)
    for config, rule in (("mosi", lambda y: y > 0), ("mosi_ge0", lambda y: y >= 0)):
        builders.build("multibench", tmp_path / "out", config=config, manual_dir=tmp_path)
        n, b = _read_all("multibench", "train", tmp_path / "out", config)
        assert n == 5  # sample 1 had an all-zero transcript
        kept = [0, 2, 3, 4, 5]
        order = np.argsort(b["label_raw"])
        want_raw = np.asarray(labels, np.float32)[kept]
        np.testing.assert_array_equal(b["label_raw"][order], np.sort(want_raw))
        np.testing.assert_array_equal(b["label"][order], rule(np.sort(want_raw)))
    assert b["vision"].shape == (5, 50, 20) and b["audio"].shape == (5, 50, 5)
    assert b["text_valid"].dtype == np.bool_ and b["text_valid"].shape == (5, 50)
    for i in range(5):
        j = kept[int(np.argmin(np.abs(want_raw - b["label_raw"][i])))]
        s = starts["train"][j]
        assert b["text_valid"][i].sum() == 50 - s and b["text_valid"][i, : 50 - s].all()
        np.testing.assert_array_equal(b["audio_valid"][i], b["text_valid"][i])
        np.testing.assert_array_equal(b["text"][i, : 50 - s], raw["train"]["text"][j, s:])
        assert not b["vision"][i, 50 - s :].any()
        assert np.isfinite(b["audio"][i]).all()
    row0 = int(np.argmin(np.abs(b["label_raw"] + 1.5)))
    assert b["audio"][row0, 49 - starts["train"][0], 0] == 0.0  # -inf -> 0


def test_multibench_humor_labels_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    raw = {k: _affect_split(rng, 4, 371, 81, [-1, 1, 0, 1])[0] for k in ("train", "valid", "test")}
    with open(tmp_path / "humor.pkl", "wb") as f:
        pickle.dump(raw, f)
    builders.build("multibench", tmp_path / "out", config="humor", manual_dir=tmp_path)
    _, b = _read_all("multibench", "test", tmp_path / "out", "humor")
    np.testing.assert_array_equal(np.sort(b["label"]), [0, 0, 1])  # -1, 0 -> 0; id 1 dropped

    with pytest.raises(ValueError, match=r"sarcasm\.pkl.*not found"):
        builders.build("multibench", tmp_path / "o2", config="sarcasm", manual_dir=tmp_path)
    del raw["valid"]["audio"]
    with open(tmp_path / "sarcasm.pkl", "wb") as f:
        pickle.dump(raw, f)
    with pytest.raises(ValueError, match=r"sarcasm\.pkl: missing key 'valid/audio'"):
        builders.build("multibench", tmp_path / "o3", config="sarcasm", manual_dir=tmp_path)
    raw["valid"]["audio"] = np.zeros((4, 50, 80), np.float32)
    with open(tmp_path / "sarcasm.pkl", "wb") as f:
        pickle.dump(raw, f)
    with pytest.raises(ValueError, match=r"'valid/audio' must have shape \(N, 50, 81\)"):
        builders.build("multibench", tmp_path / "o4", config="sarcasm", manual_dir=tmp_path)


def test_multibench_mimic_split_and_zscore(tmp_path):
    rng = np.random.default_rng(2)
    n = 50
    data = {
        "ep_tdata": rng.normal(3.0, 2.0, (n, 24, 12)),
        "adm_features_all": rng.normal(-1.0, 5.0, (n, 5)),
        "y_icd9": rng.integers(0, 2, (n, 20)).astype(float),
        "adm_labels_all": np.zeros((n, 6)),
    }
    data["ep_tdata"][0, 0, 0] = np.nan
    for i in range(n):
        data["adm_labels_all"][i, (i % 6)] = 1  # column k > 0 -> mortality class k
    with open(tmp_path / "im.pk", "wb") as f:
        pickle.dump(data, f)
    b = builders.build("multibench", tmp_path / "out", config="mimic", manual_dir=tmp_path)
    assert {s: b.info.splits[s].num_examples for s in ("train", "validation", "test")} == {
        "train": 40,
        "validation": 5,
        "test": 5,
    }
    # Independent replay of MultiBench: random.seed(10); random.shuffle(list of samples).
    rows = list(range(n))
    random.seed(10)
    random.shuffle(rows)
    _, v = _read_all("multibench", "validation", tmp_path / "out", "mimic")
    st = np.nan_to_num(data["adm_features_all"])
    z = (st - st.mean(0)) / st.std(0)
    dist = np.abs(v["static"][:, None, :] - z[None]).sum(-1)
    assert dist.min(1).max() < 1e-4
    assert set(dist.argmin(1).tolist()) == set(rows[:5])
    _, t = _read_all("multibench", "train", tmp_path / "out", "mimic")
    assert t["timeseries"].shape == (40, 24, 12) and t["icd9"].shape == (40, 20)
    for i in range(40):
        j = int(np.argmin(np.abs(z - t["static"][i]).sum(1)))
        assert t["icd9_group7"][i] == data["y_icd9"][j, 7]
        assert t["mortality"][i] == j % 6
    data["ep_tdata"] = data["ep_tdata"][:, :, :11]
    with open(tmp_path / "im.pk", "wb") as f:
        pickle.dump(data, f)
    with pytest.raises(ValueError, match=r"im\.pk: key 'ep_tdata' must have shape \(N, 24, 12\)"):
        builders.build("multibench", tmp_path / "o2", config="mimic", manual_dir=tmp_path)


def _episode(path, rng, t=5, bad=False):
    with h5py.File(path, "w") as f:
        f["image"] = rng.integers(0, 255, (t, 128, 128, 3), dtype=np.uint8)
        f["proprio"] = rng.standard_normal((t, 10 if not bad else 6))
        f["ee_forces_continuous"] = rng.standard_normal((t, 50, 6))
        f["contact"] = (np.arange(t)[:, None] % 2 == 0).astype(float).repeat(50, 1)
        f["action"] = rng.standard_normal((t, 4))


def test_multibench_vision_touch_episodes(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "eps" / "sub").mkdir(parents=True)
    for k in range(3):
        _episode(tmp_path / "eps" / ("sub" if k else "") / f"ep{k}.h5", rng)
    b = builders.build(
        "multibench", tmp_path / "out", config="vision_touch", manual_dir=tmp_path / "eps"
    )
    assert b.info.splits["train"].num_examples == 8 and b.info.splits["test"].num_examples == 4
    _, d = _read_all("multibench", "train", tmp_path / "out", "vision_touch")
    assert d["image"].shape == (8, 128, 128, 3) and d["image"].dtype == np.uint8
    assert d["force"].shape == (8, 32, 6) and d["proprio"].shape == (8, 8)
    assert d["action"].shape == (8, 4) and d["ee_yaw_next"].shape == (8, 4)
    assert sorted(d["contact_next"].tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    (tmp_path / "bad").mkdir()
    _episode(tmp_path / "bad" / "x.h5", rng, bad=True)
    with pytest.raises(ValueError, match=r"x\.h5: key 'proprio' must have shape \(5, >=8\)"):
        builders.build(
            "multibench", tmp_path / "o2", config="vision_touch", manual_dir=tmp_path / "bad"
        )


def test_cli_list_and_show(tmp_path, capsys):
    from launch import data as cli

    assert cli.main(["list"]) == 0
    assert "trifeature: px32 (default)" in capsys.readouterr().out
    assert (
        cli.main(["show", "gaussian_mi", "--config", "cmi_dz1", "--data-dir", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "built=False" in out and "x1" in out
    assert cli.main(["show", "nope", "--data-dir", str(tmp_path)]) == 2
