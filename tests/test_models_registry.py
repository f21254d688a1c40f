"""Registry, builder structure, shapes, parameter counts and the CLI of fer_models (parametrised like timm)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fer_models import (
    ModelConfig, UnknownModelError, build_model, count_params, get_config, list_models, register,
)
from fer_models.cnn import build_cnn

STUDY = ["baseline", "no_batchnorm", "no_dropout", "fewer_layers", "optimized"]

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_params() -> dict[str, dict[int, int]]:
    """The README's model table (worked out by hand in fer_models/registry.py): the one pinned record of the
    parameter counts, so a silent change to a variant, or a README that drifts from the code, fails here."""
    rows = re.findall(r"^\| `(\w+)` \|.*\| ([\d,]+) \| ([\d,]+) \|$", README.read_text(), re.M)
    return {name: {64: int(p64.replace(",", "")), 48: int(p48.replace(",", ""))} for name, p64, p48 in rows}


PARAMS = readme_params()

# name -> (conv widths in order, BatchNorm?, Dropout?, hidden dense widths, L2 lambda)
STRUCTURE = {
    "baseline": ((32, 64, 128), True, True, (128,), 0.0),
    "no_batchnorm": ((32, 64, 128), False, True, (128,), 0.0),
    "no_dropout": ((32, 64, 128), True, False, (128,), 0.0),
    "fewer_layers": ((32, 64), True, True, (128,), 0.0),
    "optimized": ((64, 128, 256), True, True, (256, 128), 1e-4),
}


def test_registry_has_study_variants_first_and_a_stronger_model():
    names = list_models()
    assert names[:5] == STUDY
    assert {"vgg_fer", "resnet18_fer"} <= set(names)
    assert set(PARAMS) == set(names)  # every model in the README's table, and only those


def test_study_variants_are_configs_of_one_builder():
    assert {get_config(n).family for n in STUDY + ["vgg_fer", "vgg_fer_small"]} == {"cnn"}


@pytest.mark.parametrize("name", STUDY)
def test_study_structure(name):
    widths, bn, drop, dense, l2 = STRUCTURE[name]
    model = build_model(name)
    blocks = list(model.features)
    assert len(blocks) == len(widths)
    for block, w in zip(blocks, widths):
        kinds = [type(m) for m in block]
        # Conv, [BN], ReLU, MaxPool in the study's order
        expected = [nn.Conv2d] + ([nn.BatchNorm2d] if bn else []) + [nn.ReLU, nn.MaxPool2d]
        assert kinds == expected
        assert block[0].out_channels == w and block[0].kernel_size == (3, 3) and block[0].padding == (1, 1)
        assert block[-1].kernel_size == 2 and block[-1].stride == 2
        assert block[0].kernel_l2 == l2
    mods = list(model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in mods) == bn
    dropouts = [m for m in mods if isinstance(m, nn.Dropout)]
    assert len(dropouts) == (len(dense) if drop else 0)
    assert all(d.p == 0.5 for d in dropouts)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert tuple(l.out_features for l in linears) == dense + (7,)


@pytest.mark.parametrize("size", [48, 64])
@pytest.mark.parametrize("name", list(PARAMS))
def test_param_count_matches_the_readme(name, size):
    assert count_params(build_model(name, input_size=size)) == PARAMS[name][size]


@pytest.mark.parametrize("size", [48, 64])
@pytest.mark.parametrize("name", list(PARAMS))
def test_forward_backward(name, size):
    torch.manual_seed(0)
    model = build_model(name, input_size=size)
    x = torch.randn(2, 1, size, size)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownModelError) as e:
        build_model("resnet50")
    msg = str(e.value)
    assert "resnet50" in msg and all(n in msg for n in list_models())


def test_unknown_override_lists_fields():
    with pytest.raises(TypeError, match="valid fields: family, conv_widths"):
        build_model("baseline", widths=(1,))


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register("baseline", ModelConfig())


def test_overrides_apply_and_registry_is_not_mutated():
    m = build_model("baseline", dropout=0.0, batchnorm=False, input_size=48)
    assert not any(isinstance(x, (nn.Dropout, nn.BatchNorm2d)) for x in m.modules())
    assert get_config("baseline").dropout == 0.5 and get_config("baseline").input_size == 64


def test_bad_config_values_rejected():
    with pytest.raises(ValueError, match="padding"):
        ModelConfig(padding="full")
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match="too small"):
        build_cnn(ModelConfig(conv_widths=(8, 8, 8, 8), input_size=8))
    with pytest.raises(ValueError, match="init='glorot'.*torch, keras"):
        ModelConfig(init="glorot")
    with pytest.raises(ValueError, match="only the cnn family"):
        get_config("resnet18_fer").replace(init="keras")


def test_keras_init_is_glorot_uniform_with_zero_biases():
    """init="keras": every conv and dense kernel uniform within Glorot's bound sqrt(6 / (fan_in + fan_out)) and
    filling it (not PyTorch's narrower 1 / sqrt(fan_in)), every bias zero; the default keeps PyTorch's."""
    torch.manual_seed(0)
    keras = build_model("baseline", init="keras")
    torch.manual_seed(0)
    default = build_model("baseline")
    layers = [m for m in keras.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 5  # three convs, the hidden dense layer, the output layer
    for m in layers:
        fan_in, fan_out = m.weight[0].numel(), m.weight.shape[0] * m.weight[0, 0].numel()
        bound = (6 / (fan_in + fan_out)) ** 0.5
        w = m.weight.detach().abs()
        assert float(w.max()) <= bound and float(w.max()) > 0.95 * bound, (m, bound)
        assert not m.bias.detach().any()
    dense_keras, dense_default = keras.classifier[1].weight, default.classifier[1].weight  # 8,192 -> 128
    assert float(dense_default.abs().max()) <= 8192 ** -0.5 < 0.5 * float(dense_keras.abs().max())
    assert default.classifier[1].bias.detach().any()


def test_valid_padding_shrinks_maps():
    m = build_model("baseline", padding="valid", input_size=48)  # 48-2=46->23, 21->10, 8->4
    assert m.classifier[1].in_features == 128 * 4 * 4
    assert m(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


def test_cli_list_subprocess():
    # One real `python -m fer_models` run; the other CLI checks call main() in-process (torch import is slow).
    r = subprocess.run([sys.executable, "-m", "fer_models", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for n in list_models():
        assert n in r.stdout
    assert "1,142,727" in r.stdout


def test_cli_summary_and_error(capsys):
    from fer_models.__main__ import main

    assert main(["summary", "optimized", "--input-size", "48"]) == 0
    out = capsys.readouterr().out
    assert "[256, 6, 6]" in out and "total parameters: 2,763,911" in out
    assert main(["summary", "nope"]) == 2
    assert "valid names: baseline" in capsys.readouterr().err
