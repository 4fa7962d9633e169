"""Turn a drawing, photo or scan into the 28x28 image MNIST models expect (the MNIST recipe:
crop to the ink, fit into 20x20 keeping aspect, centre by centre of mass in 28x28)."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError

MAX_UPLOAD_PIXELS = 40_000_000
MIN_SIDE = 8
WORKING_SIDE = 512  # larger inputs are shrunk first: a digit needs no more detail than this
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
INK_FLOOR = 0.2  # after contrast stretching, weaker values are paper texture or noise
MIN_INK_PIXELS = 3
# Degenerate ink, flagged before any model is asked. The canvas pen (20 px on 280) alone spans 7% of the side.
SPECK_SIDE = 0.12  # ink whose box is smaller than this share of the image's longer side is a dot or a speck
EDGE_BAND = 0.12  # ink wholly within this share of the side along one edge is a border or a stray stroke
FLAT_RATIO = 5.0  # no digit is five times wider than it is tall
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's "L" conversion


class ImageError(UserError):
    """An input that cannot be read as a digit image; the message is meant for the user."""


def load_image(source: bytes | str | Path) -> np.ndarray:
    """Decode an uploaded file into a float array in [0, 1], (H, W) or (H, W, 4) with alpha."""
    if isinstance(source, (str, Path)):
        try:
            source = Path(source).read_bytes()
        except OSError as error:
            raise ImageError(f"cannot read {source}: {error.strerror or error}") from None
    if len(source) > MAX_UPLOAD_BYTES:
        raise ImageError(f"file too large ({len(source) / 1e6:.1f} MB; at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source))
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise ImageError(f"image too large ({image.width}x{image.height}; "
                                 f"at most {MAX_UPLOAD_PIXELS // 1_000_000} megapixels)")
            image.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG decodes straight at a reduced size
            image = ImageOps.exif_transpose(image)  # phone photos carry their rotation in EXIF
            image.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("not an image this app can read (use PNG or JPEG)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"damaged or truncated image ({error})") from None
    if min(image.size) < MIN_SIDE:
        raise ImageError(f"image too small ({image.width}x{image.height}; at least {MIN_SIDE}x{MIN_SIDE} pixels)")
    image.thumbnail((WORKING_SIDE, WORKING_SIDE))
    return image_to_array(image)


def image_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale
        values = np.asarray(image, dtype=np.float64)
        return (values / (65535.0 if values.max() > 255 else 255.0)).clip(0, 1).astype(np.float32)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        return values / max(float(values.max()), 1e-6)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "L")
    return np.asarray(image, dtype=np.float32) / 255.0


def to_unit_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    array = np.nan_to_num(array.astype(np.float32))
    return array / 255.0 if array.max() > 1.0 else array


def ink_map(array: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] where 1 is ink, whatever the polarity, colour or transparency of the input."""
    values = to_unit_float(np.asarray(array))
    if values.ndim == 3 and values.shape[2] in (2, 4):  # with alpha
        alpha, colour = values[..., -1], values[..., :-1]
        luminance = colour.mean(2) if colour.shape[2] == 1 else colour[..., :3] @ LUMA_WEIGHTS
        if alpha.min() < 0.99:  # transparent parts: lay the image on a background that contrasts with its ink
            opaque = alpha > 0.5
            if not opaque.any():
                return np.zeros(alpha.shape, np.float32)
            background = 0.0 if luminance[opaque].mean() > 0.5 else 1.0
            luminance = luminance * alpha + background * (1 - alpha)
        values = luminance
    elif values.ndim == 3:
        values = values[..., :3] @ LUMA_WEIGHTS if values.shape[2] >= 3 else values[..., 0]
    if values.ndim != 2:
        raise ImageError(f"expected a 2-D image, got shape {np.shape(array)}")
    border = np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])
    ink = 1.0 - values if np.median(border) > 0.5 else values  # dark on light: invert
    background, strongest = np.median(ink), np.percentile(ink, 99.9)
    if strongest - background < 0.1:
        return np.zeros_like(ink)
    ink = ((ink - background) / (strongest - background)).clip(0, 1)
    ink[ink < INK_FLOOR] = 0
    return ink


def fit_box(ink: np.ndarray, box: int = 20) -> torch.Tensor:
    """Crop to the ink and resize so the longer side is `box` pixels (anti-aliased)."""
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = crop.shape
    factor = box / max(height, width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    tensor = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0].clamp(0, 1)


def centre_by_mass(digit: torch.Tensor, side: int = 28) -> torch.Tensor:
    """Place `digit` in a side x side canvas with its centre of mass at the centre."""
    height, width = digit.shape
    mass = digit.sum()
    row_centre = float((digit.sum(1) * torch.arange(height)).sum() / mass)
    column_centre = float((digit.sum(0) * torch.arange(width)).sum() / mass)
    top = int(np.clip(round((side - 1) / 2 - row_centre), 0, side - height))
    left = int(np.clip(round((side - 1) / 2 - column_centre), 0, side - width))
    canvas = torch.zeros(side, side)
    canvas[top : top + height, left : left + width] = digit
    return canvas


def degenerate_ink(ink: np.ndarray) -> str | None:
    """Why this ink cannot be a digit whatever a model would say (a dot, a speck, a line along the edge, a
    flat dash), or None. Judged on the ink before it is scaled, where its size and place are still known."""
    height, width = ink.shape
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    ink_height, ink_width = bottom - top, right - left
    if max(ink_height, ink_width) < SPECK_SIDE * max(height, width):
        return "only a dot or a speck of ink: draw the digit larger"
    band_rows, band_columns = EDGE_BAND * height, EDGE_BAND * width
    if bottom <= band_rows or top >= height - band_rows or right <= band_columns or left >= width - band_columns:
        return "only a line along the edge: draw the digit in the middle"
    if ink_width > FLAT_RATIO * ink_height:
        return "only a flat dash: no digit is that wide and low"
    return None


@dataclass(frozen=True)
class PreparedDigit:
    """What the preprocessing made of an input: the 28x28 digit (None without ink) and, when the ink cannot
    be a digit, why not (the model is not asked then)."""

    digit: torch.Tensor | None
    problem: str | None

    @property
    def readable(self) -> bool:
        return self.problem is None


def prepare(array: np.ndarray) -> PreparedDigit:
    """`prepare_digit` plus the degenerate-ink check: the one preprocessing path for readers of one input."""
    ink = ink_map(array)
    if np.count_nonzero(ink) < MIN_INK_PIXELS:
        return PreparedDigit(None, "no ink found (blank image)")
    return PreparedDigit(centre_by_mass(fit_box(ink)), degenerate_ink(ink))


def prepare_digit(array: np.ndarray) -> torch.Tensor | None:
    """28x28 float tensor in [0, 1] (white ink on black, like MNIST), or None when there is no ink."""
    return prepare(array).digit


def digit_from_image(array: np.ndarray) -> PreparedDigit:
    """`prepare` for an image file, where no ink is a mistake to report (an empty canvas is not)."""
    prepared = prepare(array)
    if prepared.digit is None:
        raise ImageError("no ink found: the image looks blank (one flat colour)")
    return prepared
