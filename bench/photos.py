"""Synthetic phone photos and scans of handwritten digits and numbers, deterministic from a seed.

MNIST digits are re-drawn with a pen of a chosen width (their skeleton, thickened), in black, blue or
pencil ink, onto paper that is plain, ruled, squared or has a margin line, in white, cream or grey, then
photographed: turned a little, lit unevenly (a gradient, a soft shadow, vignetting), blurred, given sensor
noise and saved as JPEG at quality 60-90. Some are light on dark (chalk on a board, an inverted scan).
Every choice is drawn from the generator, so a seed names a set; use one seed to tune and another,
untouched, for the figure you report."""

from __future__ import annotations

import io
from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np
from PIL import Image
from skimage.morphology import skeletonize

PAPERS = ("plain", "ruled", "squared", "margin")
INKS = {
    "black": (0.10, 0.10, 0.12),
    "blue": (0.12, 0.20, 0.62),
    "dark blue": (0.08, 0.10, 0.35),
    "pencil": (0.35, 0.35, 0.38),
}
LINE_COLOURS = ((0.55, 0.70, 0.90), (0.62, 0.62, 0.66), (0.45, 0.60, 0.85))  # light blue, grey, blue
MARGIN_COLOUR = (0.85, 0.35, 0.38)


@dataclass(frozen=True)
class Photo:
    image: np.ndarray  # (H, W, 3) uint8, as decoded from the JPEG
    text: str  # the digits written, left to right
    paper: str
    touching: bool = False


def pen_strokes(digit: np.ndarray, height: int, pen: float) -> np.ndarray:
    """Ink coverage in [0, 1] of an MNIST digit (28x28 uint8) written `height` pixels tall with a pen `pen`
    pixels wide: the digit's skeleton, thickened to the pen, with soft edges."""
    side = max(8, round(height * 28 / 20))  # MNIST digits fill 20 of 28 pixels
    large = cv2.resize(digit.astype(np.float32) / 255, (side, side), interpolation=cv2.INTER_CUBIC)
    skeleton = skeletonize(large > 0.4).astype(np.uint8)
    radius = max(0.5, pen / 2)
    distance = cv2.distanceTransform(1 - skeleton, cv2.DIST_L2, 5)
    coverage = np.clip(radius + 0.5 - distance, 0, 1)
    rows, columns = np.flatnonzero(coverage.any(1)), np.flatnonzero(coverage.any(0))
    if not len(rows):
        return coverage
    return coverage[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def written_form(coverage: np.ndarray, form: str, pen: float, rng: np.random.Generator) -> np.ndarray:
    """The strokes of a digit as much of the world writes it and MNIST seldom does, drawn with the same pen
    (this bench's own drawing, independent of the training augmentation's `flag1`, `cross7`, `narrow`):
    "flag": a 1 with a flag from its top down to the left, and half the time a foot; "cross": a 7 with a bar
    across its stem; "narrow": any digit condensed to 40-70% of its width."""
    height = coverage.shape[0]
    if form == "narrow":
        width = max(2, round(coverage.shape[1] * rng.uniform(0.4, 0.7)))
        return cv2.resize(coverage, (width, height), interpolation=cv2.INTER_AREA)
    pad = int(height * 0.6)
    canvas = np.pad(coverage, ((pad // 4, pad // 4), (pad, pad))).astype(np.float32)
    thickness = max(1, round(pen))

    def ink_centre(row: int) -> int:
        columns = np.flatnonzero(canvas[row] > 0.5)
        return int(columns.mean()) if len(columns) else canvas.shape[1] // 2

    rows = np.flatnonzero(canvas.max(1) > 0.5)
    top, bottom = int(rows[0] + pen / 2), int(rows[-1] - pen / 2)
    if form == "flag":
        x = ink_centre(top)
        angle, length = np.radians(rng.uniform(30, 60)), height * rng.uniform(0.3, 0.5)
        end = (int(x - length * np.cos(angle)), int(top + length * np.sin(angle)))
        cv2.line(canvas, (x, top), end, 1.0, thickness, cv2.LINE_AA)
        if rng.random() < 0.5:
            x, half = ink_centre(bottom), height * rng.uniform(0.25, 0.4)
            cv2.line(canvas, (int(x - half), bottom), (int(x + half), bottom), 1.0, thickness, cv2.LINE_AA)
    elif form == "cross":
        row = int(top + (bottom - top) * rng.uniform(0.45, 0.6))
        x, half = ink_centre(row), height * rng.uniform(0.2, 0.3)
        cv2.line(canvas, (int(x - half), row), (int(x + half), row), 1.0, thickness, cv2.LINE_AA)
    rows, columns = np.flatnonzero(canvas.any(1)), np.flatnonzero(canvas.any(0))
    return canvas[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def paper_sheet(height: int, width: int, rng: np.random.Generator, kind: str, unit: float) -> np.ndarray:
    """(H, W, 3) float paper of a kind, with printed lines spaced relative to `unit` (the digits' height)."""
    tone = rng.uniform(0.78, 0.97)
    tint = np.array([1.0, rng.uniform(0.97, 1.0), rng.uniform(0.9, 1.0)])  # white to cream
    sheet = np.ones((height, width, 3)) * tone * tint
    sheet *= 1 + rng.normal(0, 0.01, (height, width, 1))  # fibres
    colour = np.array(LINE_COLOURS[rng.integers(len(LINE_COLOURS))]) * tone
    thickness = int(rng.integers(1, 4))
    if kind == "ruled":
        spacing = unit * rng.uniform(1.05, 1.6)
        for y in np.arange(rng.uniform(0, spacing), height, spacing):
            cv2.line(sheet, (0, int(y)), (width, int(y)), colour, thickness, cv2.LINE_AA)
    elif kind == "squared":
        spacing = unit * rng.uniform(0.4, 0.65)
        for y in np.arange(rng.uniform(0, spacing), height, spacing):
            cv2.line(sheet, (0, int(y)), (width, int(y)), colour, thickness, cv2.LINE_AA)
        for x in np.arange(rng.uniform(0, spacing), width, spacing):
            cv2.line(sheet, (int(x), 0), (int(x), height), colour, thickness, cv2.LINE_AA)
    elif kind == "margin":
        x = int(width * rng.uniform(0.1, 0.9))
        cv2.line(sheet, (x, 0), (x, height), np.array(MARGIN_COLOUR) * tone, thickness + 1, cv2.LINE_AA)
        if rng.random() < 0.5:
            spacing = unit * rng.uniform(1.05, 1.6)
            for y in np.arange(rng.uniform(0, spacing), height, spacing):
                cv2.line(sheet, (0, int(y)), (width, int(y)), colour, thickness, cv2.LINE_AA)
    return sheet


def lighting(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative light field: a gradient across the sheet, vignetting and sometimes a soft shadow."""
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * columns / width + np.sin(angle) * rows / height
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    light = 1 - rng.uniform(0, 0.4) * ramp
    centre = (rows / height - 0.5) ** 2 + (columns / width - 0.5) ** 2
    light *= 1 - rng.uniform(0, 0.5) * centre
    if rng.random() < 0.5:  # a hand's or a phone's shadow over part of the sheet
        normal = rng.uniform(0, 2 * np.pi)
        across = columns - width * rng.uniform(0.2, 0.8)
        down = rows - height * rng.uniform(0.2, 0.8)
        edge = np.cos(normal) * across + np.sin(normal) * down
        softness = rng.uniform(0.02, 0.2) * max(height, width)
        light *= 1 - rng.uniform(0.2, 0.5) / (1 + np.exp(-edge / softness))
    return light.astype(np.float32)[..., None]


def photograph(sheet: np.ndarray, rng: np.random.Generator, crop_to: np.ndarray | None = None) -> np.ndarray:
    """Light, blur, noise and JPEG, as a phone would: (H, W, 3) uint8. With `crop_to` (the ink's coverage on
    the sheet), the photo is then cropped to the ink's box with 0-2 pixels to spare."""
    height, width = sheet.shape[:2]
    angle = rng.normal(0, 3)
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    sheet = cv2.warpAffine(sheet.astype(np.float32), turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    box = None
    if crop_to is not None:
        ink = cv2.warpAffine(crop_to.astype(np.float32), turn, (width, height)) > 0.3
        rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        spare = rng.integers(0, 3, 4)
        box = (
            max(0, rows[0] - spare[0]),
            rows[-1] + 1 + spare[1],
            max(0, columns[0] - spare[2]),
            columns[-1] + 1 + spare[3],
        )
    sheet = sheet * lighting(height, width, rng)
    blur = rng.uniform(0, 1.5)
    if blur > 0.3:
        sheet = cv2.GaussianBlur(sheet, (0, 0), blur)
    sheet = sheet + rng.normal(0, rng.uniform(0.005, 0.05), sheet.shape)
    buffer = io.BytesIO()
    Image.fromarray((sheet.clip(0, 1) * 255).round().astype(np.uint8)).save(
        buffer, format="JPEG", quality=int(rng.integers(60, 91))
    )
    photo = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return photo if box is None else np.ascontiguousarray(photo[box[0] : box[1], box[2] : box[3]])


def ink_onto(sheet: np.ndarray, coverage: np.ndarray, rng: np.random.Generator, light_on_dark: bool) -> np.ndarray:
    if light_on_dark:  # chalk or white ink on a dark surface
        ink = np.array([rng.uniform(0.75, 0.95)] * 3)
    else:
        name = list(INKS)[rng.integers(len(INKS))]
        ink = np.array(INKS[name]) * rng.uniform(0.8, 1.2)
        coverage = coverage * (rng.uniform(0.6, 0.9) if name == "pencil" else 1.0)
    alpha = coverage[..., None]
    return sheet * (1 - alpha) + ink * alpha


def dark_surface(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    return np.ones((height, width, 3)) * rng.uniform(0.08, 0.3) * np.array([1.0, rng.uniform(0.9, 1.1), 1.0])


def pen_width(height: int, rng: np.random.Generator) -> float:
    """Thin fine-liners to thick markers, relative to the writing's height."""
    return max(1.5, height * rng.choice([rng.uniform(0.025, 0.05), rng.uniform(0.05, 0.1), rng.uniform(0.1, 0.16)]))


def digit_photo(
    digit: np.ndarray,
    label: int,
    rng: np.random.Generator,
    margin: str = "paper",
    bold: bool = False,
    form: str | None = None,
) -> Photo:
    """One digit on a sheet, photographed. `margin` "paper" leaves a quarter to one digit height of paper
    around it, "tight" 0-2 pixels (cropped to the ink, as users crop photos and scanners crop to the box);
    `bold` writes with a marker a seventh to a fifth of the digit's height wide, a little paper around
    it, so about half of the picture is ink; `form` is a `written_form`."""
    height = int(rng.integers(60, 260))
    pen = height * rng.uniform(0.14, 0.22) if bold else pen_width(height, rng)
    coverage = pen_strokes(digit, height, pen)
    if form is not None:
        coverage = written_form(coverage, form, pen, rng)
    tight = margin == "tight"
    margin = rng.uniform(0.03, 0.15, 4) * height if bold else rng.uniform(0.25, 1.0, 4) * height
    sheet_height = int(coverage.shape[0] + margin[0] + margin[1])
    sheet_width = int(coverage.shape[1] + margin[2] + margin[3])
    light_on_dark = rng.random() < 0.1
    kind = "plain" if light_on_dark else PAPERS[rng.integers(len(PAPERS))]
    sheet = (
        dark_surface(sheet_height, sheet_width, rng)
        if light_on_dark
        else paper_sheet(sheet_height, sheet_width, rng, kind, height)
    )
    layer = np.zeros((sheet_height, sheet_width))
    top, left = int(margin[0]), int(margin[2])
    layer[top : top + coverage.shape[0], left : left + coverage.shape[1]] = coverage
    image = photograph(ink_onto(sheet, layer, rng, light_on_dark), rng, layer if tight else None)
    return Photo(image, str(label), kind)


def closest_rows(
    left: np.ndarray, right: np.ndarray, left_x: int, left_top: int, right_top: int
) -> list[tuple[int, int, int]]:
    """For each row where both digits have ink: (gap between them if `right` sat at x=0, row, left's end)."""
    found = []
    for row in range(max(left_top, right_top), min(left_top + left.shape[0], right_top + right.shape[0])):
        left_ink = np.flatnonzero(left[row - left_top] > 0.5)
        right_ink = np.flatnonzero(right[row - right_top] > 0.5)
        if len(left_ink) and len(right_ink):
            found.append((right_ink[0] - left_x - left_ink[-1], row, left_x + left_ink[-1]))
    return found


def touching_offset(
    left: np.ndarray, right: np.ndarray, left_x: int, left_top: int, right_top: int, overlap: int
) -> tuple[int, tuple[int, int, int] | None]:
    """(x for `right`, a ligature (row, x0, x1) or None) so that the digits touch, overlapping by `overlap`
    pixels where they come closest. Shapes that would interlock deeply (a 6 sliding under a 7's bar) are
    kept at most a quarter of the narrower one's width into each other and joined by a pen stroke, as a
    hand joins digits."""
    rows = closest_rows(left, right, left_x, left_top, right_top)
    deepest = left_x + left.shape[1] - max(overlap, min(left.shape[1], right.shape[1]) // 4)
    if not rows:
        return left_x + left.shape[1] - overlap, None
    touching = max(1 - overlap - gap for gap, _, _ in rows)
    if touching >= deepest:
        return touching, None
    gap, row, end = min(rows, key=lambda item: item[0] + deepest)
    return deepest, (row, end, deepest + gap + end)


def number_layer(
    digits: np.ndarray,
    rng: np.random.Generator,
    touching: bool = False,
    separators: dict[int, str] | None = None,
) -> tuple[np.ndarray, int, float]:
    """(ink coverage, the digits' height, the pen) of a number written on a line: digit sizes, gaps,
    baselines and slant vary; with `touching`, one pair of neighbours touches or overlaps slightly;
    `separators` puts a separator (. , - / :) after the digit of each index, drawn with the same pen."""
    height = int(rng.integers(50, 140))
    pen = pen_width(height, rng)
    strokes = [pen_strokes(digit, int(height * rng.uniform(0.85, 1.15)), pen) for digit in digits]
    pair = int(rng.integers(len(digits) - 1))
    canvas_height = int(height * 2.2)
    baseline = int(canvas_height / 2 + height / 2)
    placed, x, ligature, marks = [], int(height * rng.uniform(0.3, 0.8)), None, []
    for index, coverage in enumerate(strokes):
        top = int(canvas_height / 2 + height / 2 - coverage.shape[0] + rng.normal(0, 0.05) * height)
        top = int(np.clip(top, 0, canvas_height - coverage.shape[0]))
        if touching and index == pair + 1:
            previous, previous_x, previous_top = placed[-1]
            x, ligature = touching_offset(
                previous, coverage, previous_x, previous_top, top, int(rng.integers(1, max(2, pen)))
            )
        placed.append((coverage, x, top))
        x += coverage.shape[1] + int(height * rng.uniform(0.12, 0.5))
        if separators and index in separators:
            character = separators[index]
            wide = {".": 0.15, ",": 0.15, ":": 0.15, "-": 0.45, "/": 0.7}[character] * height
            marks.append((character, x))
            x += int(wide + max(pen, height * rng.uniform(0.12, 0.35)))
    canvas_width = x + int(height * rng.uniform(0.2, 0.6))
    layer = np.zeros((canvas_height, canvas_width))
    for coverage, left, top in placed:
        region = layer[top : top + coverage.shape[0], left : left + coverage.shape[1]]
        np.maximum(region, coverage, out=region)
    if ligature is not None:
        row, start, stop = ligature
        cv2.line(layer, (int(start), int(row)), (int(stop), int(row)), 1.0, max(1, round(pen)))
    thickness, dot = max(1, round(pen)), max(2, round(max(pen * 0.7, height * 0.06)))
    for character, left in marks:
        low = baseline - dot
        if character in ".:":
            cv2.circle(layer, (left + dot, low), dot, 1.0, -1, cv2.LINE_AA)
        if character == ":":
            cv2.circle(layer, (left + dot, baseline - height // 2), dot, 1.0, -1, cv2.LINE_AA)
        elif character == ",":
            cv2.line(layer, (left + dot, low), (left, baseline + height // 5), 1.0, thickness, cv2.LINE_AA)
        elif character == "-":
            middle = baseline - height // 2
            cv2.line(layer, (left, middle), (left + int(0.45 * height), middle), 1.0, thickness, cv2.LINE_AA)
        elif character == "/":
            top_right = (left + int(0.7 * height), baseline - height)
            cv2.line(layer, (left, baseline), top_right, 1.0, thickness, cv2.LINE_AA)
    slant = rng.uniform(-0.3, 0.3)  # italic writing leans right (negative shear here) or left
    shear = np.float32([[1, slant, -slant * canvas_height / 2], [0, 1, 0]])
    return cv2.warpAffine(layer.astype(np.float32), shear, (canvas_width, canvas_height)), height, pen


def number_photo(
    digits: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    touching: bool = False,
    width: int | None = None,
    papers: tuple[str, ...] = PAPERS,
    separators: dict[int, str] | None = None,
    line_lengths: tuple[int, ...] | None = None,
) -> Photo:
    """A number written on a line (see `number_layer`), or with `line_lengths` a short list: that many digits
    on each line, one line under the other, aligned left. `width` scales the photo to that many pixels."""
    text = "".join(str(int(label)) + (separators or {}).get(index, "") for index, label in enumerate(labels))
    if line_lengths is None:
        layer, height, _ = number_layer(digits, rng, touching, separators)
    else:
        starts = np.cumsum([0, *line_lengths])
        layers = [number_layer(digits[a:b], rng) for a, b in pairwise(starts)]
        height = int(np.median([line_height for _, line_height, _ in layers]))
        across = max(line.shape[1] for line, _, _ in layers)
        layer = np.concatenate([np.pad(line, ((0, 0), (0, across - line.shape[1]))) for line, _, _ in layers])
        text = "\n".join(text[a:b] for a, b in pairwise(starts))
    if width is not None:
        factor = width / layer.shape[1]
        layer = cv2.resize(layer, (width, max(8, round(layer.shape[0] * factor))), interpolation=cv2.INTER_AREA)
        height = int(height * factor)
    light_on_dark = rng.random() < 0.25
    kind = "plain" if light_on_dark else papers[rng.integers(len(papers))]
    sheet = dark_surface(*layer.shape, rng) if light_on_dark else paper_sheet(*layer.shape, rng, kind, height)
    return Photo(photograph(ink_onto(sheet, layer, rng, light_on_dark), rng), text, kind, touching)


# Numbers with separators, as written: a price, a decimal with a comma, a code, a date, a time, a phone number.
SEPARATED_FORMATS = ("d.dd", "dd,dd", "dd-dd", "dd/dd/dddd", "dd:dd", "ddd-dddd")


def low_resolution_scan(digit: np.ndarray, label: int, rng: np.random.Generator) -> Photo:
    """A digit scanned at 8x8 to 32x32 pixels and enlarged smoothly, light on dark, ink touching the frame:
    the MNIST digit cropped to its ink box, shrunk to the scan's size, enlarged bicubically to 112 pixels."""
    rows, columns = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    crop = digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].astype(np.float32) / 255
    side = int(rng.choice(LOW_RESOLUTION_SIDES))
    scan = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    scan = np.round(scan * 16) / 16 if rng.random() < 0.5 else scan  # 4-bit grey levels, as some scanners keep
    large = cv2.resize(scan, (112, 112), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    grey = (large * 255).round().astype(np.uint8)
    return Photo(np.dstack([grey] * 3), str(label), f"low-res {side}x{side}")


LOW_RESOLUTION_SIDES = (8, 12, 16, 24, 32)
SINGLE_DIGIT_KINDS = ("photo", "tight", "bold", "low-res", "flagged 1s", "crossed 7s", "narrow")
FORMS = {"flagged 1s": ("flag", 1), "crossed 7s": ("cross", 7), "narrow": ("narrow", None)}


def digit_photos(images: np.ndarray, labels: np.ndarray, count: int, seed: int, kind: str = "photo") -> list[Photo]:
    """`count` single-digit pictures of randomly chosen digits from `images` (N, 28, 28) uint8: photos of a
    sheet ("photo"), photos cropped to the ink ("tight"), marker digits ("bold"), low-resolution scans
    ("low-res"), or photos of 1s with a flag, 7s with a bar, condensed digits (see `written_form`)."""
    rng = np.random.default_rng(seed)
    form, only = FORMS.get(kind, (None, None))
    pool = np.arange(len(images)) if only is None else np.flatnonzero(labels == only)
    chosen = pool[rng.choice(len(pool), min(count, len(pool)), replace=False)]
    if form is not None:
        return [digit_photo(images[index], int(labels[index]), rng, form=form) for index in chosen]
    if kind == "low-res":
        return [low_resolution_scan(images[index], int(labels[index]), rng) for index in chosen]
    margin = "tight" if kind == "tight" else "paper"
    return [digit_photo(images[index], int(labels[index]), rng, margin, kind == "bold") for index in chosen]


def number_photos(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    seed: int,
    lengths: tuple[int, ...] = (4,),
    touching: bool = False,
    width: int | None = None,
    papers: tuple[str, ...] = PAPERS,
    separated: bool = False,
    lines: tuple[int, ...] | None = None,
) -> list[Photo]:
    """`count` photos of numbers whose lengths are drawn from `lengths`, on paper of the given kinds; with
    `separated`, in one of SEPARATED_FORMATS; with `lines`, a list of that many numbers (drawn from `lines`)
    one under the other, each of a length drawn from `lengths`."""
    rng = np.random.default_rng(seed)
    photos = []
    for _ in range(count):
        separators, line_lengths = None, None
        if separated:
            layout = SEPARATED_FORMATS[rng.integers(len(SEPARATED_FORMATS))]
            separators = {}
            for character in layout:
                if character == "d":
                    separators.setdefault("count", 0)
                    separators["count"] += 1
                else:
                    separators[separators["count"] - 1] = character
            length = separators.pop("count")
        elif lines:
            line_lengths = tuple(int(rng.choice(lengths)) for _ in range(int(rng.choice(lines))))
            length = sum(line_lengths)
        else:
            length = int(rng.choice(lengths))
        chosen = rng.choice(len(images), length, replace=False)
        photos.append(
            number_photo(images[chosen], labels[chosen], rng, touching, width, papers, separators, line_lengths)
        )
    return photos
