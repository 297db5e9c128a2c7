"""``python -m ssl_lib``: list models and datasets, run a study."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .data._spec import TASKS
from .exceptions import SSLLibError

__all__ = ["main"]


def _models(args: argparse.Namespace) -> int:
    from .models import ZOOS, get_model_cfg, list_models
    from .models._mini import MINI_ZOO_DIR

    zoos = [args.zoo] if args.zoo else list(ZOOS)
    print(f"{'model':<28} {'family':<22} {'arch':<12} {'source top-1':>12}  weights")
    for zoo in zoos:
        for name in list_models(zoo):
            cfg = get_model_cfg(name)
            if cfg.weights.startswith("zoo:"):
                state = "ok" if (MINI_ZOO_DIR / cfg.weights[4:]).exists() else "missing: make models"
            else:
                state = cfg.weights if len(cfg.weights) < 60 else cfg.weights[:57] + "..."
            top1 = f"{cfg.source_top1:.2f}" if cfg.source_top1 is not None else "-"
            print(f"{name:<28} {cfg.family:<22} {cfg.arch:<12} {top1:>12}  {state}")
    print("Also: timm:<name>[.<tag>] (hub weights, cached or downloaded), timm:<name>?file=<path>[&prefix=..&key=..] "
          "(local weights), timm:<name>?pretrained=false (random init), hf-hub:<repo>; options size=, resize=, "
          "pool=, norm=. And file:<path>[?arch=resnet50&norm=imagenet|none].")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Exit 0 when every checked dataset is present with its canonical sizes (or is a usable folder)."""
    from .data import list_datasets
    from .data._check import check_dataset

    names = [args.check] if args.check else list_datasets(zoo=args.zoo or "paper")
    ok_all = True
    for name in names:
        ok, lines = check_dataset(name, root=args.root)
        ok_all &= ok
        print("\n".join(lines))
    if not args.check:
        print("Also: --check <name> for one dataset, --check folder:<path> to describe your own tree.")
    return 0 if ok_all else 1


def _datasets(args: argparse.Namespace) -> int:
    from .data import get_dataset_spec, list_datasets

    if args.check is not None:
        return _check(args)

    from .sections import SECTIONS, in_report_order

    print(f"{'dataset':<20} {'zoo':<6} {'task':<24} {'classes':>7}  {'metric':<15} {'splits':<16} sections")
    for name in list_datasets(zoo=args.zoo, task=args.task):
        s = get_dataset_spec(name)
        sections = [n for n in in_report_order() if set(SECTIONS.get(n).tasks) & set(s.tasks)
                    and SECTIONS.get(n).per_model]
        print(f"{name:<20} {s.zoo:<6} {'/'.join(s.tasks):<24} {s.num_classes:>7}  {s.metric:<15} "
              f"{'/'.join(s.splits):<16} {','.join(sections)}")
    print("Also: folder:<path> with <path>/{train,[val,]test}/<class>/<image>, <path>/{train,val}/<class>/<image> "
          "(val/ is the test split) or a flat <path>/<class>/<image> (few-shot only). "
          "`--check [NAME]` reports what is on disk.")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .runner import run_study

    return run_study(
        args.study, out_dir=args.out, force=args.force, dry_run=args.dry_run,
        sections=tuple(args.section or ()), models=tuple(args.model or ()),
        engine=args.engine, jobs=args.jobs, address=args.address, fresh_kernels=args.fresh_kernels,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ssl_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list the model zoos")
    p.add_argument("--zoo", choices=["mini", "paper"])
    p.set_defaults(func=_models)
    p = sub.add_parser("datasets", help="list the datasets, or check what is on disk")
    p.add_argument("--zoo", choices=["mini", "paper"])
    p.add_argument("--task", choices=list(TASKS), help="only datasets that serve this task")
    p.add_argument("--check", nargs="?", const="", default=None, metavar="NAME",
                   help="report each paper dataset on disk (or NAME, or folder:<path>): split sizes against the "
                        "canonical ones, what is missing; for a folder, classes, images, skipped and unreadable files")
    p.add_argument("--root", default=None, help="data root for --check (default $SSL_LIB_DATA or the cache)")
    p.set_defaults(func=_datasets)
    p = sub.add_parser("run", help="execute a study's notebooks into book/results")
    p.add_argument("study", help="params/<name>.yaml or a study name")
    p.add_argument("--out", default=None, help="output folder (default book/results)")
    p.add_argument("--section", action="append", help="only this section (repeatable)")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--force", action="store_true", help="re-run runs that are up to date")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their parameters, run nothing")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: kernels on this machine; ray: one task per run on a Ray cluster")
    p.add_argument("--jobs", type=int, default=1, help="local engine: runs at once, sharing the CPU threads")
    p.add_argument("--fresh-kernels", action="store_true",
                   help="a new kernel per notebook (papermill's way) instead of one warm kernel per worker")
    p.add_argument("--address", default=None, help="ray engine: cluster address (default $RAY_ADDRESS, else a local instance)")
    p.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, run the chosen subcommand, and turn a user error into one ``error:`` line (exit 2)."""
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SSLLibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
