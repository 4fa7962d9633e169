"""Synthetic writers whose style MNIST lacks, made stroke by stroke from MNIST digits (no fonts, no
scikit-learn digits): a flag on the 1, a bar across the 7, a slash through the 0, a strong slant, narrow
digits, a bold pen. Each writer is a fixed style; each of its samples is one real MNIST digit (from the
held-out training digits: no run trained on them, and they are not the test set) redrawn in that style at
112x112, then prepared by the lab's own preprocessing, as a canvas drawing would be."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ocr_core.preprocess import prepare

SCALE = 4  # draw at 112x112


@dataclass(frozen=True)
class Style:
    name: str
    flag_on_1: bool = False  # a long up-stroke into the top of the 1, as much of Europe writes it
    bar_on_7: bool = False  # a bar across the 7's stem
    slash_on_0: bool = False  # a slashed zero
    slant: float = 0.0  # horizontal shear: x += slant * (height above the centre)
    width: float = 1.0  # narrow (< 1) or wide digits
    pen: int = 0  # pixels (at 112x112) of extra stroke width, either way


WRITERS = (
    Style("continental", flag_on_1=True, bar_on_7=True),
    Style("slanted", flag_on_1=True, slant=0.55),
    Style("narrow", bar_on_7=True, slash_on_0=True, width=0.45),
    Style("backhand", slant=-0.5, bar_on_7=True, pen=5),
)


def ink_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(columns[0]), int(rows[0]), int(columns[-1]), int(rows[-1])


def restyle(digit: np.ndarray, label: int, style: Style) -> np.ndarray:
    """One uint8 28x28 MNIST digit redrawn in `style`: float (112, 112) image, white ink on black."""
    side = 28 * SCALE
    image = cv2.resize(digit.astype(np.float32) / 255, (side, side), interpolation=cv2.INTER_LINEAR)
    pen = max(6, int(2.2 * SCALE))
    left, top, right, bottom = ink_box(image > 0.3)
    height = bottom - top
    if label == 1 and style.flag_on_1:
        top_x = int(np.flatnonzero(image[top] > 0.3).mean())
        cv2.line(image, (top_x, top), (top_x - int(0.35 * height), top + int(0.3 * height)), 1.0, pen, cv2.LINE_AA)
    if label == 7 and style.bar_on_7:
        row = top + int(0.55 * height)
        ink = np.flatnonzero(image[row] > 0.3)
        centre = int(ink.mean()) if len(ink) else (left + right) // 2
        cv2.line(image, (centre - int(0.22 * height), row), (centre + int(0.22 * height), row), 1.0, pen, cv2.LINE_AA)
    if label == 0 and style.slash_on_0:
        cv2.line(image, (right, top), (left, bottom), 1.0, pen, cv2.LINE_AA)
    if style.pen:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * style.pen + 1,) * 2)
        image = cv2.dilate(image, kernel)
    canvas = np.zeros((side * 2, side * 2), np.float32)  # room for the slant before the lab crops to the ink
    canvas[side // 2 : side // 2 + side, side // 2 : side // 2 + side] = image
    centre = float(side)  # x' = width * (x - c) - slant * (y - c) + c: the slant leans the top to the right
    matrix = np.float32([[style.width, -style.slant, centre * (1 - style.width + style.slant)], [0, 1, 0]])
    warped = cv2.warpAffine(canvas, matrix, (side * 2, side * 2), flags=cv2.INTER_LINEAR)
    return np.clip(warped, 0, 1)


def writer_digits(style: Style, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """(28x28 model inputs uint8 (N, 28, 28), labels, the 224x224 drawings) of MNIST digits in `style`;
    a digit whose redrawing the preprocessing refuses (rare) is left out."""
    inputs, kept, drawings = [], [], []
    for digit, label in zip(images, labels, strict=True):
        drawing = restyle(digit, int(label), style)
        prepared = prepare(drawing)
        if prepared.digit is None or not prepared.readable:
            continue
        inputs.append((prepared.digit.numpy() * 255).round().astype(np.uint8))
        kept.append(int(label))
        drawings.append(drawing)
    stacked = np.stack(inputs) if inputs else np.zeros((0, 28, 28), np.uint8)
    return stacked, np.array(kept, np.int64), drawings


def pick_per_digit(labels: np.ndarray, per_digit: int, skip: int = 0) -> np.ndarray:
    """Positions of `per_digit` examples of each digit, after skipping the first `skip` of each."""
    return np.sort(np.concatenate([np.flatnonzero(labels == d)[skip : skip + per_digit] for d in range(10)]))
