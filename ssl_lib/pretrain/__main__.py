"""``python -m ssl_lib.pretrain --all --out ssl_lib/zoo/mini`` (``--model byol`` for one)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from ..exceptions import SSLLibError
from .recipes import ZOO
from .zoo import DEFAULT_OUT, build_zoo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssl_lib.pretrain", description="Train the mini zoo.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every model of the zoo, in order")
    which.add_argument("--model", action="append", metavar="NAME", help="one model (repeatable)")
    which.add_argument("--list", action="store_true", help="print the model names and recipes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (quick runs)")
    parser.add_argument("--force", action="store_true", help="retrain even if the checkpoint exists")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--device", default="", help="cpu or cuda (default: CUDA when present, else CPU)")
    args = parser.parse_args(argv)
    if args.list:
        for name, recipe in ZOO.items():
            print(f"{name:22s} {recipe}")
        return 0
    torch.set_num_threads(args.threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, when on CUDA
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    try:
        from ..notebook import check_device

        check_device(args.device)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        build_zoo(list(ZOO) if args.all else args.model, args.out, epochs=args.epochs, force=args.force,
                  device=device)
    except SSLLibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
