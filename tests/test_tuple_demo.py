"""E1 of issue 25 (`jaxmm.experiments.tuple_demo`): the data are what the docs say, the rank
correlation matches a hand computation, and the command's tiny run writes the promised results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxmm.experiments import tuple_demo as td
from launch import tuple_demo as entry


def test_data_views_have_fresh_noise_and_labels_from_their_blocks():
    cfg = td.DemoConfig(**td.TINY)
    data = td.make_data(cfg, 0)
    part = data["probe_train"]
    for name, std in (("strong", cfg.strong_noise), ("weak", cfg.weak_noise)):
        noise = part["view"][name] - part["clean"][name]
        np.testing.assert_allclose(noise.std(), std, rtol=0.05)
    # Labels are balanced argmax classes; the weak signal carries z_s unless weak_shared=False.
    for task in td.TASKS:
        counts = np.bincount(part["labels"][task], minlength=cfg.num_classes)
        assert counts.min() > 0.15 * len(part["labels"][task])
    unshared = td.make_data(td.DemoConfig(**td.TINY, weak_shared=False), 0)["probe_train"]
    np.testing.assert_array_equal(unshared["clean"]["strong"], part["clean"]["strong"])
    assert not np.allclose(unshared["clean"]["weak"], part["clean"]["weak"])
    # Training batches: two views of the same scenes with independent noise.
    import jax

    batch = td.sample_batch(
        {n: np.asarray(v) for n, v in data["train"].items()},
        data["noise"],
        jax.random.key(0),
        16,
    )
    diff = np.asarray(batch["view1"]["x"]["weak"] - batch["view2"]["x"]["weak"])
    np.testing.assert_allclose(diff.std(), np.sqrt(2) * cfg.weak_noise, rtol=0.25)


def test_spearman_against_hand_ranks():
    assert td.spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    # Ties take average ranks: x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4).
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.arange(1, 5)
    expect = np.corrcoef(rx, ry)[0, 1]
    assert td.spearman([0.1, 0.5, 0.5, 0.9], [1, 2, 3, 4]) == pytest.approx(expect)
    assert np.isnan(td.spearman([1, 1, 1], [1, 2, 3]))


def test_tiny_run_writes_rows_summary_and_bars(tmp_path, capsys):
    rc = entry.main(["--out", str(tmp_path), "--tiny", "--no-balanced", "--no-plot"])
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    for row in ("random_init", "plain", "strong_only", "tuple", "searched", "raw_view", "ceiling"):
        assert set(res["summary"][row]) == set(td.TASKS), row
    seeds = {r["seed"] for r in res["rows"] if r["row"] == "plain"}
    assert seeds == set(range(td.TINY["seeds"]))
    for r in res["rows"]:
        assert set(r["probes"]) == set(td.TASKS)
        assert all(0.0 <= v <= 100.0 for v in r["probes"].values())
    # The summary is the mean of the rows.
    plain = [r["probes"]["weak"] for r in res["rows"] if r["row"] == "plain"]
    assert res["summary"]["plain"]["weak"] == pytest.approx(np.mean(plain))
    assert res["tuple_grid_point"] in {f"tuple_a{a:g}" for a in td.TINY["a2_grid"]}
    assert len(res["search"]) == td.TINY["search_rounds"]
    assert [r["group"] for r in res["search"]] == ["alpha", "beta"]
    assert set(res["bars"]) >= {"plain_ignores_weak", "tuple_keeps_weak", "reward_correlates"}
    assert "| plain |" in capsys.readouterr().out


def test_bad_settings_exit_2(tmp_path, capsys):
    assert entry.main(["--out", str(tmp_path), "--tiny", "--steps", "3"]) == 2
    assert "multiple of search_rounds" in capsys.readouterr().err
