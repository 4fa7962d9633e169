"""Turn a drawing, photo or scan into the 28x28 image MNIST models expect (the MNIST recipe:
crop to the ink, fit into 20x20 keeping aspect, centre by centre of mass in 28x28)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .cleanup import clean_up, odd, stroke_width
from .errors import ImageError

MAX_UPLOAD_PIXELS = 40_000_000
MIN_SIDE = 8
WORKING_SIDE = 512  # larger inputs are shrunk first: a digit needs no more detail than this
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_ASPECT = 25  # a strip longer than 25:1 is no number (ten digits with separators are under 15:1)
# The only decoders Pillow may run on an upload, whatever the file is called (Pillow would otherwise also run
# EPS through Ghostscript, and a dozen rarer parsers). The app's uploaders accept these file name extensions.
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
UPLOAD_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif")
UPLOAD_FORMATS_TEXT = ", ".join(UPLOAD_FORMATS[:-1]) + " or " + UPLOAD_FORMATS[-1]
MIN_INK_PIXELS = 3
# Degenerate ink, flagged before any model is asked. The canvas pen (20 px on 280) alone spans 7% of the side.
SPECK_SIDE = 0.12  # ink whose box is smaller than this share of the image's longer side is a dot or a speck
EDGE_BAND = 0.12  # ink wholly within this share of the side along one edge is a border or a stray stroke
FLAT_RATIO = 5.0  # no digit is five times wider than it is tall
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's "L" conversion
PIECE_REACH = 0.25  # pieces of one digit lie within this fraction of its size from each other
# Condensed writing: a digit with a loop narrower than CONDENSED of its height (under 2.5% of MNIST's 0, 6, 8 and
# 9s are) is widened to LOOP_DIGIT_ASPECT (their median is 0.7-0.9) before the fit.
CONDENSED = 0.45
LOOP_DIGIT_ASPECT = 0.7
LOOP_HEIGHT = 0.1  # paper enclosed by strokes is a loop from this share of the digit's height (smaller: a pocket)
MIN_STROKE = 0.1  # MNIST's strokes are about this fraction of the digit's longer side


def load_image(source: bytes | str | Path, max_side: int = WORKING_SIDE) -> np.ndarray:
    """Decode an uploaded file into a float array in [0, 1], (H, W) grey, (H, W, 3) colour or (H, W, 4) with
    alpha, shrunk to at most `max_side` pixels (a whole number needs more than one digit). Only the decoders
    of UPLOAD_FORMATS ever run, whatever the file's name says; anything else is an ImageError with the reason."""
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
            image = Image.open(io.BytesIO(source), formats=UPLOAD_FORMATS)
            check_size(image.width, image.height)
            image.draft(None, (max_side, max_side))  # JPEG decodes straight at a reduced size
            image.load()
            image = upright(image)
            image = with_resizable_mode(image)
            image.thumbnail((max_side, max_side))
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"not an image this app can read (use {UPLOAD_FORMATS_TEXT})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f"damaged or truncated image ({error})") from None
    return image_to_array(image)


def check_size(width: int, height: int) -> None:
    """Refuse what no digit photo is (and what would make the clean-up's work unbounded): too many pixels,
    too few, or a strip far longer than any number."""
    if width * height > MAX_UPLOAD_PIXELS:
        raise ImageError(f"image too large ({width}x{height}; at most {MAX_UPLOAD_PIXELS // 1_000_000} megapixels)")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image too small ({width}x{height}; at least {MIN_SIDE}x{MIN_SIDE} pixels)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(f"image too long and thin ({width}x{height}; sides at most {MAX_ASPECT}:1)")


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (phone photos); as it is when the EXIF block is damaged."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # damaged EXIF raises anything from struct.error to TypeError: keep it unrotated
        return image


def with_resizable_mode(image: Image.Image) -> Image.Image:
    """The image in a mode Pillow can shrink and turn into grey: 16-bit greyscale as 32-bit, LAB as its
    lightness band; other modes as they are (`image_to_array` refuses what it cannot convert)."""
    if image.mode.startswith("I;16"):
        return image.convert("I")
    if image.mode == "LAB":
        return image.getchannel("L")
    return image


def finite(values: np.ndarray) -> np.ndarray:
    """Float pixels with NaN and infinities replaced by the median of the finite ones (a damaged float TIFF
    would otherwise turn the whole image blank); ImageError when no pixel is a number."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if bad.all():
        raise ImageError("the image holds no numbers (every pixel is NaN or infinite)")
    return np.where(bad, np.median(values[~bad]), values)


def image_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "F"):  # 32-bit integer (16-bit greyscale) or float greyscale
        values = finite(np.asarray(image, dtype=np.float64))
        if image.mode == "I":
            return (values / (65535.0 if values.max() > 255 else 255.0)).clip(0, 1).astype(np.float32)
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 1:  # floats in another range (0-255, or arbitrary units): stretched to [0, 1]
            values = (values - low) / max(high - low, 1e-12)
        return values.astype(np.float32)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    grey = image.mode in ("1", "L", "LA", "La")
    try:
        # colour is kept (a palette's too; `cleanup.colour_of` finds a grey one grey): the clean-up tells
        # printed lines from the writing by it
        image = image.convert("RGBA" if has_alpha else "L" if grey else "RGB")
    except ValueError:
        raise ImageError(f"unsupported colour mode {image.mode} (save the image as RGB or greyscale)") from None
    return np.asarray(image, dtype=np.float32) / 255.0


def fit_box(ink: np.ndarray, box: tuple[int, int] = (20, 20)) -> torch.Tensor:
    """Crop to the ink and resize it, keeping its proportions, to fit a `box` (height, width) of pixels
    (anti-aliased)."""
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = crop.shape
    factor = min(box[0] / height, box[1] / width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    tensor = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0].clamp(0, 1)


def centre_by_mass(digit: torch.Tensor, shape: tuple[int, int] = (28, 28)) -> torch.Tensor:
    """Place `digit` in a canvas of `shape` (height, width) with its centre of mass at the centre."""
    height, width = digit.shape
    mass = digit.sum()
    row_centre = float((digit.sum(1) * torch.arange(height)).sum() / mass)
    column_centre = float((digit.sum(0) * torch.arange(width)).sum() / mass)
    top = int(np.clip(round((shape[0] - 1) / 2 - row_centre), 0, shape[0] - height))
    left = int(np.clip(round((shape[1] - 1) / 2 - column_centre), 0, shape[1] - width))
    canvas = torch.zeros(shape)
    canvas[top : top + height, left : left + width] = digit
    return canvas


def main_digit(mask: np.ndarray) -> np.ndarray:
    """The largest component and the pieces close to it (the top bar of a 5, a broken stroke), without
    stray marks elsewhere on the page. Pieces less than two stroke widths apart (a stroke cut where it ran
    along a removed ruling or grid line) count as one component."""
    bridge = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(2 * stroke_width(mask)),) * 2)
    grouped = cv2.dilate(mask.view(np.uint8), bridge)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    if count <= 2:
        return mask
    left, top, width, height, area = stats[1:].T
    rows, columns = mask.shape
    # The digit is the largest component, favouring those near the centre (a photo is aimed at it).
    centre_x, centre_y = left + width / 2 - columns / 2, top + height / 2 - rows / 2
    off_centre = np.hypot(centre_x / columns, centre_y / rows)
    largest = int(np.argmax(area * (1 - off_centre)))
    box = np.array([left[largest], top[largest], left[largest] + width[largest], top[largest] + height[largest]])
    keep = np.zeros(count - 1, bool)
    keep[largest] = True
    for _ in range(3):  # pieces join the box, which may bring further pieces within reach
        reach = PIECE_REACH * max(box[2] - box[0], box[3] - box[1])
        gap_x = np.maximum(0, np.maximum(box[0] - (left + width), left - box[2]))
        gap_y = np.maximum(0, np.maximum(box[1] - (top + height), top - box[3]))
        near = ~keep & (np.maximum(gap_x, gap_y) <= reach)
        if not near.any():
            break
        keep |= near
        box = np.array([left[keep].min(), top[keep].min(), (left + width)[keep].max(), (top + height)[keep].max()])
    return np.concatenate([[False], keep])[labels] & mask


def normalise_stroke(mask: np.ndarray, by_height: bool = False) -> np.ndarray:
    """Thicken a thin pen's strokes to MNIST's proportions (a stroke about a tenth of the digit's size: its
    longer side, or with `by_height` its height, as for two digits side by side), so a fine-liner reads like
    a felt-tip. Thick strokes are left alone."""
    rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    size = (rows[-1] - rows[0] if by_height else max(rows[-1] - rows[0], columns[-1] - columns[0])) + 1
    missing = MIN_STROKE * size - stroke_width(mask)
    if missing < 1:
        return mask
    side = odd(missing + 1)
    return cv2.dilate(mask.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))).astype(bool)


def mnist_input(mask: np.ndarray) -> torch.Tensor:
    """28x28 float tensor in [0, 1] from a mask of one digit's strokes: MNIST's recipe."""
    return centre_by_mass(fit_box(normalise_stroke(widened_if_condensed(mask)).astype(np.float32)))


def widened_if_condensed(mask: np.ndarray) -> np.ndarray:
    """A condensed digit with a loop (`CONDENSED`), widened so its loops survive MNIST's 20-pixel box (a 0 or 8
    a quarter as wide as it is tall closed to a bar there, and read 1); other masks as they are (a 1 has no
    loop to lose)."""
    rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = crop.shape
    if width >= CONDENSED * height or not encloses_paper(crop):
        return mask
    size = (round(LOOP_DIGIT_ASPECT * height), height)
    return cv2.resize(crop.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def encloses_paper(mask: np.ndarray) -> bool:
    """Whether the strokes of a digit cropped to its ink enclose a loop of paper (`LOOP_HEIGHT`)."""
    paper = np.pad(~mask, 1, constant_values=True).view(np.uint8)  # the outside is one piece, the first found
    heights = cv2.connectedComponentsWithStats(paper, connectivity=4)[2][2:, cv2.CC_STAT_HEIGHT]
    return bool((heights >= LOOP_HEIGHT * mask.shape[0]).any())


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
    digit = main_digit(clean_up(array).mask)
    if np.count_nonzero(digit) < MIN_INK_PIXELS:
        return PreparedDigit(None, "no ink found (blank image)")
    return PreparedDigit(mnist_input(digit), degenerate_ink(digit))


def prepare_digit(array: np.ndarray) -> torch.Tensor | None:
    """28x28 float tensor in [0, 1] (white ink on black, like MNIST), or None when there is no ink."""
    return prepare(array).digit


def digit_from_image(array: np.ndarray) -> PreparedDigit:
    """`prepare` for an image file, where no ink is a mistake to report (an empty canvas is not)."""
    prepared = prepare(array)
    if prepared.digit is None:
        raise ImageError("no ink found: the image looks blank (one flat colour)")
    return prepared
