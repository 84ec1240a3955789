"""Frozen embeddings of a trained run, for downstream use: one .npz, from the run's directory.

python -m launch.embed --workdir W --out emb.npz [--step N] [--batch-size B]

The experiment config stored with the checkpoint rebuilds the model (as `launch.probe` does);
runs on a user's .npz standardise with the statistics stored with the run. The output holds
``train_embedding`` / ``test_embedding`` (n, D) float32, ``train_index`` / ``test_index`` (the
rows of the run's .npz; 0..n-1 for TFDS datasets) and ``train_<label>`` / ``test_<label>`` for
every label of the run (classes with the file's original values).

    >>> e = np.load("emb.npz"); clf.fit(e["train_embedding"], e["train_label"])

Exit codes: 0 success, 2 missing / corrupt checkpoint or unusable data (one error line).
"""

from __future__ import annotations

import argparse
import logging
import sys

from jaxmm.checkpoint import CheckpointError
from launch import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.embed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", required=True, help="the run's work dir (or its checkpoints dir)")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup_logging(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)
    import numpy as np

    from jaxmm import own_data

    try:
        out = own_data.embed(args.workdir, step=args.step, batch_size=args.batch_size)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import io

    from jaxmm import workdir as workdir_lib

    path = workdir_lib.path(args.out)  # local or a URI such as gs://...
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **out)
    workdir_lib.write_bytes(path, buf.getvalue())
    shapes = ", ".join(f"{k} {v.shape}" for k, v in out.items())
    print(f"Wrote {path}: {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
