"""Drawings that are not digits, for outlier exposure (Hendrycks et al. 2019): training shows the net these
beside the digits and pushes its answer on them towards uniform, so that its features learn what a non-digit
looks like and the "not a digit" detector (calibration.py) has something to separate.

Design:
- Each template is a few strokes (polylines) in a unit square, x right, y down: capital and small letters that
  no digit is written like, and a few generic shapes (star, plus, hash, arrows...). Left out, because a digit
  is written like them: O o D Q C c U u (0), I l i j J (1: a bar, a bar with a hook), T t (a 7's top bar on
  a stem, a crossed 7 or 4), S s (5), Z z (2), B (8), G b (6), g q a d P p (9, 6: a loop on a stem), e (6),
  y (4, 9), L (a 1 with a foot, a 4's corner), & (8), a circle, a lone bar or wave (0, 1, the separators), a
  zigzag (2). F stays in: its two bars to the right of one stem are not a 7's single top bar.
- Every drawing is one template under a random slant, rotation, aspect, size and a smooth wobble of its
  strokes, placed as MNIST places a digit (the larger side of its box about 20 px, the box centred in 28x28,
  a pixel of jitter), drawn white on black with `augment.draw_polylines` at an MNIST pen width (2-3.6 px).
- Batched and seeded: `outlier_batch(count, generator)` takes its draws from a torch.Generator, so a training
  run is reproducible from its seed. No fonts and none of bench/sketches.py (the letters' test set)."""

from __future__ import annotations

import math

import torch

from .augment import IMAGE_SIZE, draw_polylines, uniform

Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, points: int = 12) -> Stroke:
    """Points on an ellipse from `start` to `end` degrees (0 = right, 90 = down)."""
    angles = [math.radians(start + (end - start) * k / (points - 1)) for k in range(points)]
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def star_points(arms: int, inner: float) -> Stroke:
    """A closed star outline of `arms` points around the centre, every other vertex at `inner` radius."""
    corners = [
        (0.5 + (0.45 if k % 2 == 0 else inner) * math.sin(math.pi * k / arms),
         0.52 - (0.45 if k % 2 == 0 else inner) * math.cos(math.pi * k / arms))
        for k in range(2 * arms + 1)
    ]  # fmt: skip
    return corners


LETTERS: dict[str, list[Stroke]] = {
    "A": [[(0.15, 0.95), (0.5, 0.05), (0.85, 0.95)], [(0.3, 0.62), (0.7, 0.62)]],
    "A-flat": [[(0.12, 0.95), (0.42, 0.05), (0.58, 0.05), (0.88, 0.95)], [(0.28, 0.55), (0.72, 0.55)]],
    "E": [[(0.8, 0.05), (0.25, 0.05), (0.25, 0.95), (0.8, 0.95)], [(0.25, 0.5), (0.7, 0.5)]],
    "F": [[(0.8, 0.05), (0.25, 0.05), (0.25, 0.95)], [(0.25, 0.48), (0.68, 0.48)]],
    "H": [[(0.2, 0.05), (0.2, 0.95)], [(0.8, 0.05), (0.8, 0.95)], [(0.2, 0.5), (0.8, 0.5)]],
    "K": [[(0.25, 0.05), (0.25, 0.95)], [(0.8, 0.05), (0.25, 0.6)], [(0.4, 0.48), (0.82, 0.95)]],
    "M": [[(0.1, 0.95), (0.15, 0.05), (0.5, 0.65), (0.85, 0.05), (0.9, 0.95)]],
    "N": [[(0.2, 0.95), (0.2, 0.05), (0.8, 0.95), (0.8, 0.05)]],
    "R": [
        [(0.25, 0.95), (0.25, 0.05), *arc(0.42, 0.28, 0.3, 0.23, -90, 90), (0.25, 0.51)],
        [(0.42, 0.51), (0.8, 0.95)],
    ],
    "V": [[(0.15, 0.05), (0.5, 0.95), (0.85, 0.05)]],
    "W": [[(0.05, 0.05), (0.28, 0.95), (0.5, 0.35), (0.72, 0.95), (0.95, 0.05)]],
    "X": [[(0.15, 0.05), (0.85, 0.95)], [(0.85, 0.05), (0.15, 0.95)]],
    "Y": [[(0.15, 0.05), (0.5, 0.48), (0.85, 0.05)], [(0.5, 0.48), (0.5, 0.95)]],
    "h": [[(0.25, 0.05), (0.25, 0.95)], [(0.25, 0.62), *arc(0.5, 0.62, 0.25, 0.2, 180, 360), (0.75, 0.95)]],
    "k": [[(0.28, 0.05), (0.28, 0.95)], [(0.75, 0.38), (0.28, 0.7)], [(0.45, 0.6), (0.78, 0.95)]],
    "m": [
        [(0.1, 0.35), (0.1, 0.95)],
        [(0.1, 0.5), *arc(0.3, 0.52, 0.2, 0.17, 180, 360), (0.5, 0.95)],
        [(0.5, 0.52), *arc(0.7, 0.52, 0.2, 0.17, 180, 360), (0.9, 0.95)],
    ],
    "n": [[(0.25, 0.35), (0.25, 0.95)], [(0.25, 0.55), *arc(0.5, 0.57, 0.25, 0.22, 180, 360), (0.75, 0.95)]],
    "r": [[(0.3, 0.35), (0.3, 0.95)], [(0.3, 0.62), *arc(0.55, 0.6, 0.25, 0.22, 180, 300, 6)]],
    "v": [[(0.2, 0.35), (0.5, 0.95), (0.8, 0.35)]],
    "w": [[(0.05, 0.35), (0.28, 0.95), (0.5, 0.5), (0.72, 0.95), (0.95, 0.35)]],
    "x": [[(0.2, 0.35), (0.8, 0.95)], [(0.8, 0.35), (0.2, 0.95)]],
    "f": [[*arc(0.62, 0.22, 0.2, 0.17, 0, -180, 8), (0.42, 0.95)], [(0.2, 0.45), (0.68, 0.45)]],
}

SHAPES: dict[str, list[Stroke]] = {
    "star": [star_points(5, 0.18)],
    "asterisk": [[(0.5, 0.05), (0.5, 0.95)], [(0.12, 0.28), (0.88, 0.72)], [(0.88, 0.28), (0.12, 0.72)]],
    "plus": [[(0.5, 0.1), (0.5, 0.9)], [(0.1, 0.5), (0.9, 0.5)]],
    "hash": [
        [(0.38, 0.05), (0.3, 0.95)],
        [(0.7, 0.05), (0.62, 0.95)],
        [(0.1, 0.35), (0.9, 0.35)],
        [(0.1, 0.65), (0.9, 0.65)],
    ],
    "arrow-right": [[(0.05, 0.5), (0.95, 0.5)], [(0.65, 0.2), (0.95, 0.5), (0.65, 0.8)]],
    "arrow-up": [[(0.5, 0.95), (0.5, 0.05)], [(0.2, 0.35), (0.5, 0.05), (0.8, 0.35)]],
    "arrow-down-left": [[(0.9, 0.1), (0.1, 0.9)], [(0.1, 0.45), (0.1, 0.9), (0.55, 0.9)]],
    "triangle": [[(0.5, 0.05), (0.95, 0.9), (0.05, 0.9), (0.5, 0.05)]],
    "check": [[(0.1, 0.55), (0.38, 0.9), (0.9, 0.1)]],
    "heart": [
        [(0.5, 0.95), *arc(0.28, 0.32, 0.23, 0.22, 135, 360, 8), *arc(0.72, 0.32, 0.23, 0.22, 180, 405, 8), (0.5, 0.95)]
    ],
}

TEMPLATES: dict[str, list[Stroke]] = {**LETTERS, **SHAPES}


def template_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Every template as (T, S, V, 2) points and a (T, S) mask of its real strokes: short strokes are padded
    by repeating their last vertex (zero-length segments draw nothing new), missing strokes are masked off."""
    strokes = max(len(template) for template in TEMPLATES.values())
    vertices = max(len(stroke) for template in TEMPLATES.values() for stroke in template)
    points = torch.zeros(len(TEMPLATES), strokes, vertices, 2)
    present = torch.zeros(len(TEMPLATES), strokes, dtype=torch.bool)
    for t, template in enumerate(TEMPLATES.values()):
        for s, stroke in enumerate(template):
            padded = stroke + [stroke[-1]] * (vertices - len(stroke))
            points[t, s] = torch.tensor(padded)
            present[t, s] = True
        for s in range(len(template), strokes):
            points[t, s] = points[t, 0, :1]
    return points, present


POINTS, PRESENT = template_tensors()
BOX_SIDE = (17.5, 20.5)  # the larger side of the drawing's inked box, px (MNIST normalises a digit's to 20)
HALF_WIDTH = (1.0, 1.8)  # the pen's half width, px: MNIST's strokes are 2-3.6 px wide


def outlier_batch(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` non-digit drawings as float (count, 1, 28, 28) in [0, 1], white on black, and the index of each
    one's template in TEMPLATES; every random draw comes from `generator`."""
    which = torch.randint(len(TEMPLATES), (count,), generator=generator)
    points = POINTS[which] - 0.5  # (N, S, V, 2), centred on 0
    x, y = points[..., 0], points[..., 1]
    # the hand: a smooth wobble (two low sinusoids of the other coordinate), then slant, aspect and rotation
    amplitude, frequency, phase = (uniform(generator, count * 4, *bounds).view(count, 4, 1, 1) for bounds in
                                   ((0.0, 0.04), (1.5, 4.0), (0.0, 2 * math.pi)))  # fmt: skip
    x = (
        x
        + amplitude[:, 0] * torch.sin(frequency[:, 0] * y * 2 + phase[:, 0])
        + amplitude[:, 1] * torch.sin(frequency[:, 1] * y * 5 + phase[:, 1])
    )
    y = (
        y
        + amplitude[:, 2] * torch.sin(frequency[:, 2] * x * 2 + phase[:, 2])
        + amplitude[:, 3] * torch.sin(frequency[:, 3] * x * 5 + phase[:, 3])
    )
    slant = uniform(generator, count, -0.35, 0.35).view(count, 1, 1)
    x = x - slant * y
    aspect = torch.exp(uniform(generator, count, -0.3, 0.3)).view(count, 1, 1)
    x = x * aspect
    angle = uniform(generator, count, -0.2, 0.2).view(count, 1, 1)
    x, y = x * torch.cos(angle) - y * torch.sin(angle), x * torch.sin(angle) + y * torch.cos(angle)
    # MNIST's placing: the larger side of the inked box to BOX_SIDE, the box's centre at the image's, +-1 px
    real = PRESENT[which][..., None]  # (N, S, 1): padding strokes do not count towards the box
    big = torch.finfo(x.dtype).max
    low_x, high_x = x.masked_fill(~real, big).amin((1, 2)), x.masked_fill(~real, -big).amax((1, 2))
    low_y, high_y = y.masked_fill(~real, big).amin((1, 2)), y.masked_fill(~real, -big).amax((1, 2))
    half_width = uniform(generator, count, *HALF_WIDTH)
    side = uniform(generator, count, *BOX_SIDE) - 2 * half_width  # the strokes' centre lines: the pen's width less
    scale = (side / torch.maximum(high_x - low_x, high_y - low_y).clamp_min(1e-3)).view(count, 1, 1)
    shift = uniform(generator, count * 2, -1.0, 1.0).view(count, 2)
    centre = IMAGE_SIZE / 2 - 0.5
    x = (x - ((low_x + high_x) / 2).view(count, 1, 1)) * scale + centre + shift[:, :1, None]
    y = (y - ((low_y + high_y) / 2).view(count, 1, 1)) * scale + centre + shift[:, 1:, None]
    strokes = points.shape[1]
    half_width = half_width.view(count, 1, 1, 1).expand(count, strokes, 1, 1)
    level = uniform(generator, count, 0.85, 1.0).view(count, 1, 1, 1) * PRESENT[which].view(count, strokes, 1, 1)
    blank = torch.zeros(count, 1, IMAGE_SIZE, IMAGE_SIZE)
    return draw_polylines(blank, torch.stack([x, y], -1), half_width, level), which
