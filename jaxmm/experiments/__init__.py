"""Experiments the launch scripts run: the logic behind `python -m launch.<name>`, importable.

* `jaxmm.experiments.demo` -- CoMM vs. Cross on bimodal Trifeature (R/U/S, CoMM Fig. 4).
* `jaxmm.experiments.bounds` -- MI bounds on a Gaussian staircase (FactorCL Fig. 3).
* `jaxmm.experiments.search` -- TupleInfoNCE's sample-optimisation loop.
* `jaxmm.experiments.factorcl_synthetic` -- FactorCL's synthetic protocol in memory (data,
  methods, training, the official and jaxmm probes).
* `jaxmm.experiments.repro_factorcl_synthetic` -- FactorCL's synthetic calibration against the
  official notebook, Fig. 1 and Table 1.

The launch scripts keep argument parsing and call these; tests target them here.
"""
