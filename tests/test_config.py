"""Config overrides, type parsing, errors and the JSON round-trip."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import pytest

from jaxmm.config import (
    OptimizerConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    to_dict,
)


@dataclasses.dataclass(frozen=True)
class _Inner:
    sizes: tuple[int, ...] = (8, 8)
    pair: tuple[int, float] = (1, 0.5)
    names: list[str] = dataclasses.field(default_factory=lambda: ["a"])
    act: Literal["relu", "gelu"] = "relu"
    dropout: float | None = None


@dataclasses.dataclass(frozen=True)
class _Experiment:
    name: str = "run"
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    model: _Inner = dataclasses.field(default_factory=_Inner)


def test_overrides_parse_to_declared_types():
    cfg = apply_overrides(
        _Experiment(),
        [
            "train.steps=1_000",
            "train.optimizer.lr=3e-4",
            "train.resume=false",
            "train.optimizer.clip_norm=1",
            "model.sizes=(16, 32, 64)",
            "model.pair=2,0.25",
            "model.names=[x, y]",
            "model.act=gelu",
            "model.dropout=0.1",
            "name='12'",
        ],
    )
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)
    assert cfg.train.optimizer.lr == 3e-4
    assert cfg.train.resume is False
    assert cfg.train.optimizer.clip_norm == 1.0 and isinstance(cfg.train.optimizer.clip_norm, float)
    assert cfg.model.sizes == (16, 32, 64)
    assert cfg.model.pair == (2, 0.25)
    assert cfg.model.names == ["x", "y"]
    assert cfg.model.act == "gelu"
    assert cfg.model.dropout == 0.1
    assert cfg.name == "12"
    # The input is left alone; later overrides win; "none" clears an Optional.
    assert _Experiment().train.steps == TrainConfig().steps
    cfg2 = apply_overrides(cfg, ["model.dropout=None", "train.steps=5", "train.steps=7"])
    assert cfg2.model.dropout is None and cfg2.train.steps == 7


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ValueError, match=r"train\.stepz.*valid keys.*'steps'"):
        apply_overrides(_Experiment(), ["train.stepz=3"])
    with pytest.raises(ValueError, match=r"'bogus'.*valid keys.*'model'"):
        apply_overrides(_Experiment(), ["bogus=1"])
    with pytest.raises(ValueError, match=r"train\.steps\.x.*not a nested config"):
        apply_overrides(_Experiment(), ["train.steps.x=1"])
    with pytest.raises(ValueError, match="dotted.key=value"):
        apply_overrides(_Experiment(), ["train.steps"])


@pytest.mark.parametrize(
    ("override", "field", "expected"),
    [
        ("train.steps=1.5", "train.steps", "int"),
        ("train.resume=maybe", "train.resume", "bool"),
        ("train.optimizer.lr=fast", "train.optimizer.lr", "float"),
        ("model.act=tanh", "model.act", "Literal"),
        ("model.pair=1,2,3", "model.pair", "tuple"),
        ("model.sizes=1,x", "model.sizes", "tuple"),
    ],
)
def test_wrong_type_names_field_value_and_type(override, field, expected):
    value = override.partition("=")[2]
    with pytest.raises(ValueError, match=rf"{field!r}: {value!r} is not a valid {expected}"):
        apply_overrides(_Experiment(), [override])


def test_post_init_validation_runs_on_overrides():
    with pytest.raises(ValueError, match=r"TrainConfig\.steps must be >= 1"):
        apply_overrides(TrainConfig(), ["steps=0"])


def test_json_round_trip():
    cfg = apply_overrides(
        _Experiment(),
        [
            "model.sizes=(4,)",
            "model.pair=3,1.5",
            "train.optimizer.clip_norm=2.0",
            "name=x",
        ],
    )
    text = json.dumps(to_dict(cfg))
    back = from_dict(_Experiment, json.loads(text))
    assert back == cfg
    assert isinstance(back.model.sizes, tuple) and isinstance(back.train.optimizer, OptimizerConfig)
    # Missing keys take defaults (configs saved before a field was added still load).
    assert from_dict(_Experiment, {"name": "y"}) == _Experiment(name="y")


def test_from_dict_errors():
    with pytest.raises(ValueError, match=r"\['train\.optimizer\.lrr'\].*valid keys"):
        from_dict(_Experiment, {"train": {"optimizer": {"lrr": 1.0}}})
    with pytest.raises(ValueError, match=r"'train\.steps': '10' is not a valid int"):
        from_dict(_Experiment, {"train": {"steps": "10"}})
    with pytest.raises(ValueError, match=r"'train\.resume': 1 is not a valid bool"):
        from_dict(_Experiment, {"train": {"resume": 1}})
    with pytest.raises(ValueError, match=r"'model\.act': 'tanh'"):
        from_dict(_Experiment, {"model": {"act": "tanh"}})
    with pytest.raises(ValueError, match="needs a dataclass"):
        to_dict({"a": 1})
