"""Every field of every registered config survives JSON and a checkpoint (issue 27, step 4).

Each config's leaves are set, one after another, to a value that differs from the registered one
and that the config's own checks accept; the whole config must then come back equal from JSON
(`ExperimentConfig.to_json` / `from_json`) and from a checkpoint's stored config. A serialiser
that lists its keys by hand and forgets one fails here, whichever field it forgets.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing

import jax.numpy as jnp
import pytest

from jaxmm import checkpoint as ckpt_lib
from jaxmm import config as config_lib
from jaxmm import configs, experiment
from jaxmm.models import ModelConfig

_LITERAL = typing.Literal


def _arms(tp):
    args = config_lib._union_args(tp)
    return [a for a in args if a is not type(None)] if args is not None else [tp]


def _strings(tree) -> set[str]:
    if isinstance(tree, str):
        return {tree}
    if isinstance(tree, dict):
        return set().union(*map(_strings, tree.values())) if tree else set()
    if isinstance(tree, list):
        return set().union(*map(_strings, tree)) if tree else set()
    return set()


# Every string any registered config holds (presets, kinds, dtypes, norms, modes, ...), plus a
# few valid values no registered config uses: candidates for str fields that the configs check.
_STRINGS = sorted(
    set().union(*(_strings(configs.get_config(n).to_dict()) for n in configs.names()))
    | {"bfloat16", "layer", "none", "sup", "ssl", "noise", "crop", "unique", "gelu"}
)


def _candidates(value, tp) -> list:
    """Values of type `tp` that differ from `value`, most plausible first."""
    out = []
    for arm in _arms(tp):
        origin = typing.get_origin(arm)
        if origin is _LITERAL:
            out += [c for c in typing.get_args(arm) if c != value]
        elif arm is bool:
            out.append(not value if isinstance(value, bool) else True)
        elif arm is int:
            base = value if isinstance(value, int) and not isinstance(value, bool) else 1
            out += [base + 1, base * 2, base - 1, 2, 3, 4, 8]
        elif arm is float:
            base = float(value) if isinstance(value, int | float) else 0.5
            out += [base * 1.5 + 0.25, base / 2, base + 1e-3, 0.3, 0.9]
        elif arm is str:  # names the config checks: other configs' values, then free text
            out += [*_STRINGS, f"{value}_x" if isinstance(value, str) else "x"]
        elif origin in (tuple, list) or arm in (tuple, list):
            args = typing.get_args(arm)
            elem = args[0] if args else int
            seq = tuple(value) if isinstance(value, tuple | list) else ()
            if hasattr(elem, "from_str"):  # e.g. data.modalities: (ModalityData, ...)
                out.append((*seq, elem.from_str("extra")))
            for extra in _candidates(seq[-1] if seq else None, elem)[:2]:
                out.append((*seq, extra))
            if seq:
                out.append(seq[:-1])
        elif (
            origin in (dict, typing.Mapping)
            or arm is dict
            or str(arm).startswith("collections.abc.Mapping")
        ):
            out.append({**(value or {}), "extra_key": 7})
    return [c for c in out if c != value]


# The trainer's copies of optimizer / distributed are not part of an ExperimentConfig.
_SKIP = ("train.optimizer", "train.distributed")


def _perturb(cfg, path: str, log: dict[str, bool]):
    """`cfg` with each leaf field changed where the config's checks allow; log[path] = changed."""
    types = config_lib._field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), f"{path}{f.name}"
        if where in _SKIP:
            continue
        if dataclasses.is_dataclass(value):  # nested configs, the method's config included
            new = _perturb(value, f"{where}.", log)
        elif config_lib._is_named_tuple_of_configs(value):  # model.modalities, data.modalities
            new = tuple(_perturb(v, f"{where}.{v.name}.", log) for v in value)
        else:
            new = value
            # Names stay unique (modalities are addressed by name): "image1" -> "image1_x".
            cands = [f"{value}_x"] if f.name == "name" else _candidates(value, types[f.name])
            for cand in cands:
                try:
                    dataclasses.replace(cfg, **{f.name: cand})
                except (ValueError, TypeError):
                    continue
                new = cand
                break
            log[where] = new != value
        try:
            cfg = dataclasses.replace(cfg, **{f.name: new})
        except (ValueError, TypeError):
            log[where] = False
    return cfg


def _perturbed(name: str, variant):
    log: dict[str, bool] = {}
    return _perturb(configs.get_config(name, variant), "", log), log


CASES = [(n, v) for n in configs.names() for v in configs.variants(n)]


@pytest.mark.parametrize("name,variant", CASES)
def test_every_field_survives_json(name, variant):
    cfg, log = _perturbed(name, variant)
    back = experiment.ExperimentConfig.from_json(cfg.to_json())
    assert back == cfg
    changed = sorted(k for k, v in log.items() if v)
    unchanged = sorted(k for k, v in log.items() if not v)
    # The walk reaches data, model (every modality), method config, optimizer, train,
    # distributed; fields it could not change are few and listed in the failure message.
    # Fields that cannot change alone: method.name types method.config; a modality's kind must
    # agree with its augmentation preset; FactorCL's mode and modalities with the data's labels
    # and modalities. They still round-trip (at their registered values).
    fixed = re.compile(
        r"method\.name|data\.modalities\.\w+\.kind|method\.config\.(mode|modalities)"
    )
    assert not [k for k in unchanged if not fixed.fullmatch(k)], f"not perturbed: {unchanged}"
    assert len(changed) >= 0.9 * len(log)
    for prefix in ("data.", "model.modalities.", "model.fusion.", "method.config.", "train."):
        assert any(k.startswith(prefix) for k in changed), prefix


def test_perturbation_reaches_every_leaf_of_a_model_config():
    """The check above would miss a dropped field only if the walk skipped it: it does not."""
    cfg, log = _perturbed("comm_trifeature", "smoke")
    leaves = {k for k in log if k.startswith("model.")}
    expected = {
        f"model.modalities.{m.name}.{f.name}"
        for m in configs.get_config("comm_trifeature", "smoke").model.modalities
        for f in dataclasses.fields(m)
    }
    expected |= {f"model.fusion.{f.name}" for f in dataclasses.fields(cfg.model.fusion)}
    expected |= {f"model.head.{f.name}" for f in dataclasses.fields(cfg.model.head)}
    expected |= {"model.dtype"}
    assert leaves == expected
    assert all(log[k] for k in expected), sorted(k for k in expected if not log[k])


def test_a_hand_listed_serialiser_that_drops_a_field_is_caught(monkeypatch):
    """The failure this test exists for: ModelConfig.to_dict forgetting `dtype`."""
    cfg, _ = _perturbed("comm_trifeature", "smoke")
    real = config_lib.to_dict

    def forgetful(c):
        d = real(c)
        if isinstance(c, experiment.ExperimentConfig):
            d["model"].pop("dtype")
        return d

    monkeypatch.setattr(config_lib, "to_dict", forgetful)
    assert experiment.ExperimentConfig.from_json(cfg.to_json()) != cfg


@pytest.mark.parametrize("name", ["comm_trifeature", "factorcl_mosi", "tuple_infonce_mosi"])
def test_every_field_survives_a_checkpoint(tmp_path, name):
    cfg, _ = _perturbed(name, "smoke")
    with ckpt_lib.Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(1, {"w": jnp.ones(3)}, config=cfg)
        ckpt.wait_until_finished()
    back = experiment.ExperimentConfig.from_dict(ckpt_lib.load_config(tmp_path / "ckpt"))
    assert back == cfg
    assert json.loads(back.to_json()) == json.loads(cfg.to_json())


def test_overrides_address_one_modality_by_name():
    cfg = configs.get_config("comm_trifeature", "smoke")
    out = experiment.override(
        cfg,
        [
            "model.modalities.image1.encoder_kwargs.channels=8,16,16,16,16",
            "model.modalities.image2.converter=one_token",
        ],
    )
    image1, image2 = out.model.modalities
    assert image1.encoder_kwargs["channels"] == (8, 16, 16, 16, 16)
    assert cfg.model.modalities[1].encoder_kwargs == image2.encoder_kwargs
    assert image2.converter == "one_token" and image1.converter == cfg.model.modalities[0].converter
    assert isinstance(ModelConfig.from_dict(out.model.to_dict()), ModelConfig)
    with pytest.raises(ValueError, match="no entry 'image3'.*entries: \\['image1', 'image2'\\]"):
        experiment.override(cfg, ["model.modalities.image3.encoder=mlp"])
    with pytest.raises(ValueError, match="encoder_kwargs.channels.*'a,b'"):
        experiment.override(cfg, ["model.modalities.image1.encoder_kwargs.channels=a,b"])
