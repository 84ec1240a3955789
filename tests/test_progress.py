"""Progress bars: a tqdm bar on a terminal, plain timed lines in a log (no carriage returns)."""

import io

import tqdm

from jaxmm import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_stream_gets_plain_lines_with_the_meter():
    out = io.StringIO()
    with progress.bar(total=4, desc="train", file=out, interval=0) as bar:
        assert isinstance(bar, progress.LogProgress)
        for _ in range(4):
            bar.update(1)
            bar.set_postfix(loss="1.2345", ex_s=12.34)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4  # one per update at interval 0; close adds none (nothing new)
    assert lines[0].startswith("train:  25% 1/4 [")
    assert lines[-1].startswith("train: 100% 4/4 [") and lines[-1].endswith(
        "loss=1.2345, ex_s=12.34]"
    )


def test_log_lines_are_throttled_and_close_writes_the_last_state():
    out = io.StringIO()
    bar = progress.bar(total=None, initial=2, desc="search", unit="round", file=out, interval=1e9)
    for _ in range(100):
        bar.update(1)
    assert out.getvalue() == ""
    bar.close()
    bar.close()  # idempotent, like tqdm
    (line,) = out.getvalue().splitlines()
    assert line.startswith("search: 102 round [")


def test_terminal_gets_tqdm_and_disabled_bars_print_nothing():
    term = _Terminal()
    bar = progress.bar(total=3, file=term)
    assert isinstance(bar, tqdm.tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in term.getvalue()
    out = io.StringIO()
    with progress.bar(total=3, file=out, disable=True) as bar:
        bar.update(3)
    assert out.getvalue() == ""
