"""FactorCL: factorized contrastive learning (Liang et al., NeurIPS 2023), SSL and SUP.

Two modalities X1, X2, one encoder each (`MultimodalModel.encode_unimodal`; FactorCL uses no
fusion), and six MI terms (App. D.1, Eqs. 94-99), the objective to MAXIMISE being

  I_NCE(X1;X2) - I_NCE-CLUB(X1;X2|C) + I_NCE(X1;Y) + I_NCE(X2;Y)
    - I_NCE-CLUB(X1;X2) + I_NCE(X1;X2|C)

* SUP (Eqs. 94-96): Y is the label, C = Y;
* SSL (Eqs. 97-99): Y is replaced by each modality's augmentation, I_NCE(Xi;X'i), and
  C = (X'1, X'2) (Sec. 3.2, Eqs. 15-16).

The loss is the negative. Eqs. 8-9 group the same terms into S and U_i; Algorithm 2 writes
L = -(S + U1 + U2), which would count -I_NCE-CLUB(X1;X2) + I_NCE(X1;X2|C) twice. We follow the
explicit App. D.1 objective (and the official code), where each term appears once; S, U1 and U2
are reported as metrics.

Estimators, as in App. D.1:

* every term has its OWN head per modality (a 1-hidden-layer ReLU MLP, App. D.2) on the shared
  encoder outputs and its OWN concat critic f(a, b) = h([a, b]) (`jaxmm.critics.ConcatCritic`);
* I_NCE is the InfoNCE bound (Eq. 10 / 13 / 15); I_NCE-CLUB (Eq. 11 / 14 / 16) is
  mean_i f*(a_i, b_i) - mean_ij f*(a_i, b_j) with a critic f* trained by InfoNCE;
* conditioning is by concatenation (Fig. 5; Sordoni et al. 2021). SSL (Eqs. 15-16, both sides):
  f(a_i, b_j | c) = h([a_i, c_i, b_j, c'_j]) with c_i the term's modality-1 head applied to the
  AUGMENTED x'1_i and c'_j the modality-2 head applied to x'2_j. SUP (Eqs. 13-14): the critic is
  f(x1, x2, y) with the ANCHOR's label, Sec. 3.1's g([x1, y]) . h(x2): h([a_i, y_i, b_j]), the
  label on the x1 side only (`label_sides="x1"`, as the official `FactorCLSUP`). App. D.1's
  wording ("concatenating Y to the outputs of both heads") would give h([a_i, y_i, b_j, y_j]),
  kept as `label_sides="both"`: there every negative pair of another class carries a label
  mismatch the critic can score without the encoders, a term they cannot change;
* I_NCE(Xi;Y), SUP: a concat critic between head(x_i) and the label features (one-hot for
  integer labels). The official code feeds the raw scalar label; one-hot is the same information
  for binary labels and extends to k classes. SSL: the term's head is applied to x_i and to x'_i
  and the critic scores the pair (official `infonce_x1y` on `linears_infonce_x1y` of both).

Training (Algorithm 3, k = `TrainConfig.inner_steps`): the two NCE-CLUB critics (phi) are trained
only by L_NCE (Eq. 100) = I_NCE(X1;X2|C) + I_NCE(X1;X2) evaluated with THOSE critics, on
stop-gradient head outputs (`inner_loss`); `inner_param_filter` selects them, so the trainer's
main update leaves them still. In the main loss their parameters are also stop-gradient-ed: the
encoders and heads minimise the NCE-CLUB values through the frozen critic. (The trainer runs the
inner step before the main one; Algorithm 3 after. Either way each main step sees a critic fitted
to nearly the current encoders.)

Representations (App. D.1): with h^t_i the modality-i head of term t,
  Z_S1 = [h^{nce_x1x2}_1, h^{club_x1x2_cond}_1],
  Z_U1 = [h^{nce_x1y}_1, h^{club_x1x2}_1, h^{nce_x1x2_cond}_1], likewise for modality 2;
`embed` returns concat(Z_S1, Z_U1, Z_S2, Z_U2), `embed_parts` the four blocks (Table 1 probing).
The OurCL-SSL / OurCL-SUP ablations (`factorized=False`) train the same objective but represent
x by the encoder outputs [e1(x1), e2(x2)].

Data: X is `batch[view]` ("view1"), X' is `batch[aug_view]` ("view2"); for FactorCL's unique
augmentation (Eq. 18) the pipeline should augment modality 2 without destroying what modality 1
refers to (`jaxmm.data.augment`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm import estimators
from jaxmm.config import Serializable
from jaxmm.critics import ConcatCritic, ConditionalConcatCritic
from jaxmm.methods.base import Batch, Metrics, Params, path_names
from jaxmm.methods.common import NNXMethod, concat_views, dropout_rngs, get_view, view_index
from jaxmm.methods.registry import register
from jaxmm.models import ModelConfig, MultimodalModel, ProjectionHead, build_model

# The six terms, in the order of Eqs. 94-96 / 97-99: (name, kind, sign in the objective).
TERMS: tuple[tuple[str, str, float], ...] = (
    ("nce_x1x2", "nce", 1.0),  # I_NCE(X1;X2), Eq. 10
    ("club_x1x2_cond", "club_cond", -1.0),  # I_NCE-CLUB(X1;X2|C), Eq. 14 / 16
    ("nce_x1y", "nce_task1", 1.0),  # I_NCE(X1;Y) or I_NCE(X1;X'1), Eq. 10
    ("nce_x2y", "nce_task2", 1.0),  # I_NCE(X2;Y) or I_NCE(X2;X'2)
    ("club_x1x2", "club", -1.0),  # I_NCE-CLUB(X1;X2), Eq. 11
    ("nce_x1x2_cond", "nce_cond", 1.0),  # I_NCE(X1;X2|C), Eq. 13 / 15
)
CLUB_TERMS = ("club_x1x2", "club_x1x2_cond")
# App. D.1: the heads whose outputs form the shared / unique representation of modality i.
SHARED_TERMS = ("nce_x1x2", "club_x1x2_cond")
UNIQUE_TERMS = {
    1: ("nce_x1y", "club_x1x2", "nce_x1x2_cond"),
    2: ("nce_x2y", "club_x1x2", "nce_x1x2_cond"),
}
_INNER = "club_critics"  # top-level attribute holding the NCE-CLUB critics (phi)


@dataclasses.dataclass(frozen=True)
class FactorCLConfig(Serializable):
    """FactorCL-SSL / -SUP and the OurCL ablations (Liang et al. 2023, App. D.1-D.2)."""

    mode: Literal["ssl", "sup"] = "ssl"  # Y = augmentations (Eqs. 97-99) or labels (Eqs. 94-96)
    factorized: bool = True  # False: OurCL (representation = encoder outputs e1(x1), e2(x2))
    head_hidden_dims: tuple[int, ...] | None = None  # None: one hidden layer of the encoder width
    head_dim: int | None = None  # head output width; None: the encoder width (App. D.2)
    critic_hidden: int = 512  # concat-critic hidden width (App. D.2)
    critic_layers: int = 1  # concat-critic hidden layers (paper: 1; the official code stacks 2)
    modalities: tuple[str, ...] | None = None  # (X1, X2) names; None: the model's two modalities
    label_key: str = "label"  # SUP: batch["labels"][label_key], int (B,) or float (B,) / (B, k)
    num_classes: int | None = None  # SUP: one-hot width (int labels) or label width k (float)
    # SUP conditioning (Eqs. 13-14): the anchor's label beside x1 only (paper, official code),
    # or beside both sides (App. D.1's wording; see the module docstring).
    label_sides: Literal["x1", "both"] = "x1"
    view: str = "view1"  # batch view holding X (and read by `embed` given a full batch)
    aug_view: str = "view2"  # batch view holding X' (SSL)

    def __post_init__(self):
        if self.mode not in ("ssl", "sup"):
            raise ValueError(f"FactorCLConfig.mode must be 'ssl' or 'sup', got {self.mode!r}")
        if self.label_sides not in ("x1", "both"):
            raise ValueError(
                f"FactorCLConfig.label_sides must be 'x1' or 'both', got {self.label_sides!r}"
            )
        for name in ("critic_hidden", "critic_layers", "head_dim", "num_classes"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"FactorCLConfig.{name} must be >= 1, got {v}")
        if self.modalities is not None:
            mods = tuple(self.modalities)
            if len(mods) != 2 or mods[0] == mods[1]:
                raise ValueError(
                    f"FactorCLConfig.modalities must name two distinct modalities, got {mods}"
                )
            object.__setattr__(self, "modalities", mods)
        if self.head_hidden_dims is not None:
            object.__setattr__(
                self, "head_hidden_dims", tuple(int(h) for h in self.head_hidden_dims)
            )
        if self.mode == "sup" and self.num_classes is None:
            raise ValueError(
                "FactorCLConfig: mode='sup' needs num_classes (one-hot width of integer "
                "labels, or the width of float labels: 1 for shape (B,))"
            )
        if self.mode == "ssl" and self.view == self.aug_view:
            raise ValueError(
                f"FactorCLConfig: SSL needs distinct view and aug_view, got {self.view!r}"
            )


class FactorCLModule(nnx.Module):
    """Encoders (inside `model`), per-term heads, InfoNCE critics and the NCE-CLUB critics.

    Attributes:
      model: the backbone; only its encoders are used.
      heads: {term: {"x1": head, "x2": head}} (the task terms have one side only).
      critics: {term: critic} for the four InfoNCE terms (trained by the main loss).
      club_critics: {term: critic} for the two NCE-CLUB terms (trained by the inner loss only).
    """

    def __init__(self, model: MultimodalModel, heads: dict, critics: dict, club_critics: dict):
        self.model = model
        self.heads = nnx.Dict({t: nnx.Dict(h) for t, h in heads.items()})
        self.critics = nnx.Dict(critics)
        self.club_critics = nnx.Dict(club_critics)


def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _local_rows(critic, *args: jax.Array, axis_name: str | None) -> tuple[jax.Array, Any]:
    """Scores of this device's anchors against the GLOBAL batch: ((b, B_global), row offset).

    The jaxmm critics take equal-size sides, so under data parallelism the anchors are gathered
    too and this device keeps its own rows. Each device then evaluates the whole global grid of
    the critic (the price of an exact global-batch estimate with a concat critic).
    """
    if axis_name is None:
        return critic(*args), 0
    b = args[0].shape[0]
    full = critic(*(_gather(a, axis_name) for a in args))
    offset = jax.lax.axis_index(axis_name) * b
    return jax.lax.dynamic_slice_in_dim(full, offset, b, axis=0), offset


def _positives(scores: jax.Array, offset) -> jax.Array:
    b = scores.shape[0]
    return scores[jnp.arange(b), offset + jnp.arange(b)]


def infonce_rows(scores: jax.Array, offset=0, axis_name: str | None = None) -> jax.Array:
    """InfoNCE bound (FactorCL Eq. 10) from this device's rows of the global score matrix.

    ``log B + mean_i [S_i,i - logsumexp_j S_ij]`` over the global batch; without `axis_name` it is
    exactly `jaxmm.estimators.infonce_lower_bound(scores)`.
    """
    if axis_name is None:
        return estimators.infonce_lower_bound(scores)
    local = jnp.mean(_positives(scores, offset) - jax.nn.logsumexp(scores, axis=1))
    return math.log(scores.shape[1]) + jax.lax.pmean(local, axis_name)


def nce_club_rows(scores: jax.Array, offset=0, axis_name: str | None = None) -> jax.Array:
    """NCE-CLUB bound (FactorCL Eq. 11): mean of positives minus mean of all pairs, global batch.

    Without `axis_name` it is exactly `jaxmm.estimators.nce_club_upper_bound(scores)`; with it,
    equal row blocks make the mean of the per-device means the global mean.
    """
    if axis_name is None:
        return estimators.nce_club_upper_bound(scores)
    local = jnp.mean(_positives(scores, offset)) - jnp.mean(scores)
    return jax.lax.pmean(local, axis_name)


@register
class FactorCL(NNXMethod):
    """FactorCL-SSL / -SUP (and OurCL with `factorized=False`); see the module docstring.

    Args:
      model_config: the backbone (`ModelConfig` or its dict); >= 2 modalities.
      config: `FactorCLConfig`.

    Example:
      >>> method = FactorCL(model_cfg, FactorCLConfig(mode="ssl"))
      >>> params = method.init(jax.random.key(0), batch)
      >>> loss, metrics = method.loss(params, batch, jax.random.key(1))
      >>> parts = method.embed_parts(params, batch)  # {"zs1", "zu1", "zs2", "zu2"}
    """

    name, config_class = "factorcl", FactorCLConfig

    @classmethod
    def views_read(cls, config: FactorCLConfig) -> int:
        views = [config.view, config.aug_view] if config.mode == "ssl" else [config.view]
        return max(view_index(v) for v in views)  # FactorCL-SUP reads no augmented view

    @classmethod
    def labels_read(cls, config: FactorCLConfig) -> tuple[str, ...]:
        return (config.label_key,) if config.mode == "sup" else ()

    @classmethod
    def check_modalities(cls, config: FactorCLConfig, names) -> None:
        super().check_modalities(config, names)
        if len(names) > 2 and config.modalities is None:
            raise ValueError(
                f"FactorCL models two modalities, got {list(names)}: choose two with "
                "--set data.modalities=a,b (or method.config.modalities)"
            )

    @classmethod
    def own_data_config(cls, width: int) -> FactorCLConfig:
        return FactorCLConfig(mode="ssl", critic_hidden=2 * width)

    min_modalities = 2

    def __init__(
        self, model_config: ModelConfig | Mapping[str, Any], config: FactorCLConfig | None = None
    ):
        super().__init__(model_config)
        self.config = cfg = FactorCLConfig() if config is None else config
        if cfg.modalities is None:
            if len(self.modality_names) != 2:
                raise ValueError(
                    f"FactorCL models two modalities; the model has "
                    f"{list(self.modality_names)}: set FactorCLConfig.modalities"
                )
            self.pair = self.modality_names
        else:
            missing = [m for m in cfg.modalities if m not in self.modality_names]
            if missing:
                raise ValueError(
                    f"FactorCLConfig.modalities {missing} not in the model's "
                    f"{list(self.modality_names)}"
                )
            self.pair = cfg.modalities

    # -- parameters ----------------------------------------------------------------------------

    def _label_features(self, batch: Batch) -> jax.Array:
        """SUP label as float features (B, k): one-hot for integer classes, values for floats."""
        labels = batch.get("labels") or {}
        key = self.config.label_key
        if key not in labels:
            raise ValueError(
                f"FactorCL-SUP: batch['labels'] has no {key!r} "
                f"(FactorCLConfig.label_key); got {sorted(labels)}"
            )
        y = jnp.asarray(labels[key])
        if jnp.issubdtype(y.dtype, jnp.integer):
            if y.ndim != 1:
                raise ValueError(
                    f"FactorCL-SUP: integer labels[{key!r}] must have shape (B,), got {y.shape}"
                )
            return jax.nn.one_hot(y, self.config.num_classes, dtype=jnp.float32)
        if jnp.issubdtype(y.dtype, jnp.floating) and y.ndim in (1, 2):
            y = y[:, None] if y.ndim == 1 else y
            if y.shape[1] != self.config.num_classes:
                raise ValueError(
                    f"FactorCL-SUP: float labels[{key!r}] have width {y.shape[1]} but "
                    f"FactorCLConfig.num_classes is {self.config.num_classes}"
                )
            return y.astype(jnp.float32)
        raise ValueError(
            f"FactorCL-SUP: labels[{key!r}] must be int (B,) or float (B,) / (B, k), "
            f"got {y.dtype} {y.shape}"
        )

    def init(self, rng: jax.Array, example_batch: Batch) -> Params:
        """Builds the parameters (traceable: the trainer calls it under jit / eval_shape)."""
        x, _ = get_view(example_batch, self.config.view)
        missing = [m for m in self.modality_names if m not in x]
        if missing:
            raise ValueError(
                f"{self.name}: example batch {self.config.view} lacks modalities "
                f"{missing}; got {sorted(x)}"
            )
        if self.config.mode == "sup":
            self._label_features(example_batch)  # fail here, not at the first step
        else:
            get_view(example_batch, self.config.aug_view)
        rngs = nnx.Rngs(params=rng)
        module = self._build_module(build_model(self.model_config, rngs=rngs), rngs)
        self._graphdef, params = nnx.split(module)  # Params and BatchStats (BatchNorm head)
        return params

    def _build_module(self, model: MultimodalModel, rngs: nnx.Rngs) -> FactorCLModule:
        # Config-only (no batch): `NNXMethod.module` rebuilds the graph abstractly after a restore.
        enc = model.unimodal_dims
        d_in = {"x1": enc[self.pair[0]], "x2": enc[self.pair[1]]}
        cfg = self.config
        d = {s: cfg.head_dim or d_in[s] for s in d_in}

        def head(side: str) -> ProjectionHead:
            hidden = cfg.head_hidden_dims if cfg.head_hidden_dims is not None else (d_in[side],)
            return ProjectionHead(d_in[side], hidden, d[side], rngs=rngs)

        sides = {"nce_task1": ("x1",), "nce_task2": ("x2",)}
        heads = {t: {s: head(s) for s in sides.get(kind, ("x1", "x2"))} for t, kind, _ in TERMS}
        hid, layers = cfg.critic_hidden, cfg.critic_layers
        if cfg.mode == "sup":
            k = cfg.num_classes
            task1, task2 = (d["x1"], k), (d["x2"], k)
            c1, c2 = k, (k if cfg.label_sides == "both" else 0)
        else:
            task1, task2 = (d["x1"], d["x1"]), (d["x2"], d["x2"])
            c1, c2 = d["x1"], d["x2"]  # the conditional term's own heads on x'1, x'2
        concat = lambda a, b: ConcatCritic(a, b, hid, layers, rngs=rngs)
        cond = lambda: ConditionalConcatCritic(
            d["x1"], d["x2"], c1, hid, layers, rngs=rngs, c_y_dim=c2
        )
        critics = {
            "nce_x1x2": concat(d["x1"], d["x2"]),
            "nce_x1y": concat(*task1),
            "nce_x2y": concat(*task2),
            "nce_x1x2_cond": cond(),
        }
        club = {"club_x1x2": concat(d["x1"], d["x2"]), "club_x1x2_cond": cond()}
        return FactorCLModule(model, heads, critics, club)

    @staticmethod
    def inner_param_filter(path: tuple[str, ...]) -> bool:
        """The NCE-CLUB critics (phi of Algorithm 3): trained by `inner_loss` only."""
        return path[:1] == (_INNER,)

    def _frozen_club(self, params: Params) -> Params:
        """`params` with the NCE-CLUB critics behind stop_gradient (main loss can't fit them)."""
        return jax.tree_util.tree_map_with_path(
            lambda p, x: jax.lax.stop_gradient(x) if self.inner_param_filter(path_names(p)) else x,
            params,
        )

    # -- forward -------------------------------------------------------------------------------

    def _encode(
        self, module: FactorCLModule, batch: Batch, *, deterministic: bool, rng: jax.Array | None
    ) -> dict[str, jax.Array]:
        """Encoder outputs {"x1", "x2"} and, in SSL mode, {"x1_aug", "x2_aug"} (one pass)."""
        v = get_view(batch, self.config.view)
        ssl = self.config.mode == "ssl"
        x, valid = concat_views(v, get_view(batch, self.config.aug_view)) if ssl else v
        rngs = None if rng is None else dropout_rngs(rng)
        h = module.model.encode_unimodal(x, valid, deterministic=deterministic, rngs=rngs)
        b = next(iter(v[0].values())).shape[0]
        e = {"x1": h[self.pair[0]][:b], "x2": h[self.pair[1]][:b]}
        if ssl:
            e.update(x1_aug=h[self.pair[0]][b:], x2_aug=h[self.pair[1]][b:])
        return e

    def critic_inputs(
        self, module: FactorCLModule, e: dict[str, jax.Array], batch: Batch
    ) -> dict[str, tuple[jax.Array, ...]]:
        """Each term's critic arguments from encoder outputs `e`: {term: (a, b) or (a, b, c, c')}.

        Scores are ``critic(*args)[i, j] = f(a_i, b_j [| c_i, c'_j])``, positives on the diagonal.
        """
        heads = module.heads
        ssl = self.config.mode == "ssl"
        hd = lambda t, s, key: heads[t][s](e[key])
        y = None if ssl else self._label_features(batch)
        out = {}
        for term, kind, _ in TERMS:
            if kind in ("nce", "club"):
                out[term] = (hd(term, "x1", "x1"), hd(term, "x2", "x2"))
            elif kind in ("nce_task1", "nce_task2"):
                s = "x1" if kind == "nce_task1" else "x2"
                out[term] = (hd(term, s, s), hd(term, s, f"{s}_aug") if ssl else y)
            else:
                # SSL conditions on the term's heads applied to the AUGMENTED views (Fig. 5). The
                # official synthetic FactorCLSSL feeds un-augmented x1 / x2 head outputs twice to
                # `club_x1x2_cond` (forward, learning_loss), which conditions X1;X2 on themselves;
                # we do not copy that.
                if ssl:
                    c1, c2 = hd(term, "x1", "x1_aug"), hd(term, "x2", "x2_aug")
                elif self.config.label_sides == "both":
                    c1, c2 = y, y
                else:  # nothing beside x2: an empty (B, 0) conditioning block
                    c1, c2 = y, jnp.zeros((y.shape[0], 0), y.dtype)
                out[term] = (hd(term, "x1", "x1"), hd(term, "x2", "x2"), c1, c2)
        return out

    def _critic(self, module: FactorCLModule, term: str):
        return (module.club_critics if term in CLUB_TERMS else module.critics)[term]

    # -- the contract --------------------------------------------------------------------------

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        """Minus the six-term objective (Eqs. 94-96 SUP / 97-99 SSL); MI estimates in nats.

        Metrics: ``mi_<term>`` for each term, ``shared_s`` (Eq. 8), ``unique_u1`` / ``unique_u2``
        (Eq. 9), and ``l_nce`` (Eq. 100: the NCE-CLUB critics' own InfoNCE, what the inner step
        maximises) from the same score matrices.
        """
        module = self.module(self._frozen_club(params))
        e = self._encode(module, batch, deterministic=False, rng=rng)
        inputs = self.critic_inputs(module, e, batch)
        mi, l_nce = {}, 0.0
        for term, _, _ in TERMS:
            scores, off = _local_rows(
                self._critic(module, term), *inputs[term], axis_name=axis_name
            )
            if term in CLUB_TERMS:
                mi[term] = nce_club_rows(scores, off, axis_name)
                l_nce = l_nce + infonce_rows(scores, off, axis_name)
            else:
                mi[term] = infonce_rows(scores, off, axis_name)
        objective = sum(sign * mi[term] for term, _, sign in TERMS)
        metrics = {f"mi_{t}": v for t, v in mi.items()}
        shared = mi["nce_x1x2"] - mi["club_x1x2_cond"]
        removed = mi["nce_x1x2_cond"] - mi["club_x1x2"]
        metrics.update(
            objective=objective,
            shared_s=shared,
            unique_u1=mi["nce_x1y"] + removed,
            unique_u2=mi["nce_x2y"] + removed,
            l_nce=l_nce,
        )
        return -objective, metrics

    def inner_loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        """-L_NCE (Eq. 100): InfoNCE of the two NCE-CLUB critics on stop-gradient head outputs."""
        module = self.module(params)
        e = self._encode(module, batch, deterministic=False, rng=rng)
        # The critic learns the current encoders' joint; it must not reshape them.
        inputs = jax.lax.stop_gradient(self.critic_inputs(module, e, batch))
        metrics = {}
        for term in CLUB_TERMS:
            scores, off = _local_rows(module.club_critics[term], *inputs[term], axis_name=axis_name)
            metrics[f"nce_{term}"] = infonce_rows(scores, off, axis_name)
        l_nce = sum(metrics.values())
        metrics["l_nce"] = l_nce
        return -l_nce, metrics

    def _view(self, batch: Batch) -> tuple[dict, dict]:
        if "x" in batch:
            return batch["x"], batch.get("valid") or {}
        return get_view(batch, self.config.view)

    def embed_parts(self, params: Params, batch: Batch) -> dict[str, jax.Array]:
        """Representation blocks of `batch[view]` (or a bare {"x", "valid"} view), no augmentation.

        Returns:
          factorized: {"zs1", "zu1", "zs2", "zu2"} (App. D.1; see the module docstring);
          OurCL (`factorized=False`): {"z1": e1(x1), "z2": e2(x2)}.
        """
        module = self.module(params)
        h = module.model.encode_unimodal(*self._view(batch), deterministic=True)
        e = {"x1": h[self.pair[0]], "x2": h[self.pair[1]]}
        if not self.config.factorized:
            return {"z1": e["x1"], "z2": e["x2"]}
        hd = lambda t, s: module.heads[t][s](e[s])
        cat = lambda terms, s: jnp.concatenate([hd(t, s) for t in terms], axis=-1)
        return {
            "zs1": cat(SHARED_TERMS, "x1"),
            "zu1": cat(UNIQUE_TERMS[1], "x1"),
            "zs2": cat(SHARED_TERMS, "x2"),
            "zu2": cat(UNIQUE_TERMS[2], "x2"),
        }

    def embed(self, params: Params, batch: Batch) -> jax.Array:
        """concat(Z_S1, Z_U1, Z_S2, Z_U2) (FactorCL) or concat(e1(x1), e2(x2)) (OurCL): (B, D)."""
        parts = self.embed_parts(params, batch)
        return jnp.concatenate(list(parts.values()), axis=-1)
