"""Contrastive losses on embeddings (InfoNCE, CLIP, NT-Xent, SupCon, TupleInfoNCE), gathering
negatives across devices with `axis_name`. Conventions: `jaxmm.estimators`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmm.estimators.bounds import l2_normalize
from jaxmm.estimators.checks import (
    _check_batch,
    _check_float,
    _check_pair,
    _check_scores,
    _check_temperature,
)

# --------------------------------------------------------------------------------------------------
# Contrastive losses on embeddings
# --------------------------------------------------------------------------------------------------


def _cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-row softmax cross-entropy with integer targets, shape ``(rows,)``."""
    picked = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - picked


def infonce_from_scores_loss(scores: jax.Array) -> jax.Array:
    """InfoNCE loss on a score matrix: ``mean_i [logsumexp_j S_ij - S_ii]`` (= log B - I_NCE).

    Args:
      scores: ``(B, B)`` float logits, positives on the diagonal.

    Returns:
      Scalar loss to minimise.

    References:
      van den Oord et al. 2018, Eq. 4.

    Example:
      >>> infonce_from_scores_loss(critic(x, y))
    """
    scores = _check_scores(scores)
    return jnp.mean(_cross_entropy(scores, jnp.arange(scores.shape[0])))


def _gather(x: jax.Array, axis_name, axis: int = 0) -> tuple[jax.Array, jax.Array | int]:
    """All-gather ``x`` along ``axis`` and return it with this device's row offset."""
    if axis_name is None:
        return x, 0
    gathered = jax.lax.all_gather(x, axis_name, axis=axis, tiled=True)
    return gathered, jax.lax.axis_index(axis_name) * x.shape[axis]


def _global_mean(local_mean: jax.Array, axis_name) -> jax.Array:
    # Equal local batch sizes (required by tiled all_gather) make the mean of means the global mean.
    return local_mean if axis_name is None else jax.lax.pmean(local_mean, axis_name)


def infonce_loss(
    za: jax.Array,
    zb: jax.Array,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """One-directional InfoNCE: anchors ``za_i``, candidates all ``zb_j``, positive ``zb_i``.

    ``loss = mean_i [logsumexp_j (za_i . zb_j / T) - za_i . zb_i / T]``.

    Args:
      za: ``(B, D)`` anchor embeddings.
      zb: ``(B, D)`` candidate embeddings, ``zb_i`` paired with ``za_i``.
      temperature: ``T > 0`` (may be a traced scalar).
      normalize: L2-normalise both sides first (cosine similarities).
      axis_name: data axis inside ``jax.shard_map``; candidates are then the global batch and the
        returned value is the global-batch loss, identical on every device (see module docstring).

    Returns:
      Scalar loss.

    References:
      van den Oord et al. 2018, Eq. 4; Poole et al. 2019, InfoNCE bound.

    Example:
      >>> infonce_loss(za, zb, temperature=0.1)
    """
    za, zb = _check_pair("za", za, "zb", zb)
    _check_batch("infonce_loss", za.shape[0], axis_name)
    _check_temperature(temperature)
    if normalize:
        za, zb = l2_normalize(za), l2_normalize(zb)
    zb_all, offset = _gather(zb, axis_name)
    logits = za @ zb_all.T / temperature
    targets = offset + jnp.arange(za.shape[0])
    return _global_mean(jnp.mean(_cross_entropy(logits, targets)), axis_name)


def clip_loss(
    za: jax.Array,
    zb: jax.Array,
    *,
    temperature: float | jax.Array | None = None,
    logit_scale: jax.Array | None = None,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """Symmetric CLIP loss: mean of the a→b and b→a InfoNCE cross-entropies.

    Logits are ``s * za_i . zb_j`` with ``s = 1 / temperature`` or ``s = exp(logit_scale)``
    (CLIP learns ``logit_scale``, the log inverse temperature, and clips ``s`` at 100 — clipping is
    left to the caller).

    Args:
      za: ``(B, D)`` embeddings of modality a.
      zb: ``(B, D)`` embeddings of modality b, row-aligned with ``za``.
      temperature: fixed temperature; exactly one of ``temperature`` and ``logit_scale``.
      logit_scale: scalar (possibly traced, learnable) log inverse temperature.
      normalize: L2-normalise both sides first.
      axis_name: data axis inside ``jax.shard_map`` (global-batch value, see module docstring).

    Returns:
      Scalar loss ``(CE(rows) + CE(columns)) / 2`` of the global ``B x B`` logit matrix.

    References:
      Radford et al. 2021 (CLIP), Figure 3 pseudocode.

    Example:
      >>> clip_loss(za, zb, logit_scale=params["logit_scale"])
    """
    za, zb = _check_pair("za", za, "zb", zb)
    _check_batch("clip_loss", za.shape[0], axis_name)
    if (temperature is None) == (logit_scale is None):
        raise ValueError("clip_loss needs exactly one of temperature and logit_scale")
    if temperature is not None:
        _check_temperature(temperature)
        scale = 1.0 / temperature
    else:
        if jnp.ndim(logit_scale) != 0:
            raise ValueError(f"logit_scale must be a scalar, got shape {jnp.shape(logit_scale)}")
        scale = jnp.exp(logit_scale)
    if normalize:
        za, zb = l2_normalize(za), l2_normalize(zb)
    za_all, offset = _gather(za, axis_name)
    zb_all, _ = _gather(zb, axis_name)
    targets = offset + jnp.arange(za.shape[0])
    # The b->a cross-entropy of local rows equals the column cross-entropy of the global matrix.
    loss_a = jnp.mean(_cross_entropy(scale * (za @ zb_all.T), targets))
    loss_b = jnp.mean(_cross_entropy(scale * (zb @ za_all.T), targets))
    return _global_mean(0.5 * (loss_a + loss_b), axis_name)


def ntxent_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """SimCLR NT-Xent: 2N anchors, each with 1 positive (its other view) and 2N − 2 negatives.

    For anchor ``z1_i``: positive ``z2_i``, negatives every other embedding of both views except
    ``z1_i`` itself; symmetrically for ``z2_i``. Averaged over all ``2N`` anchors.

    Args:
      z1: ``(N, D)`` first-view embeddings.
      z2: ``(N, D)`` second-view embeddings.
      temperature: ``T > 0``.
      normalize: L2-normalise (SimCLR uses cosine similarity).
      axis_name: data axis inside ``jax.shard_map``; negatives are then both views of all devices
        (global batch), and the global-batch value is returned (see module docstring).

    Returns:
      Scalar loss.

    References:
      Chen et al. 2020 (SimCLR), Eq. 1 and Algorithm 1.

    Example:
      >>> ntxent_loss(z1, z2, temperature=0.5)
    """
    z1, z2 = _check_pair("z1", z1, "z2", z2)
    _check_batch("ntxent_loss", z1.shape[0], axis_name)
    _check_temperature(temperature)
    if normalize:
        z1, z2 = l2_normalize(z1), l2_normalize(z2)
    n = z1.shape[0]
    z1_all, offset = _gather(z1, axis_name)
    z2_all, _ = _gather(z2, axis_name)
    n_global = z1_all.shape[0]
    anchors = jnp.concatenate([z1, z2], axis=0)  # (2n, D)
    candidates = jnp.concatenate([z1_all, z2_all], axis=0)  # (2N, D)
    logits = anchors @ candidates.T / temperature
    local = offset + jnp.arange(n)
    self_idx = jnp.concatenate([local, n_global + local])
    pos_idx = jnp.concatenate([n_global + local, local])
    cols = jnp.arange(2 * n_global)
    logits = jnp.where(cols[None, :] == self_idx[:, None], -jnp.inf, logits)
    return _global_mean(jnp.mean(_cross_entropy(logits, pos_idx)), axis_name)


def supcon_loss(
    features: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """Supervised contrastive loss L_out: mean over positives *outside* the log.

    Every view of every sample is an anchor ``a``; ``A(a)`` = all other views in the batch,
    ``P(a)`` = those with the anchor's label. Per anchor
    ``l_a = -(T / T_base) / |P(a)| * sum_{p in P(a)} log softmax_{A(a)}(z_a . z_p / T)``.

    Anchors with no positive (a label seen once with ``V = 1``) have an undefined ``l_a``; they are
    **excluded**: the loss is the mean of ``l_a`` over anchors with ``|P(a)| >= 1`` (0 if none).
    Distributed, that count is global, so the value equals the single-device one.

    Args:
      features: ``(B, V, D)`` embeddings, ``V`` views per sample.
      labels: ``(B,)`` integer class labels.
      temperature: ``T > 0``.
      base_temperature: ``T_base`` of the reference code's ``T / T_base`` factor; ``None`` means
        ``T`` (factor 1, the paper's Eq. 2).
      normalize: L2-normalise the embeddings (the paper assumes unit vectors).
      axis_name: data axis inside ``jax.shard_map`` (global-batch value, see module docstring).

    Returns:
      Scalar loss.

    References:
      Khosla et al. 2020, "Supervised Contrastive Learning", Eq. 2 (L_out^sup).

    Example:
      >>> supcon_loss(jnp.stack([z1, z2], axis=1), labels)
    """
    features = jnp.asarray(features)
    labels = jnp.asarray(labels)
    if features.ndim != 3:
        raise ValueError(f"features must have shape (B, V, D), got shape {features.shape}")
    _check_float("features", features)
    if labels.shape != features.shape[:1]:
        raise ValueError(
            f"labels must have shape ({features.shape[0]},) to match features {features.shape}, "
            f"got {labels.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    _check_batch("supcon_loss", features.shape[0], axis_name)
    _check_temperature(temperature)
    scale = 1.0 if base_temperature is None else temperature / base_temperature
    if normalize:
        features = l2_normalize(features)
    b, v, d = features.shape
    feats_all, offset = _gather(features, axis_name)
    labels_all, _ = _gather(labels, axis_name)
    # Sample-major flattening: row (i, view) -> i * V + view, in both anchors and candidates.
    anchors = features.reshape(b * v, d)
    candidates = feats_all.reshape(-1, d)
    anchor_labels = jnp.repeat(labels, v)
    cand_labels = jnp.repeat(labels_all, v)
    logits = anchors @ candidates.T / temperature
    self_idx = offset * v + jnp.arange(b * v)
    is_self = jnp.arange(candidates.shape[0])[None, :] == self_idx[:, None]
    log_norm = jax.nn.logsumexp(jnp.where(is_self, -jnp.inf, logits), axis=1, keepdims=True)
    log_prob = logits - log_norm
    pos = (anchor_labels[:, None] == cand_labels[None, :]) & ~is_self
    n_pos = jnp.sum(pos, axis=1)
    has_pos = n_pos > 0
    mean_log_prob_pos = jnp.sum(jnp.where(pos, log_prob, 0.0), axis=1) / jnp.maximum(n_pos, 1)
    per_anchor = jnp.where(has_pos, -scale * mean_log_prob_pos, 0.0)
    total, count = jnp.sum(per_anchor), jnp.sum(has_pos).astype(per_anchor.dtype)
    if axis_name is not None:
        total, count = jax.lax.psum((total, count), axis_name)
    return total / jnp.maximum(count, 1.0)


def tuple_infonce_loss(
    anchors: jax.Array,
    positives: jax.Array,
    negatives: jax.Array | None = None,
    *,
    negative_log_weights: jax.Array | None = None,
    temperature: float = 0.07,
    normalize: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
    """TupleInfoNCE: InfoNCE whose candidates add K blocks of disturbed-tuple negatives.

    Candidates of anchor ``i``: the ``B`` positives ``p_j`` (own one is the target) and the
    ``K * B`` negatives ``n_kj`` (block ``k`` row ``j`` = scene ``j`` with modality ``k`` swapped in
    from another scene). Block ``k``'s logits get ``+ negative_log_weights[k]``: drawing the block
    with multiplicity ``alpha_k`` in the negative distribution ``q_alpha`` is the same as
    duplicating it ``alpha_k`` times, i.e. adding ``log alpha_k`` to its logits. Gradients flow into
    ``negatives``; pass ``stop_gradient`` copies to mimic the reference code's frozen encoder.

    Args:
      anchors: ``(B, D)`` fused embeddings of the anchor tuples.
      positives: ``(B, D)`` fused embeddings of the augmented tuples.
      negatives: optional ``(K, B, D)`` disturbed-tuple embeddings.
      negative_log_weights: optional ``(K,)`` log multiplicities ``log alpha_k`` (traced allowed);
        ``-inf`` (alpha_k = 0) removes block ``k``, and ``-inf`` everywhere is plain InfoNCE.
      temperature: ``T > 0`` (0.07 in the paper).
      normalize: L2-normalise all embeddings (the paper uses cosine similarity).
      axis_name: data axis inside ``jax.shard_map``; positives and every negative block are then
        gathered over the global batch (global-batch value, see module docstring).

    Returns:
      Scalar loss.

    References:
      Liu et al. 2021 (TupleInfoNCE), the loss with negative distribution ``q_alpha``;
      van den Oord et al. 2018, Eq. 4.

    Example:
      >>> tuple_infonce_loss(z_anchor, z_pos, jnp.stack([z_swap_rgb, z_swap_depth]),
      ...                    negative_log_weights=jnp.log(jnp.array([1.0, 2.0])))
    """
    anchors, positives = _check_pair("anchors", anchors, "positives", positives)
    _check_batch("tuple_infonce_loss", anchors.shape[0], axis_name)
    _check_temperature(temperature)
    b, d = anchors.shape
    if negatives is not None:
        negatives = jnp.asarray(negatives)
        if negatives.ndim != 3 or negatives.shape[1:] != (b, d):
            raise ValueError(
                f"negatives must have shape (K, {b}, {d}) to match anchors, got {negatives.shape}"
            )
        _check_float("negatives", negatives)
    if negative_log_weights is not None:
        if negatives is None:
            raise ValueError("negative_log_weights needs negatives")
        negative_log_weights = jnp.asarray(negative_log_weights)
        if negative_log_weights.shape != negatives.shape[:1]:
            raise ValueError(
                f"negative_log_weights must have shape ({negatives.shape[0]},), "
                f"got {negative_log_weights.shape}"
            )
        _check_float("negative_log_weights", negative_log_weights)
    if normalize:
        anchors, positives = l2_normalize(anchors), l2_normalize(positives)
        if negatives is not None:
            negatives = l2_normalize(negatives)
    pos_all, offset = _gather(positives, axis_name)
    logits = anchors @ pos_all.T / temperature  # (b, B_global)
    if negatives is not None:
        neg_all, _ = _gather(negatives, axis_name, axis=1)  # (K, B_global, D)
        neg_logits = jnp.einsum("id,kjd->ikj", anchors, neg_all) / temperature
        if negative_log_weights is not None:
            # log alpha_k = -inf (alpha_k = 0) removes block k exactly; `where` keeps its gradient
            # (to the embeddings and to the weights) at zero instead of inf - inf.
            w = negative_log_weights[None, :, None]
            neg_logits = jnp.where(
                jnp.isneginf(w), -jnp.inf, neg_logits + jnp.where(jnp.isneginf(w), 0.0, w)
            )
        logits = jnp.concatenate([logits, neg_logits.reshape(b, -1)], axis=1)
    targets = offset + jnp.arange(b)
    return _global_mean(jnp.mean(_cross_entropy(logits, targets)), axis_name)
