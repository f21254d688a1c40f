"""CLI: `python -m fer_models list` | `python -m fer_models summary NAME [--input-size 64]`."""

from __future__ import annotations

import argparse
import sys

import torch

from .registry import UnknownModelError, build_model, count_params, describe, get_config, list_models


def _list() -> None:
    names = list_models()
    w = max(map(len, names))
    print(f"{'name':<{w}}  {'params@48':>10}  {'params@64':>10}  description")
    for n in names:
        p48, p64 = (count_params(build_model(n, input_size=s)) for s in (48, 64))
        print(f"{n:<{w}}  {p48:>10,}  {p64:>10,}  {describe(n)}")


def _summary(name: str, input_size: int) -> None:
    model = build_model(name, input_size=input_size).eval()
    cfg = get_config(name, input_size=input_size)
    rows = []

    def hook(mod, _inp, out):
        own = sum(p.numel() for p in mod.parameters(recurse=False))
        rows.append((mod._summary_name, type(mod).__name__, tuple(out.shape[1:]), own))

    handles = []
    for n, m in model.named_modules():
        if n and not list(m.children()):  # leaves only: one row per layer
            m._summary_name = n
            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, cfg.in_channels, input_size, input_size))
    for h in handles:
        h.remove()
    print(f"{name} (input 1x{cfg.in_channels}x{input_size}x{input_size}): {describe(name)}")
    print(f"{'layer':<28} {'type':<12} {'output shape':<18} {'params':>10}")
    for n, t, shape, p in rows:
        print(f"{n:<28} {t:<12} {str(list(shape)):<18} {p:>10,}")
    print(f"total parameters: {count_params(model):,}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fer_models", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="print the registered models")
    s = sub.add_parser("summary", help="print layers, output shapes and parameter count")
    s.add_argument("name")
    s.add_argument("--input-size", type=int, default=64, help="input side in pixels (default 64)")
    args = ap.parse_args(argv)
    if args.cmd == "summary" and not 8 <= args.input_size <= 512:  # the preprocessing's range; a huge side would build a huge model
        print(f"error: --input-size {args.input_size}: must be in 8..512", file=sys.stderr)
        return 2
    try:
        if args.cmd == "list":
            _list()
        else:
            _summary(args.name, args.input_size)
    except (UnknownModelError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
