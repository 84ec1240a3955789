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

from jaxmm.methods.baselines import (
    CMC,
    CMCConfig,
    Cross,
    CrossConfig,
    CrossSelf,
    CrossSelfConfig,
    ModalSupCon,
    ModalSupConConfig,
    SimCLR,
    SimCLRConfig,
    SupCon,
    SupConConfig,
)
from jaxmm.methods.comm import CoMM, CoMMConfig
from jaxmm.methods.factorcl import FactorCL, FactorCLConfig
from jaxmm.methods.tuple_infonce import TupleInfoNCE, TupleInfoNCEConfig
from jaxmm.models import ModelConfig

# name -> (method class, its config class)
METHODS: dict[str, tuple[type, type]] = {
    "comm": (CoMM, CoMMConfig),
    "cross": (Cross, CrossConfig),
    "cross_self": (CrossSelf, CrossSelfConfig),
    "simclr": (SimCLR, SimCLRConfig),
    "supcon": (SupCon, SupConConfig),
    "cmc": (CMC, CMCConfig),
    "modal_supcon": (ModalSupCon, ModalSupConConfig),
    "factorcl": (FactorCL, FactorCLConfig),
    "tuple_infonce": (TupleInfoNCE, TupleInfoNCEConfig),
}


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
