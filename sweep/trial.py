"""One trial: a Ray Tune function (the "driver") that runs a Ray Train `TorchTrainer`.

`train_loop` is what every Train worker runs: a thin adapter around `sweep.loop.train_trial` (the
training loop, free of Ray). It fetches the shared, already-preprocessed arrays (Ray Data's output, put in
the object store once per sweep), takes its rank's share of the training split, wraps the model for DDP
when there are several workers, resumes from Ray Train's checkpoint, and turns each of the loop's reports
into `ray.train.report` with its checkpoint directory. The driver writes `final.json` and a
confusion-matrix image into the Tune trial folder. Model selection only ever looks at validation (PublicTest).
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import ray
import ray.train
import ray.train.torch
from fer_models.perf import set_threads
from sweep.config import TrialConfig, flatten_params
# ASHA_TIME and copy_subsets are re-exported: sweep.run and the tests import them from here.
from sweep.loop import ASHA_TIME, FINAL_FILE, TrialData, copy_subsets, final_split_metrics, train_trial  # noqa: F401


@dataclass(frozen=True)
class Resources:
    """What one trial holds: Train workers x (CPUs, GPUs) each, plus a `driver_slot` for its driver."""

    workers: int = 1
    cpus_per_worker: int = 1
    use_gpu: bool = False
    gpus_per_worker: float = 1.0

    def worker_resources(self) -> dict:
        out = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            out["GPU"] = self.gpus_per_worker
        return out


# ---------------------------------------------------------------- the Train worker

def train_loop(loop_config: dict) -> None:
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    set_threads(loop_config["threads"])
    refs = loop_config["data"]
    # Preprocessed uint8 faces, fetched once; this rank's equal share of train (shuffled per epoch by the loop).
    # train_eval and test are fetched only for the final evaluation, on rank 0.
    data = TrialData(train=_rank_share(*_fetch(refs["train"]), rank, world), val=_fetch(refs["val"]),
                     norm=loop_config["norm"], class_weights=loop_config.get("class_weights"),
                     final_splits=lambda: {"train": _fetch(refs["train_eval"]), "test": _fetch(refs["test"])},
                     test_copy_in_train=loop_config["test_copy_in_train"])
    checkpoint = ray.train.get_checkpoint()  # a retried worker or a resumed sweep
    train_trial(loop_config["trial"], data, _report, device=ray.train.torch.get_device(), rank=rank,
                wrap_model=_ddp if world > 1 else None,
                resume_from=checkpoint.as_directory() if checkpoint else None,
                final_eval=loop_config.get("final_eval", True),
                extra_metrics={"node_id": ray.get_runtime_context().get_node_id()})


def _report(metrics: dict, checkpoint_dir: Path | None) -> None:
    # Train V2 keeps the metrics of checkpointed reports, so the final evaluation's result travels this way too.
    ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
    ray.train.report(metrics, checkpoint=ckpt)


def _ddp(model):
    # The loop has already put the model on its device in its memory format.
    return ray.train.torch.prepare_model(model, move_to_device=False)


def share_arrays(datasets: dict) -> dict:
    """The prepared (materialised) Ray Data datasets as object-store refs of (images, labels) arrays.

    Made once per sweep, in the driver, so the blocks live on the driver's node. Every trial's workers
    fetch them with one `ray.get`: streaming them through Ray Train's dataset ingest instead started a
    Ray Data executor in every trial's worker (4-9 s before its first epoch), for ~50 MB that fits in memory.
    """
    refs, by_id = {}, {}
    for name, ds in datasets.items():
        if id(ds) not in by_id:  # train is train_eval when balancing did not resample: share one copy
            blocks = ray.get(ds.to_numpy_refs())
            x = np.concatenate([b["image"] for b in blocks])
            y = np.concatenate([b["label"] for b in blocks]).astype(np.int64)
            by_id[id(ds)] = ray.put((x, y))
        refs[name] = by_id[id(ds)]
    return refs


def _fetch(ref) -> tuple[np.ndarray, np.ndarray]:
    x, y = ray.get(ref)
    return np.array(x), np.array(y)  # writable copies: the object store's are read-only, torch wants writable


def _rank_share(x: np.ndarray, y: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """Every world-th face from `rank`, all ranks the same length (DDP steps in lock-step; the few
    faces left over are dropped, as Ray Data's equal split does)."""
    if world == 1:
        return x, y
    n = len(y) // world * world
    return x[rank:n:world], y[rank:n:world]


# ---------------------------------------------------------------- the Tune driver

def run_trial(config: dict, *, prepared: dict, resources: Resources, storage_path: str,
              trials_uri: str | None = None, final_eval: bool = True) -> None:
    """Tune function trainable: one TorchTrainer per trial, its metrics forwarded to Tune.

    `storage_path` holds the Train runs; `trials_uri` is where Tune stores the trial folders (the experiment),
    where a resumed trial finds a final.json written before the interrupt. `final_eval=False` (nuisance tuning)
    trains and validates only: no test evaluation, no final.json.
    """
    from ray.tune import get_context
    from ray.tune.integration.ray_train import TuneReportCallback
    from ray.train.torch import TorchTrainer

    flat = flatten_params(config)
    cfg = TrialConfig.from_flat(flat)
    data = prepared[data_key(cfg.data)]
    ctx = get_context()
    trial_dir = Path(ctx.get_trial_dir())
    done = _finished_before(trial_dir, trials_uri) if final_eval else None
    if done is not None:
        # Complete results from before an interrupt that fell between this file's write and Tune marking the
        # trial finished: a resumed sweep hands Tune the same final metrics and leaves the folder untouched.
        from ray import tune

        tune.report(final_result(done, cfg.train.epochs))
        return
    started = time.time()
    if final_eval:
        # The driver only waits during fit: import what the confusion image needs (~1.3 s) meanwhile.
        threading.Thread(target=_import_figure_modules, daemon=True).start()
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"trial": flat, "norm": data["norm"], "class_weights": data["class_weights"],
                           "data": data["arrays"], "test_copy_in_train": data["test_copy_in_train"],
                           "threads": resources.cpus_per_worker, "final_eval": final_eval},
        scaling_config=ray.train.ScalingConfig(num_workers=resources.workers, use_gpu=resources.use_gpu,
                                               resources_per_worker=resources.worker_resources()),
        run_config=ray.train.RunConfig(
            # A deterministic name: a relaunched driver finds this run's checkpoints and resumes from them.
            name=f"train-{ctx.get_trial_id()}",
            storage_path=storage_path,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=3),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    result = trainer.fit()
    if not final_eval:
        return
    with result.checkpoint.as_directory() as d:
        final = json.loads((Path(d) / FINAL_FILE).read_text())
        # The selected weights beside the trial's results: `--checkpoint <trial folder>` finds them.
        shutil.copytree(Path(d) / "best", trial_dir / "best_model", dirs_exist_ok=True)
    final["wall_s"] = time.time() - started
    _write_confusion_image(trial_dir, final, cfg)
    # Last, and atomically: a complete final.json is what marks a trial finished (see above).
    tmp = trial_dir / f".{FINAL_FILE}.tmp"
    tmp.write_text(json.dumps(final, indent=1))
    tmp.replace(trial_dir / FINAL_FILE)


def _finished_before(trial_dir: Path, trials_uri: str | None) -> dict | None:
    """A complete final.json from before an interrupt: in the trial's staging folder (a retry within one run), or
    in its stored folder (a resumed run stages each trial in a fresh, empty folder)."""
    from sweep import storage

    places = [str(trial_dir / FINAL_FILE)] + ([storage.join(trials_uri, trial_dir.name, FINAL_FILE)]
                                              if trials_uri else [])
    for uri in places:
        try:
            final = storage.read_json(uri)
        except (OSError, ValueError):  # unreadable or cut short: not finished
            continue
        if isinstance(final, dict) and "test" in final.get("metrics", {}):
            return final
    return None


def final_result(final: dict, epochs: int) -> dict:
    """The metrics the Train worker's last report carried, rebuilt from `final.json`."""
    return {"epoch": epochs, "val/acc": final["metrics"]["val"]["acc"], "best_val_acc": final["metrics"]["val"]["acc"],
            "best_epoch": final["best_epoch"], **final_split_metrics(final)}


def data_key(data_section) -> str:
    """Trials whose data sections are equal share one prepared dataset."""
    return json.dumps(asdict(data_section), sort_keys=True)


def _import_figure_modules() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import torch.utils.tensorboard  # noqa: F401


def _write_confusion_image(trial_dir: Path, final: dict, cfg: TrialConfig) -> None:
    _import_figure_modules()  # done already when the thread started in run_trial has finished
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    from torch.utils.tensorboard import SummaryWriter

    from fer_data import CLASS_NAMES

    writer = SummaryWriter(str(trial_dir))
    for split in ("val", "test"):
        cm = np.array(final["metrics"][split]["confusion"])
        fig, ax = plt.subplots(figsize=(5, 5), dpi=80)
        ConfusionMatrixDisplay(cm, display_labels=CLASS_NAMES).plot(ax=ax, colorbar=False, xticks_rotation=45)
        ax.set_title(f"{cfg.model.name} seed {cfg.seed}: {split}")
        fig.tight_layout()
        writer.add_figure(f"confusion/{split}", fig, global_step=final["best_epoch"])
        plt.close(fig)
    writer.close()
