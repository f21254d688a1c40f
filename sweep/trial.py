"""One trial: a Ray Tune function (the "driver") that runs a Ray Train `TorchTrainer`.

`train_loop` is what every Train worker runs: build the model, fetch the shared, already-preprocessed
arrays (Ray Data's output, put in the object store once per sweep) and take its rank's share of the
training split, then per epoch augment + train + validate, report,
checkpoint (the latest state and the best-by-validation weights), and at the end evaluate the best
weights once on train, validation and test. The driver writes `final.json` and a confusion-matrix
image into the Tune trial folder. Model selection only ever looks at validation (PublicTest).
"""
from __future__ import annotations

import copy
import json
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import ray
import ray.train
import ray.train.torch
from fer_models import build_model
from fer_models.checkpoint import load_checkpoint, load_train_state, save_checkpoint, save_train_state
from fer_models.perf import prepare_model, resolve_precision, set_threads
from fer_models.training import classification_metrics, evaluate, make_optimizer, make_scheduler, train_one_epoch
from sweep.batches import epoch_stream, eval_batches, train_batches
from sweep.config import TrialConfig, flatten_params

FINAL_FILE = "final.json"
ASHA_TIME = "asha/epoch"


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
    cfg = TrialConfig.from_flat(loop_config["trial"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    set_threads(loop_config["threads"])
    device = ray.train.torch.get_device()
    precision = resolve_precision(cfg.train.precision, device)
    norm = loop_config["norm"]
    class_weights = loop_config.get("class_weights")

    torch.manual_seed(cfg.seed)  # identical initialisation on every rank (DDP also broadcasts rank 0's)
    model = build_model(cfg.model.name, input_size=cfg.data.input_size, **cfg.model.overrides)
    model = prepare_model(model, precision, device)  # device + the memory format this precision wants
    net = ray.train.torch.prepare_model(model, move_to_device=False) if world > 1 else model
    weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32, device=device)

    # Preprocessed uint8 faces, fetched once; this rank's equal share of train, shuffled per epoch here.
    train_x, train_y = _rank_share(*_fetch(loop_config["data"]["train"]), rank, world)
    val_x, val_y = _fetch(loop_config["data"]["val"])
    optimizer = make_optimizer(model, cfg.train)
    scheduler = make_scheduler(optimizer, cfg.train, steps_per_epoch=-(-len(train_x) // cfg.train.batch_size))

    start_epoch, best = 0, {"val_acc": -1.0, "epoch": 0}
    best_model = copy.deepcopy(model)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # a retried worker or a resumed sweep: continue after the last finished epoch
        with checkpoint.as_directory() as d:
            best_model, best_meta = load_checkpoint(Path(d) / "best", map_location=device)
            best = best_meta["best"]
            if (Path(d) / "latest").exists():
                latest, _ = load_checkpoint(Path(d) / "latest", map_location=device)
                model.load_state_dict(latest.state_dict())
                start_epoch, _ = load_train_state(Path(d) / "latest", optimizer, scheduler, map_location=device)
            else:  # restarted after training had finished: only the final evaluation is left
                start_epoch = cfg.train.epochs

    # input_size is an override: the Flatten width depends on it, so the checkpoint rebuilds exactly this net.
    meta = {"model_name": cfg.model.name, "overrides": {**cfg.model.overrides, "input_size": cfg.data.input_size},
            "input_size": cfg.data.input_size, "norm": asdict(norm), "data": asdict(cfg.data),
            "preprocess": {"input_size": cfg.data.input_size, "smoothing_sigma": cfg.data.smoothing_sigma,
                           "standardize": cfg.data.standardize},
            "trial": loop_config["trial"]}
    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        order, augmenter = epoch_stream(cfg.seed, epoch, rank, len(train_x), cfg.augment)
        batches = train_batches(train_x, train_y, order, cfg.train.batch_size, augmenter, cfg, norm)
        lr = optimizer.param_groups[0]["lr"]
        tr = train_one_epoch(net, batches, optimizer, class_weights=weights, scheduler=scheduler,
                             label_smoothing=cfg.train.label_smoothing, grad_clip=cfg.train.grad_clip,
                             precision=precision, device=device)
        va = evaluate(net, eval_batches(val_x, val_y, cfg, norm), precision=precision,
                      device=device, class_weights=weights)
        if va["acc"] > best["val_acc"]:
            best = {"val_acc": float(va["acc"]), "epoch": epoch + 1}
            best_model.load_state_dict(model.state_dict())
        metrics = {
            "epoch": epoch + 1, "lr": lr,
            "train/loss": tr["loss"], "train/acc": tr["acc"],
            "val/loss": va["loss"], "val/acc": va["acc"],
            "best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
            "epoch_s": time.perf_counter() - t0, "train/images_per_s": tr["images"] / max(tr["seconds"], 1e-9),
            "node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
        }
        if epoch + 1 < cfg.train.epochs:
            # ASHA's clock. Absent from the last epoch's result, so ASHA never stops a trial that has finished
            # training before its final evaluation (ASHA ignores results without its time attribute).
            metrics[ASHA_TIME] = epoch + 1
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_checkpoint(Path(tmp) / "latest", model, meta)
                save_checkpoint(Path(tmp) / "best", best_model, {**meta, "best": best})
                save_train_state(Path(tmp) / "latest", optimizer, scheduler, epoch + 1, {"best": best})
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)

    # Test is touched once, here, with the weights chosen on validation. The result travels as the
    # run's last checkpoint (Train V2 keeps the metrics of checkpointed reports): best/ + final.json.
    # val/acc here is the selected weights' (Tune's metric must be in every result, ASHA's too).
    final_metrics = {"epoch": cfg.train.epochs, "val/acc": best["val_acc"], "best_val_acc": best["val_acc"],
                     "best_epoch": best["epoch"]}
    if not loop_config.get("final_eval", True):  # a nuisance-tuning trial: chosen on validation, test untouched
        ray.train.report(final_metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = None
        if rank == 0:
            final = {"best_epoch": best["epoch"], "epochs_run": cfg.train.epochs,
                     "params": sum(p.numel() for p in model.parameters()), "metrics": {}}
            t_eval = time.perf_counter()
            splits = {"train": _fetch(loop_config["data"]["train_eval"]), "val": (val_x, val_y),
                      "test": _fetch(loop_config["data"]["test"])}
            for split, (x, y) in splits.items():
                ev = evaluate(best_model, eval_batches(x, y, cfg, norm), precision=precision,
                              device=device, class_weights=weights)
                final["metrics"][split] = {"loss": ev["loss"], **classification_metrics(ev["y_true"], ev["y_pred"])}
                if split == "test":
                    final["metrics"]["test"]["subsets"] = copy_subsets(ev["y_true"], ev["y_pred"],
                                                                       loop_config["test_copy_in_train"])
            final["eval_s"] = time.perf_counter() - t_eval
            final_metrics.update(final_split_metrics(final))
            save_checkpoint(Path(tmp) / "best", best_model, {**meta, "best": best})
            (Path(tmp) / FINAL_FILE).write_text(json.dumps(final))
            ckpt = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(final_metrics, checkpoint=ckpt)


def copy_subsets(y_true: np.ndarray, y_pred: np.ndarray, copy_in_train) -> dict:
    """Test accuracy and macro recall on the faces with an exact copy in this trial's training split and on
    those without: what a leak can inflate, separated from what it cannot."""
    from sklearn.metrics import recall_score

    copy = np.asarray(copy_in_train, dtype=bool)
    if copy.shape != y_true.shape:
        raise ValueError(f"test copy mask has {copy.size} entries for {y_true.size} test faces")
    out = {}
    for name, mask in (("copy_in_train", copy), ("no_copy_in_train", ~copy)):
        t, p = y_true[mask], y_pred[mask]
        out[name] = {"n": int(mask.sum()),
                     "acc": float((t == p).mean()) if mask.any() else None,
                     "macro_recall": float(recall_score(t, p, labels=np.unique(t), average="macro", zero_division=0))
                     if mask.any() else None}
    return out


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
              final_eval: bool = True) -> None:
    """Tune function trainable: one TorchTrainer per trial, its metrics forwarded to Tune.

    `final_eval=False` (nuisance tuning) trains and validates only: no test evaluation, no final.json.
    """
    from ray.tune import get_context
    from ray.tune.integration.ray_train import TuneReportCallback
    from ray.train.torch import TorchTrainer

    flat = flatten_params(config)
    cfg = TrialConfig.from_flat(flat)
    data = prepared[data_key(cfg.data)]
    ctx = get_context()
    trial_dir = Path(ctx.get_trial_dir())
    done = _read_final(trial_dir)
    if done is not None:
        # Complete results from before an interrupt that fell between this file's write and Tune marking the
        # trial finished: a resumed sweep hands Tune the same final metrics and leaves the folder untouched.
        from ray import tune

        tune.report(final_result(done, cfg.train.epochs))
        return
    started = time.time()
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


def _read_final(trial_dir: Path) -> dict | None:
    try:
        final = json.loads((trial_dir / FINAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return final if isinstance(final, dict) and "test" in final.get("metrics", {}) else None


def final_split_metrics(final: dict) -> dict:
    """The `final/<split>/{acc,macro_f1}` keys of a trial's last result, from its final.json content."""
    return {f"final/{split}/{key}": final["metrics"][split][key]
            for split in ("train", "val", "test") for key in ("acc", "macro_f1")}


def final_result(final: dict, epochs: int) -> dict:
    """The metrics the Train worker's last report carried, rebuilt from `final.json`."""
    return {"epoch": epochs, "val/acc": final["metrics"]["val"]["acc"], "best_val_acc": final["metrics"]["val"]["acc"],
            "best_epoch": final["best_epoch"], **final_split_metrics(final)}


def data_key(data_section) -> str:
    """Trials whose data sections are equal share one prepared dataset."""
    return json.dumps(asdict(data_section), sort_keys=True)


def _write_confusion_image(trial_dir: Path, final: dict, cfg: TrialConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
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
