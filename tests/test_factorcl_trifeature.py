"""FactorCL's longer Trifeature runs (launch/factorcl_trifeature.py): the config is the demo's,
and the curve bookkeeping (incremental probing, plateau, table, plot) on made-up probe values.
Nothing is trained (a tiny FactorCL run is mostly compilation: minutes, not seconds)."""

import json

import pytest

from jaxmm.experiments import demo
from jaxmm.experiments import factorcl_trifeature as lib
from launch import demo as demo_cli
from launch import factorcl_trifeature as cli


def _points(values, step=300):
    return [{"step": step * (i + 1), "rus": {"redundancy": v}} for i, v in enumerate(values)]


@pytest.mark.parametrize("experiment", ["rus", "synergy"])
def test_config_is_the_demos_factorcl_run_with_more_steps(experiment, tmp_path):
    out = str(tmp_path / "o")
    args = cli._parser().parse_args(
        ["train", "--out", out, "--steps", "2400", "--ckpt-every", "300", "--lr", "0.003"]
    )
    cfg = lib.run_config(cli.demo_args(args), experiment)
    argv = ["--methods", "factorcl", "--no-progress", "--out", out, "--steps", "2400"]
    argv += ["--synergy-steps", "2400", "--probe-every", "300", "--lr", "0.003"]
    variant = "biased" if experiment == "synergy" else None
    want = demo.demo_config("factorcl", variant, demo_cli.parse_args(argv))
    assert cfg.to_dict() == want.to_dict()
    assert cfg.train.steps == 2400 and cfg.train.ckpt_every == 300 and cfg.train.keep == 9
    assert cfg.optimizer.lr == pytest.approx(0.003) and cfg.optimizer.schedule == "constant"
    assert cfg.train.workdir == lib.workdir(out, experiment)
    assert cfg.method.name == "factorcl"


def test_unknown_experiment_is_an_error():
    with pytest.raises(ValueError, match="rus"):
        lib.run_config(
            cli.demo_args(cli._parser().parse_args(["train", "--out", "x", "--steps", "10"])),
            "both",
        )


def test_plateau_and_gains():
    pts = _points([30.0, 60.0, 80.0, 90.0, 91.0, 90.5])
    assert lib.plateau_step(pts, "redundancy", tol=1.0) == 1200
    assert lib.plateau_step(pts, "redundancy", tol=0.1) is None  # still moving at the end
    assert lib.plateau_step(pts[:1], "redundancy", tol=5.0) is None
    assert lib.gains(pts, "redundancy")[:3] == [None, 30.0, 20.0]


def test_probe_steps_probes_only_new_existing_steps(tmp_path, monkeypatch):
    out = str(tmp_path)
    probed = []
    monkeypatch.setattr(lib, "checkpoint_steps", lambda o, e: [300, 600, 900])
    monkeypatch.setattr("jaxmm.probe_checkpoint.load_run", lambda w, s: s)

    def fake_report(step, tasks):
        probed.append(step)
        acc = step / 1000
        return {
            "tasks": {
                t: {"metrics": {"balanced_accuracy": acc}, "chance": {"balanced_accuracy": 0.1}}
                for t in tasks
            }
        }

    monkeypatch.setattr(demo, "probe_report", fake_report)
    pts = lib.probe_steps(out, "rus", [600, 1200])  # 1200 not written yet
    assert probed == [600] and [p["step"] for p in pts] == [600]
    assert pts[0]["rus"] == {"redundancy": pytest.approx(60.0), "uniqueness": pytest.approx(60.0)}
    pts = lib.probe_steps(out, "rus")  # the rest, 600 not again
    assert probed == [600, 300, 900] and [p["step"] for p in pts] == [300, 600, 900]
    saved = json.loads((tmp_path / "curve_rus.json").read_text())
    assert [p["step"] for p in saved] == [300, 600, 900]


def test_probe_steps_completes_a_redundancy_only_point(tmp_path, monkeypatch):
    probed = []
    monkeypatch.setattr(lib, "checkpoint_steps", lambda o, e: [300])
    monkeypatch.setattr("jaxmm.probe_checkpoint.load_run", lambda w, s: s)

    def fake_report(step, tasks):
        probed.append(tuple(tasks))
        return {
            "tasks": {
                t: {"metrics": {"balanced_accuracy": 0.5}, "chance": {"balanced_accuracy": 0.1}}
                for t in tasks
            }
        }

    monkeypatch.setattr(demo, "probe_report", fake_report)
    (pt,) = lib.probe_steps(str(tmp_path), "rus", tasks=["shape"])
    assert set(pt["rus"]) == {"redundancy"}
    assert lib.probe_steps(str(tmp_path), "rus", tasks=["shape"]) == [pt]  # nothing new
    (pt,) = lib.probe_steps(str(tmp_path), "rus")  # the uniqueness tasks are added to it
    assert set(pt["rus"]) == {"redundancy", "uniqueness"} and len(probed) == 2


def test_report_writes_table_and_png(tmp_path, capsys):
    for name, vals in (("a", [40.0, 70.0]), ("b", [50.0, 95.0])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "curve_rus.json").write_text(json.dumps(_points(vals)))
    png = tmp_path / "c.png"
    argv = ["report", "--out", str(tmp_path / "a"), str(tmp_path / "b")]
    assert cli.main([*argv, "--label", "lr 1e-3", "lr 3e-3", "--png", str(png)]) == 0
    table = capsys.readouterr().out
    assert "| lr 3e-3 rus | 600 | 95.0 |" in table and "99.8" in table  # the paper's row
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main([*argv, "--label", "one"]) == 2
