"""Experiment configs: name -> `get_config(variant) -> jaxmm.experiment.ExperimentConfig`.

Each family module (`trifeature`, `synthetic`, `multibench`) documents the papers' set-up and
reported numbers; this registry names every experiment. Every config has a "smoke" variant (tiny
model and data, a few steps) that CI runs in seconds.

An entry is `name: (family, kwargs)`: the family is a module of this package or, for a config
defined outside it (a plug-in method's own file), an importable module name; the module has
`VARIANTS` and `get_config(variant, **kwargs)`. Every registered method, plug-ins included,
also has `<method>_arrays` (README "Your own data"). Adding an experiment is one entry:

  >>> configs.CONFIGS["my_method_trifeature"] = ("my_package.my_method", {})

Example:
  >>> from jaxmm import configs
  >>> cfg = configs.get_config("comm_trifeature", "smoke")
  >>> configs.names()[:3]
  ['comm3_humor', 'comm3_vt', 'comm_mimic']
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from jaxmm.experiment import ExperimentConfig

_FAMILIES = ("trifeature", "synthetic", "multibench", "tuple_search", "arrays")


def _entries() -> dict[str, tuple[str, dict]]:
    out: dict[str, tuple[str, dict]] = {}
    for method in ("comm", "cross", "cross_self", "factorcl"):
        short = "crossself" if method == "cross_self" else method
        out[f"{short}_trifeature"] = ("trifeature", {"method": method})
    # FactorCL's "SimCLR" baseline is cross-modal NT-Xent, i.e. our `cmc` (see synthetic.py).
    for method in ("factorcl_ssl", "factorcl_sup", "cmc", "crossself", "supcon"):
        out[f"{method}_synthetic"] = ("synthetic", {"method": method})
    for method in ("comm", "factorcl", "tuple_infonce"):
        for dataset in ("mosi", "mosei", "humor", "sarcasm", "mimic", "vt"):
            out[f"{method}_{dataset}"] = ("multibench", {"method": method, "dataset": dataset})
    out["comm_vt_contact"] = ("multibench", {"method": "comm", "dataset": "vt_contact"})
    out["comm3_vt"] = ("multibench", {"method": "comm", "dataset": "vt_contact", "modalities": 3})
    out["comm3_humor"] = ("multibench", {"method": "comm", "dataset": "humor", "modalities": 3})
    for dataset in ("trifeature", "mosi"):  # sample-optimisation runs of `launch.search`
        out[f"tuple_infonce_{dataset}_search"] = (
            "tuple_search",
            {"method": "tuple_infonce", "dataset": dataset},
        )
    from jaxmm.methods.registry import METHODS

    for method in METHODS:  # a user's own .npz (README "Your own data")
        out[f"{method}_arrays"] = ("arrays", {"method_name": method})
    return out


CONFIGS: dict[str, tuple[str, dict]] = _entries()  # name -> (family module, its kwargs)


def names() -> list[str]:
    """Registered experiment names, sorted (with `<method>_arrays` of methods registered since)."""
    from jaxmm.methods.registry import METHODS

    return sorted(set(CONFIGS) | {f"{m}_arrays" for m in METHODS})


def _module(family: str):
    import importlib

    return importlib.import_module(f"jaxmm.configs.{family}" if family in _FAMILIES else family)


def method_name(name: str) -> str:
    """The registry method (`jaxmm.methods.registry`) an experiment trains, without building it."""
    family, kwargs = _lookup(name)
    if family == "arrays":
        return kwargs["method_name"]
    if family not in _FAMILIES:  # a config defined outside this package: build it to read it
        return get_config(name, variants(name)[-1]).method.name
    if family == "synthetic":
        return {
            "factorcl_ssl": "factorcl",
            "factorcl_sup": "factorcl",
            "cmc": "cmc",
            "crossself": "cross_self",
            "supcon": "supcon",
        }[kwargs["method"]]
    return kwargs["method"]


def variants(name: str) -> tuple[str | None, ...]:
    """The variants `get_config(name, variant)` accepts."""
    return _module(_lookup(name)[0]).VARIANTS


def _lookup(name: str) -> tuple[str, dict]:
    from jaxmm.methods.registry import METHODS

    if name not in CONFIGS and name.endswith("_arrays") and name[: -len("_arrays")] in METHODS:
        return "arrays", {"method_name": name[: -len("_arrays")]}
    if name not in CONFIGS:
        raise ValueError(f"unknown experiment config {name!r}; configs: {names()}")
    return CONFIGS[name]


def getter(name: str) -> Callable[[str | None], ExperimentConfig]:
    """`get_config(variant=None)` of experiment `name`."""
    family, kwargs = _lookup(name)
    return functools.partial(_module(family).get_config, **kwargs)


def get_config(name: str, variant: str | None = None) -> ExperimentConfig:
    """The `ExperimentConfig` of experiment `name` and `variant` (None = the full run)."""
    return getter(name)(variant)
