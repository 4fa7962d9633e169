"""The pair reader: two touching or overlapping digits read as one glyph (100 classes, "00" to "99", and a
101st for a single digit).

Cutting a glyph in two fails where the digits overlap: the strokes they share (a 4 crossing a 9, a 7's
bar over a 5) belong to both, and any cut gives one of them away. Reading the pair whole is the
segmentation-free answer of the touching-numeral literature; the reader (`reading.py`) weighs this reading
against reading the glyph as one digit or cut in pieces. The extra class makes the pair reader say when a
wide glyph is one digit (a wide 0, a 2 with a long tail), which the cut search alone cannot tell.

It is trained on pairs composed here from MNIST training digits (the last `HOLDOUT` are kept for checking):
each digit enlarged and thresholded as the reader's clean-up leaves ink, with its own size, baseline and
pen, pushed into its neighbour from just touching to a third of its width deep, sometimes joined by a
pen stroke, and slanted. Nothing of the benchmark's number photos (`bench.photos`) is used."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .cleanup import stroke_width
from .errors import ConfigError, UserError
from .evaluation import predict_probabilities
from .files import atomic_path
from .models import as_model_input, conv_bn_relu
from .preprocess import centre_by_mass, fit_box, normalise_stroke

INPUT_HEIGHT, INPUT_WIDTH = 32, 64
INK_HEIGHT, INK_WIDTH = 24, 56  # the glyph is fitted into this box, keeping its proportions
SINGLE = 100  # the class of a glyph that is one digit
CLASSES = 101
HOLDOUT = 5000
SHIPPED = Path(__file__).with_name("pair_reader.safetensors")
FORMAT = "ocr-lab pair reader 1"


def pair_input(mask: np.ndarray) -> torch.Tensor:
    """(INPUT_HEIGHT, INPUT_WIDTH) float tensor in [0, 1]: MNIST's recipe two digits wide (thin pens thickened
    to a tenth of the glyph's height, the ink fitted into INK_HEIGHT x INK_WIDTH keeping its proportions,
    centred by its centre of mass)."""
    ink = normalise_stroke(mask, by_height=True).astype(np.float32)
    return centre_by_mass(fit_box(ink, (INK_HEIGHT, INK_WIDTH)), (INPUT_HEIGHT, INPUT_WIDTH))


def pair_reader() -> nn.Module:
    """A lossless 2x2 space-to-depth first (the convolutions run at 16x32 and less: 4x faster to train than
    at full size, measured), five batch-normed 3x3 convolutions (32-32-64-64-128) and a small classifier."""
    return nn.Sequential(
        nn.PixelUnshuffle(2),
        *conv_bn_relu(4, 32),
        *conv_bn_relu(32, 32),
        nn.MaxPool2d(2),
        *conv_bn_relu(32, 64),
        *conv_bn_relu(64, 64),
        nn.MaxPool2d(2),
        *conv_bn_relu(64, 128),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(128 * 4 * 8, 192),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(192, CLASSES),
    )


def pair_marginals(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The left and the right digit's ten probabilities from a pair reading, given that it is a pair."""
    grid = probabilities[:SINGLE].reshape(10, 10) / max(float(probabilities[:SINGLE].sum()), 1e-9)
    return grid.sum(1), grid.sum(0)


@functools.cache
def shipped_pair_reader() -> nn.Module:
    """The pair reader shipped with the lab, loaded once per process (read-only: shared by every session)."""
    return load_pair_reader(SHIPPED)


def load_pair_reader(path: Path = SHIPPED) -> nn.Module:
    """The trained pair reader in evaluation mode; UserError when the file is missing or not one."""
    try:
        with safe_open(str(path), "pt") as header:
            described = (header.metadata() or {}).get("format")
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise UserError(f"cannot load the pair reader from {path}: {error}") from None
    if described != FORMAT:
        raise UserError(f"{path} is not a pair reader of this version (its header says {described!r})")
    model = pair_reader()
    try:
        model.load_state_dict({name: tensor.float() for name, tensor in tensors.items()}, strict=True)
    except RuntimeError:
        raise UserError(f"{path} is not a pair reader of this version") from None
    return model.eval()


def save_pair_reader(model: nn.Module, path: Path, notes: dict[str, str]) -> None:
    """Half-precision weights (half the file; the probabilities stay within 0.02 of fp32's, tested) with the
    format and `notes` in the header."""
    tensors = {name: tensor.detach().half().contiguous() for name, tensor in model.state_dict().items()}
    if not Path(path).parent.is_dir():  # a mistyped --out folder is the user's to fix, not to create silently
        raise UserError(f"cannot write the pair reader to {path}: no folder {Path(path).parent}")
    try:
        with atomic_path(Path(path)) as temporary:  # a stopped save leaves no half-written reader behind
            save_file(tensors, str(temporary), metadata={"format": FORMAT, **notes})
    except (OSError, SafetensorError) as error:
        raise UserError(f"cannot write the pair reader to {path}: {error}") from None


# Composition of training glyphs from MNIST digits.


def enlarged_mask(digit: np.ndarray, height: int, pen: int, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit (28x28 uint8) as the clean-up leaves ink: `height` pixels tall, thresholded, its
    strokes `pen` pixels thicker (or thinner, when negative and the strokes are thick enough), cropped."""
    side = max(8, round(height * 28 / 20))
    width = max(8, round(side * rng.uniform(0.85, 1.2)))
    large = cv2.resize(digit.astype(np.float32) / 255, (width, side), interpolation=cv2.INTER_CUBIC)
    mask = large > rng.uniform(0.3, 0.6)
    if pen > 0 or (pen < 0 and stroke_width(mask) > 4 * -pen):
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(pen) + 1,) * 2)
        mask = (cv2.dilate if pen > 0 else cv2.erode)(mask.view(np.uint8), disc).astype(bool)
    rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return large > 0.2
    return mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def pen_change(height: int, rng: np.random.Generator) -> int:
    return int(rng.integers(-1, 3)) * max(1, round(height / 40))


def pushed_together(left: np.ndarray, right: np.ndarray, top_left: int, top_right: int, depth: int) -> int:
    """The column where `right` starts so that, in the rows both have ink, it reaches `depth` pixels past the
    point where the two first touch (0: just touching)."""
    gaps = []
    for row in range(max(top_left, top_right), min(top_left + left.shape[0], top_right + right.shape[0])):
        left_ink = np.flatnonzero(left[row - top_left])
        right_ink = np.flatnonzero(right[row - top_right])
        if len(left_ink) and len(right_ink):
            gaps.append(right_ink[0] - left_ink[-1])
    touch = 1 - min(gaps) if gaps else left.shape[1]
    return max(0, touch - depth)


def slanted(mask: np.ndarray, slant: float) -> np.ndarray:
    height, width = mask.shape
    pad = math.ceil(abs(slant) * height)
    shear = np.float32([[1, slant, pad if slant < 0 else 0], [0, 1, 0]])
    return cv2.warpAffine(mask.view(np.uint8), shear, (width + pad, height), flags=cv2.INTER_NEAREST).astype(bool)


def composed_pair(left: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask of two MNIST digits written touching or overlapping, as one glyph."""
    height = int(rng.integers(36, 90))
    pen = pen_change(height, rng)
    masks = [enlarged_mask(digit, round(height * rng.uniform(0.85, 1.15)), pen, rng) for digit in (left, right)]
    canvas_height = round(height * 1.6)
    tops = [
        int(np.clip(round((canvas_height + height) / 2 - mask.shape[0] + rng.normal(0, 0.06) * height), 0, None))
        for mask in masks
    ]
    tops = [min(top, canvas_height - mask.shape[0]) for top, mask in zip(tops, masks, strict=True)]
    narrower = min(mask.shape[1] for mask in masks)
    joined_by_stroke = rng.random() < 0.15
    depth = -int(rng.integers(2, max(3, height // 6))) if joined_by_stroke else int(narrower * rng.beta(1.2, 3) * 0.35)
    start = pushed_together(masks[0], masks[1], tops[0], tops[1], depth)
    glyph = np.zeros((canvas_height, start + masks[1].shape[1] + masks[0].shape[1]), bool)
    glyph[tops[0] : tops[0] + masks[0].shape[0], : masks[0].shape[1]] |= masks[0]
    glyph[tops[1] : tops[1] + masks[1].shape[0], start : start + masks[1].shape[1]] |= masks[1]
    if joined_by_stroke:  # a hand's connecting stroke, low between the digits
        row = int(np.clip(tops[1] + masks[1].shape[0] * rng.uniform(0.5, 0.95), 0, canvas_height - 1))
        ends = [np.flatnonzero(glyph[row, : masks[0].shape[1]]), np.flatnonzero(glyph[row, start:])]
        stop = start + (ends[1][0] if len(ends[1]) else 0)
        begin = ends[0][-1] if len(ends[0]) else masks[0].shape[1] - 1
        pen = max(1, round(stroke_width(masks[0])))
        glyph = cv2.line(glyph.view(np.uint8).copy(), (int(begin), row), (int(stop), row), 1, pen).astype(bool)
    return slanted(glyph, rng.uniform(-0.15, 0.15))


def single_glyph(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One digit, sometimes written wide, as the reader may meet it in a wide glyph."""
    height = int(rng.integers(36, 90))
    mask = enlarged_mask(digit, height, pen_change(height, rng), rng)
    stretch = rng.uniform(1.0, 1.7)
    wide = cv2.resize(mask.view(np.uint8), (round(mask.shape[1] * stretch), mask.shape[0]), cv2.INTER_NEAREST)
    return slanted(wide.astype(bool), rng.uniform(-0.15, 0.15))


def training_glyphs(
    images: np.ndarray, labels: np.ndarray, count: int, seed: int, single_share: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` pair-reader inputs (uint8, N x INPUT_HEIGHT x INPUT_WIDTH) and their classes, composed from
    `images` (N, 28, 28) uint8 with `labels`."""
    rng = np.random.default_rng(seed)
    inputs = torch.empty(count, INPUT_HEIGHT, INPUT_WIDTH, dtype=torch.uint8)
    classes = torch.empty(count, dtype=torch.long)
    for index in range(count):
        if rng.random() < single_share:
            chosen = int(rng.integers(len(images)))
            glyph, label = single_glyph(images[chosen], rng), SINGLE
        else:
            first, second = (int(value) for value in rng.integers(len(images), size=2))
            glyph = composed_pair(images[first], images[second], rng)
            label = 10 * int(labels[first]) + int(labels[second])
        inputs[index] = (pair_input(glyph) * 255).round().to(torch.uint8)
        classes[index] = label
    return inputs, classes


@dataclass(frozen=True)
class PairTraining:
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch size must be at least 1 (got {self.epochs} and {self.batch_size})")


def train_pair_reader(
    inputs: torch.Tensor,
    classes: torch.Tensor,
    settings: PairTraining = PairTraining(),
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> nn.Module:
    """Train on `training_glyphs` output: AdamW, one-cycle schedule, a pixel of random shift per batch, fp32
    (bf16 was 10x slower for this network on the CPU it was built on). `on_epoch(epoch, loss, accuracy)`
    reports progress. Returns the model in evaluation mode."""
    torch.manual_seed(settings.seed)
    model = pair_reader().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps = settings.epochs * math.ceil(len(inputs) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.learning_rate, total_steps=steps)
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(inputs))
        loss_sum, correct = 0.0, 0
        for batch in order.split(settings.batch_size):
            glyphs = inputs[batch].float() / 255
            shift = [int(value) for value in torch.randint(-1, 2, (2,))]
            glyphs = torch.roll(glyphs, shifts=shift, dims=(1, 2))
            logits = model(as_model_input(glyphs))
            loss = F.cross_entropy(logits, classes[batch], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(batch)
            correct += int((logits.argmax(1) == classes[batch]).sum())
        if on_epoch:
            on_epoch(epoch + 1, loss_sum / len(inputs), correct / len(inputs))
    return model.eval()


@dataclass(frozen=True)
class PairCheck:
    """The pair reader on glyphs composed from the held-out digits it never trained on."""

    pairs_right: float  # share of pairs read as the right two digits
    singles_right: float  # share of single digits read as one digit
    pairs_taken_for_one: float  # share of pairs read as one digit


def check_pair_reader(model: nn.Module, images: np.ndarray, labels: np.ndarray, count: int, seed: int) -> PairCheck:
    inputs, classes = training_glyphs(images, labels, count, seed)
    predicted = predict_probabilities(model, inputs).argmax(1)
    classes = classes.numpy()
    pairs = classes != SINGLE
    return PairCheck(
        float((predicted[pairs] == classes[pairs]).mean()),
        float((predicted[~pairs] == SINGLE).mean()),
        float((predicted[pairs] == SINGLE).mean()),
    )


def build_pair_reader(
    images: np.ndarray,
    labels: np.ndarray,
    samples: int,
    settings: PairTraining = PairTraining(),
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[nn.Module, PairCheck]:
    """Compose `samples` glyphs from MNIST's training digits bar the last HOLDOUT (a fifth of a smaller set),
    train on them, and check the result on glyphs composed from the held-out ones (as many, up to 4,000)."""
    if samples < 2:
        raise ConfigError(f"at least 2 glyphs are needed to train the pair reader (got {samples})")
    holdout = min(HOLDOUT, len(images) // 5)
    # Composed in two halves of their own seeds, so two processes can make them; the shipped reader's were.
    halves = [
        training_glyphs(images[:-holdout], labels[:-holdout], samples // 2, settings.seed + part) for part in (1, 2)
    ]
    inputs, classes = (torch.cat(parts) for parts in zip(*halves, strict=True))
    model = train_pair_reader(inputs, classes, settings, on_epoch)
    checks = min(4000, samples)
    return model, check_pair_reader(model, images[-holdout:], labels[-holdout:], checks, settings.seed + 3)
