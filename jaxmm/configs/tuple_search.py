"""TupleInfoNCE with sample optimisation (Liu et al., ICCV 2021, arXiv 2107.02575): the search runs
of `python -m launch.search` on bimodal Trifeature and on CMU-MOSI (MultiBench).

Each config is a pair: the `ExperimentConfig` (`get_config`, the data, backbone, TupleInfoNCE and
encoder optimizer; what the checkpoint stores and `launch.probe` rebuilds) and the search settings
(`get_search_config` -> `TupleSearchConfig`, a `jaxmm.sample_optimization.SearchConfig` plus the
loop's rounds and reward batch). On the command line the search fields are ``search.<field>``.

Search (method notes, public code): alternate alpha- and beta-rounds; 5 candidates per round, each
trained from the same state on the same batches; alpha starts at 1 per modality, searched as
log alpha with std 0.5 and Adam lr 0.25; beta (the positive's Gaussian-noise std) starts at the
code's sigma = 120 with search std 10 and lr 3.0, in the code's units: sigma / 255 added to the
already-normalised images (`PIXEL_LEVEL` = 1/255, so beta starts at ~0.47 input stds, as
`jaxmm.sample_optimization` documents). The code trains each candidate
"a few epochs"; here each round trains about one epoch (`steps_per_candidate`), so the kept
weights see `rounds` epochs in all.

* `tuple_infonce_trifeature_search`: Trifeature px32 (10 000 pairs), the CPU-sized AlexNet +
  512-d 1-layer fusion backbone of the other Trifeature configs, AdamW 3e-4 / 1e-4, batch 64;
  the images are not augmented, so the positive differs from the anchor only by the searched
  noise beta (the code's single positive augmentation). 100 rounds of 157 steps (one epoch).
* `tuple_infonce_mosi_search`: the `tuple_infonce_mosi` set-up (vision + text Transformers,
  CoMM's time-series views, beta = 0.1 in standardised units); beta's search std and lr keep the
  code's ratios to the initial beta (10 / 120 and 3 / 120). 100 rounds of 21 steps (MOSI's 1 284
  training clips at batch 64). Needs the MultiBench files: ``--manual-dir DIR``.

The reward is `TupleInfoNCE.retrieval_reward` on one fixed batch of `reward_batch_size` examples
of the reward split (`reward_split`, default the dataset's validation split where it has one,
else its evaluation split), drawn once with `reward_seed`.

Variants: None (the full search) and "smoke" (2 rounds, 2 candidates, 2 steps each, the tiny
smoke data and model of the family: seconds on CPU).
"""

from __future__ import annotations

import dataclasses
import math

from jaxmm.configs import common, multibench, trifeature
from jaxmm.data.inputs import ModalityData
from jaxmm.experiment import ExperimentConfig, MethodConfig
from jaxmm.methods.tuple_infonce import TupleInfoNCEConfig
from jaxmm.sample_optimization import SearchConfig

VARIANTS = (None, common.SMOKE)
DATASETS = ("trifeature", "mosi")
# MultiBench MOSI's training split (Liang et al. 2021): 1 284 clips.
_MOSI_TRAIN = 1284
_BATCH = 64


@dataclasses.dataclass(frozen=True)
class TupleSearchConfig(SearchConfig):
    """`SearchConfig` (candidates, stds, lrs, schedule) plus the search loop's own settings."""

    rounds: int = 100  # sample-optimisation rounds (one checkpoint each)
    steps_per_candidate: int = 100  # encoder steps each candidate trains per round (S)
    reward_batch_size: int = 256  # scenes in the fixed reward batch (chance level 1 / N)
    reward_split: str | None = None  # None: data.val_split if set, else data.eval_split
    reward_seed: int = 0  # which examples of the reward split form the reward batch

    def __post_init__(self):
        super().__post_init__()
        for name in ("rounds", "steps_per_candidate"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"TupleSearchConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.reward_batch_size < 2:
            raise ValueError(
                f"TupleSearchConfig.reward_batch_size must be >= 2 (retrieval among "
                f"scenes), got {self.reward_batch_size}"
            )


def _name(dataset: str) -> str:
    return f"tuple_infonce_{dataset}_search"


def _check(variant: str | None, method: str, dataset: str) -> None:
    common.check_variant("tuple_search", variant, VARIANTS)
    if method != "tuple_infonce":
        raise ValueError(f"tuple_search: the search is TupleInfoNCE's, got method {method!r}")
    if dataset not in DATASETS:
        raise ValueError(f"tuple_search: unknown dataset {dataset!r}; datasets: {list(DATASETS)}")


def get_search_config(
    variant: str | None = None, *, method: str = "tuple_infonce", dataset: str = "trifeature"
) -> TupleSearchConfig:
    """The search settings of `dataset` ("trifeature" or "mosi"); see the module docstring."""
    _check(variant, method, dataset)
    if dataset == "mosi":
        beta = multibench.get_config(
            variant, method="tuple_infonce", dataset="mosi"
        ).method.config.beta
        # The code's std / lr relative to its initial sigma (10/120, 3/120), at our initial beta.
        noise = {"beta_std": beta * 10.0 / 120.0, "beta_lr": beta * 3.0 / 120.0}
        steps = math.ceil(_MOSI_TRAIN / _BATCH)
    else:
        noise = {}  # SearchConfig's defaults: the code's sigma values, sigma / 255 input stds
        steps = math.ceil(trifeature.NUM_TRAIN_PAIRS / _BATCH)
    if variant == common.SMOKE:
        return TupleSearchConfig(
            num_candidates=2, rounds=2, steps_per_candidate=2, reward_batch_size=32, **noise
        )
    return TupleSearchConfig(rounds=100, steps_per_candidate=steps, **noise)


def get_config(
    variant: str | None = None, *, method: str = "tuple_infonce", dataset: str = "trifeature"
) -> ExperimentConfig:
    """The experiment of the search on `dataset`; `train.steps` = rounds x steps_per_candidate."""
    _check(variant, method, dataset)
    smoke = variant == common.SMOKE
    search = get_search_config(variant, method=method, dataset=dataset)
    name = _name(dataset) + ("_smoke" if smoke else "")
    if dataset == "trifeature":
        base = trifeature.get_config(variant, method="comm")
        # Unaugmented images: the noise of std beta is the positive's only augmentation (code).
        data = dataclasses.replace(
            base.data,
            num_views=1,
            modalities=tuple(ModalityData(m.name, m.kind, "none") for m in base.data.modalities),
        )
        method_cfg = MethodConfig("tuple_infonce", TupleInfoNCEConfig())
    else:
        base = multibench.get_config(variant, method="tuple_infonce", dataset="mosi")
        data, method_cfg = base.data, base.method
    train = dataclasses.replace(
        base.train,
        steps=search.rounds * search.steps_per_candidate,
        workdir=f"workdirs/{name}",
        ckpt_every=search.steps_per_candidate,
        log_every=search.steps_per_candidate,
    )
    return ExperimentConfig(
        name=name,
        data=data,
        model=base.model,
        method=method_cfg,
        optimizer=base.optimizer,
        train=train,
    )
