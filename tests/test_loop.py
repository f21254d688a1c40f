"""The trial's training loop (sweep.loop.train_trial) without Ray: reports, checkpoints, the once-per-trial
GradScaler, resume, determinism. Synthetic faces at 16x16, flip-only augmentation and a narrow baseline keep
it to a few seconds."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_data import compute_norm, make_splits, make_synthetic, preprocess_images
from fer_models.checkpoint import TRAIN_STATE
from fer_models.training import Precision
from sweep.config import TrialConfig
from sweep.loop import ASHA_TIME, FINAL_FILE, TrialData, train_trial
from sweep.profiles import FLIP_ONLY

CONFIG = {"seed": 3, "model.name": "baseline", "model.conv_widths": [8, 16], "model.dense_widths": [16],
          "data.input_size": 16, "train.epochs": 2, "train.batch_size": 32, "train.precision": "fp32", **FLIP_ONLY}
N_TRAIN, N_EVAL, BATCH = 64, 42, 32
STEPS = N_TRAIN // BATCH  # optimiser steps per epoch
EPOCH_KEYS = {"epoch", "lr", "train/loss", "train/acc", "val/loss", "val/acc", "best_val_acc", "best_epoch",
              "epoch_s", "train/images_per_s", "hostname"}
TIMING = {"epoch_s", "train/images_per_s"}  # wall-clock values: the only ones two identical runs may differ in


@pytest.fixture(scope="module")
def data() -> TrialData:
    splits = make_splits(make_synthetic(n_train=N_TRAIN, n_val=N_EVAL, n_test=N_EVAL), protocol="official")
    cfg = TrialConfig.from_flat(CONFIG).data
    faces = {k: (preprocess_images(getattr(splits, f"{k}_x"), cfg), getattr(splits, f"{k}_y").astype(np.int64))
             for k in ("train", "val", "test")}
    return TrialData(train=faces["train"], val=faces["val"], norm=compute_norm(faces["train"][0]),
                     final_splits=lambda: {"train": faces["train"], "test": faces["test"]},
                     test_copy_in_train=splits.test_copy_in_train)


class Recorder:
    """A report callback that keeps every result, the files of its checkpoint and, optionally, a copy of it."""

    def __init__(self, keep: Path | None = None):
        self.reports, self.keep = [], keep

    def __call__(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        files = None
        if checkpoint_dir is not None:
            files = sorted(str(p.relative_to(checkpoint_dir)) for p in checkpoint_dir.rglob("*") if p.is_file())
            if self.keep is not None:  # the directory is gone once this returns
                shutil.copytree(checkpoint_dir, self.keep / f"report{len(self.reports)}")
        self.reports.append({"metrics": dict(metrics), "files": files})

    def epochs(self) -> list[dict]:
        return [r["metrics"] for r in self.reports if "train/loss" in r["metrics"]]


def cpu_precision(init_scale: float = 16.0) -> Precision:
    """fp32 on CPU with an *enabled* GradScaler that doubles its scale after every step: its scale counts
    the steps it has seen, so it shows whether one scaler lived through the whole trial."""
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1)
    return Precision(device=torch.device("cpu"), name="fp32", channels_last=False, scaler=scaler)


@pytest.fixture(scope="module")
def first_run(data):
    rec = Recorder()
    final = train_trial(CONFIG, data, rec, device="cpu")
    return rec, final


def test_trains_two_epochs_and_reports_each_then_the_final_evaluation(data, first_run):
    rec, final = first_run
    epochs = rec.epochs()
    assert [m["epoch"] for m in epochs] == [1, 2]
    for m in epochs:
        assert set(m) - {ASHA_TIME} == EPOCH_KEYS
        assert 0.0 <= m["train/acc"] <= 1.0 and 0.0 <= m["val/acc"] <= 1.0
        assert math.isfinite(m["train/loss"]) and math.isfinite(m["val/loss"]) and m["train/loss"] > 0
        assert m["best_val_acc"] == max(e["val/acc"] for e in epochs[:m["epoch"]])
    assert epochs[0][ASHA_TIME] == 1 and ASHA_TIME not in epochs[1]  # ASHA never stops a finished trial
    for r in rec.reports[:2]:  # the latest state and the best weights, every epoch
        assert {"latest/model.safetensors", "latest/meta.json", f"latest/{TRAIN_STATE}",
                "best/model.safetensors", "best/meta.json"} <= set(r["files"])
    (last,) = rec.reports[2:]
    assert FINAL_FILE in last["files"] and "best/model.safetensors" in last["files"]
    assert last["metrics"]["val/acc"] == max(m["val/acc"] for m in epochs)
    assert last["metrics"]["final/test/acc"] == final["metrics"]["test"]["acc"]
    assert final["best_epoch"] == last["metrics"]["best_epoch"] and final["epochs_run"] == 2
    for split, n in (("train", N_TRAIN), ("val", N_EVAL), ("test", N_EVAL)):
        assert sum(final["metrics"][split]["per_class"]["support"]) == n
    nocopy = final["metrics"]["test"]["subsets"]["no_copy_in_train"]
    assert nocopy["n"] == N_EVAL and nocopy["per_class_n"] == final["metrics"]["test"]["per_class"]["support"]
    assert sum(nocopy["per_class_correct"]) == round(nocopy["acc"] * N_EVAL)
    # per-face predictions for val and test (not train), in the split's order: the report's faces intervals
    assert set(final["predictions"]) == {"val", "test"}
    for split, y in (("val", data.val[1]), ("test", data.final_splits()["test"][1])):
        p = final["predictions"][split]
        assert p["y_true"] == "".join(map(str, y.tolist())) and len(p["y_pred"]) == N_EVAL
        correct = np.mean([t == q for t, q in zip(p["y_true"], p["y_pred"])])
        assert correct == pytest.approx(final["metrics"][split]["acc"])
    # dead ReLU units on validation with the selected weights: every ReLU of the model, in forward order
    units = final["unit_activity"]["val"]
    assert [(u["kind"], u["units"]) for u in units] == [("conv", 8), ("conv", 16), ("dense", 16)]
    assert len({u["layer"] for u in units}) == 3
    assert all(0 <= u["never_active"] <= u["units"] and 0.0 < u["active_share"] < 1.0 for u in units)


def test_same_seed_gives_identical_metrics(data, first_run):
    rec, final = first_run
    again = Recorder()
    final2 = train_trial(CONFIG, data, again, device="cpu")

    def stable(reports):
        return [{k: v for k, v in r["metrics"].items() if k not in TIMING} for r in reports]

    assert stable(again.reports) == stable(rec.reports)
    assert {**final2, "eval_s": 0} == {**final, "eval_s": 0}


def test_one_grad_scaler_per_trial_carried_across_epochs_and_resumed(data, tmp_path):
    prec = cpu_precision()
    rec = Recorder(keep=tmp_path)
    train_trial(CONFIG, data, rec, precision=prec)
    # One scaler saw both epochs' steps: 16 * 2^(2 * STEPS). One built per epoch would end at 16 * 2^STEPS.
    assert prec.scaler.get_scale() == 16.0 * 2 ** (2 * STEPS)
    scales = [torch.load(tmp_path / f"report{i}" / "latest" / TRAIN_STATE, weights_only=True)["extra"]["scaler"]["scale"]
              for i in (0, 1)]
    assert scales == [16.0 * 2 ** STEPS, 16.0 * 2 ** (2 * STEPS)]  # saved with the optimiser state

    # Resume from epoch 1's checkpoint with a fresh scaler: its state, the weights, the optimiser and the
    # schedule come back, and epoch 2 is the uninterrupted run's epoch 2.
    resumed_prec = cpu_precision(init_scale=1.0)
    resumed = Recorder()
    train_trial(CONFIG, data, resumed, precision=resumed_prec, resume_from=tmp_path / "report0")
    # Epoch 1's row comes again first, exactly as reported (an interrupt may have kept it from the log), without
    # ASHA's clock and without a checkpoint; then epoch 2 trains.
    assert [m["epoch"] for m in resumed.epochs()] == [1, 2]
    assert resumed.reports[0]["files"] is None
    assert resumed.epochs()[0] == {k: v for k, v in rec.epochs()[0].items() if k != ASHA_TIME}
    assert resumed_prec.scaler.get_scale() == prec.scaler.get_scale()
    drop = TIMING | {"hostname"}
    assert ({k: v for k, v in resumed.epochs()[1].items() if k not in drop}
            == {k: v for k, v in rec.epochs()[1].items() if k not in drop})
    assert json.loads((tmp_path / "report2" / FINAL_FILE).read_text())["metrics"]["test"]["acc"] == \
        resumed.reports[-1]["metrics"]["final/test/acc"]


def test_without_final_eval_the_test_split_is_untouched(data):
    untouched = TrialData(train=data.train, val=data.val, norm=data.norm, final_splits=None)
    rec = Recorder()
    assert train_trial({**CONFIG, "train.epochs": 1}, untouched, rec, device="cpu", final_eval=False) is None
    assert [m["epoch"] for m in rec.epochs()] == [1]
    assert rec.reports[-1]["files"] is None and not any(k.startswith("final/") for k in rec.reports[-1]["metrics"])


def test_auto_with_two_candidates_times_both_and_trains_exactly_as_its_choice_would(data, monkeypatch):
    """Where `auto` has a choice (a GPU with bf16; forced here on the CPU), the trial times its step in each
    candidate, trains in the fastest and says so in final.json; the timing draws no random number the trial
    would have drawn, so the trial equals one run in the chosen precision from the start."""
    import sweep.loop

    monkeypatch.setattr(sweep.loop, "auto_candidates", lambda device: ("fp32", "bf16"))
    auto = Recorder()
    final = train_trial({**CONFIG, "train.precision": "auto", "train.epochs": 1}, data, auto, device="cpu")
    assert set(final["precision_images_per_s"]) == {"fp32", "bf16"}
    speeds = final["precision_images_per_s"]
    assert final["precision"] == max(speeds, key=speeds.get)
    chosen = Recorder()
    final2 = train_trial({**CONFIG, "train.precision": final["precision"], "train.epochs": 1}, data, chosen,
                         device="cpu")
    assert "precision_images_per_s" not in final2 and final2["precision"] == final["precision"]

    def stable(reports):
        return [{k: v for k, v in r["metrics"].items() if k not in TIMING} for r in reports]

    assert stable(auto.reports) == stable(chosen.reports)
    drop = {"eval_s": 0, "precision_images_per_s": 0}
    assert {**final, **drop} == {**final2, **drop}

