"""Batches as a Train worker feeds them, without Ray: shuffled, augmented training batches and plain evaluation
batches, indexed from faces that sit on the training device, turned into model input there.

A trial puts its preprocessed uint8 splits on its device once (`on_device`: FER-2013's training split is 66 MB
at 48x48); a batch is an index into them, then `augment_images` (a few tensor ops for the whole batch) and
standardisation, all on that device. No per-batch host-to-device copy, and on a CPU the same code runs on CPU
tensors. Kept free of Ray so benchmarks (bare training loops, GPU timings) run the very same code.
"""
from __future__ import annotations

import numpy as np
import torch

from fer_data import AugmentConfig, augment_images, standardize, to_model_input, to_unit

EVAL_BATCH = 512


def on_device(x, y, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A split (uint8 faces [N, S, S], labels [N]; numpy or torch) as uint8 and int64 tensors on `device`.

    Copies numpy arrays (Ray's object store hands read-only ones, which torch cannot share)."""
    def move(a, dtype):
        t = a if isinstance(a, torch.Tensor) else torch.tensor(np.asarray(a))
        return t.to(device=device, dtype=dtype)
    return move(x, torch.uint8), move(y, torch.int64)


def epoch_stream(seed: int, epoch: int, rank: int, n_train: int,
                 device=None) -> tuple[torch.Tensor, torch.Generator]:
    """One epoch's randomness: (order of the training faces, augmentation generator), both on `device`, seeded
    from (seed, epoch, rank).

    Paired seeds: nothing here depends on the model or the augmentation policy, so every variant trained with
    seed s on the same data sees the same faces in the same order with the same augmentation draws, and
    per-seed differences between variants cancel that noise. A resumed epoch gets the same stream. Also seeds
    torch's global generator (dropout masks), which only a model's own layers consume. The same seed gives
    different augmentation draws on a CPU and on a GPU (their generators differ), the same order on both.
    """
    rng = np.random.default_rng([seed, epoch, rank])
    torch.manual_seed(seed * 100_003 + epoch * 101 + rank)
    order = torch.from_numpy(rng.permutation(n_train)).to(device)
    generator = torch.Generator(device=order.device)
    generator.manual_seed(int(rng.integers(2**62)))
    return order, generator


def train_batches(x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, *, batch_size: int,
                  augment: AugmentConfig, generator: torch.Generator, preprocess, norm):
    """Batches of `x[order]` in order (x, y from `on_device`), augmented with `augment`'s policy drawing from
    `generator`; `preprocess` is fer_data's PreprocessConfig (`DataSection.preprocess`), `norm` the training
    split's statistics."""
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        yield standardize(augment_images(to_unit(x[idx]), augment, generator), preprocess, norm), y[idx]


def eval_batches(x, y, preprocess, norm, batch_size: int = EVAL_BATCH):
    """Plain batches of a split in order (never augmented); x, y numpy or tensors on any device."""
    x, y = (x, y) if isinstance(x, torch.Tensor) else on_device(x, y)
    for i in range(0, len(x), batch_size):
        yield to_model_input(x[i:i + batch_size], preprocess, norm), y[i:i + batch_size]
