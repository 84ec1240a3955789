"""Progress bars that suit both a terminal and a log file.

tqdm redraws its bar with a carriage return on every update; in a log (`make demo > demo.log`, a
CI job, a batch scheduler) that is one unreadable "line" holding thousands of redraws. `bar`
returns a tqdm bar when the stream is a terminal, and otherwise a `LogProgress` that writes one
plain line every `interval` seconds (and a last one on close) with tqdm's own meter text:

    train: 120/400 [01:02<02:25,  1.93it/s, loss=3.1071, ex_s=124]

Example:
  >>> from jaxmm import progress
  >>> with progress.bar(total=3, desc="steps") as b:
  ...     for _ in range(3):
  ...         b.update(1)
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

import tqdm

__all__ = ["DEFAULT_INTERVAL", "LogProgress", "bar", "is_terminal"]

# Seconds between two progress lines in a log; the environment variable overrides it.
DEFAULT_INTERVAL = float(os.environ.get("JAXMM_PROGRESS_SECONDS", "30"))


def is_terminal(stream: Any) -> bool:
    """True when `stream` is an interactive terminal (closed or odd streams count as not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class LogProgress:
    """The part of tqdm's interface the trainers use, printed as plain lines for logs.

    A line is written when at least `interval` seconds passed since the previous one (checked on
    `update`), and once more on `close` if anything happened since; never a carriage return.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        initial: int = 0,
        desc: str | None = None,
        unit: str = "it",
        file: TextIO | None = None,
        interval: float | None = None,
    ):
        self.total, self.n, self.initial = total, initial, initial
        self.desc, self.unit = desc, unit
        self.file = file
        self.interval = DEFAULT_INTERVAL if interval is None else float(interval)
        self.postfix = ""
        self.disable = False
        self._start = self._last = time.monotonic()
        self._printed_n = initial

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.interval:
            self._print()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs):
        del refresh  # lines are written on `update`'s clock only
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items()
        )

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        del refresh
        self.desc = desc

    def close(self) -> None:
        if self.disable:
            return
        self.disable = True
        if self.n != self._printed_n:
            self._print()

    def line(self) -> str:
        """The progress line as it would be written now."""
        elapsed = time.monotonic() - self._start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else None
        # tqdm's meter text without the bar (desc braces escaped for str.format).
        head = self.desc.replace("{", "{{").replace("}", "}}") + ": " if self.desc else ""
        if self.total:
            fmt = head + "{percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}"
        else:
            fmt = head + "{n_fmt} {unit} [{elapsed}, {rate_fmt}"
        return tqdm.tqdm.format_meter(
            self.n,
            self.total,
            elapsed,
            unit=self.unit,
            rate=rate,
            postfix=self.postfix or None,
            bar_format=fmt + "{postfix}]",
        )

    def _print(self) -> None:
        stream = self.file if self.file is not None else sys.stderr
        stream.write(self.line() + "\n")
        stream.flush()
        self._last, self._printed_n = time.monotonic(), self.n


def bar(
    *,
    total: int | None = None,
    initial: int = 0,
    desc: str | None = None,
    unit: str = "it",
    disable: bool = False,
    file: TextIO | None = None,
    interval: float | None = None,
    **tqdm_kwargs,
):
    """A tqdm bar on a terminal, a `LogProgress` (a line every `interval` s) elsewhere.

    Args:
      total, initial, desc, unit, disable: as for `tqdm.tqdm`.
      file: the stream (default: the current `sys.stderr`).
      interval: seconds between lines when `file` is not a terminal (default
        `DEFAULT_INTERVAL`, from `$JAXMM_PROGRESS_SECONDS`, else 30).
      **tqdm_kwargs: passed to tqdm on a terminal only (e.g. `dynamic_ncols=True`).
    """
    stream = file if file is not None else sys.stderr
    if disable or is_terminal(stream):
        return tqdm.tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            disable=disable,
            file=stream,
            **tqdm_kwargs,
        )
    return LogProgress(total, initial=initial, desc=desc, unit=unit, file=file, interval=interval)
