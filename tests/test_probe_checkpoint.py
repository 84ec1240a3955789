"""Probing a run from its checkpoint directory alone: restore, embed, probe, CLI, errors."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxmm import configs, experiment
from jaxmm import finetune as ft_lib
from jaxmm import probe as probe_lib
from jaxmm import probe_checkpoint as pc
from jaxmm.checkpoint import CheckpointError
from jaxmm.data import inputs
from launch import probe as probe_cli
from launch import train as train_launch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(name, workdir, data_dir, steps=2):
    cfg = experiment.override(
        configs.get_config(name, "smoke"),
        [
            f"train.workdir={workdir}",
            f"train.steps={steps}",
            "train.ckpt_every=0",
            f"data.data_dir={data_dir}",
        ],
    )
    train_launch.prepare(cfg)
    return cfg, train_launch.run(cfg)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def comm_run(tmp_path_factory, data_dir):
    workdir = str(tmp_path_factory.mktemp("comm_run"))
    cfg, state = _train("comm_trifeature", workdir, data_dir)
    return workdir, cfg, state


def test_restored_params_equal_the_trained_ones(comm_run):
    workdir, cfg, state = comm_run
    run = pc.load_run(workdir)
    assert run.step == 2 and run.config == cfg
    # Passing the checkpoints dir itself works too.
    assert pc.load_run(os.path.join(workdir, "checkpoints")).step == 2
    trained, restored = jax.tree.leaves(state.params), jax.tree.leaves(run.params)
    assert len(trained) == len(restored)
    for a, b in zip(trained, restored, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_padded_rows_are_dropped_by_the_mask(comm_run):
    workdir, cfg, _ = comm_run
    run = pc.load_run(workdir)
    # 64 test pairs: batch 64 needs no padding; batch 48 pads 32 copies that must be dropped.
    z64, y64 = pc.extract_embeddings(run.method, run.params, cfg, "test", batch_size=64)
    z48, y48 = pc.extract_embeddings(run.method, run.params, cfg, "test", batch_size=48)
    assert z64.shape == (64, 16) and z48.shape == z64.shape
    np.testing.assert_allclose(z48, z64, rtol=1e-5, atol=1e-6)
    for name in cfg.data.labels:
        np.testing.assert_array_equal(y48[name], y64[name])
    # The labels are the dataset's own, in order.
    source = inputs.build_eval_source(cfg, "test")
    np.testing.assert_array_equal(y64["shape"], [int(source[i]["shape"]) for i in range(64)])
    tasks = pc.default_tasks(cfg, y64)
    assert [(t.name, t.kind) for t in tasks] == [(n, "classification") for n in cfg.data.labels]
    assert {t.name: t.num_classes for t in tasks}["synergy"] == int(y64["synergy"].max()) + 1


def test_cli_in_a_separate_process_writes_table_and_json(comm_run, tmp_path):
    workdir, _, _ = comm_run
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.probe",
            "--workdir",
            workdir,
            "--tasks",
            "shape,texture1,texture2,synergy",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "balanced_accuracy" in proc.stdout and "redundancy" in proc.stdout
    report = json.loads(out.read_text())
    assert report["method"] == "comm" and report["step"] == 2
    assert (report["num_train"], report["num_test"], report["embed_dim"]) == (64, 64, 16)
    assert list(report["tasks"]) == ["shape", "texture1", "texture2", "synergy"]
    for res in report["tasks"].values():
        assert 0.0 <= res["metrics"]["balanced_accuracy"] <= 1.0
    assert report["tasks"]["shape"]["chance"]["balanced_accuracy"] == pytest.approx(0.1)
    rus = report["rus"]
    u = report["tasks"]["texture1"], report["tasks"]["texture2"]
    assert rus["uniqueness"]["value"] == pytest.approx(
        (u[0]["metrics"]["balanced_accuracy"] + u[1]["metrics"]["balanced_accuracy"]) / 2
    )
    assert rus["synergy"]["chance"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "name", ["cross_trifeature", pytest.param("factorcl_trifeature", marks=pytest.mark.slow)]
)
def test_other_methods_probe_from_the_directory_alone(name, tmp_path, data_dir):
    workdir = str(tmp_path / name)
    _, state = _train(name, workdir, data_dir)
    run = pc.load_run(workdir)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(run.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    report = pc.probe_run(run, tasks=["shape", "color1"])
    assert report["method"] == run.config.method.name
    assert report["num_test"] == 64 and set(report["tasks"]) == {"shape", "color1"}
    assert report["rus"] is None  # not every R/U/S task was probed
    assert "shape" in pc.format_report(report)


def test_biased_runs_are_probed_on_the_unbiased_pairs():
    cfg = configs.get_config("comm_trifeature", "biased")
    assert cfg.data.builder_config == "px32_biased"
    assert pc.probe_data(cfg).data.builder_config == "px32"
    smoke = configs.get_config("comm_trifeature", "smoke")
    assert pc.probe_data(smoke) is smoke


def _error_line(capsys, argv):
    rc = probe_cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    rc, err = _error_line(capsys, ["--workdir", missing])
    assert rc == 2 and len(err) == 1 and missing in err[0] and "does not exist" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, err = _error_line(capsys, ["--workdir", str(empty)])
    assert rc == 2 and len(err) == 1 and "No checkpoint found" in err[0] and str(empty) in err[0]
    with pytest.raises(CheckpointError, match="steps"):
        pc.load_run(empty, step=7)


def test_wrong_step_names_the_steps_on_disk(comm_run, capsys):
    workdir, _, _ = comm_run
    rc, err = _error_line(capsys, ["--workdir", workdir, "--step", "7"])
    assert rc == 2 and len(err) == 1 and "step 7" in err[0] and "[2]" in err[0]


@pytest.mark.parametrize("part", ["state", "config"])
def test_corrupt_checkpoint_is_one_clear_error(comm_run, tmp_path, capsys, part):
    workdir, _, _ = comm_run
    broken = tmp_path / "broken"
    shutil.copytree(workdir, broken)
    target = broken / "checkpoints" / "2" / part
    files = [os.path.join(d, f) for d, _, fs in os.walk(target) for f in fs]
    assert files
    for f in files:  # truncate and garble every file of the item
        with open(f, "wb") as fh:
            fh.write(b"\x00garbage")
    rc, err = _error_line(capsys, ["--workdir", str(broken)])
    assert rc == 2 and len(err) == 1
    assert str(broken / "checkpoints" / "2") in err[0]


@pytest.mark.parametrize("mode", ["linear", pytest.param("supcon", marks=pytest.mark.slow)])
def test_finetune_keeps_the_best_epoch_and_leaves_the_run_untouched(comm_run, mode):
    workdir, _, _ = comm_run
    run = pc.load_run(workdir)
    before = [np.array(x) for x in jax.tree.leaves(run.params)]
    task = probe_lib.ProbeTask("shape", "classification", 10)
    cfg = ft_lib.FinetuneConfig(
        mode=mode, epochs=2, patience=0, batch_size=8, max_steps_per_epoch=2
    )
    out = ft_lib.finetune(run, task, cfg, log=None)
    scores = [h["val_balanced_accuracy"] for h in out["history"]]
    # Early stopping with patience 0: stop at the first epoch that does not improve.
    assert 2 <= len(scores) <= 3 and out["best_epoch"] == int(np.argmax(scores))
    assert 0.0 <= out["probe"]["metrics"]["balanced_accuracy"] <= 1.0
    assert ("head" in out) == (mode == "linear")
    for a, b in zip(before, jax.tree.leaves(run.params), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    with pytest.raises(ValueError, match="classification"):
        ft_lib.finetune(run, probe_lib.ProbeTask("shape", "regression"))
    with pytest.raises(ValueError, match="mode"):
        ft_lib.FinetuneConfig(mode="full")


def test_damaged_latest_checkpoint_falls_back_to_an_older_one(comm_run, tmp_path, caplog):
    workdir, _, state = comm_run
    broken = tmp_path / "broken"
    shutil.copytree(workdir, broken)
    ckpts = broken / "checkpoints"
    shutil.copytree(ckpts / "2", ckpts / "1")  # an intact older step (same parameters)
    shutil.rmtree(ckpts / "2" / "state")
    run = pc.load_run(broken)
    assert run.step == 1
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "jaxmm.probe_checkpoint"]
    assert "step 2" in warning and "no state/ directory; trying step 1" in warning
    with pytest.raises(CheckpointError, match="no state/ directory"):
        pc.load_run(broken, step=2)  # an explicit step never falls back
