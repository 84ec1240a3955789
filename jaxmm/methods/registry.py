"""Method registry: (method name, method config, model config) -> a `Method` object.

Checkpoints store the three as JSON (`config.to_dict()`, `ModelConfig.to_dict()`), so a probe or a
notebook rebuilds the exact method with `get_method(name, method_cfg_dict, model_cfg_dict)`.

Example:
  >>> method = get_method("comm", {"temperature": 0.1}, model_cfg)
  >>> params = method.init(jax.random.key(0), batch)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxmm.models import ModelConfig

# name -> (method class, its config class); filled by `register` where each method is defined.
METHODS: dict[str, tuple[type, type]] = {}


def register(cls: type) -> type:
    """Class decorator of a method: registers `cls` under `cls.name` with `cls.config_class`.

    A method is then usable everywhere by name (configs, `launch.train`, `own_data.fit`, probes
    rebuilding it from a checkpoint); what it reads from the data is declared on the class (see
    `jaxmm.methods.common.NNXMethod`: `min_modalities`, `views_read`, `labels_read`, ...).

    Example:
      >>> @register
      ... class MyMethod(NNXMethod):
      ...     name, config_class = "my_method", MyMethodConfig
    """
    name, config_class = getattr(cls, "name", None), getattr(cls, "config_class", None)
    if not isinstance(name, str) or not isinstance(config_class, type):
        raise ValueError(f"{cls.__name__}: a registered method needs `name` and `config_class`")
    if name in METHODS and METHODS[name][0].__qualname__ != cls.__qualname__:
        raise ValueError(f"method name {name!r} is taken by {METHODS[name][0].__qualname__}")
    METHODS[name] = (cls, config_class)
    return cls


def method_class(name: str) -> type:
    """The class of method `name` (its declarations: `views_read`, `labels_read`, ...)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(METHODS)}")
    return METHODS[name][0]


def method_config_class(name: str) -> type:
    """The config dataclass of method `name` (for `jaxmm.config.apply_overrides`)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(METHODS)}")
    return METHODS[name][1]


def get_method(
    name: str,
    method_config: Any = None,
    model_config: ModelConfig | Mapping[str, Any] | None = None,
):
    """Builds method `name`.

    Args:
      name: one of `METHODS` ("comm", "cross", "cross_self", "simclr", "supcon", "cmc").
      method_config: an instance of the method's config class, its dict form, or None (defaults).
      model_config: the backbone `ModelConfig` or its dict form.

    Returns:
      A `jaxmm.methods.base.Method`.

    Raises:
      ValueError: unknown name, a config of another method's class, or a missing model config.
    """
    cfg_cls = method_config_class(name)
    method_cls = METHODS[name][0]
    if model_config is None:
        raise ValueError(f"get_method({name!r}) needs a model_config")
    if method_config is None:
        method_config = cfg_cls()
    elif isinstance(method_config, Mapping):
        method_config = cfg_cls.from_dict(method_config)
    elif not isinstance(method_config, cfg_cls):
        raise ValueError(
            f"method {name!r} takes a {cfg_cls.__name__} (or its dict), got "
            f"{type(method_config).__name__}"
        )
    return method_cls(model_config, method_config)


# The built-in methods register themselves on import (after METHODS and `register` exist, so
# that importing one of these modules first also works).
from jaxmm.methods import baselines, comm, factorcl, tuple_infonce  # noqa: E402, F401
