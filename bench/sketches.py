"""Drawings made the way the Draw page's canvas makes them (white strokes with round caps and joins on a black
280x280 square, pen width about 20), for measuring the "is this a digit at all?" flag: letters, shapes and
scribbles that are not digits, hand-made digits as the control, and degenerate ink (dots, specks, edge lines).

Each template is a list of strokes in a unit square (x right, y down); every sketch is one template under a
random slant, size, position, pen width and wobble, seeded, so a measurement is reproducible."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CANVAS_SIDE = 280
PEN_WIDTHS = (15, 25)  # the Draw page's default pen is 20
Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, points: int = 24) -> Stroke:
    """Points on an ellipse from `start` to `end` degrees (0 = right, 90 = down)."""
    angles = np.radians(np.linspace(start, end, points))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Letters that no digit resembles: O (0), I and l (1), S (5), Z (2), B (8), G (6), g and q (9) are left out.
LETTERS: dict[str, list[Stroke]] = {
    "A": [[(0.2, 0.9), (0.5, 0.1), (0.8, 0.9)], [(0.32, 0.6), (0.68, 0.6)]],
    "E": [[(0.75, 0.1), (0.3, 0.1), (0.3, 0.9), (0.75, 0.9)], [(0.3, 0.5), (0.65, 0.5)]],
    "F": [[(0.75, 0.1), (0.3, 0.1), (0.3, 0.9)], [(0.3, 0.5), (0.65, 0.5)]],
    "H": [[(0.25, 0.1), (0.25, 0.9)], [(0.75, 0.1), (0.75, 0.9)], [(0.25, 0.5), (0.75, 0.5)]],
    "K": [[(0.3, 0.1), (0.3, 0.9)], [(0.75, 0.1), (0.3, 0.55)], [(0.42, 0.45), (0.78, 0.9)]],
    "M": [[(0.15, 0.9), (0.2, 0.1), (0.5, 0.6), (0.8, 0.1), (0.85, 0.9)]],
    "N": [[(0.25, 0.9), (0.25, 0.1), (0.75, 0.9), (0.75, 0.1)]],
    "R": [
        [(0.3, 0.9), (0.3, 0.1)],
        [(0.3, 0.1), *arc(0.45, 0.3, 0.25, 0.2, -90, 90), (0.3, 0.5)],
        [(0.45, 0.5), (0.75, 0.9)],
    ],
    "T": [[(0.15, 0.1), (0.85, 0.1)], [(0.5, 0.1), (0.5, 0.9)]],
    "V": [[(0.2, 0.1), (0.5, 0.9), (0.8, 0.1)]],
    "W": [[(0.1, 0.1), (0.3, 0.9), (0.5, 0.4), (0.7, 0.9), (0.9, 0.1)]],
    "X": [[(0.2, 0.1), (0.8, 0.9)], [(0.8, 0.1), (0.2, 0.9)]],
    "Y": [[(0.2, 0.1), (0.5, 0.5), (0.8, 0.1)], [(0.5, 0.5), (0.5, 0.9)]],
    "h": [[(0.3, 0.1), (0.3, 0.9)], [(0.3, 0.6), *arc(0.5, 0.65, 0.2, 0.15, 180, 360), (0.7, 0.9)]],
    "k": [[(0.3, 0.1), (0.3, 0.9)], [(0.7, 0.4), (0.3, 0.7)], [(0.42, 0.62), (0.72, 0.9)]],
    "m": [
        [(0.15, 0.9), (0.15, 0.4)],
        [(0.15, 0.55), *arc(0.32, 0.55, 0.17, 0.15, 180, 360), (0.5, 0.9)],
        [(0.5, 0.55), *arc(0.67, 0.55, 0.17, 0.15, 180, 360), (0.85, 0.9)],
    ],
    "w": [[(0.1, 0.4), (0.3, 0.9), (0.5, 0.55), (0.7, 0.9), (0.9, 0.4)]],
    "x": [[(0.25, 0.4), (0.75, 0.9)], [(0.75, 0.4), (0.25, 0.9)]],
}

# A plain circle is a zero and a lone bar a one, so they are not among the shapes.
SHAPES: dict[str, list[Stroke]] = {
    "square": [[(0.15, 0.15), (0.85, 0.15), (0.85, 0.85), (0.15, 0.85), (0.15, 0.15)]],
    "triangle": [[(0.5, 0.1), (0.9, 0.85), (0.1, 0.85), (0.5, 0.1)]],
    "star": [
        [
            (0.5 + 0.42 * math.cos(math.radians(-90 + 144 * k)), 0.52 + 0.42 * math.sin(math.radians(-90 + 144 * k)))
            for k in range(6)
        ]
    ],
    "plus": [[(0.5, 0.1), (0.5, 0.9)], [(0.1, 0.5), (0.9, 0.5)]],
    "hash": [
        [(0.38, 0.1), (0.32, 0.9)],
        [(0.68, 0.1), (0.62, 0.9)],
        [(0.12, 0.35), (0.88, 0.35)],
        [(0.12, 0.65), (0.88, 0.65)],
    ],
    "arrow": [[(0.1, 0.5), (0.9, 0.5)], [(0.65, 0.25), (0.9, 0.5), (0.65, 0.75)]],
    "check": [[(0.1, 0.55), (0.38, 0.85), (0.9, 0.15)]],
    "heart": [
        [
            (0.5, 0.9),
            (0.12, 0.45),
            *arc(0.3, 0.3, 0.19, 0.17, 160, 360),
            *arc(0.7, 0.3, 0.19, 0.17, 180, 380),
            (0.88, 0.45),
            (0.5, 0.9),
        ]
    ],
    "smiley": [
        arc(0.5, 0.5, 0.42, 0.42, 0, 360, 40),
        [(0.36, 0.38), (0.37, 0.4)],
        [(0.63, 0.38), (0.64, 0.4)],
        arc(0.5, 0.55, 0.22, 0.18, 20, 160),
    ],
    "house": [[(0.15, 0.9), (0.15, 0.45), (0.5, 0.1), (0.85, 0.45), (0.85, 0.9), (0.15, 0.9)]],
    "spiral": [[(0.5 + 0.045 * t * math.cos(t), 0.5 + 0.045 * t * math.sin(t)) for t in np.linspace(0.5, 9.5, 48)]],
    "wave": [[(x, 0.5 + 0.22 * math.sin(x * 4 * math.pi)) for x in np.linspace(0.05, 0.95, 40)]],
    "zigzag": [[(0.08 + 0.12 * k, 0.3 if k % 2 else 0.7) for k in range(8)]],
    "grid": [
        [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9), (0.1, 0.1)],
        [(0.5, 0.1), (0.5, 0.9)],
        [(0.1, 0.5), (0.9, 0.5)],
    ],
    "ladder": [
        [(0.3, 0.05), (0.3, 0.95)],
        [(0.7, 0.05), (0.7, 0.95)],
        [(0.3, 0.25), (0.7, 0.25)],
        [(0.3, 0.5), (0.7, 0.5)],
        [(0.3, 0.75), (0.7, 0.75)],
    ],
}

# The control: digits drawn with the same pen, which should not be flagged.
DIGITS: dict[str, list[Stroke]] = {
    "0": [arc(0.5, 0.5, 0.28, 0.42, 0, 360, 40)],
    "1": [[(0.35, 0.25), (0.55, 0.1), (0.55, 0.9)]],
    "2": [[*arc(0.5, 0.32, 0.27, 0.22, 200, 380), (0.2, 0.9), (0.82, 0.9)]],
    "3": [[*arc(0.48, 0.3, 0.25, 0.2, 200, 450), *arc(0.48, 0.7, 0.28, 0.2, -90, 160)]],
    "4": [[(0.6, 0.1), (0.18, 0.65), (0.85, 0.65)], [(0.65, 0.35), (0.65, 0.9)]],
    "5": [[(0.78, 0.1), (0.3, 0.1), (0.27, 0.45), *arc(0.5, 0.65, 0.3, 0.25, -130, 150)]],
    "6": [[(0.7, 0.1), (0.35, 0.45), *arc(0.5, 0.68, 0.25, 0.22, 180, 540)]],
    "7": [[(0.2, 0.1), (0.8, 0.1), (0.4, 0.9)]],
    "8": [[*arc(0.5, 0.3, 0.22, 0.2, 90, 450), *arc(0.5, 0.7, 0.27, 0.2, -90, 270)]],
    "9": [[*arc(0.5, 0.32, 0.25, 0.22, 0, 360), (0.75, 0.32), (0.7, 0.9)]],
}


@dataclass(frozen=True)
class Sketch:
    kind: str  # "letter", "shape", "scribble", "digit" or "degenerate"
    name: str  # the template ("A", "star", "7", "dot"…)
    image: np.ndarray  # RGBA uint8 (280, 280, 4), as the canvas returns a drawing


def render(strokes: list[Stroke], pen_width: float) -> np.ndarray:
    """Strokes in canvas pixels drawn as the canvas does: round joins and caps, white on opaque black."""
    image = Image.new("RGBA", (CANVAS_SIDE, CANVAS_SIDE), (0, 0, 0, 255))
    draw = ImageDraw.Draw(image)
    radius = pen_width / 2
    for stroke in strokes:
        if len(stroke) > 1:
            draw.line(stroke, fill=(255, 255, 255, 255), width=round(pen_width), joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255, 255))
    return np.asarray(image)


def placed(strokes: list[Stroke], rng: np.random.Generator) -> list[Stroke]:
    """The unit-square template slanted, sized and placed at random on the canvas, with a hand's wobble."""
    angle = math.radians(rng.uniform(-12, 12))
    size = rng.uniform(0.45, 0.8) * CANVAS_SIDE
    centre = CANVAS_SIDE / 2 + rng.uniform(-0.12, 0.12, 2) * CANVAS_SIDE
    cos, sin = math.cos(angle), math.sin(angle)
    result = []
    for stroke in strokes:
        points = np.asarray(stroke, float) - 0.5 + rng.normal(0, 0.012, (len(stroke), 2))
        rotated = points @ np.array([[cos, sin], [-sin, cos]])
        result.append([tuple(point) for point in rotated * size + centre])
    return result


def scribble(rng: np.random.Generator) -> list[Stroke]:
    """One to three smooth random strokes through random points of the unit square."""
    strokes = []
    for _ in range(rng.integers(1, 4)):
        anchors = rng.uniform(0.05, 0.95, (rng.integers(4, 9), 2))
        steps = np.linspace(0, len(anchors) - 1, 12 * len(anchors))
        xs = np.interp(steps, np.arange(len(anchors)), anchors[:, 0])
        ys = np.interp(steps, np.arange(len(anchors)), anchors[:, 1])
        kernel = np.ones(7) / 7  # rounds the corners the way a moving hand does
        xs, ys = (np.convolve(np.pad(v, 3, mode="edge"), kernel, mode="valid") for v in (xs, ys))
        strokes.append(list(zip(xs, ys, strict=True)))
    return strokes


def degenerate(name: str, rng: np.random.Generator) -> list[Stroke]:
    """Ink that is no digit whatever the model says: in canvas pixels."""
    if name == "dot":
        x, y = rng.uniform(60, 220, 2)
        return [[(x, y)]]
    if name == "speck":
        x, y = rng.uniform(30, 250, 2)
        return [[(x, y), (x + rng.uniform(2, 8), y + rng.uniform(-4, 4))]]
    edge = rng.integers(4)  # top, bottom, left, right
    offset, start, end = rng.uniform(3, 12), rng.uniform(10, 80), rng.uniform(200, 270)
    position = offset if edge in (0, 2) else CANVAS_SIDE - offset
    return [[(start, position), (end, position)]] if edge < 2 else [[(position, start), (position, end)]]


DEGENERATE = ("dot", "speck", "edge line")


def sketches(kind: str, per_template: int, seed: int = 0) -> list[Sketch]:
    """`per_template` random drawings of every template of one kind (for scribbles and degenerate ink,
    `per_template` drawings of each random family)."""
    rng = np.random.default_rng(seed)

    def pen() -> float:
        return rng.uniform(*PEN_WIDTHS)

    templates = {"letter": LETTERS, "shape": SHAPES, "digit": DIGITS}
    if kind in templates:
        return [
            Sketch(kind, name, render(placed(strokes, rng), pen()))
            for name, strokes in templates[kind].items()
            for _ in range(per_template)
        ]
    if kind == "scribble":
        return [Sketch(kind, "scribble", render(placed(scribble(rng), rng), pen())) for _ in range(per_template)]
    if kind == "degenerate":
        return [
            Sketch(kind, name, render(degenerate(name, rng), pen())) for name in DEGENERATE for _ in range(per_template)
        ]
    raise ValueError(f"unknown kind of sketch {kind!r}")


NON_DIGIT_KINDS = ("letter", "shape", "scribble")
