"""Batches as a Train worker feeds them, without Ray: shuffled, augmented training batches and
plain evaluation batches, turned into model input (float, normalised) only here, in the worker.

Kept free of Ray so benchmarks (bare training loops, GPU timings) run the very same code.
"""
from __future__ import annotations

import numpy as np
import torch

from fer_data import augment_batch, build_augmenter, to_model_input

EVAL_BATCH = 512


def epoch_stream(seed: int, epoch: int, rank: int, n_train: int, augment):
    """One epoch's randomness: (order of the training faces, augmenter), seeded from (seed, epoch, rank).

    Paired seeds: nothing here depends on the model, so every variant trained with seed s on the same data sees
    the same faces in the same order with the same augmentation draws, and per-seed differences between
    variants cancel that noise. A resumed epoch gets the same stream. Also seeds torch's global generator
    (dropout masks), which only a model's own layers consume.
    """
    rng = np.random.default_rng([seed, epoch, rank])
    torch.manual_seed(seed * 100_003 + epoch * 101 + rank)
    augmenter = build_augmenter(augment, seed=int(rng.integers(2**31)))
    return rng.permutation(n_train), augmenter


def train_batches(x, y, order, *, batch_size, augmenter, preprocess, norm):
    """Batches of `x[order]` in order, augmented on the fly when `augmenter` is given; `preprocess` is
    fer_data's PreprocessConfig (`DataSection.preprocess`), `norm` the training split's statistics."""
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        images = augment_batch(x[idx], augmenter) if augmenter is not None else x[idx]
        yield to_model_input(torch.from_numpy(images), preprocess, norm), torch.from_numpy(y[idx])


def eval_batches(x, y, preprocess, norm, batch_size: int = EVAL_BATCH):
    for i in range(0, len(x), batch_size):
        yield to_model_input(torch.from_numpy(x[i:i + batch_size]), preprocess, norm), torch.from_numpy(y[i:i + batch_size])
