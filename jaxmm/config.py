"""Typed dataclass configs and the generic machinery to override, save and load them.

Configs are plain (frozen) dataclasses. Any nested dataclass config works with:

* `apply_overrides(cfg, ["optimizer.lr=3e-4", "train.steps=100"])`: command-line style overrides,
  each value parsed to the declared type of its field (int, float, bool, str, tuples, lists,
  `X | None`, `Literal[...]`, nested dataclasses by dotted path);
* `to_dict(cfg)` / `from_dict(cls, d)`: a JSON round-trip (checkpoints store the experiment
  config this way, so a probe can rebuild the model from the checkpoint directory alone).

Errors name the offending key, value and expected type, and list the valid keys.

Example:
  >>> cfg = apply_overrides(TrainConfig(), ["steps=100", "optimizer.clip_norm=1.0"])
  >>> from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
  True
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

T = TypeVar("T")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with warm-up and a learning-rate schedule (decoupled decay, Loshchilov & Hutter)."""

    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 1e-4  # decoupled decay, applied to parameters with ndim >= 2 only
    warmup_steps: int = 0  # linear warm-up from 0 to `lr`
    b1: float = 0.9  # Adam first-moment decay
    b2: float = 0.999  # Adam second-moment decay
    eps: float = 1e-8  # Adam denominator epsilon
    clip_norm: float | None = None  # global-norm gradient clipping threshold; None = no clipping
    schedule: Literal["cosine", "constant"] = "cosine"  # after warm-up: cosine decay or constant
    end_lr_factor: float = 0.0  # cosine schedule ends at lr * end_lr_factor
    inner_lr: float | None = None  # learning rate of the inner (critic) optimizer; None = `lr`


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Multi-process set-up passed to `jax.distributed.initialize` (ignored for one process)."""

    coordinator_address: str | None = None  # "host:port" of process 0
    num_processes: int = 1  # total number of processes (hosts)
    process_id: int = 0  # this process's index in [0, num_processes)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training loop: length, batch, logging, checkpoints and the inner-step count."""

    steps: int = 1000  # number of optimizer steps
    batch_size: int = 256  # GLOBAL batch size, over all processes and devices
    seed: int = 0  # seeds parameter initialisation and the per-step rng stream
    log_every: int = 50  # steps between metric fetches / JSON lines
    ckpt_every: int = 1000  # steps between checkpoints (0 = only at the end)
    keep: int = 3  # checkpoints kept on disk (orbax max_to_keep)
    workdir: str = "workdirs/default"  # checkpoints, metrics.jsonl and the config live here
    resume: bool = True  # resume when `workdir` already holds a checkpoint
    inner_steps: int = (
        1  # inner (critic) optimizer steps before each main step, for methods with one
    )
    progress: bool = True  # tqdm progress bar on process 0
    max_consecutive_skips: int = 5  # stop after this many updates in a row skipped for a
    #                                  non-finite loss or gradients (each skip keeps the state)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "keep", "max_consecutive_skips"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("ckpt_every", "inner_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")


def validate_optimizer(cfg: OptimizerConfig, prefix: str = "optimizer.") -> None:
    """Raises one ValueError naming the first field of `cfg` a training run cannot use.

    Not part of `OptimizerConfig.__post_init__`: tests freeze parameters with `lr=0`, which is a
    valid optimizer but never a useful run (`jaxmm.validation.validate` calls this).
    """

    def need(name: str, ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"{prefix}{name} must be {what}, got {getattr(cfg, name)!r}")

    def finite(x) -> bool:
        return isinstance(x, int | float) and math.isfinite(x)

    need("lr", finite(cfg.lr) and cfg.lr > 0, "a finite number > 0")
    if cfg.inner_lr is not None:
        need("inner_lr", finite(cfg.inner_lr) and cfg.inner_lr > 0, "a finite number > 0 or None")
    need("weight_decay", finite(cfg.weight_decay) and cfg.weight_decay >= 0, "finite and >= 0")
    need("eps", finite(cfg.eps) and cfg.eps > 0, "a finite number > 0")
    need("b1", finite(cfg.b1) and 0 <= cfg.b1 < 1, "in [0, 1)")
    need("b2", finite(cfg.b2) and 0 <= cfg.b2 < 1, "in [0, 1)")
    need("warmup_steps", cfg.warmup_steps >= 0, ">= 0")
    need("end_lr_factor", finite(cfg.end_lr_factor) and cfg.end_lr_factor >= 0, "finite and >= 0")
    if cfg.clip_norm is not None:
        need(
            "clip_norm", finite(cfg.clip_norm) and cfg.clip_norm > 0, "a finite number > 0 or None"
        )


# ------------------------------------------------------------------------------------------------
# Generic machinery for nested dataclass configs.


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    # get_type_hints resolves the string annotations of `from __future__ import annotations`.
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return f"Literal[{', '.join(repr(c) for c in typing.get_args(tp))}]"
    if typing.get_origin(tp) is not None:  # tuple[int, ...], Mapping[str, Any], X | None
        return str(tp).replace("typing.", "").replace("collections.abc.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _split_top_level(text: str) -> list[str]:
    """Splits "1, (2, 3), 4" on commas that are not inside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _parse_str(text: str, tp: Any) -> Any:
    """Parses the command-line string `text` as a value of type `tp`; raises TypeError."""
    text = text.strip()
    if tp is Any:
        return text
    union = _union_args(tp)
    if union is not None:
        if type(None) in union and text.lower() in _NONE:
            return None
        for arm in union:
            if arm is type(None):
                continue
            try:
                return _parse_str(text, arm)
            except (TypeError, ValueError):
                continue
        raise TypeError
    origin = typing.get_origin(tp)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if str(choice) == text:
                return choice
        raise TypeError
    if origin in (tuple, list) or tp in (tuple, list):
        inner = text[1:-1] if text[:1] in "([" and text[-1:] in ")]" else text
        items = _split_top_level(inner)
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise TypeError
            return tuple(_parse_str(s, a) for s, a in zip(items, args, strict=True))
        elem = args[0] if args else Any
        values = [_parse_str(s, elem) for s in items]
        return tuple(values) if (origin or tp) is tuple else values
    if _is_dataclass_type(tp) and hasattr(tp, "from_str"):  # e.g. ModalityData from a key
        return tp.from_str(text)
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise TypeError
    if tp is int:
        return int(text.replace("_", ""))
    if tp is float:
        return float(text)
    if tp is str:
        # Quotes are optional; they allow strings that would otherwise look like something else.
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]
        return text
    raise TypeError


def _check_value(value: Any, tp: Any) -> Any:
    """Validates JSON-decoded `value` against `tp`, lists to tuples; raises TypeError."""
    if tp is Any:
        return value
    union = _union_args(tp)
    if union is not None:
        if value is None and type(None) in union:
            return None
        for arm in union:
            if arm is type(None):
                continue
            try:
                return _check_value(value, arm)
            except (TypeError, ValueError):
                continue
        raise TypeError
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise TypeError
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise TypeError
        return from_dict(tp, value)
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise TypeError
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise TypeError
            return tuple(_check_value(v, a) for v, a in zip(value, args, strict=True))
        elem = args[0] if args else Any
        values = [_check_value(v, elem) for v in value]
        return tuple(values) if (origin or tp) is tuple else values
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise TypeError
        args = typing.get_args(tp)
        if len(args) == 2:
            return {_check_value(k, args[0]): _check_value(v, args[1]) for k, v in value.items()}
        return dict(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise TypeError
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError


def _set_path(cfg: Any, keys: list[str], raw: str, full_key: str) -> Any:
    fields = _field_types(type(cfg))
    name = keys[0]
    if name not in fields:
        raise ValueError(
            f"Unknown config key {full_key!r}: {type(cfg).__name__} has no field {name!r}; "
            f"valid keys: {sorted(fields)}"
        )
    tp = fields[name]
    if len(keys) > 1:
        child = getattr(cfg, name)
        if _is_named_tuple_of_configs(child):
            return dataclasses.replace(
                cfg, **{name: _set_named(child, keys[1:], raw, full_key, f"{name}")}
            )
        if isinstance(child, Mapping):
            return dataclasses.replace(cfg, **{name: _set_mapping(child, keys[1:], raw, full_key)})
        if not dataclasses.is_dataclass(child):
            raise ValueError(
                f"Unknown config key {full_key!r}: {type(cfg).__name__}.{name} is a "
                f"{_type_name(tp)}, not a nested config"
            )
        return dataclasses.replace(cfg, **{name: _set_path(child, keys[1:], raw, full_key)})
    if _is_dataclass_type(tp):
        raise ValueError(
            f"Config key {full_key!r} is a nested config; set its fields, one of "
            f"{[f'{full_key}.{k}' for k in sorted(_field_types(tp))]}"
        )
    try:
        value = _parse_str(raw, tp)
    except (TypeError, ValueError):
        raise ValueError(
            f"Bad value for config field {full_key!r}: {raw!r} is not a valid {_type_name(tp)}"
        ) from None
    return dataclasses.replace(cfg, **{name: value})


def _is_named_tuple_of_configs(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and bool(value)
        and all(dataclasses.is_dataclass(v) and isinstance(getattr(v, "name", None), str)
                for v in value)
    )  # fmt: skip


def _set_named(items: tuple, keys: list[str], raw: str, full_key: str, field: str) -> tuple:
    """`field.<name>.rest=value` on a tuple of configs with a `name` (e.g. model.modalities)."""
    names = [v.name for v in items]
    if keys[0] not in names:
        raise ValueError(f"Unknown config key {full_key!r}: {field} has no entry {keys[0]!r}; "
                         f"entries: {names}")  # fmt: skip
    if len(keys) == 1:
        raise ValueError(
            f"Config key {full_key!r} is a nested config; set its fields, one of "
            f"{[f'{full_key}.{k}' for k in sorted(_field_types(type(items[0])))]}"
        )
    i = names.index(keys[0])
    return (*items[:i], _set_path(items[i], keys[1:], raw, full_key), *items[i + 1 :])


def _literal(text: str) -> Any:
    """A value of an untyped mapping entry: none, bool, int, float, a tuple of those, or str."""
    text = text.strip()
    if text[:1] in "([" or "," in text:
        inner = text[1:-1] if text[:1] in "([" and text[-1:] in ")]" else text
        return tuple(_literal(t) for t in _split_top_level(inner))
    if text.lower() in _NONE:
        return None
    for tp in (bool, int, float):
        try:
            return _parse_str(text, tp)
        except (TypeError, ValueError):
            continue
    return _parse_str(text, str)


def _type_of(value: Any) -> Any:
    """The type an existing untyped entry keeps when overridden (tuple[int, ...] for (1, 2))."""
    if isinstance(value, tuple) and value and len({type(v) for v in value}) == 1:
        return tuple[type(value[0]), ...]
    if isinstance(value, bool | int | float | str):
        return type(value)
    return None


def _set_mapping(mapping: Mapping, keys: list[str], raw: str, full_key: str) -> dict:
    """`field.<key>=value` on a dict-valued field (e.g. a modality's encoder_kwargs): the value
    keeps the type of the entry it replaces, or is read as a literal for a new entry."""
    key = keys[0]
    if len(keys) > 1:
        child = mapping.get(key)
        if not isinstance(child, Mapping):
            raise ValueError(f"Unknown config key {full_key!r}: entry {key!r} is not a mapping")
        return {**mapping, key: _set_mapping(child, keys[1:], raw, full_key)}
    tp = _type_of(mapping.get(key))
    try:
        value = _literal(raw) if tp is None else _parse_str(raw, tp)
    except (TypeError, ValueError):
        raise ValueError(
            f"Bad value for config field {full_key!r}: {raw!r} is not a valid {_type_name(tp)}"
        ) from None
    return {**mapping, key: value}


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Returns a copy of the dataclass `cfg` with "dotted.key=value" overrides applied in order.

    Args:
      cfg: a dataclass instance, possibly holding nested dataclass configs.
      overrides: strings "a.b.c=value"; `value` is parsed to the declared type of field `c`:
        ints ("1_000"), floats ("3e-4"), bools (true/false/1/0/yes/no), strings (optionally
        quoted), tuples/lists ("1,2" or "(1, 2)"), `X | None` ("none"), `Literal` choices.

    Returns:
      A new config (the input is not modified; dataclass `__post_init__` checks run again).

    Raises:
      ValueError: an unknown key (naming it and listing the valid ones), an override without
        "=", or a value that does not parse as the field's type (naming field, value, type).

    Example:
      >>> apply_overrides(TrainConfig(), ["optimizer.lr=3e-4"]).optimizer.lr
      0.0003
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ValueError(f"apply_overrides needs a dataclass instance, got {type(cfg).__name__}")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Override {item!r} is not of the form 'dotted.key=value'")
        key = key.strip()
        cfg = _set_path(cfg, key.split("."), raw, key)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-serialisable dict of a (nested) dataclass config; tuples become lists."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ValueError(f"to_dict needs a dataclass instance, got {type(cfg).__name__}")

    def convert(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [convert(x) for x in v]
        if isinstance(v, Mapping):
            return {k: convert(x) for k, x in v.items()}
        return v

    return convert(cfg)


def from_dict(cls: type[T], data: Mapping[str, Any], *, _prefix: str = "") -> T:
    """Rebuilds a dataclass config of type `cls` from `to_dict` output (e.g. JSON-decoded).

    Missing keys take the field's default; lists become tuples where the field is a tuple.

    Raises:
      ValueError: an unknown key (listing the valid ones) or a value of the wrong type (naming the
        field, the value and the expected type).
    """
    if not _is_dataclass_type(cls):
        raise ValueError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise ValueError(f"from_dict({cls.__name__}) needs a mapping, got {type(data).__name__}")
    fields = _field_types(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"Unknown config key(s) {[_prefix + k for k in unknown]} for {cls.__name__}; "
            f"valid keys: {sorted(fields)}"
        )
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(
            f"Missing config key(s) {[_prefix + k for k in missing]} for {cls.__name__}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = fields[name]
        if _is_dataclass_type(tp) and isinstance(value, Mapping):
            kwargs[name] = from_dict(tp, value, _prefix=f"{_prefix}{name}.")
            continue
        try:
            kwargs[name] = _check_value(value, tp)
        except (TypeError, ValueError):
            raise ValueError(
                f"Bad value for config field {_prefix + name!r}: {value!r} is not a valid "
                f"{_type_name(tp)}"
            ) from None
    return cls(**kwargs)


class Serializable:
    """Mixin of every config dataclass: `to_dict` / `from_dict` by walking its fields.

    The one serialiser of the project (`to_dict`, `from_dict` above): a field added to a config
    is saved and restored without touching any serialisation code, and a stored dict missing a
    field that has a default (a checkpoint written before the field existed) takes the default.
    """

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
        """Inverse of `to_dict`; an unknown or missing key or a wrongly typed value raises one
        ValueError naming it."""
        return from_dict(cls, d)
