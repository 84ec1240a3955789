"""Sample-optimised TupleInfoNCE (Liu et al., ICCV 2021): the search loop, with checkpoints.

python -m launch.search --list
python -m launch.search --config tuple_infonce_trifeature_search --variant smoke --workdir /tmp/s
python -m launch.search --config tuple_infonce_trifeature_search --set search.rounds=20 \
    --set search.num_candidates=8 --set optimizer.lr=1e-3 --workdir workdirs/tuple_tri
python -m launch.search --config tuple_infonce_mosi_search --manual-dir ~/multibench

Each round r (`jaxmm.sample_optimization.SampleOptimizer`): sample `search.num_candidates`
hyper-parameter candidates around the search mean mu (alpha-rounds and beta-rounds alternate),
train every candidate `search.steps_per_candidate` steps from the same state (parameters and
optimizer state) on the next S batches of the training iterator (the candidates are vmapped on
one device), reward each by unsupervised cross-modal retrieval accuracy on a fixed batch of the
reward split, move mu by one Adam step on the REINFORCE gradient and keep the best candidate's
weights. Overrides: ``search.<field>`` sets a field of `jaxmm.configs.tuple_search.
TupleSearchConfig`; every other key is an `ExperimentConfig` field as in `launch.train`.

The work dir receives:
  checkpoints/<rounds done>/  the kept candidate as a `jaxmm.train.TrainState` (params, AdamW
                              state, step = encoder steps, rng), the data position and the
                              experiment config: `python -m launch.probe --workdir DIR` reads it
  search/<rounds done>/       the search state (mu, its Adam states, rounds done) and settings
  search.jsonl                one JSON line per round: candidates' (alpha, beta), rewards, the new
                              mu, the best reward
  config.json                 {"experiment": ..., "search": ...}
A work dir holding checkpoints is resumed after its last finished round unless `--no-resume`.
Exit codes: 0 success, 2 bad configuration (one error line).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from typing import Any

import numpy as np

from jaxmm import checkpoint as ckpt_lib
from jaxmm import config as config_lib
from jaxmm import configs, experiment, progress, validation
from jaxmm.configs import tuple_search
from jaxmm.data import inputs, pipeline
from jaxmm.experiments import training
from jaxmm.methods.tuple_infonce import TupleInfoNCEConfig

log = logging.getLogger("launch.search")


SEARCH_FAMILY = "tuple_search"


SEARCH_PREFIX = "search."


LOG_FILE = "search.jsonl"


def search_config_names() -> list[str]:
    """The registered configs `launch.search` runs."""
    return [n for n in configs.names() if configs.CONFIGS[n][0] == SEARCH_FAMILY]


def _sync(
    cfg: experiment.ExperimentConfig, search: tuple_search.TupleSearchConfig
) -> experiment.ExperimentConfig:
    """`cfg` whose loop matches the search: train.steps = rounds x S, one checkpoint per round.

    The encoder's learning-rate schedule runs over train.steps, and `launch.probe` rebuilds the
    optimizer from it, so it must count the kept candidate's steps.
    """
    s = search.steps_per_candidate
    train = dataclasses.replace(cfg.train, steps=search.rounds * s, ckpt_every=s, log_every=s)
    return dataclasses.replace(cfg, train=train)


def build_configs(
    args: argparse.Namespace,
) -> tuple[experiment.ExperimentConfig, tuple_search.TupleSearchConfig]:
    """The experiment and search configs of the command line, every override applied.

    Raises:
      ValueError: not a search config, an unknown variant or a bad override (naming it).
    """
    if args.config not in configs.CONFIGS:
        raise ValueError(
            f"unknown experiment config {args.config!r}; search configs: {search_config_names()}"
        )
    family, kwargs = configs.CONFIGS[args.config]
    if family != SEARCH_FAMILY:
        raise ValueError(
            f"config {args.config!r} is not a search config (train it with "
            f"launch.train); search configs: {search_config_names()}"
        )
    cfg = configs.get_config(args.config, args.variant)
    search = tuple_search.get_search_config(args.variant, **kwargs)
    exp_overrides = []
    for item in args.overrides:
        if item.strip().startswith(SEARCH_PREFIX):
            try:
                search = config_lib.apply_overrides(search, [item.strip()[len(SEARCH_PREFIX) :]])
            except (ValueError, TypeError) as e:
                raise ValueError(f"Bad search override {item!r}: {e}") from None
        else:
            exp_overrides.append(item)
    flags = {
        "train.workdir": args.workdir,
        "train.resume": args.resume,
        "data.data_dir": args.data_dir,
        "data.manual_dir": args.manual_dir,
    }
    exp_overrides += [f"{k}={v}" for k, v in flags.items() if v is not None]
    return _sync(experiment.override(cfg, exp_overrides), search), search


def prepare(cfg: experiment.ExperimentConfig, search: tuple_search.TupleSearchConfig) -> None:
    """Validates the pair before any compute (one ValueError naming what is wrong)."""
    import jax

    if not isinstance(cfg.method.config, TupleInfoNCEConfig):
        raise ValueError(
            f"config {cfg.name!r}: the search optimises TupleInfoNCE, got method "
            f"{cfg.method.name!r}"
        )
    if jax.process_count() > 1 or cfg.distributed.num_processes > 1:
        raise ValueError(
            "launch.search runs in one process (the candidates, not the batch, are the "
            "parallel axis)"
        )
    if cfg.train.steps != search.rounds * search.steps_per_candidate:
        raise ValueError(
            f"config {cfg.name!r}: train.steps ({cfg.train.steps}) must be "
            f"search.rounds x search.steps_per_candidate "
            f"({search.rounds * search.steps_per_candidate})"
        )
    validation.validate(cfg)


class _Subset:
    """Random-access view of `source` at `indices`."""

    def __init__(self, source: Any, indices: np.ndarray):
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.source[int(self.indices[i])]


def reward_split(cfg: experiment.ExperimentConfig, search: tuple_search.TupleSearchConfig) -> str:
    """search.reward_split, else the dataset's validation split, else its evaluation split."""
    return search.reward_split or cfg.data.val_split or cfg.data.eval_split


def reward_batch(
    cfg: experiment.ExperimentConfig, search: tuple_search.TupleSearchConfig
) -> dict[str, Any]:
    """The fixed reward batch: `reward_batch_size` examples (fewer if the split is smaller) of the
    reward split, drawn without replacement with `reward_seed`, unaugmented, as the view the
    method's `retrieval_reward` reads (``method.config.embed_view``)."""
    split = reward_split(cfg, search)
    source = inputs.build_eval_source(cfg, split)
    n = min(search.reward_batch_size, len(source))
    if n < 2:
        raise ValueError(
            f"reward split {split!r} has {len(source)} example(s); retrieval needs >= 2"
        )
    if n < search.reward_batch_size:
        log.warning(
            "reward split %r has %d examples < search.reward_batch_size %d: using all",
            split,
            n,
            search.reward_batch_size,
        )
    idx = np.sort(np.random.default_rng(search.reward_seed).choice(len(source), n, replace=False))
    ds = pipeline.eval_dataset(
        _Subset(source, idx),
        inputs.data_spec(cfg.data),
        batch_size=n,
        pad=False,
        process_index=0,
        process_count=1,
    )
    return {cfg.method.config.embed_view: ds[0]["view1"]}


@dataclasses.dataclass
class SearchResult:
    """The end of a search run."""

    state: Any  # jaxmm.train.TrainState of the kept candidate
    search: Any  # jaxmm.sample_optimization.SearchState
    records: list[dict[str, Any]]  # this invocation's round records (as in search.jsonl)
    start_round: int  # first round this invocation ran (> 0 when resumed)
    optimizer: Any  # the jaxmm.sample_optimization.SampleOptimizer (its compiled rounds)


def _hparams_dict(names: tuple[str, ...], log_alpha: np.ndarray, beta: Any) -> dict[str, Any]:
    return {
        "alpha": {n: float(a) for n, a in zip(names, np.exp(log_alpha), strict=True)},
        "beta": float(beta),
    }


def round_record(
    r: int,
    group: str,
    names: tuple[str, ...],
    info: dict[str, Any],
    mu: Any,
    step: int,
    start_reward: float,
    seconds: float,
) -> dict[str, Any]:
    """The JSON line of round `r` from `SampleOptimizer.round`'s host-side info."""
    rewards = np.asarray(info["rewards"], np.float64)
    losses = np.asarray(info["losses"], np.float64)
    best = int(info["best"])
    cands = [
        {
            **_hparams_dict(names, info["log_alpha"][i], info["beta"][i]),
            "reward": float(rewards[i]),
            "final_loss": float(losses[i, -1]),
        }
        for i in range(len(rewards))
    ]
    return {
        "round": r,
        "group": group,
        "step": step,
        "candidates": cands,
        "rewards": rewards.tolist(),
        "best": best,
        "best_reward": float(rewards[best]),
        # The kept candidate's retrieval reward (= best_reward in alpha rounds; beta rounds may
        # be rewarded by the public code's beta reward): the next round's start_reward.
        "best_retrieval": float(np.asarray(info.get("retrieval", rewards))[best]),
        "mean_reward": float(rewards.mean()),
        "start_reward": start_reward,
        "mu": _hparams_dict(names, np.asarray(mu.log_alpha), mu.beta),
        "seconds": seconds,
    }


def _read_log(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _resume_round(
    ckpt: ckpt_lib.Checkpointer, sckpt: ckpt_lib.Checkpointer, resume: bool, workdir: str
) -> int:
    main_steps, search_steps = set(ckpt.all_steps()), set(sckpt.all_steps())
    if not (main_steps or search_steps):
        return 0
    if not resume:
        raise ValueError(
            f"{workdir} already holds search checkpoints (rounds "
            f"{sorted(main_steps | search_steps)}); use resume or a new dir"
        )
    common = main_steps & search_steps
    if not common:
        raise ckpt_lib.CheckpointError(
            f"{workdir}: checkpoints/ (rounds {sorted(main_steps)}) and search/ (rounds "
            f"{sorted(search_steps)}) share no round to resume from"
        )
    return max(common)


def run(cfg: experiment.ExperimentConfig, search: tuple_search.TupleSearchConfig) -> SearchResult:
    """Runs (or resumes) the search of a `prepare`d config pair; see the module docstring."""
    import jax
    import jax.numpy as jnp

    from jaxmm import distributed
    from jaxmm import sample_optimization as so_lib
    from jaxmm import train as train_lib

    it, example = inputs.build_train_iterator(cfg, process_index=0, process_count=1)
    method = experiment.build_method(cfg)
    names = tuple(method.modality_names)
    # One device: the candidates are vmapped; the state uses the trainer's structures, so the
    # checkpoint is the TrainState `launch.probe` restores.
    mesh = distributed.make_mesh(jax.local_devices()[:1])
    trainer = train_lib.Trainer(method, experiment.train_config(cfg), example, mesh=mesh)
    optimizer = so_lib.SampleOptimizer(method, trainer.tx, search)
    val = reward_batch(cfg, search)
    reward_fn = jax.jit(method.retrieval_reward)

    workdir = os.path.abspath(cfg.train.workdir)
    os.makedirs(workdir, exist_ok=True)
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.train.keep)
    sckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "search"), max_to_keep=cfg.train.keep)
    log_path = os.path.join(workdir, LOG_FILE)
    records: list[dict[str, Any]] = []
    try:
        start = _resume_round(ckpt, sckpt, cfg.train.resume, workdir)
        search_state = so_lib.init_search(method.default_hparams())
        if start:
            saved = {
                "experiment": ckpt.restore_config(start),
                "search": sckpt.restore_config(start),
            }
            changes = training.config_changes(
                saved, {"experiment": cfg.to_dict(), "search": search.to_dict()}
            )
            if changes:
                log.warning(
                    "Resuming %s with configs that differ from the checkpoint's: %s",
                    workdir,
                    "; ".join(changes),
                )
            state = ckpt.restore(trainer.abstract_state(), step=start, data_iter=it)
            abstract = jax.eval_shape(
                lambda: {
                    "search": so_lib.init_search(method.default_hparams()),
                    "rounds_done": jnp.zeros((), jnp.int32),
                }
            )
            abstract = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=trainer.replicated),
                abstract,
            )
            restored = sckpt.restore(abstract, step=start)
            search_state = restored["search"]
            log.info("Resumed %s after round %d (step %d)", workdir, start - 1, int(state.step))
        else:
            state = trainer.init_state()
        # Lines of rounds past the checkpoint (a run stopped before their save finished) are redone.
        kept = [rec for rec in _read_log(log_path) if rec["round"] < start]
        with open(log_path, "w") as f:
            f.writelines(json.dumps(rec) + "\n" for rec in kept)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(
                {"experiment": cfg.to_dict(), "search": search.to_dict()},
                f,
                indent=2,
                sort_keys=True,
            )
            f.write("\n")
        log.info(
            "Search %s: %d rounds x %d candidates x %d steps at batch %d, reward on %d "
            "examples of %r, modalities %s, work dir %s",
            cfg.name,
            search.rounds,
            search.num_candidates,
            search.steps_per_candidate,
            cfg.train.batch_size,
            len(jax.tree.leaves(val)[0]),
            reward_split(cfg, search),
            list(names),
            workdir,
        )

        bar = progress.bar(
            desc="search",
            total=search.rounds,
            initial=start,
            disable=not cfg.train.progress,
            dynamic_ncols=True,
            unit="round",
        )
        try:
            for r in range(start, search.rounds):
                t0 = time.perf_counter()
                start_reward = float(reward_fn(state.params, val))
                batches = [next(it) for _ in range(search.steps_per_candidate)]
                # Labels are not read by the loss: only the views are stacked and sent to device.
                stacked = jax.tree.map(
                    lambda *xs: np.stack(xs),
                    *[{k: v for k, v in b.items() if k.startswith("view")} for b in batches],
                )
                # Fresh, restored, previous-round arrays all committed to one placement: every round
                # of a group reuses one compiled function (a no-op after the first round).
                params, opt_state, search_state = jax.device_put(
                    (state.params, state.opt_state, search_state), trainer.replicated
                )
                params, opt_state, search_state, info = optimizer.round(
                    params,
                    opt_state,
                    search_state,
                    stacked,
                    val,
                    jax.random.fold_in(state.rng, r),
                    r,
                )
                state = state.replace(
                    step=state.step + search.steps_per_candidate, params=params, opt_state=opt_state
                )
                done = r + 1
                ckpt.save(done, state, data_iter=it, config=cfg.to_dict())
                sckpt.save(
                    done,
                    {"search": search_state, "rounds_done": jnp.asarray(done, jnp.int32)},
                    config=search,
                )
                rec = round_record(
                    r,
                    search.group(r),
                    names,
                    jax.device_get(info),
                    search_state.mu,
                    int(state.step),
                    start_reward,
                    time.perf_counter() - t0,
                )
                records.append(rec)
                with open(log_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                bar.update(1)
                bar.set_postfix(
                    R=f"{rec['best_reward']:.3f}",
                    beta=f"{rec['mu']['beta']:.3f}",
                    alpha="/".join(f"{a:.2f}" for a in rec["mu"]["alpha"].values()),
                )
                log.info(
                    "round %d (%s): rewards %s, best %.4f (start %.4f); mu alpha %s beta %.4f",
                    r,
                    rec["group"],
                    np.round(rec["rewards"], 4).tolist(),
                    rec["best_reward"],
                    start_reward,
                    {k: round(v, 4) for k, v in rec["mu"]["alpha"].items()},
                    rec["mu"]["beta"],
                )
        finally:
            bar.close()
    finally:
        ckpt.close()
        sckpt.close()
    return SearchResult(
        state=state, search=search_state, records=records, start_round=start, optimizer=optimizer
    )


def _list() -> None:
    for name in search_config_names():
        variants = ", ".join(str(v) for v in configs.variants(name) if v is not None)
        print(f"{name}  variants: {variants}")
