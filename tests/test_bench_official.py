"""The arithmetic of `launch.bench_official --layers` (torch and the official code not needed)."""

import pytest

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
