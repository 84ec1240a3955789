"""Linear probes of a trained run, from its checkpoint directory alone.

A run's ``checkpoints/<step>/config`` holds its `jaxmm.experiment.ExperimentConfig` as JSON, which
is all a probe needs: the config rebuilds the method (`experiment.build_method`) and the abstract
train state (`jaxmm.train.Trainer.abstract_state`, shapes only), orbax restores the parameters into
it (nothing is initialised just to be overwritten), a jitted ``method.embed`` runs over the
unaugmented evaluation pipeline (`pipeline.eval_dataset`, whose padded rows are dropped with the
batch's ``"mask"``), and `jaxmm.probe` fits the linear probes (CoMM Sec. 4, "Evaluation").

Bimodal Trifeature (CoMM Sec. 4.1, Fig. 4): the probe tasks are read as redundancy (``shape``),
uniqueness (``texture1``, ``texture2``) and synergy (``synergy``). The synergy experiment
pre-trains on the *biased* pairs, whose every pair respects the texture -> colour mapping, so the
synergy label is constant there and no probe can be fitted on them: probes of a biased run are
fitted on the unbiased training pairs of the matching config and tested on the (shared, unbiased)
test pairs (`probe_data`).

Example:
  >>> run = load_run("workdirs/comm_trifeature")
  >>> report = probe_run(run)
  >>> print(format_report(report))
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxmm import checkpoint as ckpt_lib
from jaxmm import distributed, experiment, validation
from jaxmm import probe as probe_lib
from jaxmm import train as train_lib
from jaxmm import workdir as workdir_lib
from jaxmm.checkpoint import CheckpointError
from jaxmm.data import builders, inputs, pipeline

log = logging.getLogger(__name__)

__all__ = [
    "RUS_TASKS",
    "LoadedRun",
    "checkpoint_dir",
    "default_tasks",
    "embed_source",
    "extract_embeddings",
    "format_report",
    "load_run",
    "probe_data",
    "probe_embeddings",
    "probe_run",
    "rus_summary",
]

# CoMM Fig. 4: which Trifeature task measures which interaction.
RUS_TASKS: dict[str, tuple[str, ...]] = {
    "redundancy": ("shape",),
    "uniqueness": ("texture1", "texture2"),
    "synergy": ("synergy",),
}
_TRIFEATURE = "trifeature"
_BIASED_SUFFIX = "_biased"


@dataclasses.dataclass
class LoadedRun:
    """A restored run: its config, method, parameters and where they came from."""

    config: experiment.ExperimentConfig
    method: Any  # a jaxmm.methods.base.Method whose graph matches `params`
    params: Any  # the method's parameter pytree (on one device)
    step: int  # checkpoint step restored
    directory: str  # the `checkpoints/` directory


def checkpoint_dir(workdir: str | os.PathLike) -> str:
    """``workdir/checkpoints`` if it exists, else ``workdir`` itself (a checkpoints dir given)."""
    workdir = workdir_lib.path(workdir)  # local or a URI such as gs://...
    sub = workdir / "checkpoints"
    return os.fspath(sub if sub.is_dir() else workdir)


def load_run(workdir: str | os.PathLike, step: int | None = None) -> LoadedRun:
    """Rebuilds the method of a run from its checkpoint and restores its parameters.

    Args:
      workdir: the run's work dir (holding ``checkpoints/``) or the checkpoints dir itself.
      step: checkpoint step; None = the latest.

    Returns:
      A `LoadedRun`.

    Raises:
      CheckpointError: the directory is missing or empty, the step does not exist, or the
        config / state cannot be read (one error naming the path).
    """
    directory = checkpoint_dir(workdir)
    with ckpt_lib.Checkpointer(directory, read_only=True) as ckpt:
        if step is not None:
            return _load_step(ckpt, directory, step)
        # The latest step first; a damaged one is reported in one line and an older one tried.
        steps = sorted(ckpt.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(f"No checkpoint found in {directory}")
        failed = []
        for i, s in enumerate(steps):
            try:
                return _load_step(ckpt, directory, s)
            except CheckpointError as e:
                failed.append(f"step {s}: {e}")
                if i + 1 < len(steps):
                    log.warning(
                        "Checkpoint step %d in %s is unreadable: %s; trying step %d",
                        s,
                        directory,
                        e,
                        steps[i + 1],
                    )
    raise CheckpointError(f"No checkpoint in {directory} could be restored ({'; '.join(failed)})")


def _load_step(ckpt: ckpt_lib.Checkpointer, directory: str, step: int) -> LoadedRun:
    raw = ckpt.restore_config(step)  # one CheckpointError naming the path if absent
    where = workdir_lib.path(directory) / str(step)
    try:
        cfg = experiment.ExperimentConfig.from_dict(raw)
        method = experiment.build_method(cfg)
        example = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), validation.example_spec(cfg))
    except ValueError as e:
        raise CheckpointError(
            f"Checkpoint {where} holds an unusable config: {ckpt_lib.one_line(e, 400)}"
        ) from e
    # One device: probing is a single-process pass over small frozen embeddings.
    mesh = distributed.make_mesh(jax.local_devices()[:1])
    trainer = train_lib.Trainer(method, experiment.train_config(cfg), example, mesh=mesh)
    state = ckpt.restore(trainer.abstract_state(), step=step)
    return LoadedRun(config=cfg, method=method, params=state.params, step=step, directory=directory)


def probe_data(cfg: experiment.ExperimentConfig) -> experiment.ExperimentConfig:
    """The config whose splits the probes read: ``cfg``, or the unbiased twin of a biased one.

    A biased Trifeature config (``px<N>_biased``) trains on pairs that all respect the synergy
    mapping (constant synergy label); its probes use the matching unbiased config (same size and
    overrides), whose test pairs are the very same (see the builder).

    Raises:
      ValueError: a biased config without an unbiased counterpart.
    """
    data = cfg.data
    name = data.builder_config
    if data.builder != _TRIFEATURE or not (name or "").endswith(_BIASED_SUFFIX):
        return cfg
    unbiased = name[: -len(_BIASED_SUFFIX)]
    known = dict(builders.builder_class(data.builder).builder_configs)
    if unbiased not in known or getattr(known[unbiased], "biased", True):
        raise ValueError(
            f"config {name!r} of {data.builder!r} has no unbiased counterpart "
            f"{unbiased!r}; configs: {sorted(known)}"
        )
    return dataclasses.replace(cfg, data=dataclasses.replace(data, builder_config=unbiased))


def embed_source(
    method: Any, params: Any, source: Any, spec: Any, *, batch_size: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frozen embeddings and labels of every example of a random-access ``source``.

    Runs a jitted ``method.embed`` over `pipeline.eval_dataset` batches (no augmentation, padded
    to equal sizes so one compilation serves the whole pass) and keeps the rows whose ``"mask"``
    is True.

    Returns:
      ``(embeddings (n, D) float32, {label: (n, ...)})``, in source order.
    """
    ds = pipeline.eval_dataset(
        source, spec, batch_size=batch_size, process_index=0, process_count=1
    )
    embed = _jitted_embed(method)
    embs, labels = [], {}
    for batch in ds.to_iter_dataset():
        keep = np.asarray(batch["mask"], bool)
        embs.append(np.asarray(embed(params, batch["view1"]))[keep])
        for name, y in batch["labels"].items():
            labels.setdefault(name, []).append(np.asarray(y)[keep])
    emb = np.concatenate(embs).astype(np.float32)
    return emb, {k: np.concatenate(v) for k, v in labels.items()}


# One compiled embed per live method object: a fresh jax.jit per pass would recompile each time.
_EMBED_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _jitted_embed(method: Any):
    if method not in _EMBED_FNS:
        _EMBED_FNS[method] = jax.jit(lambda p, view: method.embed(p, {"view1": view}))
    return _EMBED_FNS[method]


def extract_embeddings(
    method: Any,
    params: Any,
    cfg: experiment.ExperimentConfig,
    split: str,
    *,
    batch_size: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`embed_source` on ``split`` of the config's dataset (built on demand)."""
    return embed_source(
        method,
        params,
        inputs.build_eval_source(cfg, split),
        inputs.data_spec(cfg.data),
        batch_size=cfg.data.eval_batch_size if batch_size is None else batch_size,
    )


def default_tasks(
    cfg: experiment.ExperimentConfig,
    labels: Mapping[str, np.ndarray],
    names: Sequence[str] | None = None,
    class_weights: Mapping[str, str | None] | None = None,
) -> list[probe_lib.ProbeTask]:
    """Probe tasks for the run's labels (or ``names``), their kind read from the dataset.

    Integer scalars are classification (``num_classes`` from the builder's ``ClassLabel`` feature
    where it has one, else the largest label seen plus one), 0/1 float vectors multilabel, other
    floats regression.

    ``class_weights`` maps a classification task's name to its ``ProbeTask.class_weight``
    (``"balanced"``); the others weigh every example alike.

    Raises:
      ValueError: a requested task that is not one of the run's labels.
    """
    names = list(cfg.data.labels if names is None else names)
    class_weights = dict(class_weights or {})
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise ValueError(f"task(s) {unknown} are not labels of this run; labels: {sorted(labels)}")
    features = inputs.dataset_features(cfg.data)
    tasks = []
    for name in names:
        y = np.asarray(labels[name])
        if np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
            k = getattr(features[name], "num_classes", None) if name in features else None
            tasks.append(
                probe_lib.ProbeTask(
                    name, "classification", int(k or y.max() + 1), None, class_weights.get(name)
                )
            )
        elif y.ndim == 2 and np.isin(y, (0.0, 1.0)).all():
            tasks.append(probe_lib.ProbeTask(name, "multilabel", y.shape[1]))
        else:
            tasks.append(probe_lib.ProbeTask(name, "regression"))
    return tasks


def _result_dict(res: probe_lib.ProbeResult) -> dict[str, Any]:
    return {
        "kind": res.task.kind,
        "num_classes": res.task.num_classes,
        "class_weight": res.task.class_weight,
        "metrics": res.metrics,
        "chance": res.chance,
        "l2": res.l2,
        "val_scores": {f"{k:g}": v for k, v in res.val_scores.items()},
        "fit_info": res.fit_info,
    }


def probe_embeddings(
    train: tuple[np.ndarray, Mapping[str, np.ndarray]],
    test: tuple[np.ndarray, Mapping[str, np.ndarray]],
    tasks: Sequence[probe_lib.ProbeTask],
    **probe_kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """`jaxmm.probe.probe_many` on ``(embeddings, labels)`` pairs, as JSON-ready dicts."""
    results = probe_lib.probe_many(train[0], train[1], test[0], test[1], tasks, **probe_kwargs)
    return {name: _result_dict(res) for name, res in results.items()}


def rus_summary(
    tasks: Mapping[str, Mapping[str, Any]], metric: str = "balanced_accuracy"
) -> dict[str, dict[str, float]] | None:
    """CoMM Fig. 4's redundancy / uniqueness / synergy scores (means over each group's tasks).

    Returns None unless every Trifeature task of `RUS_TASKS` was probed.
    """
    if not all(t in tasks for group in RUS_TASKS.values() for t in group):
        return None
    out = {}
    for group, names in RUS_TASKS.items():
        out[group] = {
            "value": float(np.mean([tasks[n]["metrics"][metric] for n in names])),
            "chance": float(np.mean([tasks[n]["chance"][metric] for n in names])),
            "tasks": list(names),
        }
    return out


def probe_run(
    run: LoadedRun,
    *,
    split: str | None = None,
    train_split: str | None = None,
    tasks: Sequence[str] | None = None,
    batch_size: int | None = None,
    class_weights: Mapping[str, str | None] | None = None,
    compare_unweighted: bool = False,
    **probe_kwargs: Any,
) -> dict[str, Any]:
    """Embeds the train and test splits of a restored run and fits a linear probe per task.

    Args:
      run: from `load_run`.
      split: the split reported on (default the config's ``data.eval_split``).
      train_split: the split probes are fitted on (default the config's ``data.train_split``).
      tasks: label names to probe (default all of the config's ``data.labels``).
      batch_size: evaluation batch (default ``data.eval_batch_size``).
      class_weights: {task name: "balanced"} for class-weighted probes (see `ProbeTask`).
      compare_unweighted: also fit each class-weighted task without weights, on the same
        embeddings; reported under ``tasks_unweighted``.
      probe_kwargs: passed to `jaxmm.probe.probe` (``l2_grid``, ``val_fraction``, ``seed``, ...).

    Returns:
      A JSON-ready report: run info, ``tasks`` ({name: kind, metrics, chance, l2, ...}) and, for
      Trifeature, ``rus`` (`rus_summary`).
    """
    cfg = probe_data(run.config)
    split = split or cfg.data.eval_split
    train_split = train_split or cfg.data.train_split
    t0 = time.perf_counter()
    train = extract_embeddings(run.method, run.params, cfg, train_split, batch_size=batch_size)
    test = extract_embeddings(run.method, run.params, cfg, split, batch_size=batch_size)
    t_embed = time.perf_counter() - t0
    task_list = default_tasks(cfg, train[1], tasks, class_weights)
    t0 = time.perf_counter()
    results = probe_embeddings(train, test, task_list, **probe_kwargs)
    unweighted = {}
    if compare_unweighted:
        plain = [dataclasses.replace(t, class_weight=None) for t in task_list if t.class_weight]
        unweighted = probe_embeddings(train, test, plain, **probe_kwargs) if plain else {}
    report = {
        "experiment": run.config.name,
        "method": run.config.method.name,
        "step": run.step,
        "checkpoints": run.directory,
        "pretrain_data": _data_name(run.config),
        "probe_data": _data_name(cfg),
        "train_split": train_split,
        "test_split": split,
        "num_train": int(train[0].shape[0]),
        "num_test": int(test[0].shape[0]),
        "embed_dim": int(train[0].shape[1]),
        "tasks": results,
        "seconds": {"embed": t_embed, "probe": time.perf_counter() - t0},
    }
    if compare_unweighted:
        report["tasks_unweighted"] = unweighted
    if cfg.data.builder == _TRIFEATURE:
        report["rus"] = rus_summary(results)
    return report


def _data_name(cfg: experiment.ExperimentConfig) -> str:
    d = cfg.data
    extra = f" + overrides {d.builder_overrides}" if d.builder_overrides else ""
    return f"{d.builder}/{d.builder_config or 'default'}{extra}"


def format_report(report: Mapping[str, Any]) -> str:
    """The probe table of a `probe_run` report (and the R/U/S summary where there is one)."""
    results = {
        name: probe_lib.ProbeResult(
            task=probe_lib.ProbeTask(name, r["kind"], r["num_classes"]),
            metrics=r["metrics"],
            l2=r["l2"],
            val_scores={},
            chance=r["chance"],
            fit_info=r["fit_info"],
        )
        for name, r in report["tasks"].items()
    }
    head = (
        f"{report['experiment']} (method {report['method']}, step {report['step']}): "
        f"probes fitted on {report['probe_data']} {report['train_split']} "
        f"({report['num_train']}), tested on {report['test_split']} ({report['num_test']}), "
        f"embedding dim {report['embed_dim']}"
    )
    lines = [head, probe_lib.format_table(results)]
    if report.get("rus"):
        lines += ["", "Trifeature interactions (CoMM Fig. 4), balanced accuracy:"]
        for group, r in report["rus"].items():
            lines.append(
                f"  {group:<11} {100 * r['value']:6.1f}%   chance "
                f"{100 * r['chance']:5.1f}%   ({', '.join(r['tasks'])})"
            )
    return "\n".join(lines)
