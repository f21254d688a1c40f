"""What `fer_models.perf.tune_malloc()` is worth on a CPU: the project's training step and the augmentation,
each in a fresh process with glibc's default malloc and with the tuning, alternating, in one run.

A process's allocator settings cannot be undone once memory has been handed out, so each measurement is its own
child process (`--child default|tuned`); rounds alternate the order (default first, then tuned first) so both
see the same machine load. Each child times, after a warm-up, `--steps` steps of `fer_models.train_one_epoch`
(precision auto, all CPUs this process may use) per model, and the study's full augmentation policy
(`fer_data.augment_images`, batch 128, one thread) at the same input size, and reports its user and system
CPU seconds (system time is where the page faults of freed-and-refetched memory show).

    python benchmarks/malloc_tuning.py [--models baseline vgg_fer] [--rounds 3] [--steps 6] [--size 64]

Last line: the median tuned/default throughput of the training step per model, as `N.NNx`.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(args) -> None:
    import torch

    from fer_data import AugmentConfig, augment_images
    from fer_models import TrainConfig, build_model, make_optimizer, perf, train_one_epoch

    if args.child == "tuned" and not perf.tune_malloc():
        raise SystemExit("tune_malloc: this C library is not glibc; nothing to measure")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, generator=g)
    y = torch.randint(0, 7, (args.batch,), generator=g)
    out = {}
    for name in args.models:
        perf.set_threads(None)
        torch.manual_seed(0)
        model = build_model(name, input_size=args.size)
        opt = make_optimizer(model, TrainConfig(lr=1e-3))
        train_one_epoch(model, [(x, y)] * 2, opt, precision="auto", device="cpu")  # warm-up
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        run = train_one_epoch(model, [(x, y)] * args.steps, opt, precision="auto", device="cpu")
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out[name] = {"img_s": run["images"] / run["seconds"],
                     "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime}
    perf.set_threads(1)
    cfg = AugmentConfig()
    for _ in range(5):
        augment_images(x, cfg, g)
    best = min(_timed(lambda: augment_images(x, cfg, g), 20) for _ in range(5))
    out["augment"] = {"img_s": args.batch * 20 / best}
    print(json.dumps(out))


def _timed(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["baseline", "vgg_fer"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=6, help="timed training steps per model per child")
    p.add_argument("--size", type=int, default=64, help="input side (the paper profile's 64)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--child", choices=["default", "tuned"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    from fer_models.perf import host_kind

    print(f"host: {host_kind()}; batch {args.batch}, {args.size}x{args.size}, {args.steps} steps per model, "
          f"{args.rounds} rounds of one child process per setting", flush=True)
    results = {"default": [], "tuned": []}
    for r in range(args.rounds):
        for mode in (("default", "tuned") if r % 2 == 0 else ("tuned", "default")):
            cmd = [sys.executable, __file__, "--child", mode, "--models", *args.models, "--steps", str(args.steps),
                   "--size", str(args.size), "--batch", str(args.batch)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            results[mode].append(res)
            cpu = {k: f" (user {v['user']:.1f} s, sys {v['sys']:.1f} s)" for k, v in res.items() if "sys" in v}
            print(f"round {r + 1} {mode:<8}" + "".join(f"  {k} {v['img_s']:,.0f} img/s{cpu.get(k, '')}"
                                                     for k, v in res.items()), flush=True)

    def med(mode, key):
        return statistics.median(res[key]["img_s"] for res in results[mode])

    for key in [*args.models, "augment"]:
        d, t = med("default", key), med("tuned", key)
        print(f"{key:<10} median img/s: glibc default {d:,.0f}, tuned {t:,.0f}  ({t / d:.2f}x)")
    print("training step, tune_malloc vs glibc default: "
          + ", ".join(f"{m} {med('tuned', m) / med('default', m):.2f}x" for m in args.models))


if __name__ == "__main__":
    main()
