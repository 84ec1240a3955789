"""`launch.train --list` names each experiment after the method it trains."""

import pytest

from jaxmm import configs


@pytest.mark.parametrize("name", configs.names())
def test_listed_method_is_the_trained_method_and_named_in_the_config(name):
    method = configs.get_config(name, "smoke").method.name
    assert configs.method_name(name) == method
    # e.g. cross_self -> crossself_trifeature, tuple_infonce -> tuple_infonce_mosi
    assert name.replace("_", "").startswith(method.replace("_", "")), (name, method)


def test_factorcl_simclr_baseline_is_the_cmc_config():
    """FactorCL's "SimCLR" baseline is cross-modal NT-Xent: our `cmc` (jaxmm/configs/synthetic)."""
    from jaxmm.configs import synthetic

    assert "simclr_synthetic" not in configs.names()
    assert synthetic.get_config("smoke", method="simclr") == configs.get_config(
        "cmc_synthetic", "smoke"
    )
