"""Device augmentation (DataConfig.augment_on="device"): the train step draws the views."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm import configs, validation
from jaxmm import experiment as ex
from jaxmm.data import inputs, presets
from jaxmm.experiments import training


def _cfg(tmp_path, *sets):
    cfg = configs.get_config("comm_trifeature", "smoke")
    return ex.override(
        cfg,
        [
            "data.augment_on=device",
            f"data.data_dir={tmp_path / 'data'}",
            f"train.workdir={tmp_path / 'run'}",
            *sets,
        ],
    )


def _clean_batch(b=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    img = lambda: ((rng.uniform(size=(b, size, size, 3)) - mean) / std).astype(np.float32)
    return {
        "view1": {"x": {"image1": img(), "image2": img()}, "valid": {}},
        "labels": {"shape": np.arange(b)},
    }


def test_transform_draws_views_and_none_preset_is_the_identity(tmp_path):
    batch = _clean_batch()
    cfg = _cfg(tmp_path)
    transform = jax.jit(inputs.device_augmentation(cfg))
    out = transform(batch, jax.random.key(0))
    assert set(out) == {"view1", "view2", "labels"}
    np.testing.assert_array_equal(out["labels"]["shape"], batch["labels"]["shape"])
    v1, v2 = out["view1"]["x"]["image1"], out["view2"]["x"]["image1"]
    assert v1.shape == batch["view1"]["x"]["image1"].shape
    assert not np.allclose(v1, v2)  # two independent draws
    again = transform(batch, jax.random.key(0))
    np.testing.assert_array_equal(again["view2"]["x"]["image2"], out["view2"]["x"]["image2"])
    # Preset "none": de-normalise, no augmentation, normalise again = the clean view.
    mods = tuple(dataclasses.replace(m, augment="none") for m in cfg.data.modalities)
    plain = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, modalities=mods))
    same = inputs.device_augmentation(plain)(batch, jax.random.key(1))
    for v in ("view1", "view2"):
        for name in ("image1", "image2"):
            np.testing.assert_allclose(
                same[v]["x"][name], batch["view1"]["x"][name], atol=1e-5, rtol=0
            )


def test_simclr_small_device_preset_keeps_the_solid_image_and_never_blurs():
    # A constant image stays constant under crop, flip, grayscale and (no) blur; only the jitter
    # moves its value. A sharp edge survives: the small preset has no blur.
    x = jnp.zeros((16, 32, 32, 3)).at[:, :, 16:].set(1.0)
    out = presets.device("image", "simclr_small")(jax.random.key(3), x)
    assert out.shape == x.shape
    # Crops keep >= ~half the image, so each row still holds both sides of the edge.
    left, right = out[:, :, :4].mean(axis=(1, 2, 3)), out[:, :, -4:].mean(axis=(1, 2, 3))
    assert np.all(np.abs(np.asarray(left - right)) > 0.2)
    with pytest.raises(ValueError, match="device presets \\(images\\): none, simclr, simclr_small"):
        presets.device("image", "crop")
    with pytest.raises(ValueError, match="no device version of time_series preset 'noise'"):
        presets.device("time_series", "noise")


def test_one_preset_table_serves_host_and_device():
    """Every preset a ModalityData accepts is a row of `jaxmm.data.presets`; image rows carry
    their device version beside the host chain (only "crop", for any channel count, has none)."""
    for kind, rows in presets.PRESETS.items():
        assert presets.DEFAULT[kind] in rows
        for name in rows:
            inputs.ModalityData("m", kind, name)  # accepted by the config
            assert isinstance(presets.host(kind, name, 0.5), list)
    image = presets.PRESETS["image"]
    assert {n for n, p in image.items() if p.device is None} == {"crop"}
    with pytest.raises(ValueError, match="augment preset for image must be one of"):
        inputs.ModalityData("m", "image", "noise")


def test_device_augmented_smoke_run_trains_on_8_devices(tmp_path):
    cfg = _cfg(tmp_path)
    assert jax.device_count() == 8
    training.prepare(cfg)
    it, example = inputs.build_train_iterator(cfg, process_index=0, process_count=1)
    assert set(example) == {"view1", "labels"}  # the pipeline's one clean view
    state = training.run(cfg)
    assert int(state.step) == cfg.train.steps
    with open(os.path.join(cfg.train.workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert all(np.isfinite(r["loss"]) and r["nonfinite"] == 0 for r in rows)


def test_device_augmentation_refuses_non_image_modalities():
    cfg = configs.get_config("cmc_synthetic", "smoke")
    with pytest.raises(ValueError, match="augments image modalities only"):
        validation.validate(ex.override(cfg, ["data.augment_on=device"]), trace=False)
