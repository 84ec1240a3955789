"""jaxmm: multimodal contrastive learning beyond redundancy, in JAX/Flax.

Modules (one idea each): `estimators` (MI bounds and contrastive losses), `critics`, `models/`,
`data/`, `methods/`, `train`, `checkpoint`, `probe/`; `experiments/` and `benchmarks/` hold the
logic of the launch scripts.
"""

__version__ = "0.1.0"
