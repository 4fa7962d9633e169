import pytest
import torch
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.models import ARCHITECTURES, build_model, multiply_adds, normalize, parameter_count


def test_seed_is_the_tutorial_cnn_layer_for_layer():
    model = build_model("seed")
    kinds = [type(layer).__name__ for layer in model]
    assert kinds == [
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    first, second = model[0], model[3]
    assert (first.in_channels, first.out_channels, first.kernel_size, first.padding) == (1, 32, (3, 3), (1, 1))
    assert (second.in_channels, second.out_channels, second.kernel_size, second.padding) == (32, 64, (3, 3), (1, 1))
    assert (model[7].in_features, model[7].out_features) == (3136, 128)
    assert model[9].p == 0.5 and model[10].out_features == 10
    assert parameter_count(model) == 421_642


def test_multiply_adds_of_the_seed_cnn_match_a_hand_count():
    convs = 28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9
    assert multiply_adds(build_model("seed")) == convs + 3136 * 128 + 128 * 10


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_maps_a_batch_to_ten_logits(name):
    model = build_model(name).eval()
    logits = model(normalize(torch.zeros(3, 28, 28, dtype=torch.uint8)))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()


def test_the_improved_architecture_uses_batch_norm():
    assert any(isinstance(layer, nn.BatchNorm2d) for layer in build_model("accurate").modules())


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"unknown architecture 'vgg'.*seed"):
        build_model("vgg")


def test_normalize_accepts_uint8_and_float():
    as_uint8 = normalize(torch.full((1, 28, 28), 255, dtype=torch.uint8))
    as_float = normalize(torch.ones(1, 1, 28, 28))
    assert as_uint8.shape == as_float.shape == (1, 1, 28, 28)
    assert torch.allclose(as_uint8, as_float)
