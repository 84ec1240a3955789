"""MultiBench (Liang et al. 2021): CoMM, FactorCL and TupleInfoNCE on MOSI, MOSEI, UR-FUNNY
(`humor`), MUsTARD (`sarcasm`), MIMIC and Vision&Touch, and CoMM with three modalities.

The data are the files MultiBench distributes; build them once with
`python -m launch.data build multibench --config <mosi|...> --data-dir data --manual-dir DIR`
(or pass `--set data.manual_dir=DIR` to `launch.train`, which builds on demand).

CoMM (Dufumier et al. ICLR 2025, App. B.1-B.4; official `configs/train_multibench*.yaml`):
  * MOSI / MOSEI / UR-FUNNY / MUsTARD: vision and text, each a 5-layer, 5-head pre-norm
    Transformer of width 40 (feed-forward 2048, dropout 0.1: torch's defaults, which the official
    encoders keep) without positional encoding, no latent converter; views: Gaussian noise +
    random drop of 0-80% of the steps (App. C.1); label 1[sentiment > 0] (humour / sarcasm for
    the others).
  * MIMIC: static tabular data through a 2-layer MLP (hidden 10, out 10) + feature tokenizer to
    512-d tokens, the 24 x 12 time series through a GRU (hidden 512); task ICD-9 group 7.
  * Vision&Touch, end-effector regression (`*_vt`, CoMM Table 1 "V&T EE"): 128 px images through
    a ResNet18 whose 4 x 4 x 512 map is patch-embedded to 128-d tokens, force (32 x 6) through a
    5-layer causal convolution net (128-d) + feature tokenizer; target `ee_yaw_next`.
  * Vision&Touch, contact (`comm_vt_contact`, 2 modalities): image (ResNet18, 512-d tokens) and
    proprioception (5-layer MLP, 512-d, one token); target `contact_next`.
  * AdamW, lr 1e-3, weight decay 1e-2, batch 64, 100 epochs; 1-layer 8-head fusion Transformer;
    3-layer MLP projection head.
  * 3 modalities (`comm3_vt`, `comm3_humor`, official `train_multibench_all-mod.yaml`): V&T
    image + force (512-d, one token) + proprioception, contact target; UR-FUNNY vision + text +
    audio; AdamW lr 1e-4, weight decay 1e-2.

FactorCL (Liang et al. NeurIPS 2023, App. D.2): the same affect Transformers (vision + text,
40-d); MIMIC: 2-layer MLP (hidden 10, out 10) and a GRU (hidden 30) projected to 15-d; heads
1-layer MLPs, critics 1-layer MLPs with 512 hidden units; Adam, lr 1e-4, 100 epochs (batch size
not stated: 64 as CoMM); MOSI / MOSEI labels 1[sentiment >= 0] (`*_ge0` builder configs).
Vision&Touch is not in the FactorCL paper: its FactorCL run (CoMM Table 1) uses the CoMM V&T
encoders.

TupleInfoNCE (Liu et al. ICCV 2021): the CoMM backbone of each dataset contrasts fused tuples
against tuples with one modality disturbed; the positive is the tuple plus Gaussian noise of std
`beta` in input units. The paper's MultiBench-style numbers are not comparable (it reports acc7 on
MOSI / MOSEI with other features); beta = 0.1 (our CoMM noise level) and alpha = 1 are our
defaults, to be tuned by the sample-optimisation search (`jaxmm.sample_optimization`).

Reported results (linear probing, top-1 % or MSE x 1e-4 for V&T EE; CoMM official README, the
CoMM Table 1 numbers averaged over 5 runs):
                   V&T EE  MIMIC  MOSI  UR-FUNNY  MUsTARD
  Cross             33.09   66.7   47.8   50.1     53.5
  Cross+Self         7.56   65.49  49.0   59.9     53.9
  FactorCL          10.82   67.3   51.2   60.5     55.80
  CoMM               4.55   66.4   67.5   63.1     63.9
  fine-tuned: SupCon - / 67.4 / 47.2 / 50.1 / 52.7; FactorCL-SUP 1.72 / 76.8 / 69.1 / 63.5 / 69.9;
  CoMM 1.34 / 68.18 / 74.98 / 65.96 / 70.42.
  3 modalities (V&T contact / UR-FUNNY): Cross (2 mod.) 84.4 / 50.1, Cross+Self (2) 86.8 / 59.9,
  CoMM (2) 88.1 / 63.1, CMC (3) 94.1 / 59.2, CoMM (3) 94.2 / 64.6.
FactorCL-SSL (FactorCL Table 2): MIMIC 67.34, MOSEI 74.88, MOSI 52.91, UR-FUNNY 60.50,
MUsTARD 55.80 (Table 6, 5-run means: 67.3, 74.5, 51.2, 60.5, 55.8).
"""

from __future__ import annotations

import dataclasses

from jaxmm.configs import common
from jaxmm.data.inputs import DataConfig, ModalityData
from jaxmm.experiment import ExperimentConfig, MethodConfig
from jaxmm.methods.comm import CoMMConfig
from jaxmm.methods.factorcl import FactorCLConfig
from jaxmm.methods.tuple_infonce import TupleInfoNCEConfig
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

VARIANTS = (None, common.SMOKE)
# Registry dataset name -> MultiBench builder config.
DATASETS = ("mosi", "mosei", "humor", "sarcasm", "mimic", "vt", "vt_contact")
METHODS = ("comm", "factorcl", "tuple_infonce")
_AFFECT_DIMS = {"mosi": (20, 5), "mosei": (35, 74), "humor": (371, 81), "sarcasm": (371, 81)}
_TEXT_DIM = 300


@dataclasses.dataclass(frozen=True)
class _Setup:
    builder_config: str
    modalities: tuple[ModalityData, ...]
    labels: tuple[str, ...]
    model: ModelConfig
    val_split: str | None


# The official encoders are torch `nn.TransformerEncoderLayer(d_model=40, nhead=5)` (CoMM:
# `models/transformer.py`, pre-norm), which keeps torch's defaults: a 2048-wide feed-forward layer
# and dropout 0.1 (the 2-modality MOSI CoMM model: 2.18 M parameters; a 4x MLP would give 0.65 M).
_OFFICIAL_FEEDFORWARD, _OFFICIAL_DROPOUT = 2048, 0.1


def _transformer(name: str, d: int, smoke: bool) -> ModalityConfig:
    width, layers, heads = (8, 1, 2) if smoke else (40, 5, 5)
    kwargs = {
        "in_features": d,
        "width": width,
        "num_layers": layers,
        "num_heads": heads,
        "positional": False,
    }
    if not smoke:
        kwargs.update(mlp_ratio=_OFFICIAL_FEEDFORWARD / width, dropout=_OFFICIAL_DROPOUT)
    return ModalityConfig(name, "transformer", kwargs)


def _affect(dataset: str, smoke: bool, *, audio: bool = False, ge0: bool = False) -> _Setup:
    dv, da = _AFFECT_DIMS[dataset]
    mods = [_transformer("vision", dv, smoke), _transformer("text", _TEXT_DIM, smoke)]
    if audio:
        mods.append(_transformer("audio", da, smoke))
    width = 8 if smoke else 40
    model = ModelConfig(
        tuple(mods),
        FusionConfig(width=width, num_heads=2 if smoke else 8),
        HeadConfig((16,), 8) if smoke else HeadConfig((512, 512), 256),
    )
    return _Setup(
        dataset + ("_ge0" if ge0 else ""),
        tuple(ModalityData(m.name, "time_series") for m in mods),
        ("label", "label_raw"),
        model,
        "validation",
    )


def _mimic(smoke: bool, factorcl: bool) -> _Setup:
    width = 8 if smoke else 512
    static = {"in_features": 5, "hidden_dims": (10,), "out_dim": 10}
    gru = (
        {"in_features": 12, "hidden": 8}
        if smoke
        else {"in_features": 12, "hidden": 30, "out_dim": 15}
        if factorcl
        else {"in_features": 12, "hidden": 512}
    )
    mods = (
        ModalityConfig("static", "mlp", static, "feature_tokenizer"),
        ModalityConfig("timeseries", "gru", gru),
    )
    model = ModelConfig(
        mods,
        FusionConfig(width=width, num_heads=2 if smoke else 8),
        HeadConfig((16,), 8) if smoke else HeadConfig((512, 512), 256),
    )
    data = (ModalityData("static", "tabular"), ModalityData("timeseries", "time_series"))
    return _Setup("mimic", data, ("icd9_group7", "mortality", "icd9"), model, "validation")


def _resnet(smoke: bool) -> ModalityConfig:
    enc = {"width": 4, "groups": 2, "pool": False} if smoke else {"pool": False}
    return ModalityConfig("image", "resnet18", enc, "patch", {"patch_size": 1})


def _force(dim: int, converter: str, smoke: bool) -> ModalityConfig:
    channels = (4, 4, 4, 4, dim) if smoke else (16, 32, 64, 128, dim)
    return ModalityConfig(
        "force", "causal_conv", {"in_features": 6, "channels": channels}, converter
    )


def _proprio(dim: int, smoke: bool) -> ModalityConfig:
    hidden = (8,) if smoke else (32, 64, 128, 256)  # 5 linear layers (Lee et al. 2020)
    return ModalityConfig(
        "proprio", "mlp", {"in_features": 8, "hidden_dims": hidden, "out_dim": dim}, "one_token"
    )


_VT_LABELS = ("contact_next", "ee_yaw_next", "action")


def _vt(smoke: bool, kind: str) -> _Setup:
    """kind: "ee" (image + force), "contact" (image + proprio), "all" (the three)."""
    width = 8 if smoke else (128 if kind == "ee" else 512)
    image = ModalityData("image", "image")
    force = ModalityData("force", "time_series")
    proprio = ModalityData("proprio", "tabular")
    if kind == "ee":
        mods = (_resnet(smoke), _force(width, "feature_tokenizer", smoke))
        data = (image, force)
    elif kind == "contact":
        mods, data = (_resnet(smoke), _proprio(width, smoke)), (image, proprio)
    else:
        mods = (_resnet(smoke), _force(width, "one_token", smoke), _proprio(width, smoke))
        data = (image, force, proprio)
    model = ModelConfig(
        mods,
        FusionConfig(width=width, num_heads=2 if smoke else 8),
        HeadConfig((16,), 8) if smoke else HeadConfig((512, 512), 256),
    )
    return _Setup("vision_touch", data, _VT_LABELS, model, None)


def _setup(dataset: str, method: str, smoke: bool, modalities: int) -> _Setup:
    if dataset in _AFFECT_DIMS:
        return _affect(
            dataset,
            smoke,
            audio=modalities == 3,
            ge0=method == "factorcl" and dataset in ("mosi", "mosei"),
        )
    if dataset == "mimic":
        return _mimic(smoke, method == "factorcl")
    if dataset in ("vt", "vt_contact"):
        return _vt(smoke, "all" if modalities == 3 else "ee" if dataset == "vt" else "contact")
    raise ValueError(f"multibench: unknown dataset {dataset!r}; datasets: {list(DATASETS)}")


def _method(method: str, smoke: bool) -> MethodConfig:
    if method == "comm":
        return MethodConfig("comm", CoMMConfig(temperature=0.1))
    if method == "factorcl":
        return MethodConfig(
            "factorcl", FactorCLConfig(mode="ssl", critic_hidden=16 if smoke else 512)
        )
    if method == "tuple_infonce":
        return MethodConfig("tuple_infonce", TupleInfoNCEConfig(beta=0.1))
    raise ValueError(f"multibench: unknown method {method!r}; methods: {list(METHODS)}")


def get_config(
    variant: str | None = None, *, method: str = "comm", dataset: str = "mosi", modalities: int = 2
) -> ExperimentConfig:
    """`method` on MultiBench `dataset` (see the module docstring); `modalities=3`: CoMM only."""
    common.check_variant("multibench", variant, VARIANTS)
    if modalities not in (2, 3) or (
        modalities == 3 and (method, dataset) not in (("comm", "vt_contact"), ("comm", "humor"))
    ):
        raise ValueError(
            f"multibench: {modalities} modalities are configured for CoMM on "
            f"vt_contact / humor only, got {method} on {dataset}"
        )
    smoke = variant == common.SMOKE
    setup = _setup(dataset, method, smoke, modalities)
    prefix = "comm3" if modalities == 3 else method
    name = f"{prefix}_{'vt' if modalities == 3 and dataset == 'vt_contact' else dataset}"
    # TupleInfoNCE's anchor and (noised) positive both come from view1: no second view needed.
    data = DataConfig(
        builder="multibench",
        builder_config=setup.builder_config,
        modalities=setup.modalities,
        labels=setup.labels,
        val_split=setup.val_split,
        num_views=1 if method == "tuple_infonce" else 2,
        eval_batch_size=64 if smoke else 256,
    )
    if method == "comm":
        optimizer = common.adamw(1e-4 if modalities == 3 else 1e-3, 1e-2)
    else:
        optimizer = common.adamw(1e-4, 0.0)  # FactorCL App. D.2: Adam, lr 1e-4
    if smoke:
        return ExperimentConfig(
            name=f"{name}_smoke",
            data=data,
            model=setup.model,
            method=_method(method, True),
            optimizer=optimizer,
            train=common.smoke_train(name),
        )
    return ExperimentConfig(
        name=name,
        data=data,
        model=setup.model,
        method=_method(method, False),
        optimizer=optimizer,
        train=common.train(name, batch_size=64),
        epochs=100,
    )
