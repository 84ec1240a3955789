"""Every registered method on a user's own arrays: `<method>_arrays` (README "Your own data").

    python -m launch.train --config comm_arrays --set data.path=FILE.npz --workdir W
    python -m launch.probe --workdir W

The data come from one .npz file (`data.path`; the convention is in `jaxmm.data.arrays`), which
`jaxmm.own_data.resolve_data` reads once: it infers the modalities and labels, standardises
each modality with training statistics and stores them with the run. The config is
`jaxmm.own_data.default_config(method)`, whose docstring gives the template encoders per kind
of array (tabular MLP, sequence Transformer, image AlexNet, all of width W =
`model.fusion.width`, 128), the views (Gaussian noise sigma 1.0 on standardised tabular
features: `data.tabular_sigma`; sigma 0.5 + 0-80% step drop on sequences: `data.sequence_sigma`;
a random resized crop on images: `data.image_augment`) and the schedule (AdamW 1e-3, cosine,
batch 256, 300 steps). Measured on scikit-learn's digits as two 32-feature views:
docs/results_own_data.md.

Variant "smoke": W = 8, 4 steps at batch 8 (seconds on CPU).
"""

from __future__ import annotations

from jaxmm import own_data
from jaxmm.configs import common
from jaxmm.experiment import ExperimentConfig

VARIANTS = (None, common.SMOKE)
METHODS = own_data.METHODS


def get_config(variant: str | None = None, *, method_name: str = "comm") -> ExperimentConfig:
    """`method_name` on the .npz of `data.path` (set it, then `jaxmm.own_data.resolve_data`)."""
    common.check_variant("arrays", variant, VARIANTS)
    return own_data.default_config(method_name, smoke=variant == common.SMOKE)
