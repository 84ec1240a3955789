"""TupleInfoNCE (Liu et al., ICCV 2021, arXiv 2107.02575): contrast whole multimodal tuples.

A scene is a tuple t = (v^1, ..., v^K); the fusion model maps it to one L2-normalised embedding
z(t) (the fusion [CLS] output; the public code uses no projection head). The loss is InfoNCE
with candidates drawn from the negative distribution

    q_alpha = alpha_0 p(t) + sum_k alpha_k p(v^k) p(v̄^k),        (TupleInfoNCE, the q_alpha loss)

  L = - mean_i log f(t1_i, t2_i) / [sum_j f(t1_i, t2_j) + sum_k alpha_k sum_j f(t1_i, d^k_j)],
  f(a, b) = exp(cos(z(a), z(b)) / tau), tau = 0.07,

as the public code implements it:

* anchor t1_i = the scene's ``view1`` tuple; positive t2_i = the same tuple (``positive_view``)
  with Gaussian noise of std ``beta * noise_scales[m]`` added to every float modality m, drawn
  in-graph from the rng (the code's single noise strength ``sigma``), so beta may be traced;
* k-disturbed negatives d^k_j: the positive tuple of scene j with modality k taken from scene
  pi_k(j), pi_k a random permutation of the local batch (a derangement by default: a fixed point
  would put a copy of the positive among the negatives), the other modalities kept;
* alpha_k is a multiplicity of block k among the negatives, i.e. ``+ log alpha_k`` on its logits
  (`jaxmm.estimators.tuple_infonce_loss`); alpha_0 = 1 (only the ratios matter); alpha_k = 0
  removes block k, and alpha = 0 everywhere is plain tuple InfoNCE (no disturbed negatives);
* the disturbed tuples, and by default the positive (``stop_gradient_positive``, as the public
  code's key model), are encoded by ``stop_gradient`` of the online model: only the anchor
  carries gradient. The public code meant a momentum key encoder, but its key update is a copy
  (m = 0) until a loop variable overwrites the coefficient and the key encoder diverges (method
  notes); a stop-gradient copy is the working reading of it;
* the anchor's own k-disturbed tuple (scene i with only modality k swapped) is among its
  negatives, as in the code; the metrics ``own_neg_logit_<k>`` / ``own_neg_beats_pos_<k>`` report
  it separately (the hardest negative, the one that shows whether modality k is used).

Departures from the public code (docs/results_tuple_infonce.md): the disturbed tuples are built
from the noisy positive (the code: from the clean anchor inputs) with a derangement (the code:
`randperm`, fixed points possible); the positive noise is i.i.d. per element on the modalities
``noise_scales`` selects by default (the code: one (H, W) map per epoch shared over the batch and
the channels, RGB only; ``noise_law="shared"`` draws such a map once per step); only the tuple
loss is trained (the code mixes in two modality-dropout modes, noisy-RGB-only vs (0, depth, new)
and noisy vs clean RGB).

Encoders are per-example maps (no batch statistics), so disturbing modality k of the *inputs*
and disturbing the positive pass's *tokens* of modality k give the same key embeddings; the
method does the latter (one encoder pass for anchor + positive, K extra fusion passes only).
`key_inputs` + `disturb_modalities` rebuild the input-level tuples for checks.

The reward of the sample optimisation (`jaxmm.sample_optimization`) is `retrieval_reward`:
unsupervised cross-modal retrieval accuracy on a validation batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm import estimators
from jaxmm.config import Serializable
from jaxmm.methods.base import Batch, Metrics, Params
from jaxmm.methods.common import (
    NNXMethod,
    check_temperature,
    concat_views,
    dropout_rngs,
    get_view,
)
from jaxmm.methods.registry import register
from jaxmm.models import ModelConfig, Tokens

# The official unit of beta: the public code (`search_para.py`, `train_one_epoch`) adds
# ``randn * sigma / 255`` to image tensors that are *already normalised* (mean/std), so one unit of
# its sigma is 1/255 of a normalised-input standard deviation, not one 0-255 pixel level
# (which would be 1 / (255 * 0.226) ~ 4.4x more).
PIXEL_LEVEL = 1.0 / 255.0
# The public code's starting noise strength sigma = 120, in those units (~0.47 input stds).
# Tabular / time-series modalities standardised to unit variance read beta in the same unit; use
# `noise_scales` to weaken it per modality (the code adds it to RGB only).
DEFAULT_BETA = 120.0 * PIXEL_LEVEL


class TupleHParams(NamedTuple):
    """The sample-optimised hyper-parameters (a pytree: vmap over candidates).

    Attributes:
      log_alpha: (K,) log multiplicities log alpha_k of the k-disturbed negative blocks.
      beta: () noise std of the positive augmentation (input units; sign irrelevant).
    """

    log_alpha: jax.Array
    beta: jax.Array


@dataclasses.dataclass(frozen=True)
class TupleInfoNCEConfig(Serializable):
    """TupleInfoNCE's loss and its default (non-searched) hyper-parameters."""

    temperature: float = 0.07  # tau of f(a, b) = exp(cos / tau) (paper and code: 0.07)
    # alpha_k per modality, model order; None = all 1; 0 removes block k (alpha = 0 everywhere
    # is plain tuple InfoNCE: only the other scenes' positives as negatives)
    alpha: tuple[float, ...] | None = None
    beta: float = DEFAULT_BETA  # positive noise std (code: sigma = 120 on 0-255 pixels)
    noise_scales: tuple[float, ...] | None = None  # per-modality multiplier of beta; None = all 1
    positive_view: Literal["view1", "view2"] = "view1"  # tuple the positive noise is added to
    disturb: Literal["derangement", "permutation"] = "derangement"  # law of pi_k
    use_head: bool = False  # contrast head(z) instead of z (the public code has no head)
    embed_view: str = "view1"  # batch view read by `embed` / `retrieval_reward`
    # The public code encodes the positive with its key model, without gradient (default: on the
    # E1 demo, alpha = (1, 16), it keeps the strong / weak / shared probes 10.7 / 9.9 / 4.5 points
    # higher and doubles the weak modality's swap sensitivity, docs/results_tuple_infonce.md);
    # False takes the gradient through the positive too. See `tuple_embeddings`.
    stop_gradient_positive: bool = True
    # Law of the positive noise: "iid" (per element) or "shared" (the public code's: one noise map
    # shared over the batch, and over the channels of NHWC images; the code draws it once per
    # epoch, here once per step).
    noise_law: Literal["iid", "shared"] = "iid"

    def __post_init__(self):
        check_temperature("TupleInfoNCEConfig", self.temperature)
        if self.noise_law not in ("iid", "shared"):
            raise ValueError(
                f"TupleInfoNCEConfig.noise_law must be 'iid' or 'shared', got {self.noise_law!r}"
            )
        if self.alpha is not None:
            a = tuple(float(v) for v in self.alpha)
            if any(not math.isfinite(v) or v < 0 for v in a):
                raise ValueError(f"TupleInfoNCEConfig.alpha must be finite and >= 0, got {a}")
            object.__setattr__(self, "alpha", a)
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"TupleInfoNCEConfig.beta must be finite and >= 0, got {self.beta}")
        if self.noise_scales is not None:
            s = tuple(float(v) for v in self.noise_scales)
            if any(not math.isfinite(v) or v < 0 for v in s):
                raise ValueError(
                    f"TupleInfoNCEConfig.noise_scales must be finite and >= 0, got {s}"
                )
            object.__setattr__(self, "noise_scales", s)


# ------------------------------------------------------------------------------------------------
# Tuple disturbing.


def random_derangement(rng: jax.Array, n: int) -> jax.Array:
    """A uniformly random n-cycle: a permutation pi with pi(i) != i for every i (n >= 2).

    Visiting the rows in a random order s and sending each to the next one, pi(s_i) = s_{i+1},
    gives one cycle through all n rows, hence no fixed point.

    Example:
      >>> pi = random_derangement(jax.random.key(0), 8)  # (8,) int32, pi[i] != i
    """
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2 rows, got {n}")
    order = jax.random.permutation(rng, n)
    return jnp.zeros((n,), jnp.int32).at[order].set(jnp.roll(order, -1).astype(jnp.int32))


def disturbance_permutations(
    rng: jax.Array, k: int, n: int, *, derangement: bool = True
) -> jax.Array:
    """(k, n) int32: row m is the permutation pi_m that modality m is shuffled with."""
    keys = jax.random.split(rng, k)
    if derangement:
        return jax.vmap(lambda r: random_derangement(r, n))(keys)
    return jax.vmap(lambda r: jax.random.permutation(r, n).astype(jnp.int32))(keys)


def disturb_modalities(
    parts: Mapping[str, Any], names: Sequence[str], perms: jax.Array
) -> dict[str, Any]:
    """The K k-disturbed copies of a batch of tuples (TupleInfoNCE's p(v^k) p(v̄^k) samples).

    Block k (k indexes `names`) keeps every modality but ``names[k]``, whose rows are replaced by
    rows ``perms[k]``: block k row j = scene j with modality k of scene ``perms[k, j]``.

    Args:
      parts: modality name -> pytree of (B, ...) arrays (inputs, (input, valid) pairs or tokens).
      names: the K modality names, block order.
      perms: (K, B) int permutations.

    Returns:
      modality name -> the same pytree with leaves (K, B, ...).
    """
    if perms.ndim != 2 or perms.shape[0] != len(names):
        raise ValueError(f"perms must have shape ({len(names)}, B), got {perms.shape}")
    out = {}
    for m, name in enumerate(names):
        out[name] = jax.tree.map(
            lambda a, m=m: jnp.stack([a[perms[k]] if k == m else a for k in range(len(names))]),
            parts[name],
        )
    return out


# ------------------------------------------------------------------------------------------------
# Retrieval.


def retrieval_accuracy(queries: jax.Array, keys: jax.Array) -> jax.Array:
    """Mean top-1 retrieval accuracy of K query/key sets by cosine similarity.

    ``acc = mean_k mean_i [argmax_j cos(queries[k, i], keys[k, j]) == i]`` (ties go to the lowest
    index, as `argmax`). Chance level is 1 / N.

    Args:
      queries: (K, N, D) — for TupleInfoNCE's reward, z(modality k alone) of scene i.
      keys: (K, N, D) — z(the rest of the tuple without modality k) of scene j.

    Returns:
      Scalar in [0, 1].

    Example:
      >>> retrieval_accuracy(z[None], z[None])  # 1.0 for distinct rows
    """
    if queries.ndim != 3 or queries.shape != keys.shape:
        raise ValueError(
            f"queries and keys must both be (K, N, D), got {queries.shape} and {keys.shape}"
        )
    sims = jnp.einsum(
        "kid,kjd->kij", estimators.l2_normalize(queries), estimators.l2_normalize(keys)
    )
    hits = jnp.argmax(sims, axis=-1) == jnp.arange(queries.shape[1])
    return jnp.mean(hits.astype(jnp.float32))


def retrieval_masks(k: int) -> np.ndarray:
    """(2K, K) bool modality masks: rows 0..K-1 keep only modality k, rows K..2K-1 drop it."""
    eye = np.eye(k, dtype=bool)
    return np.concatenate([eye, ~eye])


# ------------------------------------------------------------------------------------------------
# The method.


@register
class TupleInfoNCE(NNXMethod):
    """TupleInfoNCE on the fused tuple embedding; see the module docstring.

    Batch: ``view1`` (anchors; also the positive base with ``positive_view="view1"``) and, with
    ``positive_view="view2"``, ``view2``. Hyper-parameters: `loss(..., hparams=TupleHParams)`
    (traced, e.g. vmapped over sample-optimisation candidates) or the config's values. They are
    an argument rather than a batch entry because the trainer shards every batch leaf over the
    data axis.

    Args:
      model_config: the backbone (>= 2 modalities).
      config: `TupleInfoNCEConfig`.

    Example:
      >>> method = TupleInfoNCE(model_cfg, TupleInfoNCEConfig(beta=0.5))
      >>> params = method.init(jax.random.key(0), batch)
      >>> loss, metrics = method.loss(params, batch, jax.random.key(1))
      >>> loss, _ = method.loss(params, batch, key, hparams=TupleHParams(jnp.zeros(2), 0.3))
    """

    name, config_class = "tuple_infonce", TupleInfoNCEConfig
    own_data_views = 1  # the positive is the anchor with noise (beta), not a second view

    @classmethod
    def own_data_config(cls, width: int) -> TupleInfoNCEConfig:
        # Positive noise of one standard deviation of the standardised inputs.
        return TupleInfoNCEConfig(beta=1.0)

    min_modalities = 2

    def __init__(
        self,
        model_config: ModelConfig | Mapping[str, Any],
        config: TupleInfoNCEConfig | None = None,
    ):
        super().__init__(model_config)
        self.config = config = TupleInfoNCEConfig() if config is None else config
        k = len(self.modality_names)
        for field in ("alpha", "noise_scales"):
            value = getattr(config, field)
            if value is not None and len(value) != k:
                raise ValueError(
                    f"TupleInfoNCEConfig.{field} needs {k} values (modalities "
                    f"{list(self.modality_names)}), got {len(value)}"
                )
        alpha = np.ones(k) if config.alpha is None else np.asarray(config.alpha)
        # alpha_k = 0 -> log alpha_k = -inf: block k gets no weight (`tuple_infonce_loss`).
        self.default_log_alpha = np.where(
            alpha > 0, np.log(np.maximum(alpha, 1e-300)), -np.inf
        ).astype(np.float32)
        self.noise_scales = (
            np.ones(k) if config.noise_scales is None else np.asarray(config.noise_scales)
        ).astype(np.float32)

    # -- hyper-parameters ------------------------------------------------------------------------

    def default_hparams(self) -> TupleHParams:
        """The config's (log alpha, beta) as arrays: the search's starting mean."""
        return TupleHParams(
            jnp.asarray(self.default_log_alpha), jnp.asarray(self.config.beta, jnp.float32)
        )

    def _hparams(self, hparams: TupleHParams | None) -> TupleHParams:
        if hparams is None:
            return self.default_hparams()
        k = len(self.modality_names)
        log_alpha, beta = jnp.asarray(hparams.log_alpha), jnp.asarray(hparams.beta)
        if log_alpha.shape != (k,) or beta.shape != ():
            raise ValueError(
                f"hparams must have log_alpha ({k},) and scalar beta, got "
                f"{log_alpha.shape} and {beta.shape}"
            )
        return TupleHParams(log_alpha, beta)

    # -- tuples ----------------------------------------------------------------------------------

    def _view(self, batch: Batch, key: str) -> tuple[dict, dict]:
        if "x" in batch:
            return batch["x"], batch.get("valid") or {}
        return get_view(batch, key)

    @staticmethod
    def _split(rng: jax.Array) -> tuple[jax.Array, ...]:
        """(noise, permutations, online dropout, key dropout) streams, shared by entry points."""
        return tuple(jax.random.split(rng, 4))

    def _noise_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one positive-noise draw (broadcast to `shape`) under ``config.noise_law``."""
        if self.config.noise_law == "iid":
            return shape
        if len(shape) == 4:  # NHWC image: one (H, W) map for every example and channel
            return (1, shape[1], shape[2], 1)
        return (1,) + tuple(shape[1:])

    def key_inputs(
        self, batch: Batch, rng: jax.Array, hparams: TupleHParams | None = None
    ) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
        """The positive tuples' inputs and the disturbance permutations used by `loss` for `rng`.

        Returns:
          ``(x_pos, valid_pos, perms)``: the noisy positive inputs {name: (B, ...)}, their padding
          masks and the (K, B) permutations pi_k. ``disturb_modalities`` of ``(x_pos, valid)``
          gives the input-level k-disturbed tuples.
        """
        h = self._hparams(hparams)
        r_noise, r_perm, _, _ = self._split(rng)
        x, valid = get_view(batch, self.config.positive_view)
        noise_keys = jax.random.split(r_noise, len(self.modality_names))
        x_pos = {}
        for m, name in enumerate(self.modality_names):
            v = x[name]
            if jnp.issubdtype(v.dtype, jnp.floating):
                std = (h.beta * self.noise_scales[m]).astype(v.dtype)
                v = v + std * jax.random.normal(noise_keys[m], self._noise_shape(v.shape), v.dtype)
            # Integer token ids have no additive noise; their augmentation belongs to the pipeline.
            x_pos[name] = v
        b = next(iter(x.values())).shape[0]
        perms = disturbance_permutations(
            r_perm, len(self.modality_names), b, derangement=self.config.disturb == "derangement"
        )
        return x_pos, valid, perms

    def tuple_embeddings(
        self, params: Params, batch: Batch, rng: jax.Array, hparams: TupleHParams | None = None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """L2-normalised (anchors (B, D), positives (B, D), disturbed negatives (K, B, D)).

        The negatives carry no gradient (stop-gradient key encoder).
        """
        _, _, r_online, r_key = self._split(rng)
        anchor = get_view(batch, "view1")
        x_pos, valid_pos, perms = self.key_inputs(batch, rng, hparams)
        b = next(iter(anchor[0].values())).shape[0]
        model = self.module(params).model
        tokens = model.encode(
            *concat_views(anchor, (x_pos, valid_pos)),
            deterministic=False,
            rngs=dropout_rngs(r_online),
        )
        z = model.fuse(tokens, deterministic=False, rngs=dropout_rngs(r_online))

        # Key branch: the positives' tokens with modality k's rows permuted, fused by a
        # stop-gradient copy of the online model (equal to encoding the disturbed inputs: the
        # encoders are per-example).
        key_model = self.module(jax.lax.stop_gradient(params)).model
        pos_tok = {
            n: jax.lax.stop_gradient((t[b:], m[b:]))
            for n, t, m in zip(self.modality_names, tokens.tokens, tokens.masks, strict=True)
        }
        dist = disturb_modalities(pos_tok, self.modality_names, perms)
        k = len(self.modality_names)
        flat = lambda a: a.reshape((k * b,) + a.shape[2:])
        key_tokens = Tokens(
            tuple(flat(dist[n][0]) for n in self.modality_names),
            tuple(flat(dist[n][1]) for n in self.modality_names),
        )
        z_neg = key_model.fuse(key_tokens, deterministic=False, rngs=dropout_rngs(r_key))
        if self.config.use_head:
            z, z_neg = model.head(z), key_model.head(z_neg)
        z, z_neg = estimators.l2_normalize(z), estimators.l2_normalize(z_neg)
        z_pos = z[b:]
        if self.config.stop_gradient_positive:
            # The key model is a stop-gradient copy of the online one (same parameters), so the
            # stopped online output is the key model's positive (its dropout draw is the online
            # pass's; the public code draws the key model's own).
            z_pos = jax.lax.stop_gradient(z_pos)
        return z[:b], z_pos, z_neg.reshape(k, b, -1)

    # -- the contract ----------------------------------------------------------------------------

    def loss(
        self,
        params: Params,
        batch: Batch,
        rng: jax.Array,
        *,
        axis_name: str | None = None,
        hparams: TupleHParams | None = None,
    ) -> tuple[jax.Array, Metrics]:
        """TupleInfoNCE loss (global-batch value with `axis_name`); see the module docstring."""
        h = self._hparams(hparams)
        za, zp, zn = self.tuple_embeddings(params, batch, rng, h)
        tau = self.config.temperature
        loss = estimators.tuple_infonce_loss(
            za,
            zp,
            zn,
            negative_log_weights=h.log_alpha,
            temperature=tau,
            normalize=False,
            axis_name=axis_name,
        )
        b = za.shape[0]
        sims = za @ zp.T
        off = ~np.eye(b, dtype=bool)
        metrics = {
            "tuple_infonce": loss,
            "pos_sim": jnp.mean(jnp.diagonal(sims)),
            # Local-batch logits cos / tau, before log alpha_k offsets (comparable across alpha).
            "neg_logit_scenes": jnp.sum(jnp.where(off, sims, 0.0)) / (tau * max(b * (b - 1), 1)),
            "beta": jnp.abs(h.beta),
        }
        neg_sims = jnp.einsum("id,kjd->kij", za, zn)
        neg = jnp.mean(neg_sims, axis=(1, 2)) / tau
        # The anchor's own k-disturbed tuple (scene i with only modality k swapped): the hardest
        # negative and the informative one. Its logit, and how often it beats the positive.
        own = jnp.diagonal(neg_sims, axis1=1, axis2=2)  # (K, B)
        own_beats = jnp.mean((own >= jnp.diagonal(sims)[None]).astype(jnp.float32), axis=1)
        for m, name in enumerate(self.modality_names):
            metrics[f"neg_logit_{name}"] = neg[m]
            metrics[f"own_neg_logit_{name}"] = jnp.mean(own[m]) / tau
            metrics[f"own_neg_beats_pos_{name}"] = own_beats[m]
            metrics[f"alpha_{name}"] = jnp.exp(h.log_alpha[m])
        return loss, metrics

    def embed(self, params: Params, batch: Batch) -> jax.Array:
        """Fused embedding of the full clean input, before any head: (B, D)."""
        x, valid = self._view(batch, self.config.embed_view)
        return self.module(params).model(x, valid, deterministic=True)

    def retrieval_embeddings(self, params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
        """(queries, keys), each (K, N, D): z(modality k alone) and z(tuple without modality k).

        One encoder pass; the 2K masked fusions are one batched call (a masked modality is removed
        from attention exactly, `MultimodalModel.fuse`).
        """
        x, valid = self._view(batch, self.config.embed_view)
        model = self.module(params).model
        tokens = model.encode(x, valid, deterministic=True)
        k = len(self.modality_names)
        masks = retrieval_masks(k)
        n = tokens.tokens[0].shape[0]
        tile = lambda a: jnp.tile(a, (2 * k,) + (1,) * (a.ndim - 1))
        tiled = Tokens(tuple(map(tile, tokens.tokens)), tuple(map(tile, tokens.masks)))
        z = model.fuse(tiled, jnp.repeat(jnp.asarray(masks), n, axis=0), deterministic=True)
        z = z.reshape(2 * k, n, -1)
        return z[:k], z[k:]

    def noisy_retrieval_accuracy(
        self, params: Params, val_batch: Batch, noise_std: jax.Array, rng: jax.Array
    ) -> jax.Array:
        """Retrieval of the rest of the tuple from one *noisy* augmented modality alone.

        The public code's beta-round evaluation (`search_para.py`, `validate(sigma, ...)`): RGB
        plus noise of strength sigma, the other modalities zeroed, must retrieve (0, depth, new)
        of its own scene among the batch. Here, for every modality k the positive noise reaches
        (``noise_scales[k] > 0``), z(v^k + noise_std * noise_scales[k] * eps alone) must retrieve
        z(v̄^k, clean) by cosine (a masked modality is removed from the fusion); the accuracy is
        averaged over those k. Noise i.i.d. per element (the code: one map shared over the batch
        and the channels).

        Returns:
          Scalar in [0, 1].
        """
        x, valid = self._view(val_batch, self.config.embed_view)
        model = self.module(params).model
        k = len(self.modality_names)
        keys = jax.random.split(rng, k)
        noisy = {}
        for m, name in enumerate(self.modality_names):
            v = x[name]
            if jnp.issubdtype(v.dtype, jnp.floating) and self.noise_scales[m] > 0:
                std = (jnp.abs(noise_std) * self.noise_scales[m]).astype(v.dtype)
                v = v + std * jax.random.normal(keys[m], v.shape, v.dtype)
            noisy[name] = v
        clean_tok = model.encode(x, valid, deterministic=True)
        noisy_tok = model.encode(noisy, valid, deterministic=True)
        n = clean_tok.tokens[0].shape[0]
        eye = np.eye(k, dtype=bool)
        aug = [m for m in range(k) if self.noise_scales[m] > 0] or list(range(k))
        q = [
            model.fuse(noisy_tok, jnp.broadcast_to(eye[m], (n, k)), deterministic=True) for m in aug
        ]
        kk = [
            model.fuse(clean_tok, jnp.broadcast_to(~eye[m], (n, k)), deterministic=True)
            for m in aug
        ]
        return retrieval_accuracy(jnp.stack(q), jnp.stack(kk))

    def retrieval_reward(self, params: Params, val_batch: Batch) -> jax.Array:
        """Unsupervised reward of the sample optimisation: cross-modal retrieval accuracy.

        For each scene i and modality k, z(v^k_i alone) must retrieve z(v̄^k_i) (the rest of its
        own tuple) among all N scenes by cosine similarity; the accuracy is averaged over i and k
        (the public code sums over k; the mean keeps the reward in [0, 1] and the normalised
        REINFORCE rewards are identical). No labels are read.

        Args:
          params: method parameters.
          val_batch: a validation batch (``cfg.embed_view`` is read, clean inputs) or a bare
            ``{"x", "valid"}`` view.

        Returns:
          Scalar in [0, 1]; chance level 1 / N.
        """
        return retrieval_accuracy(*self.retrieval_embeddings(params, val_batch))
