"""Build, list and inspect the project's TFDS datasets (no TensorFlow needed).

python -m launch.data list
python -m launch.data build trifeature --config px32 --data-dir data/
python -m launch.data build multibench --config mosi --data-dir data/ --manual-dir ~/multibench
python -m launch.data show trifeature --config px32 --data-dir data/
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from jaxmm.data import builders


def _list() -> None:
    for name in builders.available():
        cls = builders.builder_class(name)
        default = getattr(cls, "DEFAULT_CONFIG_NAME", None)
        names = [c + (" (default)" if c == default else "") for c in cls.builder_configs]
        print(f"{name}: {', '.join(names)}")


def _show(name: str, config: str | None, data_dir: str) -> None:
    builder = builders.get_builder(name, data_dir=data_dir, config=config)
    info = builder.info
    print(
        f"{name}/{builder.builder_config.name if builder.builder_config else ''} "
        f"v{info.version}  built={builder.is_prepared()}  dir={builder.data_dir}"
    )
    for key, feat in info.features.items():
        print(f"  {key:<14} shape={tuple(feat.shape)} dtype={np.dtype(feat.np_dtype).name}")
    for split, split_info in info.splits.items():
        print(f"  split {split}: {split_info.num_examples} examples")
    if info.metadata:
        for key, value in info.metadata.items():
            text = repr(value)
            print(f"  metadata {key}: {text if len(text) < 120 else text[:117] + '...'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launch.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list builders and their configs")
    for cmd in ("build", "show"):
        p = sub.add_parser(cmd, help=f"{cmd} a dataset")
        p.add_argument("name", help="builder name (see `list`)")
        p.add_argument("--config", default=None, help="builder config (default: the builder's)")
        p.add_argument("--data-dir", required=True, help="TFDS data directory")
        if cmd == "build":
            p.add_argument("--manual-dir", default=None, help="folder with user-supplied files")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _list()
        elif args.command == "build":
            start = time.perf_counter()
            builders.build(args.name, args.data_dir, config=args.config, manual_dir=args.manual_dir)
            print(f"built in {time.perf_counter() - start:.1f} s")
            _show(args.name, args.config, args.data_dir)
        else:
            _show(args.name, args.config, args.data_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
