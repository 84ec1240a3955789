"""Supervised fine-tuning of a pre-trained backbone (CoMM App. B.4, "Fine-tuning of CoMM").

CoMM App. B.4: "For all downstream classification tasks, we use the SupCon loss (Khosla et al.,
2020) to fine-tune CoMM (with no additional parameters) [...] we also use a linear head [...] We
systematically use early-stopping according to the validation accuracy". Two modes, both on a
classification task of the run's training split, with a stratified validation hold-out:

* ``"supcon"``: SupCon L_out (Khosla et al. 2020, Eq. 2; `jaxmm.estimators.supcon_loss`) on the
  embeddings of two augmented views of each example, no new parameters. The validation score of
  an epoch is the balanced accuracy of a logistic probe fitted on the held-in rows' embeddings.
* ``"linear"``: a linear head on the (fixed-standardised) embedding, trained jointly with the
  backbone under softmax cross-entropy on one augmented view; validated by the head itself.

After every epoch the validation balanced accuracy decides early stopping (``patience`` epochs
without improvement); the best parameters (possibly the pre-trained ones, epoch 0) are kept and
evaluated once on the test split: a linear probe (`jaxmm.probe.probe`) on their embeddings, and
for ``"linear"`` also the head's own test predictions. Single device, for small runs.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmm import estimators, optimizers
from jaxmm import probe as probe_lib
from jaxmm import probe_checkpoint as pc
from jaxmm.data import inputs, pipeline

__all__ = ["FINETUNE_MODES", "FinetuneConfig", "finetune"]

FINETUNE_MODES = ("supcon", "linear")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning schedule (small by default: a CPU-sized check, not the paper's 100 epochs)."""

    mode: str = "supcon"  # "supcon" (no new parameters) or "linear" (linear head + cross-entropy)
    epochs: int = 3  # maximum passes over the held-in training rows
    patience: int = 1  # stop after this many epochs without a better validation score
    lr: float = 1e-4  # AdamW learning rate (backbone and head)
    weight_decay: float = 1e-4  # decoupled decay on matrices only (`optimizers.decay_mask`)
    batch_size: int = 64  # examples per step
    val_fraction: float = 0.2  # stratified validation hold-out of the training split
    temperature: float = 0.1  # SupCon temperature
    max_steps_per_epoch: int | None = None  # cap on steps per epoch (None: one full pass)
    seed: int = 0  # hold-out split, shuffling, augmentation

    def __post_init__(self):
        if self.mode not in FINETUNE_MODES:
            raise ValueError(
                f"FinetuneConfig.mode must be one of {FINETUNE_MODES}, got {self.mode!r}"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"FinetuneConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ValueError(f"FinetuneConfig.patience must be >= 0, got {self.patience}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(
                "FinetuneConfig.max_steps_per_epoch must be >= 1 or None, got "
                f"{self.max_steps_per_epoch}"
            )


class _Subset:
    """Random-access view of ``source`` restricted to ``indices``."""

    def __init__(self, source, indices):
        self.source, self.indices = source, np.asarray(indices)

    def __len__(self):
        return int(self.indices.size)

    def __getitem__(self, i):
        return self.source[int(self.indices[i])]


def _labels_of(source, name: str) -> np.ndarray:
    return np.asarray([int(source[i][name]) for i in range(len(source))])


def finetune(
    run: pc.LoadedRun,
    task: probe_lib.ProbeTask,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    split: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Fine-tunes ``run``'s backbone on ``task`` and evaluates it on ``split`` (see module doc).

    Args:
      run: a restored run (`jaxmm.probe_checkpoint.load_run`); its parameters are not modified.
      task: a classification `ProbeTask` among the run's labels.
      config: the schedule.
      split: the test split (default the config's ``data.eval_split``).
      log: called with one progress line per epoch (None: silent).

    Returns:
      JSON-ready dict: ``history`` (per epoch: loss, val balanced accuracy), ``best_epoch``,
      ``probe`` (test probe on the best parameters' embeddings), ``head`` (linear mode: test
      balanced accuracy / accuracy of the trained head), ``seconds``.

    Raises:
      ValueError: a non-classification task or a task that is not a label of the run.
    """
    if task.kind != "classification":
        raise ValueError(
            f"fine-tuning supports classification tasks, got {task.name!r} of kind {task.kind!r}"
        )
    log = log or (lambda _: None)
    cfg = pc.probe_data(run.config)
    if task.name not in cfg.data.labels:
        raise ValueError(
            f"task {task.name!r} is not a label of this run; labels: {list(cfg.data.labels)}"
        )
    split = split or cfg.data.eval_split
    spec = inputs.data_spec(cfg.data)
    source = inputs.build_eval_source(cfg, cfg.data.train_split)
    y_all = _labels_of(source, task.name)
    k = int(task.num_classes or y_all.max() + 1)
    fit_idx, val_idx = probe_lib.stratified_split(
        y_all, config.val_fraction, jax.random.key(config.seed)
    )
    fit_src, val_src = _Subset(source, fit_idx), _Subset(source, val_idx)
    eval_bs = cfg.data.eval_batch_size
    method, supcon = run.method, config.mode == "supcon"
    embed = lambda p, view: method.embed(p, {"view1": view})

    def embeddings(params, src):
        return pc.embed_source(method, params, src, spec, batch_size=eval_bs)

    # The linear head reads embeddings standardised with the pre-trained statistics (fixed), so
    # its initial scale does not depend on the backbone's arbitrary feature scale.
    z0, _ = embeddings(run.params, fit_src)
    mean, std = jnp.mean(z0, 0), jnp.where(jnp.std(z0, 0) > 0, jnp.std(z0, 0), 1.0)
    head = {"w": jnp.zeros((z0.shape[1], k), jnp.float32), "b": jnp.zeros((k,), jnp.float32)}
    tx = optax.adamw(config.lr, weight_decay=config.weight_decay, mask=optimizers.decay_mask)
    trainable = (run.params, head)
    opt_state = tx.init(trainable)

    def loss_fn(trainable, batch):
        params, head = trainable
        y = batch["labels"][task.name]
        if supcon:
            z = jnp.stack([embed(params, batch["view1"]), embed(params, batch["view2"])], axis=1)
            return estimators.supcon_loss(z, y, temperature=config.temperature)
        logits = ((embed(params, batch["view1"]) - mean) / std) @ head["w"] + head["b"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    @jax.jit
    def step(trainable, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(trainable, batch)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, loss

    def val_score(trainable):
        params, head = trainable
        zv, yv = embeddings(params, val_src)
        yv = jnp.asarray(yv[task.name])
        if supcon:
            zf, yf = embeddings(params, fit_src)
            xs, m, s = probe_lib.standardize(zf)
            fit = probe_lib.fit_logistic(xs, yf[task.name], 1e-4, num_classes=k)
            logits = probe_lib.standardize(zv, m, s)[0] @ fit.w + fit.b
        else:
            logits = ((zv - mean) / std) @ head["w"] + head["b"]
        return float(probe_lib.balanced_accuracy(yv, jnp.argmax(logits, -1), k))

    n_views = 2 if supcon else 1
    steps = max(1, len(fit_src) // config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    batches = iter(
        pipeline.train_dataset(
            fit_src,
            spec,
            batch_size=config.batch_size,
            seed=config.seed,
            num_views=n_views,
            process_index=0,
            process_count=1,
        ).to_iter_dataset()
    )
    t0 = time.perf_counter()
    # Epoch 0 is the pre-trained model: fine-tuning must beat it on validation to be kept (the
    # linear head starts at zero, so its epoch-0 score is chance by construction).
    best = (val_score(trainable), 0, trainable)
    history = [{"epoch": 0, "loss": None, "val_balanced_accuracy": best[0]}]
    log(f"  finetune[{config.mode}] {task.name}: epoch 0 val balanced acc {best[0]:.4f}")
    since_best = 0
    for epoch in range(1, config.epochs + 1):
        losses = []
        for _ in range(steps):
            trainable, opt_state, loss = step(trainable, opt_state, next(batches))
            losses.append(float(loss))
        score = val_score(trainable)
        history.append(
            {"epoch": epoch, "loss": float(np.mean(losses)), "val_balanced_accuracy": score}
        )
        log(
            f"  finetune[{config.mode}] {task.name}: epoch {epoch} loss {np.mean(losses):.4f} "
            f"val balanced acc {score:.4f}"
        )
        if score > best[0]:
            best, since_best = (score, epoch, trainable), 0
        else:
            since_best += 1
            if since_best > config.patience:
                break
    t_train = time.perf_counter() - t0
    _, best_epoch, (params, head) = best
    train = embeddings(params, source)
    test = embeddings(params, inputs.build_eval_source(cfg, split))
    result = pc.probe_embeddings(train, test, [dataclasses.replace(task, num_classes=k)])
    out = {
        "task": task.name,
        "config": dataclasses.asdict(config),
        "history": history,
        "best_epoch": best_epoch,
        "probe": result[task.name],
        "test_split": split,
        "seconds": {"train": t_train, "total": time.perf_counter() - t0},
    }
    if not supcon:
        pred = jnp.argmax(((test[0] - mean) / std) @ head["w"] + head["b"], -1)
        y = jnp.asarray(test[1][task.name])
        out["head"] = {
            "balanced_accuracy": float(probe_lib.balanced_accuracy(y, pred, k)),
            "accuracy": float(probe_lib.accuracy(y, pred)),
        }
    return out


def finetune_tasks(
    run: pc.LoadedRun,
    report: dict[str, Any],
    config: FinetuneConfig,
    *,
    split: str | None = None,
    printer=print,
) -> dict[str, dict[str, Any]]:
    """`finetune` for every classification task of a `probe_checkpoint.probe_run` report.

    Prints one line per task (best epoch, fine-tuned vs frozen probe) through `printer`; other
    task kinds are skipped with a line. Returns ``{task: finetune(...) result}``.
    """
    printer(
        f"\nFine-tuning ({config.mode}, at most {config.epochs} epochs, patience "
        f"{config.patience}):"
    )
    out_all = {}
    for name, res in report["tasks"].items():
        if res["kind"] != "classification":
            printer(f"  {name}: skipped ({res['kind']} task; fine-tuning is classification only)")
            continue
        task = probe_lib.ProbeTask(name, "classification", res["num_classes"])
        out = finetune(run, task, config, split=split)
        out_all[name] = out
        line = (
            f"  {name}: best epoch {out['best_epoch']}, test balanced acc (probe) "
            f"{out['probe']['metrics']['balanced_accuracy']:.4f} vs frozen "
            f"{res['metrics']['balanced_accuracy']:.4f}"
        )
        if "head" in out:
            line += f", head {out['head']['balanced_accuracy']:.4f}"
        printer(line)
    return out_all
