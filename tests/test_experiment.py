"""Experiment configs: the registry, JSON round trips, overrides and validation before compute."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxmm import configs, validation
from jaxmm import experiment as ex
from jaxmm.data import inputs
from jaxmm.methods import registry as method_registry
from jaxmm.models import ModalityConfig


def _get_or_skip(name, variant):
    method = configs.method_name(name)
    if method not in method_registry.METHODS:
        pytest.skip(
            f"method {method!r} of config {name!r} is not registered in "
            f"jaxmm.methods.registry.METHODS yet"
        )
    return configs.get_config(name, variant)


@pytest.mark.parametrize("name", configs.names())
def test_every_config_builds_round_trips_and_its_smoke_variant_validates(name):
    for variant in configs.variants(name):
        cfg = _get_or_skip(name, variant)
        text = json.dumps(cfg.to_dict())
        assert ex.ExperimentConfig.from_dict(json.loads(text)) == cfg
        if cfg.data.builder == inputs.ARRAYS_BUILDER:
            continue  # needs a .npz: tests/test_arrays.py validates these on generated files
        validation.validate(cfg, trace=variant == "smoke")


def test_registry_covers_every_paper_experiment():
    expected = {
        "comm_trifeature",
        "cross_trifeature",
        "crossself_trifeature",
        "factorcl_trifeature",
        "factorcl_ssl_synthetic",
        "factorcl_sup_synthetic",
        "cmc_synthetic",
        "crossself_synthetic",
        "supcon_synthetic",
        "comm3_vt",
        "comm3_humor",
    }
    for method in ("comm", "factorcl", "tuple_infonce"):
        expected |= {f"{method}_{d}" for d in ("mosi", "mosei", "humor", "sarcasm", "mimic", "vt")}
    assert expected <= set(configs.names())


@pytest.fixture(scope="module")
def smoke():
    return configs.get_config("comm_trifeature", "smoke")


@pytest.mark.parametrize(
    "item, needle",
    [
        ("optimizer.lrr=1e-3", "'optimizer.lrr'"),
        ("optimizer.lr=fast", "'optimizer.lr'"),
        ("train.steps=1.5", "'train.steps'"),
        ("method.config.temperture=0.2", "'method.config.temperture'"),
        ("train.optimizer.lr=1e-3", "'train.optimizer.lr'"),
        ("data.num_views=0", "num_views"),
        ("model.fusion.width=abc", "'model.fusion.width'"),
        ("nonsense", "dotted.key=value"),
    ],
)
def test_bad_overrides_fail_with_one_clear_error(smoke, item, needle):
    with pytest.raises(ValueError) as e:
        ex.override(smoke, [item])
    assert needle in str(e.value)


def test_overrides_reach_nested_and_method_fields(smoke):
    cfg = ex.override(
        smoke,
        [
            "optimizer.lr=3e-4",
            "method.config.temperature=0.2",
            "model.fusion.num_heads=4",
            "data.num_workers=2",
            "train.steps=9",
        ],
    )
    assert (cfg.optimizer.lr, cfg.method.config.temperature) == (3e-4, 0.2)
    assert (cfg.model.fusion.num_heads, cfg.data.num_workers, cfg.train.steps) == (4, 2, 9)
    assert ex.train_config(cfg).optimizer.lr == 3e-4  # the trainer sees the top-level optimizer


def test_from_dict_rejects_unknown_and_mistyped_keys(smoke):
    d = smoke.to_dict()
    for path, value, needle in [
        (("data", "modalitys"), (), "data.modalitys"),
        (("train", "stepz"), 3, "train.stepz"),
        (("method", "config", "tau"), 0.1, "method.config.tau"),
        (("bogus",), 1, "bogus"),
        (("train", "steps"), "many", "train.steps"),
    ]:
        bad = json.loads(json.dumps(d))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
            ex.ExperimentConfig.from_dict(bad)


def _no_compute(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("validate traced or built something before rejecting the config")

    monkeypatch.setattr(jax, "eval_shape", fail)
    monkeypatch.setattr(ex, "build_method", fail)


def test_model_modality_missing_from_data_fails_before_compute(smoke, monkeypatch):
    mods = smoke.model.modalities
    model = dataclasses.replace(
        smoke.model, modalities=(*mods, dataclasses.replace(mods[0], name="image3"))
    )
    cfg = dataclasses.replace(smoke, model=model)
    _no_compute(monkeypatch)
    with pytest.raises(ValueError, match=r"lacks \['image3'\]"):
        validation.validate(cfg)


def test_data_field_missing_from_dataset_fails(smoke):
    data = dataclasses.replace(
        smoke.data, modalities=(*smoke.data.modalities[:1], inputs.ModalityData("image9", "image"))
    )
    model = dataclasses.replace(
        smoke.model,
        modalities=(
            smoke.model.modalities[0],
            dataclasses.replace(smoke.model.modalities[1], name="image9"),
        ),
    )
    with pytest.raises(ValueError, match=r"\['image9'\] that dataset 'trifeature'"):
        validation.validate(dataclasses.replace(smoke, data=data, model=model))


def test_missing_label_and_missing_view_fail_before_compute(monkeypatch):
    supcon = configs.get_config("supcon_synthetic", "smoke")
    bad_label = ex.override(supcon, ["method.config.label_key=colour"])
    one_view = ex.override(configs.get_config("comm_trifeature", "smoke"), ["data.num_views=1"])
    _no_compute(monkeypatch)
    with pytest.raises(ValueError, match="reads label 'colour'"):
        validation.validate(bad_label)
    with pytest.raises(ValueError, match="reads view2"):
        validation.validate(one_view)


def test_encoder_width_mismatch_is_caught_by_abstract_tracing():
    cfg = configs.get_config("crossself_synthetic", "smoke")
    mod = cfg.model.modalities[0]
    wrong = dataclasses.replace(mod, encoder_kwargs={**mod.encoder_kwargs, "in_features": 7})
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, modalities=(wrong, *cfg.model.modalities[1:]))
    )
    validation.validate(cfg, trace=False)  # the static checks cannot see it
    with pytest.raises(ValueError, match="do not fit the data"):
        validation.validate(cfg)


def test_bad_dataset_names_fail():
    cfg = configs.get_config("comm_trifeature", "smoke")
    with pytest.raises(ValueError, match="'px33'"):
        inputs.resolve_builder_config(dataclasses.replace(cfg.data, builder_config="px33"))
    with pytest.raises(ValueError, match="num_pairs"):
        inputs.resolve_builder_config(
            dataclasses.replace(cfg.data, builder_overrides={"num_pairs": 3})
        )
    with pytest.raises(ValueError, match="'imagenet'"):
        inputs.resolve_builder_config(dataclasses.replace(cfg.data, builder="imagenet"))
    with pytest.raises(ValueError, match="augment preset"):
        inputs.ModalityData("image1", "image", "noise_drop")


def test_builder_override_names_are_deterministic_and_distinct():
    data = configs.get_config("comm_trifeature", "smoke").data
    a = inputs.resolve_builder_config(data)
    b = inputs.resolve_builder_config(data)
    c = inputs.resolve_builder_config(
        dataclasses.replace(
            data, builder_overrides={**data.builder_overrides, "num_train_pairs": 65}
        )
    )
    assert a.name == b.name != c.name
    assert a.name.startswith("px32_") and a.num_train_pairs == 64


def test_resolve_steps_counts_epochs():
    cfg = configs.get_config("comm_trifeature")
    # 100 epochs of the paper's 10 000 pairs at batch 64 (CoMM App. B.4/B.5).
    assert ex.resolve_steps(cfg, 10_000).train.steps == int(np.ceil(100 * 10_000 / 64)) == 15_625
    smoke = configs.get_config("comm_trifeature", "smoke")
    assert ex.resolve_steps(smoke, 10_000) == smoke  # no epochs: steps as configured


def test_example_spec_matches_the_pipeline_batch(tmp_path):
    cfg = ex.override(
        configs.get_config("factorcl_sup_synthetic", "smoke"), [f"data.data_dir={tmp_path}"]
    )
    it, batch = inputs.build_train_iterator(cfg, process_index=0, process_count=1)
    spec = validation.example_spec(cfg, batch_size=cfg.train.batch_size)
    got = jax.tree.map(lambda x: (x.shape, np.dtype(x.dtype)), batch)
    want = jax.tree.map(lambda s: (s.shape, np.dtype(s.dtype)), spec)
    assert got == want
    assert jax.tree.all(jax.tree.map(np.array_equal, next(it), batch))  # the peek consumed nothing
    assert inputs.num_train_examples(cfg) == int(0.8 * 256)  # FactorCL's 80/20 split of 256 samples


def test_build_method_rebuilds_from_the_json_alone():
    cfg = configs.get_config("comm_trifeature", "smoke")
    again = ex.ExperimentConfig.from_json(cfg.to_json())
    method = ex.build_method(again)
    assert method.modality_names == tuple(m.name for m in cfg.model.modalities)
    assert isinstance(cfg.model.modalities[0], ModalityConfig)
