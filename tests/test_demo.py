"""The main job (launch/demo.py): end to end at smoke scale, and its summary arithmetic."""

import json

import pytest

from jaxmm.experiments import demo
from launch import demo as demo_cli


def _report(**scores):
    # A probe report with given balanced accuracies (chance 1/10, or 1/2 for synergy).
    return {
        "tasks": {
            name: {
                "metrics": {"balanced_accuracy": v},
                "chance": {"balanced_accuracy": 0.5 if name == "synergy" else 0.1},
            }
            for name, v in scores.items()
        }
    }


def test_summary_averages_the_two_uniqueness_tasks_in_percent():
    reports = {
        "comm_rus": _report(shape=0.9, texture1=0.4, texture2=0.6),
        "comm_synergy": _report(synergy=0.7),
        "cross_rus": _report(shape=1.0, texture1=0.1, texture2=0.2),
    }
    s = demo.summarise(reports)
    assert s["comm"]["redundancy"] == {"value": pytest.approx(90.0), "chance": pytest.approx(10.0)}
    assert s["comm"]["uniqueness"]["value"] == pytest.approx(50.0)
    assert s["comm"]["synergy"] == {"value": pytest.approx(70.0), "chance": pytest.approx(50.0)}
    assert s["cross"]["uniqueness"]["value"] == pytest.approx(15.0)
    assert "synergy" not in s["cross"]
    table = demo.format_summary(s)
    assert "CoMM" in table and "( 87.8)" in table  # the paper's uniqueness next to ours
    assert table.splitlines()[-1].split()[1:] == ["10.0", "10.0", "50.0"]


def test_unknown_method_is_one_error(capsys):
    assert demo_cli.main(["--methods", "comm,clip", "--tiny"]) == 2
    err = capsys.readouterr().err
    assert "clip" in err and "comm" in err


def test_tiny_demo_runs_end_to_end(tmp_path):
    # One run of both methods: a tiny demo run is mostly compilation (about 170 s of its 190 s
    # on one core, cold), so two runs would cost twice that.
    out = tmp_path / "demo"
    argv = ["--tiny", "--methods", "comm,cross", "--steps", "2", "--batch-size", "8"]
    argv += ["--no-progress", "--out", str(out), "--data-dir", str(tmp_path / "data")]
    assert demo_cli.main(argv) == 0
    assert (out / "rus.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "results.json").read_text())
    assert set(result["summary"]) == {"comm", "comm-init", "cross"}
    assert set(result["summary"]["cross"]) == {
        "redundancy",
        "uniqueness",
        "synergy",
        "synergy_auroc",  # the synergy probe's ranking, beside its balanced accuracy
        "synergy_unweighted",  # the official code's unweighted probe
    }
    assert set(result["reports"]) == {
        "comm_rus",
        "comm_synergy",
        "comm-init_all",
        "cross_rus",
        "cross_synergy",
    }
    # The synergy runs pre-train on biased pairs and are probed on the unbiased ones.
    for method in ("comm", "cross"):
        syn = result["reports"][f"{method}_synergy"]
        assert "px32_biased" in syn["pretrain_data"] and "px32_biased" not in syn["probe_data"]
        assert (out / "runs" / f"{method}_rus" / "checkpoints").is_dir()
    # The random-init row has every interaction.
    assert set(result["summary"]["comm-init"]) >= {"redundancy", "uniqueness", "synergy"}
    assert result["reports"]["comm-init_all"]["step"] == 0
    syn = result["reports"]["comm_synergy"]
    assert syn["tasks"]["synergy"]["class_weight"] == "balanced"
    assert syn["synergy_unweighted"]["class_weight"] is None
    assert "synergy_unweighted" in result["summary"]["comm"]
    assert result["configs"]["comm_rus"]["data"]["augment_on"] == "device"
    # The time split: each run's probing divides into embedding and probe fits.
    for key, t in result["seconds"].items():
        if key != "total":
            assert 0 < t["probe_fits"] < t["probe"] and 0 < t["embed"] < t["probe"]


def test_time_split_adds_up_to_the_total():
    timings = {
        "comm_rus": {"train": 100.0, "probe": 30.0, "embed": 9.0, "probe_fits": 20.0},
        "comm-init_all": {"train": 0.0, "probe": 15.0, "embed": 8.0, "probe_fits": 5.0},
    }
    line = demo.format_time_split(timings, 150.0)
    # restoring + embedding: (30 - 20) + (15 - 5); other: 150 - 100 - 20 - 25.
    assert line == (
        "Time split: pre-training 100 s, restoring + embedding 20 s, probe fits 25 s, other 5 s"
    )


@pytest.mark.slow
def test_full_demo(tmp_path):
    assert demo_cli.main(["--out", str(tmp_path / "demo"), "--no-progress"]) == 0


def test_demo_recipe_is_the_documented_one():
    # docs/results.md "Recipe": both experiments render a 4 px texture period; CoMM's views use
    # the small-image SimCLR set, Cross contrasts the unaugmented images (registry config).
    args = demo_cli.parse_args([])
    comm = demo.demo_config("comm", None, args)
    assert [m.augment for m in comm.data.modalities] == ["simclr_small", "simclr_small"]
    assert comm.data.builder_overrides == {"texture_period": 4}
    assert comm.data.augment_on == "device"  # views drawn in the jitted step
    assert (comm.train.steps, comm.optimizer.schedule) == (1200, "constant")
    assert demo.demo_config("comm", "biased", args).train.steps == 800
    long = demo_cli.parse_args(["--long", "--synergy-steps", "0"])
    assert demo.demo_config("comm", "biased", long).train.steps == 4800  # 0: as --steps
    cross = demo.demo_config("cross", "biased", args)
    assert [m.augment for m in cross.data.modalities] == ["none", "none"]
    assert cross.data.augment_on == "host"  # nothing to augment
    assert cross.data.builder_config == "px32_biased"
    assert cross.data.builder_overrides == {"texture_period": 4}
    paper = demo.demo_config("comm", None, demo_cli.parse_args(["--augment", "simclr"]))
    assert [m.augment for m in paper.data.modalities] == ["simclr", "simclr"]
