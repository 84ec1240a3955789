"""Grain pipelines (jaxmm/data/pipeline.py): contract, determinism, sharding, checkpointing."""

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmm.data import augment as A
from jaxmm.data import pipeline as pl

N = 24
LABELS = ("shape", "texture1", "texture2", "color1", "color2", "synergy")


def _trifeature_source(n=N, size=16):
    """In-memory stand-in for the Trifeature builder: same fields, dtypes and label kinds."""
    rng = np.random.default_rng(0)
    return [
        {
            "image1": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "image2": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "shape": np.int64(i),
            "texture1": np.int64(i % 10),
            "texture2": np.int64(i % 7),
            "color1": np.int64(i % 5),
            "color2": np.int64(i % 3),
            "synergy": np.int64(i % 2),
        }
        for i in range(n)
    ]


def _series_source(n=N, t=12):
    """Two time-aligned series with ragged valid prefixes, a tabular vector and tokens."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        valid = np.arange(t) < 4 + i % (t - 3)
        out.append(
            {
                "audio": rng.normal(size=(t, 3)).astype(np.float32) * valid[:, None],
                "audio_valid": valid,
                "video": rng.normal(size=(t, 5)).astype(np.float32) * valid[:, None],
                "video_valid": valid,
                "tab": rng.normal(size=(4,)).astype(np.float32),
                "text": rng.integers(1, 100, size=(t,)).astype(np.int64),
                "id": np.int64(i),
                "score": np.float32(i / 10),
            }
        )
    return out


def _series_spec():
    return pl.DataSpec(
        modalities={
            "audio": pl.ModalitySpec("time_series", A.comm_time_series_augmentations()),
            "video": pl.ModalitySpec("time_series", [("gaussian_noise", {"sigma": 0.1})]),
            "tab": pl.ModalitySpec("tabular", [("gaussian_noise", {"sigma": 0.1})]),
            "text": pl.ModalitySpec("tokens", [("token_mask", {"mask_token_id": 0})]),
        },
        labels=("id", "score"),
        joint_augment=[("multi_crop", {"modalities": ("audio", "video")})],
    )


def _ids(batch):
    return batch["labels"]["shape"].tolist()


def test_batch_matches_contract_and_labels_pass_through():
    src = _trifeature_source()
    ds = pl.train_dataset(
        src, pl.trifeature_spec(), batch_size=8, seed=0, process_index=0, process_count=1
    )
    batch = ds[0]
    assert set(batch) == {"view1", "view2", "labels"}
    for view in ("view1", "view2"):
        assert set(batch[view]) == {"x", "valid"} and batch[view]["valid"] == {}
        for m in ("image1", "image2"):
            assert batch[view]["x"][m].shape == (8, 16, 16, 3)
            assert batch[view]["x"][m].dtype == np.float32
    assert set(batch["labels"]) == set(LABELS)
    for k in range(3):
        b = ds[k]
        for row, i in enumerate(_ids(b)):
            for name in LABELS:
                assert b["labels"][name].dtype == np.int32
                assert b["labels"][name][row] == src[i][name]


def test_two_views_differ_and_same_seed_gives_identical_batches():
    src = _trifeature_source()
    make = lambda seed: pl.train_dataset(
        src, pl.trifeature_spec(), batch_size=8, seed=seed, process_index=0, process_count=1
    )
    a, b, c = make(3), make(3), make(4)
    for k in range(4):
        jax.tree.map(np.testing.assert_array_equal, a[k], b[k])
        assert not np.array_equal(a[k]["view1"]["x"]["image1"], a[k]["view2"]["x"]["image1"])
    assert _ids(a[0]) != _ids(c[0])
    # Every epoch is a permutation, reshuffled; augmentations differ between epochs.
    epochs = [sum((_ids(a[k]) for k in range(e * 3, e * 3 + 3)), []) for e in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(N)) and epochs[0] != epochs[1]


def test_per_process_slices_partition_the_global_batches():
    src = _trifeature_source()
    spec = pl.trifeature_spec()
    glob = pl.train_dataset(src, spec, batch_size=8, seed=7, process_index=0, process_count=1)
    hosts = [
        pl.train_dataset(src, spec, batch_size=8, seed=7, process_index=p, process_count=4)
        for p in range(4)
    ]
    seen = []
    for k in range(3):  # one epoch: 3 global batches of 8
        g = glob[k]
        for p, ds in enumerate(hosts):
            local = ds[k]
            assert len(_ids(local)) == 2
            # Host p holds global rows p, p + 4: same examples AND the same augmentation draws.
            jax.tree.map(lambda lo, gl, p=p: np.testing.assert_array_equal(lo, gl[p::4]), local, g)
            seen += _ids(local)
    assert sorted(seen) == list(range(N))
    with pytest.raises(ValueError, match="multiple of process_count 3"):
        pl.train_dataset(src, spec, batch_size=8, seed=0, process_index=0, process_count=3)


def test_sequence_modalities_masks_and_joint_crop_through_the_pipeline():
    src = _series_source()
    spec = _series_spec()
    batch = pl.train_dataset(src, spec, batch_size=6, seed=0, process_index=0, process_count=1)[0]
    for view in ("view1", "view2"):
        v = batch[view]
        assert set(v["valid"]) == {"audio", "video", "text"}
        assert v["x"]["text"].dtype == np.int32 and v["x"]["tab"].shape == (6, 4)
        # multi_crop then per-modality drop: video's mask is the shared crop window, audio's is
        # that window minus its own dropped steps, and every masked step is zero.
        assert np.all(v["valid"]["audio"] <= v["valid"]["video"])
        for m in ("audio", "video"):
            assert v["valid"][m].dtype == bool
            assert np.all(v["x"][m][~v["valid"][m]] == 0)
        assert v["valid"]["text"].all()  # no "text_valid" in the examples: all steps real
    np.testing.assert_allclose(batch["labels"]["score"], batch["labels"]["id"] / 10, rtol=1e-6)
    assert batch["labels"]["score"].dtype == np.float32


def test_eval_dataset_is_unaugmented_in_order_and_padded_with_a_mask():
    src = _trifeature_source(n=10)
    spec = pl.trifeature_spec(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    batches = list(pl.eval_dataset(src, spec, batch_size=4, process_index=0, process_count=1))
    assert [b["mask"].tolist() for b in batches] == [[True] * 4] * 2 + [[True] * 2 + [False] * 2]
    assert set(batches[0]) == {"view1", "labels", "mask"}
    img = np.concatenate([b["view1"]["x"]["image2"] for b in batches])[:10]
    want = (np.stack([e["image2"] for e in src]) / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.5]
    np.testing.assert_allclose(img, want, rtol=1e-5, atol=1e-5)
    assert sum((_ids(b) for b in batches), [])[:10] == list(range(10))
    partial = list(
        pl.eval_dataset(src, spec, batch_size=4, pad=False, process_index=0, process_count=1)
    )
    assert [len(b["mask"]) for b in partial] == [4, 4, 2] and all(b["mask"].all() for b in partial)
    # Two processes: equal batch counts, real examples partitioned.
    per_host = [
        list(pl.eval_dataset(src, spec, batch_size=4, process_index=p, process_count=2))
        for p in range(2)
    ]
    assert len(per_host[0]) == len(per_host[1]) == 3
    real = [i for h in per_host for b in h for i, m in zip(_ids(b), b["mask"], strict=True) if m]
    assert sorted(real) == list(range(10))
    with pytest.raises(ValueError, match="pad=False"):
        pl.eval_dataset(src, spec, batch_size=4, pad=False, process_index=0, process_count=2)


def test_spec_and_example_validation():
    with pytest.raises(ValueError, match="does not apply to image modality 'img'"):
        pl.DataSpec({"img": pl.ModalitySpec("image", [("random_drop", {})])})
    with pytest.raises(ValueError, match="unknown augmentation 'solarize'"):
        pl.DataSpec({"img": pl.ModalitySpec("image", [("solarize", {})])})
    with pytest.raises(ValueError, match="modality kind"):
        pl.ModalitySpec("audio")
    with pytest.raises(ValueError, match="sequence modalities"):
        pl.DataSpec(
            {"img": pl.ModalitySpec("image")},
            joint_augment=[("multi_drop", {"modalities": ("img",)})],
        )
    with pytest.raises(ValueError, match=r"missing fields \['synergy'\]"):
        src = [{k: v for k, v in e.items() if k != "synergy"} for e in _trifeature_source(4)]
        pl.train_dataset(
            src, pl.trifeature_spec(), batch_size=2, seed=0, process_index=0, process_count=1
        )[0]


def test_iterator_state_round_trips_through_orbax(tmp_path):
    src = _trifeature_source()
    make = lambda: pl.train_iterator(
        src, pl.trifeature_spec(), batch_size=4, seed=11, process_index=0, process_count=1
    )
    it = make()
    for _ in range(5):  # crosses no epoch boundary yet: 6 batches per epoch
        next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
    expected = [next(it) for _ in range(3)]  # includes the epoch boundary
    resumed = make()
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.restore(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    for want in expected:
        got = next(resumed)
        assert jax.tree.structure(got) == jax.tree.structure(want)
        assert all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
        )


def test_to_global_arrays_places_the_batch_on_the_data_axis():
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    n = jax.device_count() * 2
    batch = pl.train_dataset(
        _series_source(), _series_spec(), batch_size=n, seed=0, process_index=0, process_count=1
    )[0]
    sharding = NamedSharding(mesh, P("data"))
    out = pl.to_global_arrays(batch, sharding)
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(batch), strict=True):
        assert isinstance(got, jax.Array) and got.sharding == sharding
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)
        assert len(got.addressable_shards) == jax.device_count()


def test_worker_processes_yield_the_same_batches():
    src = _trifeature_source(n=16, size=8)
    make = lambda workers: pl.train_iterator(
        src,
        pl.trifeature_spec(),
        batch_size=4,
        seed=2,
        num_workers=workers,
        process_index=0,
        process_count=1,
    )
    plain, workers = make(0), make(2)
    for _ in range(6):
        jax.tree.map(np.testing.assert_array_equal, next(workers), next(plain))


def test_trifeature_builder_source_feeds_the_pipeline(tmp_path):
    import dataclasses

    from jaxmm.data import builders

    cls = builders.builder_class("trifeature")
    cfg = dataclasses.replace(
        cls.builder_configs["px32"],
        name="pipeline_test",
        num_train_pairs=32,
        max_test_pairs=8,
        num_per_combination=1,
    )
    builders.build("trifeature", tmp_path, config=cfg)
    source = builders.data_source("trifeature", "train", tmp_path, config=cfg)
    spec = pl.trifeature_spec("unique")
    batch = pl.train_dataset(source, spec, batch_size=8, seed=0, process_index=0, process_count=1)[
        0
    ]
    assert batch["view2"]["x"]["image1"].shape == (8, 32, 32, 3)
    assert {k: v.dtype for k, v in batch["labels"].items()} == {k: np.int32 for k in LABELS}
    test = pl.eval_dataset(
        builders.data_source("trifeature", "test", tmp_path, config=cfg),
        spec,
        batch_size=8,
        process_index=0,
        process_count=1,
    )
    (only,) = list(test)
    assert only["mask"].all() and only["labels"]["synergy"].shape == (8,)
