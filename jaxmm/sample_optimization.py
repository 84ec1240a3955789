"""TupleInfoNCE's sample optimisation: REINFORCE over (log alpha, beta), PBT-style weight keeping.

The bilevel problem of Liu et al. 2021 (Figure 1, "hyper-parameter updates"): choose the negative
weights alpha and the positive augmentation strength beta to maximise an unsupervised reward R
(`TupleInfoNCE.retrieval_reward`), subject to the encoder minimising the TupleInfoNCE loss. One
round, as in the public code:

1. sample n candidates theta_i ~ N(mu, sigma^2 I) for the searched group;
2. train every candidate briefly FROM THE SAME STATE (params + optimizer state) with its own
   hyper-parameters and rng — `jax.vmap` over candidates of a `lax.scan` of optax steps;
3. reward each candidate on the validation batch; normalise R~ = (R - mean) / (std + eps);
4. REINFORCE: the score-function estimate of grad_mu E[R] is
   ``g = mean_i R~_i grad_mu log N(theta_i; mu, sigma^2) = mean_i R~_i (theta_i - mu) / sigma^2``;
   Adam (optax) ascends it;
5. keep the best candidate's params and optimizer state (population-based-training style).

Search variables: alpha is searched as log alpha (a Gaussian in log space keeps alpha > 0; the
code's std 0.5 and Adam lr 0.25 around alpha = 1 are used as log-space values), beta directly (its
sign is irrelevant: the noise is symmetric). The code alternates alpha-search and beta-search
rounds (``schedule="alternate"``); "alpha", "beta" and "joint" (both groups sampled at once, each
updated by its own score function with the shared rewards) are options.

Rewards: alpha rounds use `TupleInfoNCE.retrieval_reward` (cross-modal retrieval); beta rounds use
the public code's own beta reward (`official_beta_reward`, ``beta_reward="official"``, default) or
the retrieval reward (``"retrieval"``).

Defaults: 5 candidates; log alpha: mu = 0 (alpha = 1), std 0.5, lr 0.25; beta: mu = the method's
beta (`DEFAULT_BETA`, the code's sigma = 120 in its units, sigma / 255 of a normalised input std:
~0.47), std and lr = the code's 10 and 3.0 in the same units (x `PIXEL_LEVEL`: ~0.039 and
~0.0118). Departures from the code: alpha is searched in log space (the code samples the ratio
itself with std sqrt(0.5), truncates it to an integer in [1, 3] and doubles the block per unit:
multiplicities {1, 2, 4}); candidates restart from the same optimizer state (the code's SGD
momentum carries over from candidate to candidate).

Inner training is single-device (the candidates, not the batch, are the parallel axis).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any, Literal

import flax
import jax
import jax.numpy as jnp
import optax

from jaxmm.config import Serializable
from jaxmm.methods.tuple_infonce import PIXEL_LEVEL, TupleHParams, TupleInfoNCE

Groups = Literal["alpha", "beta", "joint"]


@dataclasses.dataclass(frozen=True)
class SearchConfig(Serializable):
    """The REINFORCE search over TupleInfoNCE's (log alpha, beta)."""

    num_candidates: int = 5  # candidates per round (code: 5)
    log_alpha_std: float = 0.5  # search std of log alpha (code: 0.5 on alpha at 1)
    log_alpha_lr: float = 0.25  # Adam lr on mu_log_alpha (code: 0.25)
    beta_std: float = 10.0 * PIXEL_LEVEL  # search std of beta (code: 10 pixel levels)
    beta_lr: float = 3.0 * PIXEL_LEVEL  # Adam lr on mu_beta (code: 3.0 pixel levels)
    schedule: Literal["alternate", "alpha", "beta", "joint"] = "alternate"  # group per round
    reward_eps: float = 1e-8  # R~ = (R - mean) / (std + eps)
    shared_noise: bool = False  # True: every candidate uses the same rng (common random numbers)
    # Reward of beta rounds: "official" = the public code's beta reward (`official_beta_reward`);
    # "retrieval" = the alpha rounds' cross-modal retrieval reward.
    beta_reward: Literal["official", "retrieval"] = "official"
    # The official ladder of evaluation noise levels (sigma = 30, 60, ..., 240) and the width of
    # its peak term (250), in beta units.
    beta_levels: tuple[float, ...] = tuple(s * PIXEL_LEVEL for s in range(30, 255, 30))
    beta_peak_scale: float = 250.0 * PIXEL_LEVEL

    def __post_init__(self):
        if self.num_candidates < 2:
            raise ValueError(f"SearchConfig.num_candidates must be >= 2, got {self.num_candidates}")
        if self.beta_reward not in ("official", "retrieval"):
            raise ValueError(
                f"SearchConfig.beta_reward must be 'official' or 'retrieval', got "
                f"{self.beta_reward!r}"
            )
        object.__setattr__(self, "beta_levels", tuple(float(v) for v in self.beta_levels))
        if not self.beta_levels or any(v < 0 for v in self.beta_levels):
            raise ValueError(f"SearchConfig.beta_levels must be >= 0, got {self.beta_levels}")
        for name in (
            "log_alpha_std",
            "log_alpha_lr",
            "beta_std",
            "beta_lr",
            "reward_eps",
            "beta_peak_scale",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"SearchConfig.{name} must be > 0, got {getattr(self, name)}")

    def group(self, round_index: int) -> Groups:
        """The group searched in round `round_index` (alternate: alpha first, as the code)."""
        if self.schedule == "alternate":
            return "alpha" if round_index % 2 == 0 else "beta"
        return self.schedule


@flax.struct.dataclass
class SearchState:
    """Search means and their Adam states (a pytree)."""

    mu: TupleHParams  # current mean (log alpha (K,), beta ())
    opt_log_alpha: Any  # optax.adam state of mu.log_alpha
    opt_beta: Any  # optax.adam state of mu.beta


def init_search(mu: TupleHParams) -> SearchState:
    """A search state at mean `mu` (e.g. `method.default_hparams()`)."""
    mu = TupleHParams(jnp.asarray(mu.log_alpha, jnp.float32), jnp.asarray(mu.beta, jnp.float32))
    # Adam's state does not depend on the learning rate, so any lr initialises it.
    adam = optax.adam(1.0)
    return SearchState(mu, adam.init(mu.log_alpha), adam.init(mu.beta))


# ------------------------------------------------------------------------------------------------
# REINFORCE.


def normalize_rewards(rewards: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``(R - mean(R)) / (std(R) + eps)``: the baseline and scale of the public code."""
    rewards = jnp.asarray(rewards, jnp.float32)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must have shape (n,), got {rewards.shape}")
    return (rewards - jnp.mean(rewards)) / (jnp.std(rewards) + eps)


def score_function_gradient(
    mu: jax.Array,
    candidates: jax.Array,
    rewards: jax.Array,
    sigma: float | jax.Array,
    *,
    eps: float = 1e-8,
) -> jax.Array:
    """REINFORCE estimate of grad_mu E_{theta ~ N(mu, sigma^2 I)}[R(theta)] (ascent direction).

    ``g = mean_i R~_i (theta_i - mu) / sigma^2`` with the normalised rewards R~ — the score
    ``grad_mu log N(theta; mu, sigma^2 I) = (theta - mu) / sigma^2`` written out.

    Args:
      mu: search mean, any shape S.
      candidates: (n, *S) samples.
      rewards: (n,) rewards.
      sigma: search std (scalar or broadcastable to S).
      eps: normalisation epsilon.

    Returns:
      Array of shape S.

    References:
      Williams 1992 (REINFORCE); Liu et al. 2021 (TupleInfoNCE), sample optimisation.
    """
    mu, candidates = jnp.asarray(mu), jnp.asarray(candidates)
    if candidates.shape[1:] != mu.shape or candidates.shape[0] != jnp.shape(rewards)[0]:
        raise ValueError(
            f"candidates must have shape (n, *{mu.shape}) with n = len(rewards) = "
            f"{jnp.shape(rewards)[0]}, got {candidates.shape}"
        )
    r = normalize_rewards(rewards, eps)
    score = (candidates - mu) / jnp.square(sigma)
    return jnp.tensordot(r, score, axes=1) / r.shape[0]


def reinforce_update(
    mu: jax.Array,
    candidates: jax.Array,
    rewards: jax.Array,
    sigma: float | jax.Array,
    opt_state: Any,
    *,
    learning_rate: float,
    eps: float = 1e-8,
) -> tuple[jax.Array, Any]:
    """One Adam ascent step of the search mean on the REINFORCE gradient.

    Args:
      mu: search mean.
      candidates: (n, *mu.shape) evaluated candidates.
      rewards: (n,) their rewards.
      sigma: the std they were sampled with.
      opt_state: ``optax.adam(...).init(mu)`` state.
      learning_rate: Adam step size.
      eps: reward-normalisation epsilon.

    Returns:
      ``(new_mu, new_opt_state)``.

    Example:
      >>> mu, opt = reinforce_update(mu, thetas, rewards, 0.5, opt, learning_rate=0.25)
    """
    g = score_function_gradient(mu, candidates, rewards, sigma, eps=eps)
    # optax minimises: the ascent direction enters as a negated gradient.
    updates, opt_state = optax.adam(learning_rate).update(-g, opt_state, mu)
    return optax.apply_updates(mu, updates), opt_state


def official_beta_reward(
    method: TupleInfoNCE,
    params: Any,
    val_batch: Any,
    beta: jax.Array,
    rng: jax.Array,
    levels: Any,
    peak_scale: float,
) -> tuple[jax.Array, jax.Array]:
    """The public code's reward of a beta (positive-noise) candidate (`search_para.py`).

    After training with noise strength beta, the noisy-modality-alone -> rest-of-tuple retrieval
    accuracy a_l is measured at every level l of a ladder (`TupleInfoNCE.
    noisy_retrieval_accuracy`); with ``peak`` the level of the highest a_l (first on ties),

        R(beta) = 1 - ((|beta| - peak) / peak_scale)^2 + 1 - mean_l a_l

    (the code: levels 30..240 step 30, peak_scale 250, accuracies in %; here in [0, 1], so the
    second term is the same number). It prefers a beta near the level the model retrieves best
    at, and models whose noisy retrieval is poor.

    Returns:
      ``(reward, accuracies (L,))``.
    """
    levels = jnp.asarray(levels, jnp.float32)
    keys = jax.random.split(rng, levels.shape[0])
    accs = jax.vmap(lambda lv, k: method.noisy_retrieval_accuracy(params, val_batch, lv, k))(
        levels, keys
    )
    peak = levels[jnp.argmax(accs)]
    reward = 1.0 - jnp.square((jnp.abs(beta) - peak) / peak_scale) + 1.0 - jnp.mean(accs)
    return reward, accs


# ------------------------------------------------------------------------------------------------
# Candidates.


def sample_candidates(
    mu: TupleHParams, rng: jax.Array, n: int, group: Groups, cfg: SearchConfig
) -> TupleHParams:
    """(n,)-batched hyper-parameters: the searched group ~ N(mu, sigma^2), the other at mu."""
    if group not in ("alpha", "beta", "joint"):
        raise ValueError(f"group must be 'alpha', 'beta' or 'joint', got {group!r}")
    ra, rb = jax.random.split(rng)
    log_alpha = jnp.broadcast_to(mu.log_alpha, (n,) + mu.log_alpha.shape)
    beta = jnp.broadcast_to(mu.beta, (n,))
    if group in ("alpha", "joint"):
        log_alpha = log_alpha + cfg.log_alpha_std * jax.random.normal(ra, log_alpha.shape)
    if group in ("beta", "joint"):
        beta = beta + cfg.beta_std * jax.random.normal(rb, beta.shape)
    return TupleHParams(log_alpha, beta)


def train_candidate(
    method: TupleInfoNCE,
    tx: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    hparams: TupleHParams,
    rng: jax.Array,
    batches: Any,
) -> tuple[Any, Any, jax.Array]:
    """A few optax steps of the TupleInfoNCE loss under `hparams`, scanned over `batches`.

    Args:
      batches: a batch pytree whose leaves have a leading step axis (S, B, ...).

    Returns:
      ``(params, opt_state, losses (S,))``.
    """

    def step(carry, inputs):
        p, opt = carry
        batch, i = inputs
        (loss, _), grads = jax.value_and_grad(method.loss, has_aux=True)(
            p, batch, jax.random.fold_in(rng, i), hparams=hparams
        )
        updates, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, updates), opt), loss

    n_steps = jax.tree.leaves(batches)[0].shape[0]
    (params, opt_state), losses = jax.lax.scan(
        step, (params, opt_state), (batches, jnp.arange(n_steps))
    )
    return params, opt_state, losses


def sample_optimization_round(
    method: TupleInfoNCE,
    tx: optax.GradientTransformation,
    cfg: SearchConfig,
    params: Any,
    opt_state: Any,
    search: SearchState,
    batches: Any,
    val_batch: Any,
    rng: jax.Array,
    *,
    group: Groups,
) -> tuple[Any, Any, SearchState, dict[str, jax.Array]]:
    """One round: sample, train candidates in parallel, reward, REINFORCE, keep the best.

    Args:
      method: the `TupleInfoNCE` method (its `loss` and `retrieval_reward`).
      tx: the encoder optimizer (`opt_state` is its state).
      cfg: search config.
      params, opt_state: the shared starting state of every candidate.
      search: the search state.
      batches: training batches with a leading step axis (S, B, ...), the same for every candidate.
      val_batch: validation batch for the reward.
      rng: key of this round.
      group: "alpha", "beta" or "joint" (static).

    Returns:
      ``(best params, best opt_state, new search state, info)``; info holds the candidates'
      ``log_alpha`` (n, K), ``beta`` (n,), ``rewards`` (n,) (the round's reward), ``retrieval``
      (n,) (the retrieval reward, every round), ``losses`` (n, S) and ``best``.

    Example:
      >>> round_fn = jax.jit(functools.partial(sample_optimization_round, method, tx, cfg),
      ...                    static_argnames="group")
    """
    n = cfg.num_candidates
    r_sample, r_train = jax.random.split(rng)
    cands = sample_candidates(search.mu, r_sample, n, group, cfg)
    keys = jnp.broadcast_to(r_train, (n,)) if cfg.shared_noise else jax.random.split(r_train, n)
    train = functools.partial(train_candidate, method, tx)
    new_params, new_opt, losses = jax.vmap(train, in_axes=(None, None, 0, 0, None))(
        params, opt_state, cands, keys, batches
    )
    retrieval = jax.vmap(method.retrieval_reward, in_axes=(0, None))(new_params, val_batch)
    if group == "beta" and cfg.beta_reward == "official":
        # One evaluation-noise draw for every candidate (common random numbers).
        r_eval = jax.random.fold_in(rng, 7)
        rewards, _ = jax.vmap(
            lambda p, b: official_beta_reward(
                method, p, val_batch, b, r_eval, cfg.beta_levels, cfg.beta_peak_scale
            )
        )(new_params, cands.beta)
    else:
        rewards = retrieval
    best = jnp.argmax(rewards)
    pick = lambda tree: jax.tree.map(lambda x: x[best], tree)

    mu, opt_a, opt_b = search.mu, search.opt_log_alpha, search.opt_beta
    log_alpha, beta = mu.log_alpha, mu.beta
    if group in ("alpha", "joint"):
        log_alpha, opt_a = reinforce_update(
            mu.log_alpha,
            cands.log_alpha,
            rewards,
            cfg.log_alpha_std,
            opt_a,
            learning_rate=cfg.log_alpha_lr,
            eps=cfg.reward_eps,
        )
    if group in ("beta", "joint"):
        beta, opt_b = reinforce_update(
            mu.beta,
            cands.beta,
            rewards,
            cfg.beta_std,
            opt_b,
            learning_rate=cfg.beta_lr,
            eps=cfg.reward_eps,
        )
    new_search = SearchState(TupleHParams(log_alpha, beta), opt_a, opt_b)
    info = {
        "log_alpha": cands.log_alpha,
        "beta": cands.beta,
        "rewards": rewards,
        "retrieval": retrieval,
        "losses": losses,
        "best": best,
    }
    return pick(new_params), pick(new_opt), new_search, info


class SampleOptimizer:
    """Sample-optimised TupleInfoNCE training: jitted rounds with the configured group schedule.

    Args:
      method: a `TupleInfoNCE` (already `init`-ed, or given params from a checkpoint).
      tx: the encoder optimizer.
      config: `SearchConfig`.

    Example:
      >>> so = SampleOptimizer(method, optax.adam(1e-3), SearchConfig())
      >>> opt_state, search = so.init(params)
      >>> for r, batches in enumerate(stacked_batches):       # each (S, B, ...)
      ...   params, opt_state, search, info = so.round(params, opt_state, search, batches, val,
      ...                                              jax.random.fold_in(key, r), r)
    """

    def __init__(
        self,
        method: TupleInfoNCE,
        tx: optax.GradientTransformation,
        config: SearchConfig | None = None,
    ):
        self.method, self.tx = method, tx
        self.config = SearchConfig() if config is None else config
        self._round = jax.jit(
            functools.partial(sample_optimization_round, method, tx, self.config),
            static_argnames="group",
        )

    def init(self, params: Any) -> tuple[Any, SearchState]:
        """The encoder optimizer state and the search state at the method's default hparams."""
        return self.tx.init(params), init_search(self.method.default_hparams())

    def round(
        self,
        params: Any,
        opt_state: Any,
        search: SearchState,
        batches: Any,
        val_batch: Any,
        rng: jax.Array,
        round_index: int,
    ) -> tuple[Any, Any, SearchState, dict[str, jax.Array]]:
        """Round `round_index` (its group from the schedule); see `sample_optimization_round`."""
        return self._round(
            params, opt_state, search, batches, val_batch, rng, group=self.config.group(round_index)
        )

    def run(
        self,
        params: Any,
        rounds: Iterable[Any],
        val_batch: Any,
        rng: jax.Array,
        callback: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> tuple[Any, SearchState]:
        """All rounds of `rounds` (each a stacked (S, B, ...) batch pytree); returns the final
        params and search state. `callback(round_index, info)` sees each round's host-side info."""
        opt_state, search = self.init(params)
        for r, batches in enumerate(rounds):
            params, opt_state, search, info = self.round(
                params, opt_state, search, batches, val_batch, jax.random.fold_in(rng, r), r
            )
            if callback is not None:
                callback(r, jax.device_get(info))
        return params, search
