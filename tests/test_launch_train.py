"""`python -m launch.train`: a smoke run writes a checkpoint with its config and resumes from it."""

import json
import os

from jaxmm import checkpoint as ckpt_lib
from jaxmm import configs
from jaxmm import experiment as ex
from jaxmm import train as train_lib
from jaxmm.data import inputs
from launch import train as launch_train


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.join(dirpath, name)] = f.read()
    return out


def test_smoke_run_checkpoints_its_config_and_resumes(tmp_path, caplog, capsys):
    workdir, data = str(tmp_path / "run"), str(tmp_path / "data")
    argv = [
        "--config",
        "comm_trifeature",
        "--variant",
        "smoke",
        "--workdir",
        workdir,
        "--data-dir",
        data,
    ]
    assert launch_train.main(argv) == 0
    ckpt_dir = os.path.join(workdir, "checkpoints")
    with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
        assert ckpt.all_steps() == [2, 4]  # smoke: ckpt_every=2, steps=4
    assert [m["step"] for m in _metrics(workdir)] == [1, 2, 3, 4]

    # The checkpoint alone rebuilds the experiment, the method and the state's structure.
    saved = ex.ExperimentConfig.from_dict(ckpt_lib.load_config(ckpt_dir))
    want = ex.override(
        configs.get_config("comm_trifeature", "smoke"),
        [f"train.workdir={workdir}", f"data.data_dir={data}"],
    )
    assert saved == want
    _, example = inputs.build_train_iterator(saved, process_index=0, process_count=1)
    trainer = train_lib.Trainer(ex.build_method(saved), ex.train_config(saved), example)
    with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
        state = ckpt.restore(trainer.abstract_state())
    assert int(state.step) == 4

    # Second invocation: resumes at step 4 and runs to the new end.
    # Other in-process entry points (the demo) quiet these loggers; set them for this test only.
    for name in (None, "jaxmm.train", "jaxmm.experiments.training", "launch.train"):
        caplog.set_level("INFO", logger=name)
    assert launch_train.main([*argv, "--set", "train.steps=6", "--set", "train.ckpt_every=3"]) == 0
    assert "Resumed from" in caplog.text and "differs from the checkpoint's" in caplog.text
    assert "train.ckpt_every changed 2 -> 3" in caplog.text  # accepted, and said so
    assert [m["step"] for m in _metrics(workdir)] == [1, 2, 3, 4, 5, 6]
    with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
        assert ckpt.latest_step() == 6
    before = _snapshot(workdir)
    capsys.readouterr()
    assert launch_train.main([*argv, "--no-resume"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and "already holds checkpoint step 6" in err[0]
    assert _snapshot(workdir) == before  # config.json included: nothing rewritten


def test_bad_command_lines_fail_before_compute(capsys):
    assert (
        launch_train.main(
            ["--config", "comm_trifeature", "--variant", "smoke", "--set", "optimizer.lrr=1"]
        )
        == 2
    )
    assert "'optimizer.lrr'" in capsys.readouterr().err
    assert launch_train.main(["--config", "comm_trifeature", "--variant", "tiny"]) == 2
    assert "unknown variant 'tiny'" in capsys.readouterr().err
    assert launch_train.main(["--config", "comm_imagenet"]) == 2
    assert "unknown experiment config 'comm_imagenet'" in capsys.readouterr().err


def test_list_prints_every_config(capsys):
    assert launch_train.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in configs.names())


def test_print_config_is_the_json_of_the_overridden_config(capsys):
    assert (
        launch_train.main(
            [
                "--config",
                "factorcl_ssl_synthetic",
                "--variant",
                "smoke",
                "--print-config",
                "--set",
                "optimizer.lr=0.01",
            ]
        )
        == 0
    )
    cfg = ex.ExperimentConfig.from_json(capsys.readouterr().out)
    assert cfg.optimizer.lr == 0.01 and cfg.method.name == "factorcl"


def test_sigterm_exits_75_after_a_checkpoint(tmp_path, monkeypatch, capsys):
    # The resumed run is checked bitwise in tests/test_faults.py (a real SIGTERM to a process).
    import signal

    workdir = str(tmp_path / "run")
    argv = ["--config", "comm_trifeature", "--variant", "smoke", "--workdir", workdir]
    argv += ["--data-dir", str(tmp_path / "data")]
    shard, calls = train_lib.Trainer.shard, []

    def shard_then_sigterm(self, batch):
        calls.append(1)
        if len(calls) == 3:  # the notice arrives while step 3's batch is prepared
            signal.raise_signal(signal.SIGTERM)
        return shard(self, batch)

    monkeypatch.setattr(train_lib.Trainer, "shard", shard_then_sigterm)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    assert launch_train.main(argv) == launch_train.EXIT_PREEMPTED == 75
    assert signal.getsignal(signal.SIGTERM) is sigterm_before
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and "preempted (SIGTERM) at step 3; checkpoint saved in" in err[0]
    with ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True) as ckpt:
        assert ckpt.all_steps() == [2, 3]  # smoke: ckpt_every=2, and the preemption's step
    assert [m["step"] for m in _metrics(workdir)] == [1, 2, 3]
    assert not [n for n in os.listdir(workdir) if n.startswith("lock.")]  # released
