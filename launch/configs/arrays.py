"""Every registered method on a user's own arrays: `<method>_arrays` (README "Your own data").

    python -m launch.train --config comm_arrays --set data.path=FILE.npz --workdir W
    python -m launch.probe --workdir W

The data come from one .npz file (`data.path`; the convention is in `jaxmm.data.arrays`), which
`jaxmm.experiment.resolve_data` reads once: it infers the modalities and labels, standardises
each modality with training statistics and stores them with the run. The model below holds one
TEMPLATE modality per kind of array, named by the kind, that `resolve_data` copies for every
modality of that kind and sizes to it:

  tabular  (N, d)        MLP d -> 2W -> W, one token          (`jaxmm.models.MLPEncoder`)
  sequence (N, T, d)     2-layer Transformer of width W, sine-cosine positions, its tokens
  image    (N, H, W, C)  5-conv AlexNet ("small", H, W >= 8), pooled, one token

W = `model.fusion.width` (default 128): `--set model.fusion.width=256` widens every encoder.
Fusion: 1-layer, 4-head Transformer; projection head W -> W -> W. Views: Gaussian noise of std
`data.tabular_sigma` (1.0) on standardised tabular features, `data.sequence_sigma` (0.5) plus
dropping 0-80% of the steps on sequences (CoMM App. C.1), a random resized crop (25-100% of the
area, any channel count) on images (`data.image_augment=none` to switch it off). The defaults
were chosen by measurement, see docs/results_own_data.md. AdamW lr 1e-3, cosine decay, batch
256, 600 steps.

Variant "smoke": W = 8, 4 steps at batch 8 (seconds on CPU).
"""

from __future__ import annotations

from jaxmm.config import OptimizerConfig, TrainConfig
from jaxmm.experiment import ARRAYS_BUILDER, DataConfig, ExperimentConfig, MethodConfig
from jaxmm.methods import registry
from jaxmm.methods.baselines import CMCConfig, CrossConfig, CrossSelfConfig
from jaxmm.methods.factorcl import FactorCLConfig
from jaxmm.methods.tuple_infonce import TupleInfoNCEConfig
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig
from launch.configs import common

VARIANTS = (None, common.SMOKE)
METHODS = tuple(registry.METHODS)
WIDTH = 128
STEPS = 600
BATCH = 256


def model(width: int) -> ModelConfig:
    """The template model: one modality per array kind, sized at `resolve_data` time from the
    array and `model.fusion.width` (see the module docstring and `experiment.resolve_data`)."""
    return ModelConfig(
        modalities=(
            ModalityConfig("tabular", "mlp", {}, "one_token"),
            ModalityConfig("sequence", "transformer", {"num_layers": 2, "num_heads": 4}),
            ModalityConfig("image", "alexnet", {"variant": "small", "pool": True}, "one_token"),
        ),
        fusion=FusionConfig(width=width, num_layers=1, num_heads=4),
        head=HeadConfig((width,), width),
    )


def method(name: str, width: int) -> MethodConfig:
    """Each method at its defaults, its heads and critics sized to the width."""
    if name not in METHODS:
        raise ValueError(f"arrays: unknown method {name!r}; methods: {list(METHODS)}")
    configs = {
        "cross": CrossConfig(proj_dim=width),
        "cross_self": CrossSelfConfig(proj_dim=width, head_hidden_dims=(width,)),
        "cmc": CMCConfig(proj_dim=width),
        "factorcl": FactorCLConfig(mode="ssl", critic_hidden=2 * width),
        # Positive noise of one standard deviation of the standardised inputs.
        "tuple_infonce": TupleInfoNCEConfig(beta=1.0),
    }
    return MethodConfig(name, configs.get(name))


def get_config(variant: str | None = None, *, method_name: str = "comm") -> ExperimentConfig:
    """`method_name` on the .npz of `data.path` (to be set, then `resolve_data`)."""
    common.check_variant("arrays", variant, VARIANTS)
    smoke = variant == common.SMOKE
    width = 8 if smoke else WIDTH
    name = f"{method_name}_arrays"
    data = DataConfig(
        builder=ARRAYS_BUILDER,
        num_views=1 if method_name == "tuple_infonce" else 2,
        eval_batch_size=64 if smoke else 512,
    )
    if smoke:
        train = common.smoke_train(name)
    else:
        train = TrainConfig(
            steps=STEPS,
            batch_size=BATCH,
            log_every=50,
            ckpt_every=0,
            keep=1,
            workdir=f"workdirs/{name}",
        )
    return ExperimentConfig(
        name=f"{name}_smoke" if smoke else name,
        data=data,
        model=model(width),
        method=method(method_name, width),
        optimizer=OptimizerConfig(lr=1e-3, weight_decay=1e-4, warmup_steps=0 if smoke else 50),
        train=train,
    )
