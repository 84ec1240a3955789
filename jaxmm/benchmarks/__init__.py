"""The measurement code behind `python -m launch.bench_*` (timed steps, memory, tables).

The launch scripts parse arguments and print; numbers are medians, never asserted in tests.
"""
