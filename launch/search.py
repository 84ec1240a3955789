"""TupleInfoNCE sample optimisation (logic in `jaxmm.experiments.search`).

python -m launch.search --list
python -m launch.search --config tuple_infonce_trifeature_search --variant smoke --workdir /tmp/s
"""

from __future__ import annotations

import argparse
import json
import sys

from jaxmm.experiments import search as lib
from jaxmm.experiments.search import _list, build_configs, prepare, run
from launch import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.search",
        description=lib.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="search config name (see --list)")
    p.add_argument("--variant", default=None, help="config variant, e.g. smoke")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field: search.num_candidates=8, optimizer.lr=3e-4 (repeatable)",
    )
    p.add_argument("--workdir", default=None, help="checkpoints and round log (train.workdir)")
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="resume from a checkpoint in the work dir (default: the config's)",
    )
    p.add_argument("--data-dir", default=None, help="TFDS data directory (data.data_dir)")
    p.add_argument("--manual-dir", default=None, help="user-supplied files (data.manual_dir)")
    p.add_argument("--list", action="store_true", help="list the search configs and exit")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configs as JSON, validate them and exit",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        _list()
        return 0
    if not args.config:
        _parser().error("--config is required (see --list)")
    logs.setup_logging()
    try:
        cfg, search = build_configs(args)
        if args.print_config:
            print(
                json.dumps(
                    {"experiment": cfg.to_dict(), "search": search.to_dict()},
                    indent=2,
                    sort_keys=True,
                )
            )
        prepare(cfg, search)
        if args.print_config:
            return 0
        run(cfg, search)
    except ValueError as e:  # includes CheckpointError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
