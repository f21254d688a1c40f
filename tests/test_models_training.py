"""L2 penalty, train/evaluate step, metrics, TrainConfig and precision selection of fer_models."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from fer_models import (
    TrainConfig, build_model, classification_metrics, evaluate, l2_penalty, make_optimizer, make_scheduler,
    train_one_epoch,
)
from fer_models import perf
from fer_models.training import Precision, fastest_precision, setup_precision


def test_l2_penalty_on_known_weights():
    model = build_model("optimized", input_size=48)  # l2 = 1e-4 on each of the 3 conv kernels
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        for i, block in enumerate(model.features):
            block[0].weight.fill_(float(i + 1))  # kernels: 64*1*9 ones, 128*64*9 twos, 256*128*9 threes
    expected = 1e-4 * (64 * 9 * 1 + 128 * 64 * 9 * 4 + 256 * 128 * 9 * 9)  # biases, BN and Linear excluded
    assert l2_penalty(model).item() == pytest.approx(expected, rel=1e-6)


def test_l2_penalty_zero_when_off_and_scales_with_lambda():
    assert l2_penalty(build_model("baseline")).item() == 0.0
    torch.manual_seed(0)
    a = build_model("optimized", input_size=48, l2=1e-3)
    torch.manual_seed(0)
    b = build_model("optimized", input_size=48, l2=2e-3)
    assert l2_penalty(b).item() == pytest.approx(2 * l2_penalty(a).item(), rel=1e-6)


def test_l2_gradient_is_2_lambda_w():
    model = build_model("optimized", input_size=48, l2=0.5)
    l2_penalty(model).backward()
    conv = model.features[0][0]
    assert torch.allclose(conv.weight.grad, 2 * 0.5 * conv.weight.detach())
    assert conv.bias.grad is None  # bias not penalised


def _batches(n=64, size=48, bs=16, seed=0):
    # A learnable toy problem: class = which of 7 horizontal bands is bright.
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 7, (n,), generator=g)
    x = torch.rand(n, 1, size, size, generator=g) * 0.1
    band = size // 7
    for i, c in enumerate(y.tolist()):
        x[i, 0, c * band:(c + 1) * band] += 1.0
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)]


def test_train_one_epoch_learns_and_reports():
    torch.manual_seed(0)
    # Narrow baseline (same builder, same layer order) to keep the test fast on 2 shared cores.
    model = build_model("baseline", input_size=48, conv_widths=(8, 16, 32), dense_widths=(32,))
    cfg = TrainConfig(lr=3e-3, epochs=6, lr_schedule="none")
    opt = make_optimizer(model, cfg)
    data = _batches()
    first = train_one_epoch(model, data, opt, precision="fp32", device="cpu")
    assert set(first) >= {"loss", "acc", "images", "seconds"} and first["images"] == 64
    for _ in range(5):
        last = train_one_epoch(model, data, opt, precision="fp32", device="cpu")
    assert last["loss"] < first["loss"]
    ev = evaluate(model, data, device="cpu", precision="fp32")
    assert ev["y_true"].dtype == np.int64 and ev["y_pred"].shape == (64,)
    assert ev["acc"] > 0.5 and np.isfinite(ev["loss"])


def test_train_with_l2_class_weights_scheduler_clip():
    torch.manual_seed(0)
    model = build_model("optimized", input_size=48, dense_widths=(16,))
    cfg = TrainConfig(lr=1e-3, epochs=2, warmup_epochs=0.5, grad_clip=1.0)
    opt = make_optimizer(model, cfg)
    data = _batches(n=32)
    sched = make_scheduler(opt, cfg, steps_per_epoch=len(data))
    out = train_one_epoch(model, data, opt, class_weights=torch.linspace(0.5, 2, 7), scheduler=sched,
                          grad_clip=cfg.grad_clip, precision="fp32", device="cpu")
    assert out["l2"] > 0  # the penalty was added
    assert 0 < out["lr"] < cfg.lr  # cosine after warmup: half-way through 2 epochs


def test_dense_lr_fan_in_slows_only_wide_dense_layers_and_follows_the_schedule():
    model = build_model("optimized", input_size=64)  # dense 16,384 -> 256 -> 128 -> 7
    cfg = TrainConfig(lr=1e-3, epochs=2, warmup_epochs=1, dense_lr_fan_in=512)
    opt = make_optimizer(model, cfg)
    first_dense = model.classifier[1]
    assert [g["lr"] for g in opt.param_groups] == [1e-3, pytest.approx(1e-3 * 512 / 16384)]
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(first_dense.weight), id(first_dense.bias)}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    sched = make_scheduler(opt, cfg, steps_per_epoch=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(opt.param_groups[0]["lr"] * 512 / 16384)  # one schedule
    # Adam's first step moves every weight by about its group's lr: the slowed layer 32x less.
    torch.manual_seed(0)
    model = build_model("baseline", input_size=64)
    before = [p.detach().clone() for p in (model.classifier[1].weight, model.features[2][0].weight)]
    opt = make_optimizer(model, TrainConfig(lr=1e-3, dense_lr_fan_in=1024, lr_schedule="none"))
    train_one_epoch(model, _batches(n=16, size=64, bs=16), opt, precision="fp32", device="cpu")
    dense_step, conv_step = (float((p.detach() - b).abs().max()) for p, b in
                             zip((model.classifier[1].weight, model.features[2][0].weight), before))
    assert dense_step == pytest.approx(1e-3 * 1024 / 8192, rel=0.01) and conv_step == pytest.approx(1e-3, rel=0.01)
    assert len(make_optimizer(model, TrainConfig()).param_groups) == 1  # 0 = off
    with pytest.raises(ValueError, match="dense_lr_fan_in=-1"):
        TrainConfig(dense_lr_fan_in=-1)


def test_bf16_step_runs_on_cpu():
    torch.manual_seed(0)
    model = build_model("baseline", input_size=48)
    opt = make_optimizer(model, TrainConfig())
    out = train_one_epoch(model, _batches(n=8, bs=8), opt, precision="bf16", device="cpu")
    assert np.isfinite(out["loss"])
    assert model.features[0][0].weight.dtype == torch.float32  # autocast: master weights stay fp32


def test_one_precision_keeps_its_grad_scaler_across_epochs():
    torch.manual_seed(0)
    model = build_model("baseline", input_size=48, conv_widths=(8, 16, 32), dense_widths=(32,))
    opt = make_optimizer(model, TrainConfig())
    # fp32 on CPU with an enabled scaler that doubles after every step: its scale counts the steps it saw.
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=1)
    prec = Precision(device=torch.device("cpu"), name="fp32", channels_last=False, scaler=scaler)
    data = _batches(n=32)  # 2 steps per epoch
    for _ in range(2):
        train_one_epoch(model, data, opt, precision=prec)
    assert scaler.get_scale() == 4.0 * 2 ** 4  # one dynamic loss scale through both epochs
    assert evaluate(model, data, precision=prec)["y_pred"].shape == (32,)
    with pytest.raises(ValueError, match="differs from the Precision's device"):
        train_one_epoch(model, data, opt, precision=prec, device="cuda")
    auto = setup_precision("auto", "cpu")
    assert auto.name == perf.resolve_precision("auto", "cpu") and not auto.scaler.is_enabled()


def test_bad_batch_and_precision_rejected():
    model = build_model("baseline", input_size=48)
    opt = make_optimizer(model, TrainConfig())
    with pytest.raises(ValueError, match="batch must be"):
        train_one_epoch(model, [(torch.zeros(2, 48, 48), torch.zeros(2, dtype=torch.int64))], opt, device="cpu")
    with pytest.raises(ValueError, match="valid values are auto, fp32, bf16, fp16"):
        perf.resolve_precision("int8", "cpu")
    with pytest.raises(ValueError, match="fp16"):
        perf.resolve_precision("fp16", "cpu")


def test_auto_precision_follows_cpu_flags():
    flags = open("/proc/cpuinfo").read()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert perf.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert perf.use_channels_last("auto", "cpu") == native


def test_auto_times_fp32_against_bf16_only_on_gpus_with_bf16():
    assert perf.auto_candidates("cpu") == (perf.resolve_precision("auto", "cpu"),)


def test_fastest_precision_times_each_candidate_and_leaves_the_callers_randomness_alone():
    cfg = TrainConfig(batch_size=16)
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    name, speeds = fastest_precision(lambda: build_model("baseline", input_size=16), cfg, 16, "cpu", ("fp32", "bf16"),
                                     steps=2, rounds=2)
    assert torch.equal(torch.rand(4), expected)  # the model inits, dropout and batches drew from a forked stream
    assert set(speeds) == {"fp32", "bf16"} and all(v > 0 for v in speeds.values())
    assert name == max(speeds, key=speeds.get)
    if not perf.cpu_has_native_bf16():
        assert name == "fp32" and speeds["fp32"] > 2 * speeds["bf16"]  # emulated bf16: ~7x slower here


def test_set_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert perf.set_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# A training step's memory in a fresh process: six 4 MiB activations alive at once, then all freed, ten times over
# after a warm-up, its minor page faults counted. glibc's default refaults them every step in some processes and
# not in others (0 to 61,000 faults here, run to run, as its adaptive thresholds fall); with tune_malloc none do.
_STEPS = """
import resource, sys, torch
from fer_models import tune_malloc
torch.set_num_threads(1)
assert tune_malloc()
def step():
    blocks = [torch.empty(1 << 20).fill_(1) for _ in range(6)]
    del blocks
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_tune_malloc_keeps_a_steps_freed_memory_for_the_next_step():
    """Three fresh processes: 10 steps x 24 MiB would be ~61,000 faults if refaulted; tuned, not one step's worth."""
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", _STEPS], check=True, capture_output=True, text=True).stdout
        assert int(out.split()[-1]) < 1000


def test_train_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(TypeError, match="valid fields"):
        TrainConfig().replace(learning_rate=1.0)
    assert isinstance(make_optimizer(nn.Linear(2, 2), TrainConfig(optimizer="sgd")), torch.optim.SGD)


def test_classification_metrics_values():
    y_true = [0, 0, 1, 1, 3, 3, 6]
    y_pred = [0, 1, 1, 1, 3, 6, 6]
    m = classification_metrics(y_true, y_pred)
    assert m["acc"] == pytest.approx(5 / 7)
    assert m["per_class"]["support"] == [2, 2, 0, 2, 0, 0, 1]
    assert m["per_class"]["precision"][1] == pytest.approx(2 / 3)
    assert m["per_class"]["recall"][0] == pytest.approx(0.5)
    assert len(m["confusion"]) == 7 and m["confusion"][0] == [1, 1, 0, 0, 0, 0, 0]  # row = true Angry
    assert sum(map(sum, m["confusion"])) == 7
    assert set(m) == {"acc", "macro_precision", "macro_recall", "macro_f1", "per_class", "confusion"}
    with pytest.raises(ValueError, match="equal-length"):
        classification_metrics([0, 1], [0])
