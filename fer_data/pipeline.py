"""The one shared Ray Data pipeline: load, split, balance, preprocess ONCE, hand to every trial.

``prepare(data_spec, DataConfig(...))`` (the caller must have called ``ray.init``):

1. loads the data (``load_dataset``: a FER-2013 path or ``"synthetic"``), optionally subsampled per
   split (``limit_per_split``, for smoke runs), and splits it (``make_splits``);
2. balances the training split only (``balance``);
3. runs the deterministic preprocessing (``preprocess_images``) with Ray Data ``map_batches`` and
   ``materialize()``s the result, so everything that reads these datasets (a sweep turns them into
   object-store arrays once, for all its trials) gets the stored uint8 [S, S] blocks and never re-runs it.
   Augmentation is NOT here: it is random per epoch and runs in the training workers.

``PreparedData.datasets``: ``train`` (balanced), ``train_eval`` (the un-balanced training split, for
the final train-accuracy evaluation; the same object as ``train`` when balancing did not resample),
``val`` and ``test``; columns ``image`` uint8 [S, S] and ``label`` int64.

    import ray; ray.init()
    data = prepare("../shared/datasets/fer2013/icml_face_data.csv.gz", DataConfig())
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .balance import BalanceConfig, balance
from .classes import NUM_CLASSES
from .preprocess import Norm, PreprocessConfig, compute_norm, preprocess_images
from .sources import FerArrays
from .splits import PROTOCOLS, make_splits


@dataclass(frozen=True)
class DataConfig:
    protocol: str = "official"  # split protocol, see fer_data.splits.PROTOCOLS
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    seed: int = 0  # drives subsampling, the leaky split and balancing
    limit_per_split: int | None = None  # keep at most this many rows per split (smoke runs); None = all

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown split protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.limit_per_split is not None and self.limit_per_split < 1:
            raise ValueError(f"DataConfig.limit_per_split must be >= 1 or None, got {self.limit_per_split!r}")


@dataclass(frozen=True)
class PreparedData:
    datasets: dict  # "train", "train_eval", "val", "test" -> materialised ray.data.Dataset
    class_weights: np.ndarray | None  # float32 [7] for a weighted loss, or None
    norm: Norm  # train mean/std in [0, 1] scale (used when preprocess.standardize)
    audit: dict  # from make_splits: protocol, rows, counts, exact-copy fractions
    sha256: str  # content hash of the source data
    counts: dict  # split -> per-class row counts (train after balancing)
    config: DataConfig
    source: str
    test_copy_in_train: np.ndarray  # bool per test face: an exact copy of it is in the training split


class _Preprocess:
    """The map_batches function. With ``trace_dir`` set, every call leaves a file there recording how
    many rows it processed, so tests can count executions across processes."""

    def __init__(self, cfg: PreprocessConfig, trace_dir: str | None = None):
        self.cfg, self.trace_dir = cfg, trace_dir

    def __call__(self, batch: dict) -> dict:
        out = {"image": preprocess_images(np.asarray(batch["image"], np.uint8), self.cfg),
               "label": np.asarray(batch["label"], np.int64)}
        if self.trace_dir:
            Path(self.trace_dir, f"{uuid.uuid4().hex}.rows").write_text(str(len(out["label"])))
        return out


def _to_dataset(x: np.ndarray, y: np.ndarray, rows_per_block: int = 4096):
    import pyarrow as pa
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    tables = [pa.table({"image": ArrowTensorArray.from_numpy(np.ascontiguousarray(x[i: i + rows_per_block])),
                        "label": pa.array(y[i: i + rows_per_block].astype(np.int64))})
              for i in range(0, max(len(y), 1), rows_per_block)]
    return ray.data.from_arrow(tables)


def _limit(arrays: FerArrays, n: int, seed: int) -> FerArrays:
    """Keep a seeded random subset of at most ``n`` rows of each usage (original order kept)."""
    rng = np.random.default_rng(seed)
    keep = []
    for usage in ("Training", "PublicTest", "PrivateTest"):
        idx = np.flatnonzero(arrays.usage == usage)
        keep.append(np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False)))
    k = np.concatenate(keep)
    return FerArrays(arrays.images[k], arrays.labels[k], arrays.usage[k], arrays.sha256, arrays.source, arrays.layout)


def prepare(data_spec, cfg: DataConfig = DataConfig(), *, cache_dir: str | os.PathLike | None = None,
            trace_dir: str | os.PathLike | None = None) -> PreparedData:
    """Load, split, balance train, preprocess once with Ray Data; see the module docstring.

    Args:
        data_spec: a FER-2013 path, ``"synthetic"``, or an already loaded ``FerArrays``.
        cfg: the data configuration.
        cache_dir: parsed-array cache (see ``load_fer2013``).
        trace_dir: if set, each preprocessing call writes a file there (used to count executions).
    """
    import ray

    if not ray.is_initialized():
        raise RuntimeError("fer_data.pipeline.prepare needs Ray: call ray.init(...) first")
    from . import load_dataset

    arrays = data_spec if isinstance(data_spec, FerArrays) else load_dataset(data_spec, cache_dir=cache_dir)
    if cfg.limit_per_split:
        arrays = _limit(arrays, cfg.limit_per_split, cfg.seed)
    splits = make_splits(arrays, cfg.protocol, cfg.seed)
    bx, by, weights = balance(splits.train_x, splits.train_y, cfg.balance, cfg.seed)
    fn = _Preprocess(cfg.preprocess, str(trace_dir) if trace_dir else None)

    # Keep the materialised blocks on the driver's node (preferably; any other node as the fallback, for a
    # head without CPUs): blocks on a worker node are lost with that node, and rebuilding them from lineage
    # needs a CPU that the trials' Train workers hold, so a node loss could deadlock the sweep. Label
    # selectors, not a NodeAffinitySchedulingStrategy: Ray 2.60 deprecates map_batches' **ray_remote_args.
    node = ray.get_runtime_context().get_node_id()
    here = {"label_selector": {"ray.io/node-id": node}, "fallback_strategy": [{"label_selector": {}}]}

    def run(x, y):
        return _to_dataset(x, y).map_batches(fn, batch_format="numpy", **here).materialize()

    # Rows must come out in the order they went in: a trial's seed picks faces by index, so an order set by
    # whichever block finished first (Ray Data's default) gave the same seed other batches in every sweep (and
    # after every --resume): measured, 1 of 3 runs of a 20,000-face train split came out permuted.
    options = ray.data.DataContext.get_current().execution_options
    kept, options.preserve_order = options.preserve_order, True
    try:
        datasets = {"train_eval": run(splits.train_x, splits.train_y)}
        datasets["train"] = datasets["train_eval"] if bx is splits.train_x else run(bx, by)
        datasets["val"] = run(splits.val_x, splits.val_y)
        datasets["test"] = run(splits.test_x, splits.test_y)
    finally:
        options.preserve_order = kept
    # Standardisation statistics from the real (un-balanced) training images only.
    s = s2 = 0.0
    n = 0
    for batch in datasets["train_eval"].iter_batches(batch_size=4096, batch_format="numpy"):
        img = batch["image"].astype(np.float64) / 255.0
        s, s2, n = s + img.sum(), s2 + np.square(img).sum(), n + img.size
    mean = s / max(n, 1)
    norm = Norm(float(mean), float(np.sqrt(max(s2 / max(n, 1) - mean * mean, 0.0))) or 1.0)
    counts = {"train": np.bincount(by, minlength=NUM_CLASSES).tolist(),
              "train_eval": np.bincount(splits.train_y, minlength=NUM_CLASSES).tolist(),
              "val": np.bincount(splits.val_y, minlength=NUM_CLASSES).tolist(),
              "test": np.bincount(splits.test_y, minlength=NUM_CLASSES).tolist()}
    return PreparedData(datasets, weights, norm, splits.audit, arrays.sha256, counts, cfg, arrays.source,
                        splits.test_copy_in_train)


__all__ = ["DataConfig", "PreparedData", "prepare", "compute_norm"]
