"""`python -m launch.search`: TupleInfoNCE's sample optimisation end to end — round log, REINFORCE
step against NumPy, checkpoints that `launch.probe` restores, resumption after the last round."""

import json
import math
import os

import jax
import numpy as np
import pytest

from jaxmm import checkpoint as ckpt_lib
from jaxmm import configs
from jaxmm import experiment as ex
from jaxmm import probe_checkpoint as pc
from jaxmm.configs import tuple_search
from jaxmm.experiments import search as launch_search
from jaxmm.methods.tuple_infonce import DEFAULT_BETA, PIXEL_LEVEL
from launch import search as search_cli

NAME = "tuple_infonce_trifeature_search"


def _log(workdir):
    with open(os.path.join(workdir, launch_search.LOG_FILE)) as f:
        return [json.loads(line) for line in f]


def _log_alpha(cand):
    return np.log([cand["alpha"][m] for m in ("image1", "image2")])


def _expected_first_mu(rec, std, lr):
    """NumPy: the first Adam step of log mu (from 0) on g = mean_i R~_i (theta_i - mu) / std^2.

    Adam's first update is lr * g / (|g| + eps) (bias-corrected moments m = g, v = g^2).
    """
    r = np.asarray(rec["rewards"], np.float64)
    if r.std() == 0:
        return np.zeros(2)
    rn = (r - r.mean()) / (r.std() + 1e-8)
    theta = np.stack([_log_alpha(c) for c in rec["candidates"]])
    g = np.mean(rn[:, None] * theta / std**2, axis=0)
    return lr * g / (np.abs(g) + 1e-8)


def test_smoke_search_logs_checkpoints_and_resumes(tmp_path, caplog, capsys):
    workdir, data = str(tmp_path / "run"), str(tmp_path / "data")
    argv = ["--config", NAME, "--variant", "smoke", "--workdir", workdir, "--data-dir", data]
    assert search_cli.main(argv) == 0
    recs = _log(workdir)
    search = tuple_search.get_search_config("smoke")
    assert [r["round"] for r in recs] == [0, 1] and [r["group"] for r in recs] == ["alpha", "beta"]
    assert [r["step"] for r in recs] == [2, 4]  # 2 encoder steps per round are kept
    for rec in recs:
        rewards = [c["reward"] for c in rec["candidates"]]
        # alpha rounds: retrieval accuracy in [0, 1]; beta rounds: the public code's beta reward,
        # 1 - ((beta - peak) / scale)^2 + 1 - mean noisy retrieval, at most 2.
        top = 1.0 if rec["group"] == "alpha" else 2.0
        assert len(rewards) == 2 and all(x <= top for x in rewards)
        assert rec["group"] == "beta" or all(x >= 0.0 for x in rewards)
        assert rec["best_reward"] == max(rewards) == rewards[rec["best"]]
    # Round 0 searches alpha only: beta at its initial value, distinct alphas, then one Adam step.
    c0 = recs[0]["candidates"]
    assert all(math.isclose(c["beta"], DEFAULT_BETA, rel_tol=1e-6) for c in c0)
    assert not np.allclose(_log_alpha(c0[0]), _log_alpha(c0[1]))
    np.testing.assert_allclose(
        np.log(list(recs[0]["mu"]["alpha"].values())),
        _expected_first_mu(recs[0], search.log_alpha_std, search.log_alpha_lr),
        atol=1e-5,
    )
    # Round 1 searches beta around the unchanged beta, every candidate at round 0's mean alpha.
    for c in recs[1]["candidates"]:
        np.testing.assert_allclose(
            _log_alpha(c), np.log(list(recs[0]["mu"]["alpha"].values())), rtol=1e-6
        )
    assert recs[1]["mu"]["alpha"] == recs[0]["mu"]["alpha"]
    # The kept weights are the best candidate's: the next round starts from its reward.
    assert recs[1]["start_reward"] == pytest.approx(recs[0]["best_reward"], abs=1e-6)

    # Checkpoints: one per round, config of the experiment, restorable by the probe.
    ckpt_dir = os.path.join(workdir, "checkpoints")
    with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
        assert ckpt.all_steps() == [1, 2]
    with ckpt_lib.Checkpointer(os.path.join(workdir, "search"), read_only=True) as sckpt:
        assert sckpt.all_steps() == [1, 2]
        assert sckpt.restore_config()["num_candidates"] == 2
    cfg = ex.ExperimentConfig.from_dict(ckpt_lib.load_config(ckpt_dir))
    want = ex.override(
        configs.get_config(NAME, "smoke"), [f"train.workdir={workdir}", f"data.data_dir={data}"]
    )
    assert cfg == want and cfg.train.steps == search.rounds * search.steps_per_candidate
    run = pc.load_run(workdir)
    assert run.step == 2 and run.config.method.name == "tuple_infonce"
    val = launch_search.reward_batch(cfg, search)
    assert jax.tree.leaves(val)[0].shape[0] == search.reward_batch_size
    reward = float(jax.jit(run.method.retrieval_reward)(run.params, val))
    assert reward == pytest.approx(recs[-1]["best_retrieval"], abs=1e-6)
    assert recs[0]["best_retrieval"] == recs[0]["best_reward"]  # alpha rounds: the same reward

    # Second invocation with one more round: resumes at round 2, rounds 0 and 1 are not redone.
    caplog.set_level("INFO")
    args = search_cli._parser().parse_args([*argv, "--set", "search.rounds=3"])
    cfg3, search3 = launch_search.build_configs(args)
    launch_search.prepare(cfg3, search3)
    result = launch_search.run(cfg3, search3)
    assert result.start_round == 2 and [r["round"] for r in result.records] == [2]
    assert "Resumed" in caplog.text and "differ from the checkpoint's" in caplog.text
    recs = _log(workdir)
    assert [r["round"] for r in recs] == [0, 1, 2] and recs[2]["group"] == "alpha"
    assert recs[2]["step"] == 6
    assert recs[2]["start_reward"] == pytest.approx(recs[1]["best_retrieval"], abs=1e-6)
    assert recs[2]["best_reward"] == max(c["reward"] for c in recs[2]["candidates"])
    # Round 2 samples alpha around the restored mean.
    assert all(
        c["beta"] == pytest.approx(recs[1]["mu"]["beta"], rel=1e-6) for c in recs[2]["candidates"]
    )
    with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
        assert ckpt.all_steps() == [2, 3]  # smoke keeps 2
    assert int(result.state.step) == 6
    np.testing.assert_allclose(
        np.exp(np.asarray(result.search.mu.log_alpha)),
        list(recs[2]["mu"]["alpha"].values()),
        rtol=1e-6,
    )
    capsys.readouterr()
    assert search_cli.main([*argv, "--no-resume"]) == 2
    assert "already holds search checkpoints" in capsys.readouterr().err


def test_bad_command_lines_fail_before_compute(capsys):
    smoke = ["--config", NAME, "--variant", "smoke"]
    assert search_cli.main([*smoke, "--set", "search.num_candidats=3"]) == 2
    assert "'num_candidats'" in capsys.readouterr().err
    assert search_cli.main([*smoke, "--set", "search.num_candidates=1"]) == 2
    assert "num_candidates must be >= 2" in capsys.readouterr().err
    assert search_cli.main([*smoke, "--set", "optimizer.lrr=1"]) == 2
    assert "'optimizer.lrr'" in capsys.readouterr().err
    assert search_cli.main(["--config", "comm_trifeature"]) == 2
    assert "not a search config" in capsys.readouterr().err


def test_list_and_print_config(capsys):
    assert search_cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert NAME in out and "tuple_infonce_mosi_search" in out and "comm_trifeature" not in out
    assert (
        search_cli.main(
            [
                *["--config", NAME, "--variant", "smoke"],
                "--print-config",
                "--set",
                "search.rounds=5",
                "--set",
                "search.steps_per_candidate=3",
                "--data-dir",
                "/nonexistent",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["search"]["rounds"] == 5
    assert printed["experiment"]["train"]["steps"] == 15  # rounds x steps per candidate


def test_search_defaults_follow_the_public_code():
    tri = tuple_search.get_search_config(None, dataset="trifeature")
    assert (tri.num_candidates, tri.schedule, tri.log_alpha_std, tri.log_alpha_lr) == (
        5,
        "alternate",
        0.5,
        0.25,
    )
    # sigma = 120, std 10, lr 3 on 0-255 pixels, in normalised input units.
    assert math.isclose(tri.beta_std, 10 * PIXEL_LEVEL) and math.isclose(
        tri.beta_lr, 3 * PIXEL_LEVEL
    )
    cfg = configs.get_config(NAME)
    assert (
        math.isclose(cfg.method.config.beta, 120 * PIXEL_LEVEL) and cfg.method.config.alpha is None
    )
    assert cfg.train.steps == tri.rounds * tri.steps_per_candidate and cfg.data.num_views == 1
    mosi = tuple_search.get_search_config(None, dataset="mosi")
    beta = configs.get_config("tuple_infonce_mosi_search").method.config.beta
    assert math.isclose(mosi.beta_std / beta, 10 / 120) and math.isclose(
        mosi.beta_lr / beta, 3 / 120
    )
