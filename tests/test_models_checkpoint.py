"""Checkpoint round trip (safetensors + meta.json) and refusal of tampered, corrupt or mismatched files."""

import json

import pytest
import torch

from fer_models import (
    CheckpointError, TrainConfig, build_model, load_checkpoint, load_train_state, make_optimizer, make_scheduler,
    save_checkpoint, save_train_state, train_one_epoch,
)

META = {"model_name": "optimized", "overrides": {"input_size": 48, "l2": 1e-3},
        "class_names": ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("optimized", input_size=48, l2=1e-3).eval()
    save_checkpoint(tmp_path, model, META)
    return tmp_path, model


def test_round_trip(saved):
    d, model = saved
    loaded, meta = load_checkpoint(d)
    assert meta["class_names"][6] == "Neutral" and meta["input_size"] == 48
    assert meta["config"]["l2"] == 1e-3 and len(meta["weights_sha256"]) == 64
    x = torch.randn(2, 1, 48, 48)
    assert torch.equal(loaded.eval()(x), model(x))
    assert loaded.features[0][0].kernel_l2 == 1e-3  # rebuilt from config, not just weights


def test_channels_last_model_saves(tmp_path):
    model = build_model("baseline", input_size=48).to(memory_format=torch.channels_last)
    save_checkpoint(tmp_path, model, {"model_name": "baseline", "overrides": {"input_size": 48}})
    loaded, _ = load_checkpoint(tmp_path)
    assert torch.equal(loaded.features[1][0].weight, model.features[1][0].weight)


def test_tampered_weights_refused(saved):
    d, _ = saved
    raw = bytearray((d / "model.safetensors").read_bytes())
    raw[-5] ^= 0xFF  # flip one byte of tensor data
    (d / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"sha256 .* \(tampered or corrupt\)"):
        load_checkpoint(d)


def test_corrupt_header_refused_even_with_matching_hash(saved):
    import hashlib

    d, _ = saved
    (d / "model.safetensors").write_bytes(b"\xff" * 64)
    meta = json.loads((d / "meta.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(b"\xff" * 64).hexdigest()
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(d)


def test_mismatched_architecture_refused(saved):
    d, _ = saved
    meta = json.loads((d / "meta.json").read_text())
    meta["overrides"]["input_size"] = 64  # Flatten width differs: 16384 vs 9216
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match architecture 'optimized'") as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value)


def test_missing_file_and_unknown_model_refused(saved):
    d, _ = saved
    meta = json.loads((d / "meta.json").read_text())
    meta["model_name"] = "nope"
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot rebuild model 'nope'.*valid names"):
        load_checkpoint(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_checkpoint(d)


def test_train_state_resume(tmp_path):
    torch.manual_seed(0)
    model = build_model("baseline", input_size=48, conv_widths=(8, 8, 8), dense_widths=(8,))
    cfg = TrainConfig(epochs=3)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch=2)
    data = [(torch.randn(4, 1, 48, 48), torch.randint(0, 7, (4,))) for _ in range(2)]
    train_one_epoch(model, data, opt, scheduler=sched, precision="fp32", device="cpu")
    save_train_state(tmp_path, opt, sched, epoch=1, extra={"best_val_acc": 0.25})

    opt2 = make_optimizer(model, cfg)
    sched2 = make_scheduler(opt2, cfg, steps_per_epoch=2)
    # map_location is honoured and the file is read with weights_only=True
    epoch, extra = load_train_state(tmp_path, opt2, sched2)
    assert (epoch, extra) == (1, {"best_val_acc": 0.25})
    assert sched2.last_epoch == 2 and opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(CheckpointError, match="missing"):
        load_train_state(tmp_path / "nope", opt2)
