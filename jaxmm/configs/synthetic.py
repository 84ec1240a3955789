"""FactorCL controlled synthetic data (Liang et al. NeurIPS 2023, Sec. 4.1, App. D.2): FactorCL-SSL,
FactorCL-SUP and the SimCLR, Cross+Self and SupCon baselines.

Paper set-up (App. D.2): x1 = T1 [w1, ws], x2 = T2 [w2, ws] (100-d), the label a noisy
non-linear function of ws, w1, w2 (builder `factorcl_synthetic`, config "official": 30 000
samples, 80/20 split); encoders are 1-layer MLPs with 512 hidden units and 128-d embeddings,
heads 1-layer MLPs of the same width, critics 1-layer MLPs with 512 hidden units; Adam at lr 1e-4
(the rate FactorCL uses throughout App. D.2). The paper states neither batch size nor epoch count
for this data: we use batch 256 and 100 epochs. Views: Gaussian feature noise (sigma 0.1) on each
modality, the tabular default of CoMM App. B.2.

Method mapping. FactorCL's "SimCLR" baseline learns I(X1; X2) by contrasting the two modalities
(Table 2, first row: only the (X1; X2) column is ticked): that is NT-Xent between modality
embeddings, our `cmc` method with two modalities (`simclr` in jaxmm contrasts two augmented views
of the fused input instead). Its registry name is therefore `cmc_synthetic`; `method="simclr"`
(the paper's name) is accepted as an alias. FactorCL's SupCon contrasts the unimodal embeddings
with labels; our `supcon` contrasts the two views' fused embeddings with labels (CoMM App. B.4).
The official code's exact baselines (`SupConLoss` at tau 0.07 on unnormalised projections of the
two modalities, with and without labels) are the method `modal_supcon`, which
`launch.repro_factorcl_synthetic` uses.

Reported results (FactorCL Table 1: MI in bits between each learned representation and the ground
truth latents, estimated by probing):
  SimCLR      Z1: I(Z;w1)=4.45 I(Z;w2)=0.17 I(Z;ws)=12.61   Z2: 0.16 3.92 12.06
  Cross+Self  Z1: 4.39 0.13 11.30                           Z2: 0.14 4.26 11.47
  SupCon      Z1: 5.17 0.23 7.48                            Z2: 0.19 5.17 7.17
  FactorCL    ZU1: 7.83 0.06 9.47   ZU2: 0.03 7.17 9.89   ZS1: 6.25 0.05 10.13   ZS2: 0.04 5.79 9.40
Fig. 1 (accuracy vs. unique-information ratio) is a plot only: FactorCL stays best at every ratio,
SimCLR and SupCon degrade as unique information grows, Cross+Self recovers at ratio 1.0.
"""

from __future__ import annotations

from jaxmm.configs import common
from jaxmm.data.inputs import DataConfig, ModalityData
from jaxmm.experiment import ExperimentConfig, MethodConfig
from jaxmm.methods.baselines import CMCConfig, CrossSelfConfig, SupConConfig
from jaxmm.methods.factorcl import FactorCLConfig
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

# registry suffix -> (registry method name, config factory(smoke))
VARIANTS = (None, common.SMOKE)
_SMOKE_DATA = {"num_samples": 256}
# The ground-truth latents are regression targets for the Table 1 probes.
LABELS = ("label", "ws", "w1", "w2")


def _methods(smoke: bool) -> dict[str, MethodConfig]:
    hidden = 16 if smoke else 512
    return {
        "factorcl_ssl": MethodConfig("factorcl", FactorCLConfig(mode="ssl", critic_hidden=hidden)),
        "factorcl_sup": MethodConfig(
            "factorcl",
            FactorCLConfig(mode="sup", label_key="label", num_classes=2, critic_hidden=hidden),
        ),
        "cmc": MethodConfig(
            "cmc", CMCConfig(proj_dim=8 if smoke else 128, head_hidden_dims=(hidden,))
        ),
        "crossself": MethodConfig(
            "cross_self", CrossSelfConfig(proj_dim=8 if smoke else 128, head_hidden_dims=(hidden,))
        ),
        "supcon": MethodConfig("supcon", SupConConfig(label_key="label")),
    }


METHODS = tuple(_methods(True))
# FactorCL's name for its cross-modal NT-Xent baseline -> our method of that loss.
ALIASES = {"simclr": "cmc"}


def _model(smoke: bool) -> ModelConfig:
    hidden, dim = (16, 8) if smoke else (512, 128)
    enc = {"in_features": 100, "hidden_dims": (hidden,), "out_dim": dim}
    # The fused path (one token per modality) is only used by SupCon; FactorCL, CMC and
    # Cross+Self read the unimodal embeddings.
    mods = tuple(ModalityConfig(name, "mlp", enc, "one_token") for name in ("x1", "x2"))
    return ModelConfig(
        modalities=mods,
        fusion=FusionConfig(width=dim, num_heads=2 if smoke else 8),
        head=HeadConfig((dim,), dim),
    )


def get_config(variant: str | None = None, *, method: str = "factorcl_ssl") -> ExperimentConfig:
    """The synthetic experiment of `method` (factorcl_ssl | factorcl_sup | cmc, alias simclr |
    crossself | supcon)."""
    common.check_variant("synthetic", variant, VARIANTS)
    smoke = variant == common.SMOKE
    methods = _methods(smoke)
    method = ALIASES.get(method, method)
    if method not in methods:
        raise ValueError(f"synthetic: unknown method {method!r}; methods: {sorted(methods)}")
    name = f"{method}_synthetic"
    data = DataConfig(
        builder="factorcl_synthetic",
        builder_config="official",
        builder_overrides=dict(_SMOKE_DATA) if smoke else {},
        modalities=(ModalityData("x1", "tabular"), ModalityData("x2", "tabular")),
        labels=LABELS,
        num_views=2,
        eval_batch_size=64 if smoke else 1024,
    )
    optimizer = common.adamw(1e-4, 0.0)
    if smoke:
        return ExperimentConfig(
            name=f"{name}_smoke",
            data=data,
            model=_model(True),
            method=methods[method],
            optimizer=optimizer,
            train=common.smoke_train(name),
        )
    return ExperimentConfig(
        name=name,
        data=data,
        model=_model(False),
        method=methods[method],
        optimizer=optimizer,
        train=common.train(name, batch_size=256),
        epochs=100,
    )
