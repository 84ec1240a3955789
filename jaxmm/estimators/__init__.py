"""Mutual-information bounds and contrastive losses as pure, jit-able, differentiable functions.

Modules: `bounds` (bounds on I(X; Y) from score matrices), `losses` (contrastive losses on
embeddings, negatives gathered across devices), `checks` (input checks and `checked`); every
public function is exported here, `jaxmm.estimators.<name>`.

Conventions
-----------
* Score matrices: ``scores[i, j] = f(x_i, y_j)`` for a batch of ``B`` joint samples
  ``(x_i, y_i)``. The diagonal holds the ``B`` samples of the joint ``p(x, y)``; the ``B (B - 1)``
  off-diagonal entries are samples of the product of marginals ``p(x) p(y)``. Row ``i`` lists
  anchor ``x_i``'s candidates.
* ``*_lower_bound`` / ``*_upper_bound`` return a scalar MI estimate in **nats** (to maximise /
  minimise as a bound). ``*_loss`` return a scalar to **minimise**.
* Embedding losses take per-example embeddings (``(B, D)`` arrays). With ``axis_name=None`` they
  compute the loss of the batch they are given. With ``axis_name`` set they must be called inside
  ``jax.shard_map`` over a data axis (default ``check_vma=True``): every device all-gathers the
  other side's embeddings, scores only its own ``B_local x B_global`` block, and the function
  returns the **global-batch loss, already reduced over ``axis_name``** (identical on every
  device). Its value and its gradient (w.r.t. local embeddings and w.r.t. replicated parameters)
  equal the single-device computation on the concatenated global batch, so callers differentiate
  it directly — never ``pmean`` a gradient.

Bad input
---------
* Shapes, dtypes and batch sizes are checked statically (at trace time) and raise one
  ``ValueError`` naming the argument: every bound and loss needs ``B >= 2`` (the global batch,
  with ``axis_name``), since with one sample there is no negative and InfoNCE, NT-Xent, SupCon
  or NCE-CLUB would return a meaningless 0.
* ``temperature`` must be > 0: a Python number or a concrete array is checked at call time; a
  *traced* temperature (learned, or an argument of a jitted function) has no value at trace
  time, so ``T = 0`` there gives ``inf``/``nan`` logits — wrap the function with ``checked``.
* NaN / inf inputs are **not** replaced or masked: they propagate (the value is ``nan``), as a
  silent fix would hide a bug upstream. The trainer skips such steps (``jaxmm.train``). To find
  the culprit, ``checked(fn)`` runs ``fn`` with runtime checks (``jax.experimental.checkify``)
  that raise one error naming the function and the offending argument (``za has 3 non-finite
  value(s)``, ``temperature must be > 0``), or a non-finite result of finite inputs.

References: Poole et al. 2019, "On Variational Bounds of Mutual Information" (ICML); van den Oord
et al. 2018 (CPC); Song & Ermon 2020, "Understanding the Limitations of Variational MI Estimators"
(SMILE); Cheng et al. 2020 (CLUB); Liang et al. 2023 (FactorCL); Radford et al. 2021 (CLIP); Chen
et al. 2020 (SimCLR); Khosla et al. 2020 (SupCon); Liu et al. 2021 (TupleInfoNCE).
"""

from __future__ import annotations

from jaxmm.estimators.bounds import (
    club_upper_bound,
    dv_lower_bound,
    gaussian_log_likelihood_matrix,
    infonce_lower_bound,
    js_fgan_lower_bound,
    js_lower_bound,
    l2_normalize,
    logmeanexp_nodiag,
    nce_club_upper_bound,
    nwj_lower_bound,
    smile_lower_bound,
    tuba_lower_bound,
)
from jaxmm.estimators.checks import checked
from jaxmm.estimators.losses import (
    clip_loss,
    infonce_from_scores_loss,
    infonce_loss,
    ntxent_loss,
    supcon_loss,
    tuple_infonce_loss,
)

__all__ = [
    "checked",
    "logmeanexp_nodiag",
    "infonce_lower_bound",
    "nwj_lower_bound",
    "tuba_lower_bound",
    "dv_lower_bound",
    "js_fgan_lower_bound",
    "js_lower_bound",
    "smile_lower_bound",
    "club_upper_bound",
    "nce_club_upper_bound",
    "gaussian_log_likelihood_matrix",
    "infonce_from_scores_loss",
    "l2_normalize",
    "infonce_loss",
    "clip_loss",
    "ntxent_loss",
    "supcon_loss",
    "tuple_infonce_loss",
]
