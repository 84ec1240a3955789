"""`launch.bench_official`: the arithmetic of `--layers` and the jaxmm side of the paper-shaped
configs (torch and the official checkouts not needed; the last test compares the official
parameter-count formulas with torch's counts only where both are present)."""

import os

import jax
import numpy as np
import pytest

from jaxmm.benchmarks import official_multibench as om
from jaxmm.benchmarks.official import conv_what_ifs


def _row(layer, kind, xla_ms, torch_ms, xla_gflops):
    return {
        "layer": layer,
        "pass": kind,
        "xla_ms": xla_ms,
        "torch_ms": torch_ms,
        "xla_gflops": xla_gflops,
        "torch_gflops": 0.0,
    }


def test_conv_what_ifs_by_hand():
    layers = [
        _row("A", "forward", 10.0, 8.0, 100.0),
        _row("A", "weight gradient", 20.0, 10.0, 50.0),  # 1 GFLOP: 10 ms at A's forward rate
        _row("B", "forward", 4.0, 4.0, 80.0),
        _row("B", "input gradient", 5.0, 3.0, 90.0),
        _row("B", "weight gradient", 3.0, 2.0, 120.0),  # faster than B's forward: nothing saved
    ]
    step = {"jaxmm_ms": 200.0, "official_ms": 300.0}
    w = conv_what_ifs(layers, step)
    # Two encoders: every pass counts twice.
    assert w["encoders_ms"] == {
        "forward": (28.0, 24.0),
        "input gradient": (10.0, 6.0),
        "weight gradient": (46.0, 24.0),
    }
    assert w["xla_convs_ms"] == pytest.approx(28.0 + 10.0 + 46.0)
    assert w["wgrad_at_forward_rate_ms"] == pytest.approx(200.0 - 2 * 10.0)
    assert w["wgrad_at_forward_rate_ratio"] == pytest.approx(300.0 / 180.0)
    assert w["torch_convs_ms"] == pytest.approx(200.0 - (4.0 + 4.0 + 22.0))
    assert w["torch_convs_ratio"] == pytest.approx(300.0 / 170.0)
    assert set(conv_what_ifs(layers)) == {"encoders_ms", "xla_convs_ms"}


def test_official_param_formulas_by_hand():
    # One torch encoder layer of width 40, feed-forward 2048: in_proj, out_proj, two linears, LNs.
    layer = (3 * 40 * 40 + 3 * 40) + (40 * 40 + 40) + (40 * 2048 + 2048) + (2048 * 40 + 40) + 160
    assert om._torch_encoder_layer(40) == layer
    assert om._seq_transformer(20, 40) == 20 * 40 + 5 * layer
    # critic_objectives.mlp(in, 512, 1, layers=1): in-512-512-1.
    assert om._factorcl_mlp(256, 512, 1, 1) == 256 * 512 + 512 + 512 * 512 + 512 + 512 + 1


# What the jaxmm side has beyond the official models, per config: in each Transformer encoder
# the input projection's bias (the official 1x1 conv has none) and a final LayerNorm; for
# FactorCL-SUP the one-hot label (2 wide) instead of the raw scalar label in the two I(Xi;Y)
# critics (512 first-layer weights each).
_EXTRA = {
    "mosi": 2 * (40 + 80),
    "mosi3": 3 * (40 + 80),
    "mimic": 0,
    "factorcl_synthetic": 2 * 512,
    "factorcl_mosi": (40 + 80) + (600 + 1200),
}


@pytest.mark.parametrize("name", om.CONFIGS)
def test_jaxmm_side_matches_official_param_count(name):
    trainer, _ = om.jaxmm_trainer(name, 4)
    state = jax.eval_shape(trainer._init, trainer._init_rng, trainer._state_rng, trainer._example)
    n = om.count_params(name, trainer.method, state.params)
    assert n == om.official_param_count(name) + _EXTRA[name]


def test_jaxmm_factorcl_steps_fused_and_unfused():
    """The benchmarked FactorCL steps run: the fused one and the inner step on its own."""
    trainer, batch = om.jaxmm_trainer("factorcl_synthetic", 4)
    state = trainer.init_state()
    state, metrics = trainer.train_step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and "inner/l_nce" in metrics
    state, inner_loss = om.inner_only_step(trainer)(state, batch)
    assert np.isfinite(float(inner_loss))


def test_batch_shapes_and_unknown_config():
    assert om.batch_shapes("mosi3") == {"vision": (50, 20), "text": (50, 300), "audio": (50, 5)}
    assert set(om.DEFAULT_BATCH) == set(om.CONFIGS)
    with pytest.raises(ValueError, match="unknown config"):
        om.jaxmm_method("mosei")


def _checkouts():
    comm, factorcl = os.environ.get("JAXMM_COMM_DIR"), os.environ.get("JAXMM_FACTORCL_DIR")
    if not comm or not factorcl:
        pytest.skip("set JAXMM_COMM_DIR and JAXMM_FACTORCL_DIR to the official checkouts")
    pytest.importorskip("torch")
    return comm, factorcl


@pytest.mark.parametrize("name", om.CONFIGS)
def test_official_param_formulas_against_torch(name, monkeypatch):
    import sys

    from jaxmm.benchmarks.official import stand_ins

    comm, factorcl = _checkouts()
    stand_ins()
    for d in (comm, factorcl):
        monkeypatch.syspath_prepend(os.path.abspath(d))
    model = om._official_comm(name) if name in om.COMM_CONFIGS else om._official_factorcl(name)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == om.official_param_count(name)
    assert "synthetic_model" in sys.modules or name != "factorcl_synthetic"
