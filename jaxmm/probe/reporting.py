"""Reporting probe results: plain-text tables."""

from __future__ import annotations

import math
from collections.abc import Mapping

from jaxmm.probe.tasks import ProbeResult


def format_table(
    results: Mapping[str, ProbeResult],
    chance: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """Plain-text table: one row per (task, metric) with the test value, chance level and L2.

    Args:
      results: ``{name: ProbeResult}`` as returned by :func:`probe_many`.
      chance: optional ``{task name: {metric: chance}}`` overriding / adding to each result's own
        chance levels (e.g. a published chance level).

    Returns:
      The table as a string (no trailing newline).
    """
    rows = [("task", "metric", "value", "chance", "l2")]
    for name, res in results.items():
        levels = {**res.chance, **dict((chance or {}).get(name, {}))}
        for metric, value in res.metrics.items():
            c = levels.get(metric)
            rows.append(
                (
                    name,
                    metric,
                    f"{value:.4f}",
                    "-" if c is None or math.isnan(c) else f"{c:.4f}",
                    f"{res.l2:.0e}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
