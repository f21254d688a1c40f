"""Images per second of the augmentation policy: the batched tensor ops a trial uses (fer_data.augment_images)
against the albumentations reference (one image at a time), same policy, same faces, side by side in one run.

Batch 128 at 48x48 (FER-2013's own size), one CPU thread, the study's full policy (fer_data.AugmentConfig()) and
each transform alone. Rounds alternate between the two so both see the same machine load; each figure is the
best round (as timeit reports: the round least disturbed by the rest of the machine). With a GPU visible the
tensor ops are also timed there (a trial augments on its device). The process's malloc is tuned as a trial's
is (`fer_models.tune_malloc`): with glibc's default, the 1 MB batches the tensor ops allocate and free were
refaulted from the kernel in some runs and not in others (full policy 31k-47k images/s from run to run).

    python benchmarks/augment_throughput.py [--rounds 7] [--size 48] [--batch 128]

Last line: tensor ops (CPU) / albumentations for the full policy, as `N.Nx`.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_data import AugmentConfig, augment_batch, augment_images, build_augmenter  # noqa: E402
from fer_models.perf import host_kind, set_threads, tune_malloc  # noqa: E402

def policies() -> dict[str, AugmentConfig]:
    """The full policy, then each of its transforms alone at its default strength."""
    full = AugmentConfig()
    return {"full policy": full,
            **{name: replace(AugmentConfig.none(), **{name: value}) for name, value in asdict(full).items()}}


def rate(fn, images: int, batches: int) -> float:
    t = time.perf_counter()
    for _ in range(batches):
        fn()
    return images * batches / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    threads = set_threads(1)
    malloc = "tuned" if tune_malloc() else "default"  # as in a trial process (sweep.loop.train_trial)
    rng = np.random.default_rng(0)
    faces_u8 = rng.integers(0, 256, (args.batch, args.size, args.size), dtype=np.uint8)
    faces = torch.from_numpy(faces_u8).float()[:, None] / 255
    cuda = torch.device("cuda") if torch.cuda.is_available() else None
    print(f"host: {host_kind()}; torch {torch.__version__}; {threads} thread; batch {args.batch}, "
          f"{args.size}x{args.size}; malloc {malloc}; best of {args.rounds} rounds; images/s", flush=True)
    print(f"{'policy':<22}{'albumentations':>16}{'tensor ops CPU':>16}{'ratio':>8}"
          + (f"{'tensor ops GPU':>16}" if cuda else ""))
    ratio_full = None
    for label, cfg in policies().items():
        aug = build_augmenter(cfg, seed=0)
        g = torch.Generator().manual_seed(0)
        alb, ours, gpu = [], [], []
        augment_images(faces, cfg, g)  # warm-up
        if cuda is not None:
            faces_gpu, g_gpu = faces.to(cuda), torch.Generator(device=cuda).manual_seed(0)
            augment_images(faces_gpu, cfg, g_gpu)
        for _ in range(args.rounds):
            alb.append(rate(lambda: augment_batch(faces_u8, aug), args.batch, 2))
            ours.append(rate(lambda: augment_images(faces, cfg, g), args.batch, 20))
            if cuda is not None:
                def on_gpu():
                    for _ in range(50):
                        augment_images(faces_gpu, cfg, g_gpu)
                    torch.cuda.synchronize(cuda)
                gpu.append(rate(on_gpu, args.batch * 50, 1))
        a, o = max(alb), max(ours)
        if label == "full policy":
            ratio_full = o / a
        print(f"{label:<22}{a:>16,.0f}{o:>16,.0f}{o / a:>7.1f}x"
              + (f"{max(gpu):>16,.0f}" if cuda else ""), flush=True)
    print(f"tensor ops (CPU, 1 thread) vs albumentations, full policy: {ratio_full:.1f}x")


if __name__ == "__main__":
    main()
