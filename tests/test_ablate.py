"""launch.ablate_trifeature: the recipe-exploration loop runs end to end and records its row."""

import json

import pytest

from launch import ablate_trifeature


def test_tiny_ablation_row_is_recorded(tmp_path):
    out = tmp_path / "rows.jsonl"
    argv = ["--steps", "3", "--batch-size", "8", "--channels", "4,4,4,4,4", "--width", "8"]
    argv += ["--proj", "8", "--period", "4", "--crop", "0.5", "--blur", "0", "--eval-every", "2"]
    argv += ["--tasks", "shape", "--data-dir", str(tmp_path / "data"), "--out", str(out)]
    argv += ["--train-pairs", "500", "--test-pairs", "200"]
    assert ablate_trifeature.main(argv) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert [h["step"] for h in row["history"]] == [0, 2, 3]
    assert 0.0 <= row["final"]["shape"] <= 100.0
    assert row["args"]["period"] == 4 and row["num_params"] > 0
    assert row["pairs"] == {"train": 500, "test": 200}


def test_too_few_pairs_is_one_error_naming_the_flag(tmp_path, capsys):
    base = ["--batch-size", "8", "--data-dir", str(tmp_path / "data")]
    for flag, value in (("--train-pairs", "4"), ("--test-pairs", "0")):
        with pytest.raises(SystemExit) as e:
            ablate_trifeature.main([*base, flag, value])
        assert e.value.code == 2
        assert flag in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # nothing built
