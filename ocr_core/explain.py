"""Look inside a model for one 28x28 input: the activations of every layer, the first conv layer's filters,
and attributions (which pixels drove the score of a chosen class) by four methods through Captum.

Models are the lab's nn.Sequential nets ending in a Linear. Attributions are computed on the class's logit
(not its probability, whose gradient vanishes once the model is sure) with respect to pixel intensities in
[0, 1], so an all-black image, blank paper, is the natural baseline. Captum is imported on first use: its
import takes ~2 s, which the Draw page should not pay before anyone asks for an explanation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .errors import UserError
from .models import as_model_input, normalize, penultimate_features

SIDE = 28
INTEGRATED_GRADIENTS_STEPS = 32  # Gauss-Legendre: completeness error below 1% of the logit on the shipped nets
NEGLIGIBLE = 1e-6
OCCLUSION_PATCH, OCCLUSION_STRIDE = 4, 2  # a 4x4 patch is about a stroke's width in MNIST pixels
# Modules that transform a layer's output element by element: they belong to the layer before them.
ELEMENTWISE = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
)
STAGE_KINDS = (
    (nn.Conv2d, "conv"),
    ((nn.MaxPool2d, nn.AvgPool2d), "pool"),
    (nn.PixelUnshuffle, "space-to-depth"),
    (nn.Flatten, "flatten"),
    (nn.Linear, "fc"),
)


class NotApplicableError(UserError):
    """The architecture lacks what a view needs (a conv layer, for Grad-CAM or filters)."""


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    explains: str


METHODS = {
    method.name: method
    for method in (
        Method(
            "saliency",
            "Gradient saliency",
            "how strongly a small change of each pixel would move the class's score (size only, no sign)",
        ),
        Method(
            "integrated_gradients",
            "Integrated Gradients",
            "each pixel's share of the score, from blank paper to the drawing: red adds to the class, blue takes "
            "away; the shares add up to the score's difference from blank paper",
        ),
        Method(
            "grad_cam",
            "Grad-CAM",
            "where the last conv layer found the parts that raise the class's score (coarse: that layer's grid)",
        ),
        Method(
            "occlusion",
            "Occlusion",
            f"how much the score drops when a {OCCLUSION_PATCH}x{OCCLUSION_PATCH} patch is blanked: red where the "
            "ink supports the class, blue where it argues against",
        ),
    )
}


@dataclass(frozen=True)
class LayerActivation:
    """One layer's output for one input: maps (C, H, W), or a vector (F,) for the classifier's input."""

    name: str
    values: np.ndarray

    @property
    def description(self) -> str:
        if self.values.ndim == 1:
            return f"{self.name}: {self.values.size:,} numbers"
        channels, height, width = self.values.shape
        return f"{self.name}: {channels} maps of {height}x{width}"


@dataclass(frozen=True)
class Stage:
    """A layer as people name it (conv 2, pool 1) and the index of its last module in the Sequential,
    batch norm and activation included."""

    name: str
    end: int


def layers(model: nn.Sequential) -> list[Stage]:
    """The model's layers before its classifier (the last Linear), each with its norm and activation."""
    stages: list[Stage] = []
    counts: dict[str, int] = {}
    for index, module in enumerate(list(model)[:-1]):
        if isinstance(module, ELEMENTWISE) and stages:
            stages[-1] = Stage(stages[-1].name, index)
            continue
        kind = next((kind for types, kind in STAGE_KINDS if isinstance(module, types)), type(module).__name__)
        counts[kind] = counts.get(kind, 0) + 1
        stages.append(Stage(f"{kind} {counts[kind]}", index))
    return stages


def as_batch(digit: torch.Tensor | np.ndarray) -> torch.Tensor:
    """One input, float (28, 28) in [0, 1] or uint8, as a float (1, 1, 28, 28) batch."""
    tensor = torch.as_tensor(np.asarray(digit) if not isinstance(digit, torch.Tensor) else digit)
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    if tensor.shape[-2:] != (SIDE, SIDE):
        raise UserError(f"expected a {SIDE}x{SIDE} image, got shape {tuple(tensor.shape)}")
    return tensor.float().reshape(1, 1, SIDE, SIDE)


def activations(model: nn.Sequential, digit: torch.Tensor | np.ndarray) -> list[LayerActivation]:
    """Every spatial layer's output (conv, pooling, space-to-depth) in order, then the classifier's input."""
    batch = as_batch(digit)
    ends = {stage.end: stage.name for stage in layers(model)}
    was_training = model.training
    model.eval()
    result = []
    with torch.no_grad():
        output = as_model_input(batch)
        for index, module in enumerate(list(model)[:-1]):
            output = module(output)
            if index in ends and output.dim() == 4:
                result.append(LayerActivation(ends[index], output[0].float().numpy().copy()))
    model.train(was_training)
    features = penultimate_features(model, batch)[0].numpy()
    return [*result, LayerActivation("classifier input", features)]


def first_conv(model: nn.Module) -> tuple[int, nn.Conv2d]:
    for index, module in enumerate(model):
        if isinstance(module, nn.Conv2d):
            return index, module
    raise NotApplicableError("this architecture has no conv layer, so it has no filters to show")


def first_layer_filters(model: nn.Sequential) -> np.ndarray:
    """The first conv layer's kernels as they apply to the input's pixels, (count, h, w). After a
    space-to-depth by r, a k x k kernel over r*r channels is one (k*r) x (k*r) kernel on the image."""
    index, conv = first_conv(model)
    weights = conv.weight.detach().float()
    before = model[index - 1] if index > 0 else None
    if isinstance(before, nn.PixelUnshuffle) and weights.shape[1] == before.downscale_factor**2:
        factor = before.downscale_factor
        out, _, height, width = weights.shape
        # channel dy*r+dx of the unshuffled image holds pixel (r*u+dy, r*v+dx) at grid cell (u, v)
        weights = weights.reshape(out, factor, factor, height, width).permute(0, 3, 1, 4, 2)
        return weights.reshape(out, height * factor, width * factor).numpy()
    return weights.flatten(0, 1).numpy()


class PixelInput(nn.Module):
    """A model that reads (N, 1, 28, 28) pixel intensities in [0, 1]: attributions then speak of pixels."""

    def __init__(self, model: nn.Sequential):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(images))


def explainable(model: nn.Sequential) -> PixelInput:
    """An eval-mode copy for attributions: reads pixels, and has no in-place ops (Captum's hooks need each
    layer's output as it was). The original model keeps its layout and settings."""
    twin = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
    for module in twin.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(False)
    return PixelInput(twin)


def grad_cam_layer(explainer: PixelInput) -> nn.Module:
    """The last conv layer's rectified output: Grad-CAM's layer."""
    model = explainer.model
    convs = [stage for stage in layers(model) if stage.name.startswith("conv")]
    if not convs:
        raise NotApplicableError("Grad-CAM needs a conv layer, and this architecture has none")
    return model[convs[-1].end]


def check_target(target: int) -> int:
    if not isinstance(target, (int, np.integer)) or not 0 <= target <= 9:
        raise UserError(f"the class to explain must be a digit from 0 to 9, not {target!r}")
    return int(target)


def attribute(explainer: PixelInput, digit: torch.Tensor | np.ndarray, target: int, method: str) -> np.ndarray:
    """(28, 28) attribution of class `target`'s logit to the input's pixels by `method` (a METHODS key)."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

    if method not in METHODS:
        raise UserError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    target = check_target(target)
    batch = as_batch(digit).requires_grad_()  # the gradient methods differentiate with respect to it
    if method == "saliency":
        values = Saliency(explainer).attribute(batch, target=target, abs=True)
    elif method == "integrated_gradients":
        values = IntegratedGradients(explainer).attribute(
            batch,
            baselines=torch.zeros_like(batch),
            target=target,
            n_steps=INTEGRATED_GRADIENTS_STEPS,
            internal_batch_size=INTEGRATED_GRADIENTS_STEPS,
        )
    elif method == "grad_cam":
        coarse = LayerGradCam(explainer, grad_cam_layer(explainer)).attribute(
            batch, target=target, relu_attributions=True
        )
        values = LayerAttribution.interpolate(coarse, (SIDE, SIDE), interpolate_mode="bilinear")
    else:
        windows = ((SIDE - OCCLUSION_PATCH) // OCCLUSION_STRIDE + 1) ** 2
        with torch.no_grad():
            values = Occlusion(explainer).attribute(
                batch,
                sliding_window_shapes=(1, OCCLUSION_PATCH, OCCLUSION_PATCH),
                strides=(1, OCCLUSION_STRIDE, OCCLUSION_STRIDE),
                baselines=0.0,
                target=target,
                perturbations_per_eval=windows,
            )
    return values.detach()[0, 0].float().numpy()


def logits(explainer: PixelInput, digit: torch.Tensor | np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return explainer(as_batch(digit))[0].numpy()


# ---- pictures: arrays the app shows and the CLI saves -------------------------------------------------------


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid for `count` tiles, wider than tall."""
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def grid(images: np.ndarray, background: float, gap: int = 1) -> np.ndarray:
    """Images (C, H, W), already scaled to [0, 1], side by side in a near-square grid."""
    count, height, width = images.shape
    rows, columns = grid_shape(count)
    canvas = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), background, np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        canvas[top : top + height, left : left + width] = image
    return canvas


def tile(values: np.ndarray, gap: int = 1) -> np.ndarray:
    """A layer's maps (C, H, W) in a grid (a vector (F,) as one near-square map), scaled together to [0, 1]
    so a strong map looks strong and a silent one dark; the gaps are mid-grey."""
    if values.ndim == 1:
        rows, columns = grid_shape(values.size)
        values = np.pad(values, (0, rows * columns - values.size)).reshape(1, rows, columns)
    # the 99.5th percentile as white: a few extreme pixels would otherwise leave every map nearly black
    low, high = float(values.min()), float(np.percentile(values, 99.5))
    high = high if high > low else float(values.max())
    scaled = ((values - low) / (high - low)).clip(0, 1) if high > low else np.zeros(values.shape, np.float32)
    return grid(scaled, background=0.5, gap=gap)


def tile_filters(filters: np.ndarray, gap: int = 1) -> np.ndarray:
    """Kernels (count, h, w) in a grid on one symmetric scale: mid-grey is 0, white positive, black
    negative; the gaps are white."""
    bound = float(np.abs(filters).max()) or 1.0
    return grid((filters / bound + 1) / 2, background=1.0, gap=gap)


def overlay(digit: torch.Tensor | np.ndarray, attribution: np.ndarray) -> np.ndarray:
    """RGB uint8 (28, 28, 3): the input in grey, attribution on top in red (for the class) and blue
    (against), opaque where it is strongest; the scale is the largest absolute value. Values below
    NEGLIGIBLE (rounding noise, e.g. occlusion of blank paper) are no evidence and are not painted."""
    base = as_batch(digit)[0, 0].numpy() * 0.55 + 0.2
    bound = float(np.abs(attribution).max())
    strength = np.abs(attribution) / bound if bound > NEGLIGIBLE else np.zeros_like(attribution)
    colour = np.where((attribution >= 0)[..., None], np.array([0.95, 0.15, 0.1]), np.array([0.1, 0.35, 0.95]))
    alpha = np.clip(strength * 1.4, 0, 1)[..., None]
    mixed = base[..., None] * (1 - alpha) + colour * alpha
    return (mixed.clip(0, 1) * 255).round().astype(np.uint8)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


# ---- files: what `python -m ocr_core explain` writes ----------------------------------------------------------

PICTURE_WIDTH = 560  # pixels a saved picture is scaled up to, at least (whole multiples: crisp pixels)


@dataclass(frozen=True)
class ExplanationFiles:
    prediction: int
    confidence: float
    target: int
    written: list[Path]
    skipped: list[str]  # "what: why" for views the architecture cannot give


def save_picture(image: np.ndarray, path: Path) -> Path:
    """A [0, 1] greyscale or uint8 RGB image, scaled up by a whole factor with visible pixels."""
    array = image if image.dtype == np.uint8 else to_uint8(image)
    factor = max(1, math.ceil(PICTURE_WIDTH / array.shape[1]))
    size = (array.shape[1] * factor, array.shape[0] * factor)
    Image.fromarray(array).resize(size, Image.Resampling.NEAREST).save(path)
    return path


def file_name(text: str) -> str:
    return text.replace(" ", "-").lower()


def write_explanation(
    model: nn.Sequential, digit: torch.Tensor | np.ndarray, folder: Path, target: int | None = None
) -> ExplanationFiles:
    """PNGs of the input, each layer's activations, the first conv layer's filters and every attribution
    method's map for `target` (default: the model's answer) over the input."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write to {folder}: {error.strerror or error}") from None
    explainer = explainable(model)
    scores = torch.from_numpy(logits(explainer, digit)).softmax(0)
    prediction = int(scores.argmax())
    target = prediction if target is None else check_target(target)
    written = [save_picture(as_batch(digit)[0, 0].numpy(), folder / "input.png")]
    for number, layer in enumerate(activations(model, digit), start=1):
        written.append(save_picture(tile(layer.values), folder / f"layer-{number:02d}-{file_name(layer.name)}.png"))
    skipped = []
    try:
        written.append(save_picture(tile_filters(first_layer_filters(model)), folder / "filters.png"))
    except NotApplicableError as reason:
        skipped.append(f"filters: {reason}")
    for method in METHODS.values():
        try:
            values = attribute(explainer, digit, target, method.name)
        except NotApplicableError as reason:
            skipped.append(f"{method.label}: {reason}")
            continue
        path = folder / f"attribution-{method.name.replace('_', '-')}-{target}.png"
        written.append(save_picture(overlay(digit, values), path))
    return ExplanationFiles(prediction, float(scores[prediction]), target, written, skipped)
