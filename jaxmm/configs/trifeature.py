"""Bimodal Trifeature (CoMM, Dufumier et al. ICLR 2025, Sec. 4.1, App. B.1/B.4/B.5): CoMM, Cross,
Cross+Self and FactorCL with AlexNet encoders.

Paper set-up: two AlexNet encoders with a 512-d embedding; for CoMM the last pooling is removed
and a linear patch embedding (ViT) with fixed 2-D sine-cosine positions turns each feature map
into tokens for a 1-layer, 8-head fusion Transformer; SimCLR augmentations on both images
(App. B.2); AdamW, lr 3e-4, weight decay 1e-4, 100 epochs of the 10 000 training pairs, batch 64
(official `configs/data/trifeatures.yaml`); images rendered at 224 px. Cross: a linear projector
per encoder and the CLIP loss; Cross+Self: in addition a 3-layer MLP head per encoder for the
SSL terms (SLIP).

Variants:
  None           32 px (CPU-sized: the "small" AlexNet keeps a 4 x 4 final map), 100 epochs.
  "paper"        224 px, torchvision AlexNet layout, as in the paper.
  "biased"       32 px, training pairs respecting the texture -> colour mapping (Experiment 2,
                 synergy); the test split is the unbiased one.
  "paper_biased" 224 px version of "biased".
  "smoke"        a 64-pair dataset, a 4-channel AlexNet, 4 steps: seconds on CPU.

Ablations (CoMM Sec. 5) are overrides of `comm_trifeature`, no separate config:
  Table 4, linear vs attention fusion:  --set model.fusion.kind=linear
  Fig. 5, loss terms:                   --set method.config.terms=fused_only  (I(Z'; Z'') only)
                                        --set method.config.terms=unimodal_only  (I(Z_i; Z''))
  Table 5, augmentations: the per-modality presets of `DataConfig.modalities` ("simclr", "unique",
  "none").

Reported results (linear probing, CoMM Fig. 4; comm.txt gives them only as a bar chart, no
table): Cross captures the redundant shape almost perfectly but is near chance (10%) on the unique
textures and (50%) on synergy; Cross+Self captures uniqueness but not synergy; FactorCL is poor on
synergy; CoMM is the only model that captures redundancy, uniqueness and synergy.
"""

from __future__ import annotations

import dataclasses

from jaxmm.configs import common
from jaxmm.data.inputs import DataConfig, ModalityData
from jaxmm.experiment import ExperimentConfig, MethodConfig
from jaxmm.methods.baselines import CrossConfig, CrossSelfConfig
from jaxmm.methods.comm import CoMMConfig
from jaxmm.methods.factorcl import FactorCLConfig
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

METHODS = ("comm", "cross", "cross_self", "factorcl")
VARIANTS = (None, "paper", "biased", "paper_biased", common.SMOKE)
LABELS = ("shape", "texture1", "texture2", "color1", "color2", "synergy")
# Training pairs (CoMM App. B.5 (i)); the smoke variant renders each combination once, 64 pairs.
NUM_TRAIN_PAIRS = 10_000
_SMOKE_DATA = {"num_train_pairs": 64, "max_test_pairs": 64, "num_per_combination": 1}


def _model(size: int, smoke: bool) -> ModelConfig:
    if smoke:
        enc = {"channels": (4, 8, 8, 8, 8), "variant": "small", "pool": False, "out_dim": 16}
        fusion, head = FusionConfig(width=16, num_heads=2), HeadConfig((16,), 8)
    else:
        # 512-d embedding (App. B.1); the feature map keeps AlexNet's 256 channels and the patch
        # embedding maps them to the 512-d fusion tokens.
        enc = {"variant": "imagenet" if size >= 128 else "small", "pool": False, "out_dim": 512}
        fusion, head = (
            FusionConfig(width=512, num_layers=1, num_heads=8),
            HeadConfig((512, 512), 256),
        )
    mods = tuple(
        ModalityConfig(name, "alexnet", enc, "patch", {"patch_size": 1})
        for name in ("image1", "image2")
    )
    return ModelConfig(modalities=mods, fusion=fusion, head=head)


def _method(method: str, smoke: bool) -> MethodConfig:
    if method == "comm":
        return MethodConfig("comm", CoMMConfig(temperature=0.1))
    if method == "cross":
        return MethodConfig("cross", CrossConfig(proj_dim=8 if smoke else 128))
    if method == "cross_self":
        cfg = (
            CrossSelfConfig(proj_dim=8, head_hidden_dims=(16,))
            if smoke
            else CrossSelfConfig(proj_dim=256, head_hidden_dims=(1024, 1024))
        )
        return MethodConfig("cross_self", cfg)
    if method == "factorcl":
        return MethodConfig(
            "factorcl", FactorCLConfig(mode="ssl", critic_hidden=16 if smoke else 512)
        )
    raise ValueError(f"trifeature: unknown method {method!r}; methods: {list(METHODS)}")


def get_config(variant: str | None = None, *, method: str = "comm") -> ExperimentConfig:
    """The Trifeature experiment of `method` ("comm", "cross", "cross_self" or "factorcl")."""
    common.check_variant("trifeature", variant, VARIANTS)
    smoke = variant == common.SMOKE
    size = 224 if variant in ("paper", "paper_biased") else 32
    biased = variant in ("biased", "paper_biased")
    name = f"{'crossself' if method == 'cross_self' else method}_trifeature"
    # Cross contrasts the two images as they are (CLIP, one unaugmented view); FactorCL's second
    # modality gets its "unique" augmentation (no crop, FactorCL App. C); the others SimCLR's set.
    aug1 = "none" if method == "cross" else "simclr"
    aug2 = {"cross": "none", "factorcl": "unique"}.get(method, "simclr")
    data = DataConfig(
        builder="trifeature",
        builder_config=f"px{size}" + ("_biased" if biased else ""),
        builder_overrides=dict(_SMOKE_DATA) if smoke else {},
        modalities=(ModalityData("image1", "image", aug1), ModalityData("image2", "image", aug2)),
        labels=LABELS,
        num_views=1 if method == "cross" else 2,
        eval_batch_size=64 if smoke else 256,
    )
    if smoke:
        return ExperimentConfig(
            name=f"{name}_smoke",
            data=data,
            model=_model(size, True),
            method=_method(method, True),
            optimizer=common.adamw(3e-4, 1e-4),
            train=common.smoke_train(name),
        )
    return ExperimentConfig(
        name=name if variant is None else f"{name}_{variant}",
        data=data,
        model=_model(size, False),
        method=_method(method, False),
        optimizer=common.adamw(3e-4, 1e-4),
        train=common.train(name, batch_size=64),
        epochs=100,
    )


def at_width(cfg: ExperimentConfig, width: int, channels: tuple[int, ...]) -> ExperimentConfig:
    """A config of this family at a CPU-sized width (the demo's models, `launch.demo`).

    The AlexNets get `channels` and a `width`-d output, the fusion one 4-head layer of `width`, the
    head (width,) -> width, and each method's own widths scale with it: Cross's projection
    `width`, Cross+Self's heads (4 width, 4 width) -> width, FactorCL's critics 4 width. The
    schedule counts steps (epochs None).
    """
    mods = tuple(
        dataclasses.replace(
            m, encoder_kwargs={**m.encoder_kwargs, "channels": tuple(channels), "out_dim": width}
        )
        for m in cfg.model.modalities
    )
    model = dataclasses.replace(
        cfg.model,
        modalities=mods,
        fusion=FusionConfig(width=width, num_layers=1, num_heads=4),
        head=HeadConfig((width,), width),
    )
    mcfg = cfg.method.config
    if cfg.method.name == "cross":
        mcfg = dataclasses.replace(mcfg, proj_dim=width)
    elif cfg.method.name == "cross_self":
        mcfg = CrossSelfConfig(proj_dim=width, head_hidden_dims=(4 * width, 4 * width))
    elif cfg.method.name == "factorcl":
        mcfg = dataclasses.replace(mcfg, critic_hidden=4 * width)
    method = dataclasses.replace(cfg.method, config=mcfg)
    return dataclasses.replace(cfg, model=model, epochs=None, method=method)
