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
    out = tmp_path / "demo"
    rc = demo_cli.main(
        [
            "--tiny",
            "--methods",
            "cross",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--no-progress",
            "--out",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    assert rc == 0
    assert (out / "rus.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "results.json").read_text())
    assert set(result["summary"]["cross"]) == {"redundancy", "uniqueness", "synergy"}
    assert set(result["reports"]) == {"cross_rus", "cross_synergy"}
    # The synergy run pre-trains on biased pairs and is probed on the unbiased ones.
    syn = result["reports"]["cross_synergy"]
    assert "px32_biased" in syn["pretrain_data"] and "px32_biased" not in syn["probe_data"]
    assert (out / "runs" / "cross_rus" / "checkpoints").is_dir()


@pytest.mark.slow
def test_full_demo(tmp_path):
    assert demo_cli.main(["--out", str(tmp_path / "demo"), "--no-progress"]) == 0
