"""A deliberately small but real method: per-modality MLPs trained with two-view NT-Xent.

It exists to exercise the trainer end to end (tests, smoke runs), not to win benchmarks:

* each modality of `batch[view]["x"]` (tabular float32 (B, d_m)) goes through its own 2-layer MLP;
  the view's representation is the mean of the modality embeddings (what `embed` returns);
* a linear projection head maps it to the contrastive space, and the two augmented views are
  contrasted with SimCLR's NT-Xent (Chen et al. 2020, Eq. 1), negatives gathered across devices;
* optionally (`critic_weight > 0`) a bilinear critic `f(a, b) = h_a^T W h_b` between the first two
  modalities follows FactorCL's critic pattern (Liang et al. 2023, Sec. 3.2, Eq. 11): the inner
  step trains the critic alone to maximise the InfoNCE bound on stop-gradient features, and the
  main loss adds `critic_weight * NCE-CLUB(f)` — an upper bound on I(h_a; h_b) that the encoders
  minimise while the critic stays fixed. This is the path FactorCL needs from the trainer.

`toy_dataset` builds matching data: two noisy linear views of a shared Gaussian latent.
"""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmm import estimators
from jaxmm.methods.base import Batch, Metrics, Params


class _Tower(nnx.Module):
    def __init__(self, d_in: int, hidden: int, dim: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(d_in, hidden, rngs=rngs)
        self.norm = nnx.LayerNorm(hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.norm(self.fc1(x))))


class ToyModel(nnx.Module):
    """Per-modality MLP towers, a projection head and (optionally) a bilinear critic."""

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden: int,
        dim: int,
        proj_dim: int,
        critic: bool,
        *,
        rngs: nnx.Rngs,
    ):
        self.modalities = tuple(sorted(in_dims))
        self.towers = nnx.Dict(
            {m: _Tower(in_dims[m], hidden, dim, rngs=rngs) for m in self.modalities}
        )
        self.head = nnx.Linear(dim, proj_dim, rngs=rngs)
        if critic:
            self.critic = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)

    def modality_features(self, x: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return {m: self.towers[m](x[m]) for m in self.modalities}


def _bilinear_nce_club(wa: jax.Array, hb: jax.Array, axis_name: str | None) -> jax.Array:
    """NCE-CLUB (FactorCL Eq. 11) of the bilinear critic S_ij = (W h_a_i) . h_b_j, global batch.

    mean_i S_ii - mean_ij S_ij, and for a bilinear critic mean_ij S_ij = mean(W h_a) . mean(h_b):
    the B x B score matrix never needs to be formed, and the means over the global batch are
    `pmean`s of local means (equal shards), so the value is exact under data parallelism.
    """
    diag = jnp.mean(jnp.sum(wa * hb, axis=-1))
    mean_a, mean_b = jnp.mean(wa, axis=0), jnp.mean(hb, axis=0)
    if axis_name is not None:
        diag, mean_a, mean_b = jax.lax.pmean((diag, mean_a, mean_b), axis_name)
    return diag - mean_a @ mean_b


class ToyContrastive:
    """Two-view NT-Xent on tabular modalities; see the module docstring.

    Args:
      hidden: tower hidden width.
      dim: representation size (output of `embed`).
      proj_dim: projection-head size (contrastive space).
      temperature: NT-Xent temperature.
      critic_weight: weight of the NCE-CLUB term; > 0 adds the critic and the inner objective
        (needs at least two modalities).

    Example:
      >>> method = ToyContrastive(hidden=32, dim=16)
      >>> params = method.init(jax.random.key(0), batch)
      >>> loss, metrics = method.loss(params, batch, jax.random.key(1))
    """

    def __init__(
        self,
        *,
        hidden: int = 32,
        dim: int = 16,
        proj_dim: int = 16,
        temperature: float = 0.2,
        critic_weight: float = 0.0,
    ):
        if critic_weight < 0:
            raise ValueError(f"critic_weight must be >= 0, got {critic_weight}")
        self.hidden, self.dim, self.proj_dim = hidden, dim, proj_dim
        self.temperature = temperature
        self.critic_weight = critic_weight
        self._graphdef = None
        if critic_weight > 0:
            # Only a method with a critic exposes the optional inner objective to the trainer.
            self.inner_loss = self._inner_loss
            self.inner_param_filter = self._inner_param_filter

    def _model(self, params: Params) -> ToyModel:
        if self._graphdef is None:
            raise ValueError("ToyContrastive: call init() before loss()/embed()")
        return nnx.merge(self._graphdef, params)

    def init(self, rng: jax.Array, example_batch: Batch) -> Params:
        x = example_batch["view1"]["x"]
        bad = {m: v.shape for m, v in x.items() if len(v.shape) != 2}
        if bad:
            raise ValueError(f"ToyContrastive needs tabular (B, d) modalities, got shapes {bad}")
        if self.critic_weight > 0 and len(x) < 2:
            raise ValueError(f"critic_weight > 0 needs two modalities, got {sorted(x)}")
        model = ToyModel(
            {m: v.shape[1] for m, v in x.items()},
            self.hidden,
            self.dim,
            self.proj_dim,
            critic=self.critic_weight > 0,
            rngs=nnx.Rngs(params=rng),
        )
        self._graphdef, params = nnx.split(model, nnx.Param)
        return params

    def embed(self, params: Params, batch: Batch) -> jax.Array:
        feats = self._model(params).modality_features(batch["view1"]["x"])
        return jnp.mean(jnp.stack(list(feats.values())), axis=0)

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        del rng  # deterministic forward pass; augmentations come from the data pipeline
        model = self._model(params)
        f1 = model.modality_features(batch["view1"]["x"])
        f2 = model.modality_features(batch["view2"]["x"])
        z1 = model.head(jnp.mean(jnp.stack(list(f1.values())), axis=0))
        z2 = model.head(jnp.mean(jnp.stack(list(f2.values())), axis=0))
        nce = estimators.ntxent_loss(z1, z2, temperature=self.temperature, axis_name=axis_name)
        metrics = {"ntxent": nce}
        loss = nce
        if self.critic_weight > 0:
            a, b = model.modalities[:2]
            club = _bilinear_nce_club(model.critic(f1[a]), f1[b], axis_name)
            loss = loss + self.critic_weight * club
            metrics["nce_club"] = club
        return loss, metrics

    def _inner_loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        del rng
        model = self._model(params)
        feats = model.modality_features(batch["view1"]["x"])
        a, b = model.modalities[:2]
        # Stop-gradient: the critic learns the current encoders' joint, it does not reshape them.
        h_a, h_b = jax.lax.stop_gradient(feats[a]), jax.lax.stop_gradient(feats[b])
        # InfoNCE with critic scores h_a^T W h_b over the global batch: loss = log B - I_NCE.
        loss = estimators.infonce_loss(
            model.critic(h_a), h_b, temperature=1.0, normalize=False, axis_name=axis_name
        )
        return loss, {}

    @staticmethod
    def _inner_param_filter(path: tuple[str, ...]) -> bool:
        return path[:1] == ("critic",)


def toy_dataset(
    num_examples: int,
    *,
    dims: dict[str, int] | None = None,
    latent_dim: int = 4,
    view_noise: float = 0.3,
    seed: int = 0,
) -> grain.MapDataset:
    """An in-memory grain dataset of two-view tabular records in the jaxmm batch contract.

    A latent z ~ N(0, I) is mapped linearly to each modality (plus modality noise); the two views
    of an example add independent noise of scale `view_noise` (the "augmentation"); the label is
    the sign of z_0. Batch it with `.batch(n)`: records are nested dicts of numpy arrays.

    Args:
      num_examples: number of records.
      dims: modality name -> feature size; default {"a": 6, "b": 5}.
      latent_dim: size of the shared latent.
      view_noise: standard deviation of the per-view noise.
      seed: NumPy seed for the latent, the maps and the noise.

    Returns:
      A `grain.MapDataset` of `num_examples` records.
    """
    dims = {"a": 6, "b": 5} if dims is None else dims
    rs = np.random.default_rng(seed)
    z = rs.normal(size=(num_examples, latent_dim)).astype(np.float32)
    base = {
        m: z @ rs.normal(size=(latent_dim, d)).astype(np.float32)
        + 0.1 * rs.normal(size=(num_examples, d)).astype(np.float32)
        for m, d in dims.items()
    }
    views = [
        {m: (x + view_noise * rs.normal(size=x.shape)).astype(np.float32) for m, x in base.items()}
        for _ in range(2)
    ]
    labels = (z[:, 0] > 0).astype(np.int32)
    records = [
        {
            "view1": {"x": {m: views[0][m][i] for m in dims}, "valid": {}},
            "view2": {"x": {m: views[1][m][i] for m in dims}, "valid": {}},
            "labels": {"sign": labels[i]},
        }
        for i in range(num_examples)
    ]
    return grain.MapDataset.source(records)
