"""When do the study CNN's dense units die? Dead ReLU units of the dense layer over the first training steps.

At 64x64 the baseline's one dense layer ended its 8 epochs with 123-126 of its 128 units never active on
validation (reports/components-64px-fer2013/dead_units). A suspected cause: Adam's first steps move every weight
by about the learning rate, with one sign per unit (the flattened features after ReLU + max-pool are all >= 0),
so one step shifts a unit's pre-activation by about lr x fan-in x mean(feature): ~4 at 64x64 with batch norm
(8,192 features near unit scale), far beyond the ~0.5 spread at initialisation; a unit pushed below zero on
every face gets no gradient again. This probe trains with the project's own batches and step (the sweep
trial's recipe: `--profile settle`, flip only, cosine over 8 epochs) without Ray, one thread, and after the steps
in `--at` counts the dense units never positive on validation faces (the first `--val-faces`), with the rms of the
dense layer's input (flattened features) and pre-activation. Arms change the model, initial weights, input size,
optimiser, learning rate or warmup, one thing at a time; every arm sees the same faces in the same order
(sweep.batches.epoch_stream).

    python benchmarks/dead_units_probe.py                          # the default arms, 100 steps
    python benchmarks/dead_units_probe.py --arms bn64 bn64_warm1 --at 0 1 10 224

The last line compares the dead dense units of the 64x64 baseline with and without warmup after the last step.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FER_CSV = Path(__file__).resolve().parents[2] / "shared/datasets/fer2013/icml_face_data.csv.gz"

# The sweep's settle recipe (sweep/profiles.py) as the reference; each arm overrides one or two settings.
REFERENCE = {"model": "baseline", "input_size": 64, "init": "torch", "optimizer": "adam",
             "lr": 1e-3, "dense_lr_fan_in": 0, "warmup": 0.0, "epochs": 8}
ARMS = {
    "bn64": {},  # the recipe of reports/components-64px-fer2013
    "bn64_warm1": {"warmup": 1.0},  # linear warmup over the first epoch, as reports/components-64px-warmup-fer2013
    "bn64_lr3e-4": {"lr": 3e-4},
    # SGD's step is proportional to each weight's gradient, not about lr for every weight as Adam's first steps
    "bn64_sgd1e-2": {"optimizer": "sgd", "lr": 1e-2},  # Nesterov momentum 0.9 (TrainConfig's default)
    "bn64_sgd5e-2": {"optimizer": "sgd", "lr": 5e-2},
    "bn64_keras": {"init": "keras"},  # Keras' initial weights (ModelConfig.init), as the study most likely had
    "bn64_keras_warm1": {"init": "keras", "warmup": 1.0},
    # The dense layer at lr x 512 / 8,192 (TrainConfig.dense_lr_fan_in): its units' first jumps 16x smaller
    "bn64_dense512": {"dense_lr_fan_in": 512},
    "bn64_dense512_warm1": {"dense_lr_fan_in": 512, "warmup": 1.0},
    "nobn64": {"model": "no_batchnorm"},
    "bn48": {"input_size": 48},
    "bn32": {"input_size": 32},
}


def dense_probe(model, val_x, val_y, preprocess) -> dict:
    """Dead units of the first dense ReLU, rms of that layer's input and pre-activation, accuracy, on validation
    faces, seen as training sees them: batch norm on batch statistics (eval mode's running averages lag far behind
    in the first steps), dropout off. Runs on a copy, so the model's running statistics stay untouched."""
    import copy

    import torch

    from sweep.batches import eval_batches
    from fer_models.activity import UnitActivity

    model = copy.deepcopy(model).train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    dense = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    sq = {"in": [0.0, 0], "pre": [0.0, 0]}

    def hook(_m, inputs, out):
        for key, t in (("in", inputs[0]), ("pre", out)):
            sq[key][0] += float(t.double().pow(2).sum())
            sq[key][1] += t.numel()

    handle = dense.register_forward_hook(hook)
    activity = UnitActivity(model)
    correct = 0
    with torch.no_grad():
        for x, y in eval_batches(val_x, val_y, preprocess, None):
            correct += int((model(x).argmax(1) == y).sum())
    handle.remove()
    rows = activity.close()
    head = next(r for r in rows if r["kind"] == "dense")
    return {"dead": head["never_active"], "units": head["units"], "acc": correct / len(val_y),
            "rms_in": (sq["in"][0] / sq["in"][1]) ** 0.5, "rms_pre": (sq["pre"][0] / sq["pre"][1]) ** 0.5}


def run_arm(name: str, overrides: dict, at: list[int], seed: int, splits, val_faces: int) -> list[dict]:
    import torch

    from fer_data import AugmentConfig, PreprocessConfig, preprocess_images
    from fer_models import build_model
    from fer_models.training import TrainConfig, make_optimizer, make_scheduler, train_one_epoch
    from sweep.batches import epoch_stream, on_device, train_batches

    a = {**REFERENCE, **overrides}
    pre = PreprocessConfig(input_size=a["input_size"])
    tx, ty = on_device(preprocess_images(splits.train_x, pre), splits.train_y)
    vx, vy = on_device(preprocess_images(splits.val_x[:val_faces], pre), splits.val_y[:val_faces])
    flip = replace(AugmentConfig.none(), hflip_p=0.5)
    train = TrainConfig(optimizer=a["optimizer"], lr=a["lr"], dense_lr_fan_in=a["dense_lr_fan_in"], epochs=a["epochs"],
                        warmup_epochs=a["warmup"], precision="auto")
    torch.manual_seed(seed)
    model = build_model(a["model"], input_size=a["input_size"], init=a["init"])
    steps_per_epoch = -(-len(tx) // train.batch_size)
    opt = make_optimizer(model, train)
    sched = make_scheduler(opt, train, steps_per_epoch=steps_per_epoch)
    rows, done, t0 = [], 0, time.perf_counter()
    for epoch in range(-(-max(at) // steps_per_epoch)):
        order, generator = epoch_stream(seed, epoch, 0, len(tx))
        batches = train_batches(tx, ty, order, batch_size=train.batch_size, augment=flip, generator=generator,
                                preprocess=pre, norm=None)
        stop = min(max(at), (epoch + 1) * steps_per_epoch)

        def counted(batches=batches, stop=stop):
            nonlocal done
            for batch in batches:
                if done in at:
                    rows.append({"arm": name, "step": done, "lr": opt.param_groups[0]["lr"],
                                 **dense_probe(model, vx, vy, pre)})
                    r = rows[-1]
                    print(f"  {name:12s} step {done:4d}: dense dead {r['dead']:3d}/{r['units']}, rms in "
                          f"{r['rms_in']:.2f}, pre {r['rms_pre']:.2f}, val {100 * r['acc']:.1f}% "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
                if done == stop:
                    return
                done += 1
                yield batch

        train_one_epoch(model, counted(), opt, scheduler=sched, device="cpu")
    if max(at) in (r["step"] for r in rows):
        return rows
    rows.append({"arm": name, "step": done, "lr": opt.param_groups[0]["lr"], **dense_probe(model, vx, vy, pre)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--at", nargs="+", type=int, default=[0, 1, 2, 3, 5, 10, 20, 50, 100],
                   help="count after these optimiser steps (224 per epoch at batch 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-faces", type=int, default=1024, help="count on the first N validation faces (of 3,589)")
    args = p.parse_args(argv)
    if not FER_CSV.exists():
        print(f"skipped: the real FER-2013 is not at {FER_CSV}")
        return 0
    import torch

    from fer_data import load_dataset, make_splits
    from fer_models.perf import set_threads

    set_threads(1)
    print(f"dead-units probe: seed {args.seed}, 1 thread, torch {torch.__version__}; reference {REFERENCE}")
    splits = make_splits(load_dataset(str(FER_CSV)), "official")
    rows = [r for arm in args.arms for r in run_arm(arm, ARMS[arm], sorted(set(args.at)), args.seed, splits,
                                                        args.val_faces)]
    print("\n| arm | overrides | step | lr | dense units never active | rms dense input | "
          "rms pre-activation | val acc |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arm']} | {ARMS[r['arm']] or '(reference)'} | {r['step']} | {r['lr']:.2e} | "
              f"{r['dead']}/{r['units']} | {r['rms_in']:.2f} | {r['rms_pre']:.2f} | {100 * r['acc']:.1f}% |")
    last = {r["arm"]: r for r in rows}
    if "bn64_warm1" in last and "bn64_dense512_warm1" in last:
        a, b = last["bn64_warm1"], last["bn64_dense512_warm1"]
        print(f"after {a['step']} steps, 64x64 baseline with a 1-epoch warmup: {a['dead']}/{a['units']} dense units "
              f"dead at one lr, {b['dead']}/{b['units']} with the dense layer at lr x 512 / fan-in: "
              f"{a['dead'] / max(b['dead'], 1):.1f}x fewer dead")
    elif "bn64" in last and "bn64_warm1" in last:
        a, b = last["bn64"], last["bn64_warm1"]
        print(f"after {a['step']} steps, 64x64 baseline: {a['dead']}/{a['units']} dense units dead without warmup, "
              f"{b['dead']}/{b['units']} with a 1-epoch warmup")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
