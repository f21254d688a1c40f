"""Batches as a Train worker feeds them, without Ray: shuffled, augmented training batches and
plain evaluation batches, turned into model input (float, normalised) only here, in the worker.

Kept free of Ray so benchmarks (bare training loops, GPU timings) run the very same code.
"""
from __future__ import annotations

import torch

from fer_data import augment_batch, to_model_input

EVAL_BATCH = 512


def train_batches(x, y, order, batch_size, augmenter, cfg, norm):
    """Batches of `x[order]` in order, augmented on the fly when `augmenter` is given."""
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        images = augment_batch(x[idx], augmenter) if augmenter is not None else x[idx]
        yield to_model_input(torch.from_numpy(images), cfg.data, norm), torch.from_numpy(y[idx])


def eval_batches(x, y, cfg, norm, batch_size: int = EVAL_BATCH):
    for i in range(0, len(x), batch_size):
        yield to_model_input(torch.from_numpy(x[i:i + batch_size]), cfg.data, norm), torch.from_numpy(y[i:i + batch_size])
