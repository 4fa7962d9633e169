"""Named architectures. Each takes (N, 1, 28, 28) floats normalised as in `normalize` and returns logits."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch
from torch import nn

from .errors import ConfigError

# MNIST's pixel mean and std, as in pytorch/examples.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) or float in [0, 1] (N, [1,] 28, 28) -> standardised (N, 1, 28, 28)."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return (images - MNIST_MEAN) / MNIST_STD


def as_model_input(images: torch.Tensor) -> torch.Tensor:
    """`normalize`d and channels-last, the memory layout oneDNN's fast CPU convolutions want."""
    return normalize(images).contiguous(memory_format=torch.channels_last)


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def seed_cnn() -> nn.Module:
    """The tutorial CNN, layer for layer."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def fast_cnn() -> nn.Module:
    """Built for one epoch on a CPU: a lossless 2x2 space-to-depth first, so every conv runs at 14x14
    or less, and no pooling before the classifier, which keeps where each 7x7 feature sits."""
    return nn.Sequential(
        nn.PixelUnshuffle(2),
        *conv_bn_relu(4, 32),
        nn.MaxPool2d(2),
        *conv_bn_relu(32, 64),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 10),
    )


def accurate_cnn() -> nn.Module:
    """Batch-normed VGG-style net: capacity spent at 14x14, where strokes become parts of digits."""
    return nn.Sequential(
        *conv_bn_relu(1, 32),
        nn.MaxPool2d(2),
        *conv_bn_relu(32, 64),
        *conv_bn_relu(64, 64),
        nn.MaxPool2d(2),
        *conv_bn_relu(64, 128),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(128 * 3 * 3, 10),
    )


def deep_cnn() -> nn.Module:
    """`accurate` with a second conv at 7x7, where strokes have become parts of digits."""
    return nn.Sequential(
        *conv_bn_relu(1, 32),
        nn.MaxPool2d(2),
        *conv_bn_relu(32, 64),
        *conv_bn_relu(64, 64),
        nn.MaxPool2d(2),
        *conv_bn_relu(64, 128),
        *conv_bn_relu(128, 128),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(128 * 3 * 3, 10),
    )


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[], nn.Module]
    description: str


ARCHITECTURES = {
    arch.name: arch
    for arch in (
        Architecture("seed", seed_cnn, "Tutorial CNN: two 3x3 convs (32, 64) + max-pool, fc 128, dropout 0.5."),
        Architecture(
            "fast",
            fast_cnn,
            "2x2 space-to-depth, two batch-normed 3x3 convs (32 at 14x14, 64 at 7x7): "
            "about 99.2% after one epoch, in seconds.",
        ),
        Architecture("accurate", accurate_cnn, "Four batch-normed 3x3 convs (32, 64, 64, 128), dropout 0.3."),
        Architecture(
            "deep", deep_cnn, "Five batch-normed 3x3 convs (32, 64, 64, 128, 128), dropout 0.3: the most accurate."
        ),
    )
}


def build_model(name: str) -> nn.Module:
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name].build().to(memory_format=torch.channels_last)


def penultimate_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What the last linear layer reads, (N, F): every layer but the classifier, in eval mode, without
    gradients. Float images in [0, 1], (N, [1,] 28, 28). The one feature space the lab uses for
    similar-digit search, maps of the test set and out-of-distribution scores."""
    body = model[:-1]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        features = body(as_model_input(images)).flatten(1)
    model.train(was_training)
    return features


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def multiply_adds(model: nn.Module) -> int:
    """Multiply-accumulates of one 28x28 forward pass, counted on conv and linear layers."""
    total = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(as_model_input(torch.zeros(1, 1, 28, 28)))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    return total
