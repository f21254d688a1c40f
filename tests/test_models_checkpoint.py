"""Checkpoint round trip (safetensors + meta.json) and refusal of tampered, corrupt or mismatched files."""

import hashlib
import json
import time
from pathlib import Path

import pytest
import torch

from fer_models import (
    CheckpointError, TrainConfig, build_model, load_checkpoint, load_train_state, make_optimizer, make_scheduler,
    save_checkpoint, save_train_state, train_one_epoch,
)
from fer_models.checkpoint import meta_digest

META = {"model_name": "optimized", "overrides": {"input_size": 48, "l2": 1e-3},
        "class_names": ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]}


def _write_meta(d: Path, meta: dict, reseal: bool = True) -> None:
    """Edit meta.json as its writer would (meta_sha256 recomputed), so the later checks are reached."""
    if reseal:
        meta["meta_sha256"] = meta_digest(meta)
    (d / "meta.json").write_text(json.dumps(meta))


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


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
    _write_meta(d, meta)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(d)


def test_mismatched_architecture_refused(saved):
    d, _ = saved
    meta = json.loads((d / "meta.json").read_text())
    meta["overrides"]["input_size"] = 64  # Flatten width differs: 16384 vs 9216
    _write_meta(d, meta)
    with pytest.raises(CheckpointError, match="do not match architecture 'optimized'") as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value)


def test_missing_file_and_unknown_model_refused(saved):
    d, _ = saved
    meta = json.loads((d / "meta.json").read_text())
    meta["model_name"] = "nope"
    _write_meta(d, meta)
    with pytest.raises(CheckpointError, match="cannot rebuild model 'nope'.*valid names"):
        load_checkpoint(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_checkpoint(d)


def test_saved_meta_carries_its_own_hash_and_no_temporary_files(saved):
    d, _ = saved
    meta = json.loads((d / "meta.json").read_text())
    assert meta["meta_sha256"] == meta_digest(meta) and len(meta["meta_sha256"]) == 64
    assert sorted(p.name for p in d.iterdir()) == ["meta.json", "model.safetensors"]


@pytest.mark.parametrize("edit", [
    lambda m: m.__setitem__("overrides", "x"),
    lambda m: m["overrides"].__setitem__("l2", 0.5),
    lambda m: m.__setitem__("norm", {"mean": 0.5, "std": 0.0}),
    lambda m: m.__setitem__("class_names", list(reversed(m["class_names"]))),
    lambda m: m.pop("config"),
])
def test_edited_meta_is_refused_as_tampered(saved, edit):
    """Any edit of meta.json (not only of the weights) is caught, before anything is built."""
    d, _ = saved
    meta = json.loads((d / "meta.json").read_text())
    edit(meta)
    _write_meta(d, meta, reseal=False)
    before = _hashes(d)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{d / 'meta.json'}: sha256 ") and "(edited, tampered or corrupt)" in msg
    assert _hashes(d) == before


@pytest.mark.parametrize("key, value, message", [
    ("overrides", "x", "'overrides' must be a mapping of ModelConfig fields, got 'x'"),
    ("overrides", ["input_size", 48], "'overrides' must be a mapping"),
    ("input_size", 1000, "'input_size' must be an int in 8..512, got 1000"),
    ("input_size", 4, "'input_size' must be an int in 8..512, got 4"),
    ("input_size", "48", "'input_size' must be an int in 8..512, got '48'"),
    ("overrides.input_size", 1000, "'overrides.input_size' must be an int in 8..512, got 1000"),
    ("overrides.conv_widths", [32, 0, 64], "'overrides.conv_widths' must be a list of positive ints, got [32, 0, 64]"),
    ("overrides.conv_widths", [], "'overrides.conv_widths' must be a list of positive ints, got []"),
    ("overrides.conv_widths", "abc", "'overrides.conv_widths' must be a list of positive ints"),
    ("overrides.dense_widths", [-1], "'overrides.dense_widths' must be a list of positive ints, got [-1]"),
    ("overrides.dense_widths", [True], "'overrides.dense_widths' must be a list of positive ints"),
    ("model_name", 3, "'model_name' must be a string, got 3"),
])
def test_consistent_but_invalid_meta_values_are_refused(saved, key, value, message):
    """A meta.json whose hash matches (rewritten by hand) is still validated before anything is built."""
    d, _ = saved
    meta = json.loads((d / "meta.json").read_text())
    if key.startswith("overrides."):
        meta["overrides"][key.split(".", 1)[1]] = value
    else:
        meta[key] = value
    _write_meta(d, meta)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{d / 'meta.json'}: ") and message in str(e.value)


def test_huge_widths_refused_before_any_allocation(saved, monkeypatch):
    """conv_widths [32, 64, 200000] would be a ~4 GB model: the shapes are compared on the meta
    device first, so the real model is never built."""
    import fer_models.checkpoint as ck

    d, _ = saved
    meta = json.loads((d / "meta.json").read_text())
    meta["overrides"]["conv_widths"] = [32, 64, 200000]
    _write_meta(d, meta)
    real_build = ck.build_model

    def build_only_on_meta(*a, **k):
        assert torch.empty(0).device.type == "meta", "the real model must not be built"
        return real_build(*a, **k)

    monkeypatch.setattr(ck, "build_model", build_only_on_meta)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"model.safetensors: weights do not match architecture 'optimized'.*200000") as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value) and time.perf_counter() - t0 < 10


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must hold a JSON object, got list"),
    ("{not json", "unreadable meta (JSONDecodeError"),
    (b"\xff\xfe{}", "unreadable meta (UnicodeDecodeError"),
    ('{"model_name": "optimized"}', "no weights_sha256; refusing unverifiable weights"),
])
def test_unreadable_meta_is_one_line(saved, content, message):
    d, _ = saved
    (d / "meta.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{d / 'meta.json'}: ") and message in str(e.value)


def test_checkpoint_written_before_meta_hashing_still_loads(saved):
    """Checkpoints from before meta_sha256 (the old format) load, their weights still verified and
    their values still validated."""
    d, model = saved
    meta = json.loads((d / "meta.json").read_text())
    del meta["meta_sha256"]
    _write_meta(d, meta, reseal=False)
    loaded, got = load_checkpoint(d)
    x = torch.randn(2, 1, 48, 48)
    assert torch.equal(loaded.eval()(x), model(x)) and "meta_sha256" not in got
    meta["overrides"] = "x"
    _write_meta(d, meta, reseal=False)
    with pytest.raises(CheckpointError, match="'overrides' must be a mapping"):
        load_checkpoint(d)
    meta["overrides"] = {"input_size": 48, "l2": 1e-3}
    _write_meta(d, meta, reseal=False)
    raw = bytearray((d / "model.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"\(tampered or corrupt\)"):
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
