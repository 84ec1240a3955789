"""A new method is one file plus one config entry (issue 27, step 3; docs/architecture.md).

The file below is written outside the package, imported as a user's module would be, and
trained by `launch.train` through the registry: nothing in jaxmm is edited. The file holds the
method (registered where it is defined, declaring what it reads) and its config family.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from jaxmm import checkpoint as ckpt_lib
from jaxmm import configs, validation
from jaxmm import experiment as ex
from jaxmm.methods import registry
from launch import train as launch_train

PLUGIN = '''
"""A user's method: NT-Xent between the two modalities' projections of one view (CMC-like)."""

import dataclasses

import jax.numpy as jnp

from jaxmm import estimators
from jaxmm.config import Serializable
from jaxmm.configs import get_config as registry_config
from jaxmm.experiment import MethodConfig
from jaxmm.methods.common import MethodModule, NNXMethod, get_view, unimodal_heads
from jaxmm.methods.registry import register


@dataclasses.dataclass(frozen=True)
class PairConfig(Serializable):
    proj_dim: int = 16
    temperature: float = 0.2
    view: str = "view1"
    label_key: str = "label"
    read_label: bool = False  # only to show a declaration the validation reads


@register
class PairNCE(NNXMethod):
    name, config_class = "plugin_pair_nce", PairConfig
    min_modalities = 2

    def __init__(self, model_config, config=None):
        super().__init__(model_config)
        self.config = PairConfig() if config is None else config

    @classmethod
    def labels_read(cls, config):
        return (config.label_key,) if config.read_label else ()

    def _build_module(self, model, rngs):
        return MethodModule(model, heads=unimodal_heads(model, (), self.config.proj_dim, rngs))

    def loss(self, params, batch, rng, *, axis_name=None):
        module = self.module(params)
        x, valid = get_view(batch, self.config.view)
        h = module.model.encode_unimodal(x, valid, deterministic=True)
        a, b = (module.heads[n](h[n]) for n in self.modality_names[:2])
        loss = estimators.ntxent_loss(a, b, temperature=self.config.temperature,
                                      axis_name=axis_name)
        return loss, {"pair_nce": loss}

    def embed(self, params, batch):
        x, valid = get_view(batch, "view1")
        return self.module(params).model(x, valid, deterministic=True)


# Its config family: the FactorCL synthetic data and model of `cmc_synthetic`.
VARIANTS = (None, "smoke")


def get_config(variant=None):
    cfg = registry_config("cmc_synthetic", variant)
    name = "plugin_pair_nce_synthetic" + ("_smoke" if variant else "")
    return dataclasses.replace(cfg, name=name, method=MethodConfig("plugin_pair_nce"))
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "pair_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    import pair_plugin  # noqa: F401  (registers the method)

    # The one config entry.
    monkeypatch.setitem(configs.CONFIGS, "plugin_pair_nce_synthetic", ("pair_plugin", {}))
    yield
    registry.METHODS.pop("plugin_pair_nce", None)
    sys.modules.pop("pair_plugin", None)


def test_a_method_from_one_file_and_one_config_entry_trains(plugin, tmp_path):
    name = "plugin_pair_nce_synthetic"
    assert name in configs.names() and "plugin_pair_nce_arrays" in configs.names()
    assert configs.method_name(name) == "plugin_pair_nce"
    cfg = configs.get_config(name, "smoke")
    validation.validate(cfg)  # traces the new method's init and loss abstractly

    workdir, data = str(tmp_path / "run"), str(tmp_path / "data")
    argv = ["--config", name, "--variant", "smoke", "--workdir", workdir, "--data-dir", data]
    assert launch_train.main(argv) == 0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        losses = [json.loads(line)["pair_nce"] for line in f]
    assert len(losses) == cfg.train.steps and all(map(lambda v: v == v, losses))  # finite
    saved = ex.ExperimentConfig.from_dict(
        ckpt_lib.load_config(os.path.join(workdir, "checkpoints"))
    )
    assert saved.method.name == "plugin_pair_nce"
    assert type(ex.build_method(saved)).__name__ == "PairNCE"


def test_the_validation_reads_the_plugins_declarations(plugin):
    cfg = configs.get_config("plugin_pair_nce_synthetic", "smoke")
    reads_label = ex.override(cfg, ["method.config.read_label=true"])
    reads_label = ex.override(reads_label, ["method.config.label_key=nope"])
    with pytest.raises(ValueError, match="reads label 'nope'"):
        validation.validate(reads_label, trace=False)
    reads_view3 = ex.override(cfg, ["method.config.view=view3"])
    with pytest.raises(ValueError, match="reads view3 but data.num_views is 2"):
        validation.validate(reads_view3, trace=False)


def test_a_name_taken_by_another_class_is_refused(plugin):
    class Other:
        name, config_class = "plugin_pair_nce", dict

    with pytest.raises(ValueError, match="is taken by PairNCE"):
        registry.register(Other)
