"""Read a whole handwritten number: clean-up, deskew, segmentation, recognition, post-processing, with the
intermediate images of each step kept for the app.

- Clean-up is `cleanup.clean_up`, the single-digit path's own.
- Deskew: the baseline's rotation from the ink's second moments (only when the writing is clearly wider
  than tall, where the principal axis means something), then the slant from the second moments of each
  connected component (mu11 / mu02, the shear that makes the strokes upright, as MNIST deskewing does).
- Segmentation: connected components; pieces stacked over each other (the top bar of a 5, a broken 4)
  join; flat wide strokes under the writing are underlines and small blobs are dots or commas, reported
  but not read.
- Recognition and the segmentation's last word: each glyph is read whole or cut (paths of least ink from
  the valleys of its column profile), and neighbouring glyphs are also read joined (pieces the pen left
  apart); all candidate pieces go through the model in one batch, and wide glyphs also through the pair
  reader (pairs.py: two touching digits read as one glyph). The path over the line whose digits are read
  with the highest joint confidence wins (log-probabilities summed, less penalties for implausible pieces,
  each cut and join, and, with the run's calibration, pieces unlike any digit).
- Post-processing: the string, each digit's confidence, the weakest digit flagged."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import pairwise

import cv2
import numpy as np
import torch
from torch import nn

from .calibration import Calibration, features_of, logits_of, softmax
from .cleanup import CleanUp, clean_up, greyscale, to_unit_float
from .evaluation import predict_probabilities
from .pairs import SINGLE, pair_input, pair_marginals
from .preprocess import mnist_input

MIN_WRITING = 0.04  # ink smaller than this fraction of the picture's shorter side is dirt, not writing
READ_SIDE = 1000  # larger inputs are shrunk first: 8 digits need no more than this
UNSURE_BELOW = 0.6  # a digit read with less confidence is flagged as unsure
MAX_ROTATION = 30.0  # degrees; more is a different layout (a vertical number), not a tilted line
MIN_ELONGATION = 2.0  # the ink's principal axes must differ this much before its rotation is trusted
MAX_SLANT = 1.0  # shear factor; beyond it the estimate is more likely a mistake than writing
MARK_SIZE = 0.3  # components within this fraction of the digits' height are dots or commas
UNDERLINE_WIDTH = 1.5  # flat components this many digit heights wide are underlines
UNDERLINE_HEIGHT = 0.3
PIECE_OVERLAP = 0.5  # components overlapping this much of the narrower one's width are one digit
MAX_DIGITS_PER_COMPONENT = 4
CUT_CANDIDATES = 4  # positions tried per cut: the even share and the column profile's lowest valleys
CUT_REACH = 0.2  # a cut path strays at most this fraction of the digits' height from its valley
INK_COST = 10.0  # a cut path's cost per pixel of ink it crosses (one column aside costs at most 1)
WIDTH_PENALTY = 3.0  # log-probability lost per digit height of width beyond DIGIT_WIDTH, per piece
DIGIT_WIDTH = 0.9  # the widest a single digit usually is, in digit heights
SHORT = 0.45  # a cut piece lower than this fraction of the digits' height is not a digit of its own
SHORT_PENALTY = 3.0  # log-probability lost by such a piece
# ... and a piece between SHORT and TALL loses a share of it: the loop of a 2 or the bar of a 7 cut off its
# digit is read confidently as a 0 or a 1, while a digit of the number is seldom that much lower than the others.
TALL = 0.7
JOIN_GAP = 0.25  # neighbouring glyphs this close (in digit heights) may be pieces of one digit
JOIN_WIDTH = 1.4  # ... when together no wider than this many digit heights
JOIN_PENALTY = 0.5  # log-probability each join costs, as a cut does
MAX_JOINED = 3
SEPARATORS = {"-": "dash", "/": "slash", ":": "colon", ".": "period", ",": "comma"}
MARK_GAP = 0.08  # a period or comma is at least this many digit heights from the digits beside it
# ... unless it is a comma whose tail reaches this many digit heights below the line (the commas of held-out numbers
# 0.17-0.33; a comma 0.03 from the next digit's 1 read 40,18 as 4018)
COMMA_DROP = 0.12
# A period is a solid blob: its ink fills at least this share of its box. The crumbs a broken stroke leaves
# (the lower arc of a 3 whose pen lifted) fill less: 0.47 for the one that read held-out 2773 as 277.3, while
# the periods of held-out numbers that read right fill 0.64 and more.
PERIOD_FILL = 0.55
DASH_WIDTH = (0.25, 1.2)  # a dash is this many digit heights wide ...
DASH_HEIGHT = 0.25  # ... at most this high ...
# ... and lies at mid-height: its middle between these shares of the writing's height above the baseline
# (higher, a flat stroke is a 5's or a 7's bar written apart from its digit)
DASH_BAND = (0.2, 0.7)
# ... and of the digit before it, unless it is that digit's bar: a 5's bar written apart lies at the top of the 5's
# body, over its end or just past it. A flat stroke whose middle is at least BAR_TOP of the digit before it up and
# no farther than BAR_REACH digit heights from it is a bar (held-out numbers: the dashes' middles reach 0.84 of the
# digit before them, and the dashes that high stand 0.16 or more from it; the bars of 5s read as dashes in 2,400
# numbers without separators, 11, were 0.88-1.15 of their 5 up and 0.0 or less from it, the 10 measured).
BAR_TOP = 0.8
BAR_REACH = 0.1
# A slash is not told from a slanted 1 by its shape alone: at 0.4 and even at 0.6 from vertical, the slanted 1s
# of held-out numbers read as slashes (4 digits apart 92.5% -> 77.5% of 40). What tells them apart is the layout
# of a date: two straight strokes, each leaning at least SLASH_SLOPE from vertical once the writing's slant is
# undone (the straight strokes of held-out dates lean 0.2-0.56, a median 0.42; those of other numbers a median
# 0.2), that split the line's glyphs into groups of DATE_GROUPS (d/m/yy, dd/mm/yyyy; held-out 49131667 read
# 49/3/667 while a year of 3 was allowed).
# A lone slanted stroke (a fraction, 1/2) stays a digit: 66 strokes of 400 held-out 4-digit numbers lean as much.
SLASH_SLOPE = 0.2
DATE_GROUPS = ({1, 2}, {1, 2}, {2, 4})
SLASH_ELONGATION = 3.0  # a slash is one straight stroke: its principal axes differ this much
# A colon's upper dot lies over its lower one give or take this lean (dx/dy) left after deskewing: requiring
# them to overlap read 9 of 27 held-out times (hh:mm) as a period, the upper dot lost.
COLON_LEAN = 0.5
LINE_SHARE = 0.4  # a run of inked rows this share of the tallest run's height is a line of writing of its own
# Many pieces of ink far smaller than the picture (a digit of a written number is at least a tenth of a photo
# of it) are noise (salt and pepper, dust, a scribbled texture), refused rather than read as a long number.
NOISE_PIECES = 8
NOISE_HEIGHT = 0.1


@dataclass(frozen=True)
class CutPrior:
    """How readily wide glyphs are cut. Without the run's calibration nothing tells a digit's fragment from a
    digit, so cuts are tried only on glyphs wider than a digit and must pay more (measured on held-out digits:
    the freer setting cost an uncalibrated `seed` 4 points on separated digits, and helped a calibrated one)."""

    wide: float  # a glyph wider than this many digit heights may hold several digits
    cut_penalty: float  # log-probability each cut costs: a cut must make the reading clearly more confident


CALIBRATED_CUTS = CutPrior(wide=0.7, cut_penalty=0.35)  # narrow pairs too (a 1 touching its neighbour)
UNCALIBRATED_CUTS = CutPrior(wide=1.0, cut_penalty=0.5)
STRANGENESS_FREE = 0.6  # a piece whose out-of-distribution score is within this share of the clean threshold
STRANGENESS_PENALTY = 2.0  # ... costs nothing; beyond it, this many log-units per clean threshold's worth
# Log-probability a glyph read whole as a touching pair costs. Tried on held-out digits from -0.5 to 1: 0 read
# the most touching pairs, and weighing the pair reader's "one digit" against cutting added nothing.
PAIR_PENALTY = 0.0
# A glyph no wider than CROWD_WIDTH times the median of its line's other glyphs (two or more) is most likely one
# digit, however it reads: its cuts and its reading as a pair cost CROWD_PENALTY more. Held-out numbers: a wide 7
# had read "17", a 6 "13", a 4 "11" (4 apart 92.50 -> 94.17%, lists 82.50 -> 84.17%, touching pairs unchanged:
# a pair is about twice a digit's width; 1.3 or a penalty of 1.5 or 2 cost touching pairs, 0.7 bought less).
CROWD_WIDTH = 1.15
CROWD_PENALTY = 1.0
# A letter among digits (an X, an A, a K) was read as two digits: cut into strokes that each read as one (the
# halves of an X as 7 at 44% and 1 at 75%), or read whole as a touching pair. A cut needs every piece read at
# least this surely, and a glyph the run answers with every digit below PAIR_WHOLE_CONFIDENCE (the near-uniform
# answer outlier exposure taught it for non-digits; uniform is 0.1) is read whole, neither cut nor a pair (a
# hollow triangle read "11" once it could not be a pair). Held-out numbers: unchanged (6 sets of 120).
CUT_CONFIDENCE = 0.5
PAIR_WHOLE_CONFIDENCE = 0.105
# A pair reading needs the pair reader's likeliest pair at least this likely, as a cut needs its pieces read surely:
# a wide 4 read "14" or "41", an 8 "23", a 2 "92", the whole glyph being strange to the run (which costs it, while
# the pair reader has no such check). Held-out numbers at three generator seeds, six sets of 400 each: at 0.3, 14
# of the 18 sets read 0.25-1 point more and none fewer; from 0.35 on, numbers with a touching pair read fewer.
PAIR_CONFIDENCE = 0.3
PAIR_WIDTH = 0.7  # glyphs wider than this many digit heights (and tried as cuts) are also read as pairs
# A pair's digits look like digits when the run's score of its cut's pieces is within this many thresholds (the
# touching pairs of the tests: 1.09 and 1.45) and no hole of the glyph spans this share of its width.
PAIR_STRANGENESS = 1.6
ONE_SHAPE_HOLE = 0.6


@dataclass(frozen=True)
class DigitReading:
    digit: int
    confidence: float
    probabilities: np.ndarray  # (10,)
    box: tuple[int, int, int, int]  # x, y, width, height in the input image
    model_input: torch.Tensor  # (28, 28) as the model saw it
    split: bool  # cut out of a component that held several digits
    # The run's out-of-distribution score over its threshold (above 1: unlike any digit the run knows), or
    # None when the run has no calibration (calibration.py) or the digit was read as one of a touching pair.
    strangeness: float | None = None
    # When the pair reader read it with its neighbour as one glyph: that glyph as the pair reader saw it
    # (pairs.pair_input). The probabilities are then the pair reader's for this side, and the box and crop
    # are those of the glyph's cut that the run reads most like the pair.
    pair_input: torch.Tensor | None = None
    line: int = 0  # which line of writing, from the top

    @property
    def pair(self) -> bool:
        return self.pair_input is not None

    @property
    def looks_like_digit(self) -> bool | None:
        return None if self.strangeness is None else self.strangeness <= 1.0

    @property
    def character(self) -> str:
        """The digit, or `?` for ink that does not look like a digit to the run."""
        return "?" if self.looks_like_digit is False else str(self.digit)

    @property
    def unsure(self) -> bool:
        return self.confidence < UNSURE_BELOW or self.looks_like_digit is False


def centre_x(item: tuple) -> float:
    box = item[1]
    return box[0] + box[2] / 2


@dataclass(frozen=True)
class Mark:
    """Ink that is not a digit: a separator (period, comma, dash, slash, colon), a dot above the line or an
    underline."""

    kind: str
    box: tuple[int, int, int, int]  # in the input image
    line: int = 0
    character: str | None = None  # a separator of the number's text (. , - / :), or None (an underline, a dot)


@dataclass(frozen=True)
class Reading:
    digits: tuple[DigitReading, ...]
    marks: tuple[Mark, ...]
    cleanup: CleanUp
    rotation: float  # degrees the writing was turned back
    slant: float  # shear factor that was removed
    deskewed: np.ndarray  # bool mask after deskewing
    segments: np.ndarray  # (H, W, 3) uint8: the deskewed mask with each digit's piece coloured
    input_shape: tuple[int, int]
    problem: str | None = None  # why nothing was read although there is ink (noise), or None

    @property
    def lines(self) -> list[str]:
        """The text of each line of writing, from the top: its digits from left to right; a piece that does
        not look like a digit is `?`, never a digit."""
        characters = [(digit.line, digit.box, digit.character) for digit in self.digits]
        characters += [(mark.line, mark.box, mark.character) for mark in self.marks if mark.character]
        count = max((digit.line for digit in self.digits), default=-1) + 1
        return [
            "".join(c for _, _, c in sorted((item for item in characters if item[0] == line), key=centre_x))
            for line in range(count)
        ]

    @property
    def text(self) -> str:
        """The lines' texts, one per line (a single line: its digits, as ever)."""
        return "\n".join(self.lines)

    @property
    def not_digits(self) -> list[int]:
        """Indices of the digits whose ink does not look like a digit to the run (kept in the text, flagged)."""
        return [index for index, digit in enumerate(self.digits) if digit.looks_like_digit is False]

    @property
    def weakest(self) -> int | None:
        """Index of the digit read with the least confidence."""
        return int(np.argmin([digit.confidence for digit in self.digits])) if self.digits else None

    def steps(self) -> dict[str, np.ndarray]:
        """The pipeline's images, in order, for display (float in [0, 1] or RGB uint8)."""
        lines = np.dstack([self.cleanup.mask | self.cleanup.lines, self.cleanup.mask, self.cleanup.mask])
        return {
            "greyscale": self.cleanup.grey,
            "illumination normalised": self.cleanup.ink,
            "binarised": self.cleanup.binary.astype(np.float32),
            "lines and specks removed": lines.astype(np.uint8) * 255,
            "deskewed": self.deskewed.astype(np.float32),
            "segmented": self.segments,
        }


@dataclass(frozen=True)
class Component:
    left: int
    top: int
    right: int  # exclusive
    bottom: int
    mask: np.ndarray  # bool, the deskewed image's size is too much: (bottom - top, right - left)

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def principal_rotation(rows: np.ndarray, columns: np.ndarray) -> float:
    """Degrees the ink's principal axis is turned from horizontal; 0 when the ink is not clearly a line."""
    covariance = np.cov(np.vstack([columns, rows]).astype(np.float64))
    eigenvalues = np.linalg.eigvalsh(covariance)
    if eigenvalues[0] <= 0 or eigenvalues[1] / eigenvalues[0] < MIN_ELONGATION**2:
        return 0.0
    angle = 0.5 * np.degrees(np.arctan2(2 * covariance[0, 1], covariance[0, 0] - covariance[1, 1]))
    return float(angle) if abs(angle) <= MAX_ROTATION else 0.0


def moment_slant(rows: np.ndarray, columns: np.ndarray, labels: np.ndarray) -> float:
    """The shear x -> x - s * (y - centre) that makes the writing upright: s = mu11 / mu02 summed over the
    connected components (each about its own centre, so the gaps between digits do not count)."""
    count = int(labels.max()) + 1
    size = np.bincount(labels, minlength=count).clip(1)
    centre_x = np.bincount(labels, columns, count) / size
    centre_y = np.bincount(labels, rows, count) / size
    dx, dy = columns - centre_x[labels], rows - centre_y[labels]
    spread = float((dy * dy).sum())
    return float(np.clip((dx * dy).sum() / spread, -MAX_SLANT, MAX_SLANT)) if spread > 0 else 0.0


def deskew_transform(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int], float, float]:
    """(2x3 affine from the working image to the deskewed one, deskewed size (w, h), rotation, slant)."""
    rows, columns = np.nonzero(mask)
    labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)[1][rows, columns]
    height, width = mask.shape
    rotation = principal_rotation(rows, columns)
    centre = (width / 2, height / 2)
    turn = np.vstack([cv2.getRotationMatrix2D(centre, rotation, 1.0), [0, 0, 1]])
    turned = turn[:2] @ np.vstack([columns, rows, np.ones_like(rows)])
    slant = moment_slant(turned[1], turned[0], labels)
    shear = np.array([[1, -slant, slant * turned[1].mean()], [0, 1, 0], [0, 0, 1]])
    transform = shear @ turn
    corners = transform[:2] @ np.array([[0, width, 0, width], [0, 0, height, height], [1, 1, 1, 1]])
    low, high = np.floor(corners.min(1)), np.ceil(corners.max(1))
    transform[:2, 2] -= low
    size = (int(high[0] - low[0]) + 1, int(high[1] - low[1]) + 1)
    return transform[:2], size, rotation, slant


def components(mask: np.ndarray) -> list[Component]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    found = []
    for label in range(1, count):
        left, top, width, height, _ = stats[label]
        found.append(
            Component(left, top, left + width, top + height, labels[top : top + height, left : left + width] == label)
        )
    return found


def joined(group: list[Component]) -> Component:
    left, top = min(c.left for c in group), min(c.top for c in group)
    right, bottom = max(c.right for c in group), max(c.bottom for c in group)
    mask = np.zeros((bottom - top, right - left), bool)
    for part in group:
        mask[part.top - top : part.bottom - top, part.left - left : part.right - left] |= part.mask
    return Component(left, top, right, bottom, mask)


def widest_hole(mask: np.ndarray) -> float:
    """The width of the widest region of paper enclosed by the ink, as a share of the ink's width."""
    _, _, stats, _ = cv2.connectedComponentsWithStats((~mask).view(np.uint8), connectivity=4)
    left, top, width, height = stats[1:, 0], stats[1:, 1], stats[1:, 2], stats[1:, 3]
    enclosed = (left > 0) & (top > 0) & (left + width < mask.shape[1]) & (top + height < mask.shape[0])
    return float(width[enclosed].max()) / mask.shape[1] if enclosed.any() else 0.0


def text_lines(mask: np.ndarray) -> list[tuple[int, int]]:
    """The rows (top, bottom) of each line of writing: the runs of rows with ink, those lower than LINE_SHARE
    of the tallest run (a detached bar, a dot, an underline) joined to the nearest line."""
    rows = mask.any(1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], rows.astype(np.int8), [0]])))
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    if len(runs) <= 1:
        return [(0, mask.shape[0])]
    tallest = max(bottom - top for top, bottom in runs)
    lines = [list(run) for run in runs if run[1] - run[0] >= LINE_SHARE * tallest]
    for top, bottom in runs:
        if bottom - top < LINE_SHARE * tallest:
            nearest = min(lines, key=lambda line: max(line[0] - bottom, top - line[1], 0))
            nearest[0], nearest[1] = min(nearest[0], top), max(nearest[1], bottom)
    if len(lines) == 1:
        return [(0, mask.shape[0])]
    # each line's band reaches halfway to its neighbours, so nothing between them is lost
    cuts = [0] + [(above[1] + below[0]) // 2 for above, below in pairwise(lines)] + [mask.shape[0]]
    return list(pairwise(cuts))


def writing_height(parts: list[Component]) -> float:
    """The digits' height: the median height of the substantial components."""
    areas = np.array([np.count_nonzero(c.mask) for c in parts])
    return float(np.median([c.height for c, area in zip(parts, areas, strict=True) if area >= 0.2 * areas.max()]))


def overlap(a: Component, b: Component) -> float:
    return max(0, min(a.right, b.right) - max(a.left, b.left)) / max(1, min(a.width, b.width))


def group_pieces(parts: list[Component], height: float) -> list[Component]:
    """Join components stacked over each other into one digit, unless both are full-height digits that
    merely overlap a little (an overhanging 7)."""
    groups: list[list[Component]] = []
    for part in sorted(parts, key=lambda c: c.left):
        for group in groups:
            whole = joined(group)
            amount = overlap(whole, part)
            both_tall = min(whole.height, part.height) >= 0.7 * height
            if amount >= PIECE_OVERLAP and (not both_tall or amount >= 0.8):
                group.append(part)
                break
        else:
            groups.append([part])
    return sorted((joined(group) for group in groups), key=lambda c: c.left)


def cut_path(mask: np.ndarray, column: int, reach: int) -> np.ndarray:
    """For each row, the column where a cut near `column` passes: the path from top to bottom, moving at
    most one column per row, that crosses the least ink (dynamic programming), then straying the least."""
    height, width = mask.shape
    columns = np.arange(max(0, column - reach), min(width, column + reach + 1))
    cost = mask[:, columns].astype(np.float64) * INK_COST + np.abs(columns - column)[None] / max(reach, 1)
    # Each row's best total from the row above, one column left, straight or one column right (inf beyond).
    padded = np.full(len(columns) + 2, np.inf)
    padded[1:-1] = cost[0]
    steps = np.zeros((height, len(columns)), np.int8)
    for row in range(1, height):
        left, straight, right = padded[:-2], padded[1:-1], padded[2:]
        best = np.minimum(np.minimum(left, straight), right)
        steps[row] = np.where(left == best, -1, np.where(straight == best, 0, 1))
        padded[1:-1] = best + cost[row]
    total = padded[1:-1]
    path = np.empty(height, np.int64)
    position = int(total.argmin())
    for row in range(height - 1, -1, -1):
        path[row] = position
        position += int(steps[row, position])  # a Python int: int8 arithmetic would overflow past 127 columns
    return columns[path]


def cut(component: Component, paths: list[np.ndarray]) -> list[Component]:
    """The pieces between cut paths (each a column per row); each piece keeps its substantial ink (crumbs
    of a neighbour's stroke that cross the cut are dropped)."""
    pieces = []
    columns = np.arange(component.width)[None]
    bounds = [np.zeros(component.height, np.int64), *paths, np.full(component.height, component.width)]
    for start, stop in pairwise(bounds):
        mask = component.mask & (columns >= start[:, None]) & (columns < stop[:, None])
        kept = np.zeros_like(mask)
        parts = components(mask)
        if parts:
            largest = max(np.count_nonzero(part.mask) for part in parts)
            for part in parts:
                if np.count_nonzero(part.mask) >= 0.1 * largest:
                    kept[part.top : part.bottom, part.left : part.right] |= part.mask
        rows, used = np.flatnonzero(kept.any(1)), np.flatnonzero(kept.any(0))
        if not len(rows):
            return []
        pieces.append(
            Component(
                component.left + used[0],
                component.top + rows[0],
                component.left + used[-1] + 1,
                component.top + rows[-1] + 1,
                kept[rows[0] : rows[-1] + 1, used[0] : used[-1] + 1],
            )
        )
    return pieces


def candidate_cuts(component: Component, height: float) -> list[list[int]]:
    """Ways to cut a wide component: not at all, and into 2..n digits at valleys of its column profile."""
    profile = cv2.GaussianBlur(component.mask.sum(0).astype(np.float32)[None], (0, 0), max(1.0, height / 30))[0]
    width = component.width
    most = min(MAX_DIGITS_PER_COMPONENT, max(2, round(width / (0.45 * height))))
    options: list[list[int]] = [[]]
    for count in range(2, most + 1):
        per_cut = []
        for index in range(1, count):  # each cut searched around its even share of the width
            low, high = int(width * (index - 0.5) / count), int(width * (index + 0.5) / count)
            window = profile[low:high]
            if len(window) == 0:
                continue
            order = np.argsort(window, kind="stable")
            # The even share itself, and the lowest valleys: overlapping digits (two 0s) have no valley
            # where they meet, only where each is thin.
            chosen: list[int] = [(high - low) // 2]
            for position in order:  # the lowest valleys, apart from each other
                if all(abs(position - other) > height / 8 for other in chosen):
                    chosen.append(int(position))
                if len(chosen) == CUT_CANDIDATES:
                    break
            per_cut.append([low + position for position in chosen])
        if len(per_cut) != count - 1:
            continue
        if count == 2:
            options.extend([[position] for position in per_cut[0]])
        else:  # the best valley of each share, and the next best for one cut at a time
            best = [positions[0] for positions in per_cut]
            options.append(best)
            for index, positions in enumerate(per_cut):
                options.extend([*best[:index], other, *best[index + 1 :]] for other in positions[1:2])
    return [option for option in options if option == sorted(set(option))]


def split_options(glyph: Component, height: float, wide: float) -> list[list[Component]]:
    """The glyph whole and, when it is wide, cut in the candidate ways (each cut a path around a valley)."""
    if glyph.width <= wide * height:
        return [[glyph]]
    reach = max(2, round(CUT_REACH * height))
    paths: dict[int, np.ndarray] = {}
    options = []
    for columns in candidate_cuts(glyph, height):
        for column in columns:
            if column not in paths:
                paths[column] = cut_path(glyph.mask, column, reach)
        pieces = cut(glyph, [paths[column] for column in columns]) if columns else [glyph]
        if pieces:
            options.append(pieces)
    return options


def plausibility_cost(pieces: list[Component], height: float, cut_penalty: float) -> float:
    """Log-probability a cut of one component loses for pieces that do not look like one digit each."""
    too_wide = sum(max(0.0, piece.width / height - DIGIT_WIDTH) for piece in pieces)
    heights = np.array([piece.height / height for piece in pieces])
    too_short = float(np.clip((TALL - heights) / (TALL - SHORT), 0, 1).sum()) if len(pieces) > 1 else 0.0
    return WIDTH_PENALTY * too_wide + SHORT_PENALTY * too_short + cut_penalty * (len(pieces) - 1)


@dataclass(frozen=True)
class Unit:
    """One way to read glyphs `start` to `stop` (exclusive) of the line: a glyph whole or cut into pieces,
    several glyphs joined into one digit (pieces the pen left apart), or, with `pair`, one glyph read whole
    by the pair reader as two touching digits."""

    start: int
    stop: int
    pieces: list[Component]
    pair: bool = False
    crowded: bool = False  # the glyph is about as wide as its line's other glyphs (CROWD_WIDTH)

    def cost(self, height: float, prior: CutPrior) -> float:
        """Log-probability lost for pieces that do not look like one digit each, for each join, and for
        reading a glyph as wide as its neighbours as several digits."""
        crowd = CROWD_PENALTY if self.crowded and (self.pair or len(self.pieces) > 1) else 0.0
        pieces = plausibility_cost(self.pieces, height, prior.cut_penalty) if self.pieces else 0.0
        return pieces + JOIN_PENALTY * (self.stop - self.start - 1) + crowd


def joinable(group: list[Component], height: float) -> bool:
    """Neighbouring glyphs close enough, and together narrow enough, to be one digit in several pieces."""
    whole = joined(group)
    gaps = [later.left - max(c.right for c in group[: index + 1]) for index, later in enumerate(group[1:])]
    return max(gaps) <= JOIN_GAP * height and whole.width <= JOIN_WIDTH * height


def candidate_units(glyphs: list[Component], height: float, prior: CutPrior, pairs: bool = False) -> list[Unit]:
    """Every way to read each glyph (whole, cut, and with `pairs` as a touching pair when it is wide enough
    to be cut) and each run of up to MAX_JOINED neighbours (joined)."""
    units = []
    widths = np.array([glyph.width for glyph in glyphs])
    for start, glyph in enumerate(glyphs):
        others = np.delete(widths, start)
        crowded = len(others) >= 2 and glyph.width <= CROWD_WIDTH * float(np.median(others))
        options = split_options(glyph, height, prior.wide)
        units.extend(Unit(start, start + 1, pieces, crowded=crowded) for pieces in options)
        if pairs and glyph.width > PAIR_WIDTH * height and any(len(pieces) == 2 for pieces in options):
            # no piece for the run: the glyph is read whole
            units.append(Unit(start, start + 1, [], pair=True, crowded=crowded))
        for stop in range(start + 2, min(len(glyphs), start + MAX_JOINED) + 1):
            if joinable(glyphs[start:stop], height):
                units.append(Unit(start, stop, [joined(glyphs[start:stop])]))
    return units


def unit_scores(
    units: list[Unit],
    probabilities: np.ndarray,
    strangeness: np.ndarray | None,
    pair_probabilities: np.ndarray,
    height: float,
    prior: CutPrior,
) -> np.ndarray:
    """How well each unit reads: the log-probabilities of its digits summed, less its cost and, when the run
    is calibrated, less a penalty for pieces unlike any digit (the model reads a fragment confidently, but
    its features are far from every digit's). A pair unit scores the pair reader's best pair (its share of a
    single digit lowers every pair's), less PAIR_PENALTY and its crowding cost. Ruled out (-inf): a cut with a
    piece read less surely than CUT_CONFIDENCE, a pair the pair reader gives less than PAIR_CONFIDENCE, and any
    cut or pair of a glyph the run answers as it learned to answer non-digits (every digit about equally likely,
    below PAIR_WHOLE_CONFIDENCE)."""
    scores = np.empty(len(units))
    whole = {}  # each glyph's confidence read whole
    first = 0
    for unit in units:
        if not unit.pair and len(unit.pieces) == 1 and unit.stop == unit.start + 1:
            whole.setdefault(unit.start, float(probabilities[first].max()))
        first += len(unit.pieces)
    first = 0
    pair_rows = iter(pair_probabilities)
    for index, unit in enumerate(units):
        non_digit = whole.get(unit.start, 1.0) < PAIR_WHOLE_CONFIDENCE  # read whole, neither cut nor a pair
        if unit.pair:
            best_pair = float(next(pair_rows)[:SINGLE].max())  # every pair unit takes its row
            ruled_out = non_digit or best_pair < PAIR_CONFIDENCE
            scores[index] = -np.inf if ruled_out else np.log(best_pair) - PAIR_PENALTY - unit.cost(height, prior)
        else:
            rows = probabilities[first : first + len(unit.pieces)]
            scores[index] = float(np.log(rows.max(1) + 1e-9).sum()) - unit.cost(height, prior)
            if strangeness is not None:
                strange = strangeness[first : first + len(unit.pieces)]
                scores[index] -= STRANGENESS_PENALTY * float(np.clip(strange - STRANGENESS_FREE, 0, None).sum())
            if len(unit.pieces) > 1 and (non_digit or rows.max(1).min() < CUT_CONFIDENCE):
                scores[index] = -np.inf
        first += len(unit.pieces)
    return scores


def best_path(units: list[Unit], scores: np.ndarray, count: int) -> list[int]:
    """The indices of the units covering all `count` glyphs with the highest total score (dynamic
    programming from left to right)."""
    best = [0.0] + [-np.inf] * count
    choice: list[int | None] = [None] * (count + 1)
    for index in sorted(range(len(units)), key=lambda index: units[index].stop):
        unit = units[index]
        score = best[unit.start] + scores[index]
        if score > best[unit.stop]:
            best[unit.stop], choice[unit.stop] = score, index
    path, position = [], count
    while position > 0:
        path.append(choice[position])
        position = units[choice[position]].start
    return path[::-1]


@dataclass
class ThreadLimit:
    """Who is reading a number now, and torch's thread count before the first of them started. The count is
    process-wide: with two sessions reading at once, restoring per reader could leave it at one for good."""

    lock: threading.Lock
    readers: int = 0
    threads_before: int = 0


THREAD_LIMIT = ThreadLimit(threading.Lock())


@contextmanager
def one_thread():
    """Run torch on one thread: a number's few dozen 28x28 pieces gain little from a second, and on a busy
    machine (other sessions, a training) the threads wait for each other: ~10x slower, measured. The count
    goes back when the last of overlapping readers is done."""
    with THREAD_LIMIT.lock:
        if THREAD_LIMIT.readers == 0:
            THREAD_LIMIT.threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        THREAD_LIMIT.readers += 1
    try:
        yield
    finally:
        with THREAD_LIMIT.lock:
            THREAD_LIMIT.readers -= 1
            if THREAD_LIMIT.readers == 0:
                torch.set_num_threads(THREAD_LIMIT.threads_before)


def to_input_box(
    transform_back: np.ndarray, piece: Component, scale: float, shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    corners = np.array(
        [
            [piece.left, piece.right, piece.left, piece.right],
            [piece.top, piece.top, piece.bottom, piece.bottom],
            [1, 1, 1, 1],
        ],
        np.float64,
    )
    points = transform_back @ corners / scale
    left, top = np.clip(np.floor(points.min(1)), 0, None).astype(int)
    right = int(min(shape[1], np.ceil(points[0].max())))
    bottom = int(min(shape[0], np.ceil(points[1].max())))
    return int(left), int(top), max(1, right - int(left)), max(1, bottom - int(top))


def mark_kind(part: Component, height: float, baseline: float) -> str | None:
    if part.width >= UNDERLINE_WIDTH * height and part.height <= UNDERLINE_HEIGHT * height:
        return "underline"
    if small(part, height):
        if part.top >= baseline - MARK_SIZE * height:  # down on the line: punctuation
            return "comma" if part.height > 1.5 * part.width else "period"
        return "dot"
    return None


def low_gap(mark: Component, other: Component, level: float) -> float:
    """Columns between a mark on the line and the ink of `other` below `level` (the lower part of the writing,
    where the mark sits: a 7's bar above a decimal point does not count); infinite when it has none there."""
    rows = other.mask[max(0, int(level) - other.top) :]
    columns = np.flatnonzero(rows.any(0)) + other.left
    if not len(columns):
        return np.inf
    return float(max(columns[0] - mark.right, mark.left - columns[-1] - 1))


def centre_x_of(part: Component) -> float:
    return part.left + part.width / 2


def small(part: Component, height: float) -> bool:
    return part.width <= MARK_SIZE * height and part.height <= MARK_SIZE * height * 1.8


def slope_from_vertical(part: Component) -> float:
    """How far the ink's principal axis leans from vertical (dx/dy, positive: its top to the right), and 0
    when the ink is not clearly one straight stroke."""
    rows, columns = np.nonzero(part.mask)
    if len(rows) < 3:
        return 0.0
    covariance = np.cov(np.vstack([columns, rows]).astype(np.float64))
    low, high = np.linalg.eigvalsh(covariance)
    if high < SLASH_ELONGATION**2 * max(low, 1e-9):
        return 0.0
    return float(-covariance[0, 1] / covariance[1, 1]) if covariance[1, 1] > 0 else 0.0


def digit_centres(parts: list[Component], height: float) -> list[float]:
    """The middles of the pieces that may be digits: neither marks nor lower than SHORT of the digits' height."""
    return [centre_x_of(part) for part in parts if part.height >= SHORT * height and not small(part, height)]


def digits_beside(x: float, centres: list[float]) -> tuple[bool, bool]:
    """Whether a digit stands left of `x`, and whether one stands right of it."""
    return any(centre < x for centre in centres), any(centre > x for centre in centres)


def date_slashes(parts: list[Component], slanted: dict[int, float], height: float) -> list[int]:
    """The two of the `slanted` strokes (their indexes in `parts`, with their slopes) that split the line's
    other glyphs as the slashes of a date do (DATE_GROUPS), leaning the most of such pairs; none when no pair
    does. Glyphs are counted as digits are read: pieces stacked over each other are one, and a mark or a piece
    lower than SHORT of the digits' height (a 5's bar written apart) is none (`digit_centres`)."""
    fitting = []
    for first in slanted:
        for second in slanted:
            left, right = centre_x_of(parts[first]), centre_x_of(parts[second])
            if left >= right:
                continue
            rest = [part for index, part in enumerate(parts) if index not in (first, second)]
            centres = digit_centres(group_pieces(rest, height), height)
            groups = (
                sum(x < left for x in centres),
                sum(left < x < right for x in centres),
                sum(x > right for x in centres),
            )
            if all(count in allowed for count, allowed in zip(groups, DATE_GROUPS, strict=True)):
                fitting.append((slanted[first] + slanted[second], first, second))
    return list(max(fitting)[1:]) if fitting else []


def bar_of_digit_before(part: Component, others: list[Component], height: float) -> bool:
    """Whether the flat stroke `part` is the bar of the digit before it (BAR_TOP, BAR_REACH)."""
    before = [other for other in others if not small(other, height) and centre_x_of(other) < centre_x_of(part)]
    if not before:
        return False
    digit = max(before, key=lambda other: other.right)
    middle = (part.top + part.bottom) / 2
    return digit.bottom - middle >= BAR_TOP * digit.height and part.left - digit.right <= BAR_REACH * height


def separators(parts: list[Component], height: float, baseline: float) -> dict[int, str]:
    """The parts (by index) that are separators of a number, not digits: a colon (two small marks one over
    the other, the lower on the line), a dash (a short flat stroke at mid-height, not the bar of the digit
    before it) and the two slashes of a date (straight strokes as tall as the digits leaning at least
    SLASH_SLOPE from vertical, see `date_slashes`); neither overlapped by other ink (a 7's stem under its bar,
    a 5's bar over its body)."""
    found: dict[int, str] = {}
    slanted: dict[int, float] = {}  # straight strokes as tall as the digits, by index: their slope
    for index, part in enumerate(parts):
        others = [other for other in parts if other is not part]
        alone = all(overlap(part, other) < PIECE_OVERLAP for other in others if not small(other, height))
        middle = (part.top + part.bottom) / 2
        if (
            alone
            and DASH_WIDTH[0] * height <= part.width <= DASH_WIDTH[1] * height
            and part.height <= min(DASH_HEIGHT * height, part.width / 2)
            and baseline - DASH_BAND[1] * height <= middle <= baseline - DASH_BAND[0] * height
            and not bar_of_digit_before(part, others, height)
        ):
            found[index] = "-"
        elif alone and part.height >= 0.7 * height and part.width >= 0.25 * height:
            slope = slope_from_vertical(part)  # after deskewing: the writing's own slant is undone
            if slope >= SLASH_SLOPE:
                slanted[index] = slope
    found.update(dict.fromkeys(date_slashes(parts, slanted, height), "/"))
    marks = [index for index, part in enumerate(parts) if small(part, height) and index not in found]
    for lower in marks:
        for upper in marks:
            below, above = parts[lower], parts[upper]
            if (
                lower != upper
                and below.top >= baseline - MARK_SIZE * height
                and above.bottom <= below.top
                and above.top >= baseline - 0.9 * height
                and abs(centre_x_of(above) - centre_x_of(below))
                <= COLON_LEAN * (below.top - above.top) + max(above.width, below.width) / 2
                and lower not in found
                and upper not in found
            ):
                found[lower] = found[upper] = ":"
    return found


PALETTE = np.array(
    [
        (230, 97, 1),
        (94, 60, 153),
        (27, 158, 119),
        (217, 95, 2),
        (117, 112, 179),
        (102, 166, 30),
        (231, 41, 138),
        (166, 118, 29),
    ],
    np.uint8,
)


def read_number(
    image: np.ndarray,
    model: nn.Module,
    calibration: Calibration | None = None,
    pair_model: nn.Module | None = None,
) -> Reading:
    """Read the digits of a handwritten number (any polarity, paper, lighting) from left to right.
    `model` (an nn.Sequential ending in its classifier) is best prepared with
    `evaluation.folded_for_inference` (faster on a CPU). With the run's `calibration`, the confidences are
    calibrated, pieces unlike any digit are avoided when cutting and joining, and a digit whose ink still
    looks like no digit is flagged (`DigitReading.looks_like_digit`). With a `pair_model`
    (`pairs.shipped_pair_reader()`), a wide glyph is also read whole as two touching digits (the pair reader
    has a class for one digit too, so a wide single digit seldom reads as a pair)."""
    input_shape = greyscale(image).shape  # (and a picture of no image's shape is refused here)
    shrink = min(1.0, READ_SIDE / max(input_shape))
    if shrink < 1:  # in colour, if it has any: the clean-up tells printed lines by it
        image = cv2.resize(
            to_unit_float(np.asarray(image)),
            (round(input_shape[1] * shrink), round(input_shape[0] * shrink)),
            interpolation=cv2.INTER_AREA,
        )
    cleaned = clean_up(image)
    scale = shrink * cleaned.scale

    def finish(digits, marks, rotation=0.0, slant=0.0, deskewed=None, segments=None, problem=None) -> Reading:
        deskewed = cleaned.mask if deskewed is None else deskewed
        segments = np.dstack([deskewed * 90] * 3).astype(np.uint8) if segments is None else segments
        return Reading(tuple(digits), tuple(marks), cleaned, rotation, slant, deskewed, segments, input_shape, problem)

    if cleaned.empty:
        return finish([], [])

    def read_line(mask: np.ndarray, top: int) -> tuple:
        """(digits, marks, rotation, slant, deskewed, segments, problem) of one line of writing: the rows
        from `top` of the cleaned-up mask."""
        transform, size, rotation, slant = deskew_transform(mask)
        deskewed = cv2.warpAffine(mask.view(np.uint8), transform, size, flags=cv2.INTER_NEAREST).astype(bool)
        transform_back = cv2.invertAffineTransform(transform)
        transform_back[1, 2] += top  # the line's rows back to the whole picture's

        smallest = MIN_WRITING * min(cleaned.mask.shape)
        parts = [part for part in components(deskewed) if max(part.height, part.width) >= smallest]
        if not parts:
            return [], [], rotation, slant, deskewed, np.dstack([deskewed * 90] * 3).astype(np.uint8), None
        height = writing_height(parts)
        if len(parts) >= NOISE_PIECES and height < NOISE_HEIGHT * min(deskewed.shape):
            problem = f"this looks like noise ({len(parts)} specks scattered over the picture), not writing"
            return [], [], rotation, slant, deskewed, np.dstack([deskewed * 90] * 3).astype(np.uint8), problem
        baseline = float(np.median([c.bottom for c in parts if c.height >= 0.7 * height]))
        marks, glyphs = [], []
        underlines = [part for part in parts if mark_kind(part, height, baseline) == "underline"]
        for part in underlines:
            marks.append(Mark("underline", to_input_box(transform_back, part, scale, input_shape)))
        parts = [part for part in parts if not any(part is u for u in underlines)]
        found = separators(parts, height, baseline)
        colon = [parts[index] for index, character in found.items() if character == ":"]
        for index, character in found.items():
            if character != ":":
                box = to_input_box(transform_back, parts[index], scale, input_shape)
                marks.append(Mark(SEPARATORS[character], box, character=character))
        groups = group_pieces([part for index, part in enumerate(parts) if index not in found], height)
        centres = digit_centres(groups, height)
        for pair in range(0, len(colon), 2):
            dots = joined(colon[pair : pair + 2])
            box = to_input_box(transform_back, dots, scale, input_shape)
            # hh:mm: a colon stands between digits (a speck over a crumb after the last digit is none)
            character = ":" if all(digits_beside(centre_x_of(dots), centres)) else None
            marks.append(Mark("colon", box, character=character))
        for group in groups:
            kind = mark_kind(group, height, baseline)
            if kind is None:
                glyphs.append(group)
            else:
                # a period or comma stands in a gap; a crumb right beside a digit is a piece of it, not text; a
                # comma's tail reaching well under the line is below every digit, so it may come close
                apart = (kind == "comma" and group.bottom >= baseline + COMMA_DROP * height) or all(
                    low_gap(group, other, baseline - 0.35 * height) >= MARK_GAP * height
                    for other in groups
                    if other is not group and mark_kind(other, height, baseline) is None
                )
                solid = kind != "period" or np.count_nonzero(group.mask) >= PERIOD_FILL * group.mask.size
                # a decimal point comes before digits (.50 too), a comma between them; neither ends the number
                left, right = digits_beside(centre_x_of(group), centres)
                placed = right and (left or kind == "period")
                character = {"period": ".", "comma": ","}.get(kind) if apart and solid and placed else None
                box = to_input_box(transform_back, group, scale, input_shape)
                marks.append(Mark(kind, box, character=character))

        prior = CALIBRATED_CUTS if calibration else UNCALIBRATED_CUTS
        units = candidate_units(glyphs, height, prior, pairs=pair_model is not None)
        pieces = [piece for unit in units for piece in unit.pieces]
        inputs = torch.stack([mnist_input(piece.mask) for piece in pieces]) if pieces else torch.zeros(0, 28, 28)
        glyphs_read = [pair_input(glyphs[unit.start].mask) for unit in units if unit.pair]
        with one_thread():
            features = features_of(model, inputs)
            logits = logits_of(model, features)
            digit_scores = calibration.detector.scores(features) if calibration else None
            strangeness = digit_scores / calibration.detector.threshold if calibration else None
            # the segmentation weighs strangeness in units of the clean digits' threshold (STRANGENESS_FREE)
            weighed = digit_scores / calibration.detector.strangeness_unit if calibration else None
            probabilities = softmax(logits)  # the segmentation is judged on the plain softmax, whatever the calibration
            reported = softmax(logits, calibration.temperature) if calibration else probabilities
            pairs = (
                predict_probabilities(pair_model, torch.stack(glyphs_read))
                if glyphs_read
                else np.zeros((0, SINGLE + 1), np.float32)
            )
        starts = np.cumsum([0] + [len(unit.pieces) for unit in units])[:-1]
        pair_rows = np.cumsum([unit.pair for unit in units]) - 1
        scores = unit_scores(units, probabilities, weighed, pairs, height, prior)
        digits = []
        segments = np.dstack([deskewed * 90] * 3).astype(np.uint8)

        def add(
            row: np.ndarray,
            piece: Component,
            index: int,
            split: bool,
            glyph: torch.Tensor | None = None,
            strange: float | None = None,
        ) -> None:
            digit = int(row.argmax())
            region = segments[piece.top : piece.bottom, piece.left : piece.right]
            region[piece.mask] = PALETTE[len(digits) % len(PALETTE)]
            if strange is None and strangeness is not None:
                strange = float(strangeness[index])
            box = to_input_box(transform_back, piece, scale, input_shape)
            digits.append(DigitReading(digit, float(row[digit]), row, box, inputs[index], split, strange, glyph))

        for chosen in best_path(units, scores, len(glyphs)):
            unit, start = units[chosen], int(starts[chosen])
            if unit.pair:  # each digit's box and crop: the glyph's cut whose pieces the run reads most like the pair
                pair_row = pair_rows[chosen]
                left, right = pair_marginals(pairs[pair_row])
                cuts = [
                    index for index, other in enumerate(units) if other.start == unit.start and len(other.pieces) == 2
                ]
                best_cut = max(
                    cuts,
                    key=lambda index: (
                        np.log(probabilities[starts[index], left.argmax()] + 1e-9)
                        + np.log(probabilities[starts[index] + 1, right.argmax()] + 1e-9)
                    ),
                )
                # The pair reader has no not-a-digit signal of its own: its digits pass the run's check on the cut's
                # pieces, both together, at a threshold for cut pieces (a cut through an overlap leaves each digit a
                # stroke of the other), and a glyph enclosing a hole across most of its width is one shape, not
                # two digits side by side (a hollow triangle or square read "11" or "17").
                first = int(starts[best_cut])
                strange = None
                if strangeness is not None:
                    cut_pieces = float(strangeness[first : first + 2].max()) / PAIR_STRANGENESS
                    strange = 2.0 if widest_hole(glyphs[unit.start].mask) > ONE_SHAPE_HOLE else cut_pieces
                for offset, row in enumerate((left, right)):
                    piece = units[best_cut].pieces[offset]
                    add(row, piece, first + offset, True, glyphs_read[pair_row], strange)
            else:
                for offset, piece in enumerate(unit.pieces):
                    add(reported[start + offset], piece, start + offset, len(unit.pieces) > 1)
        return digits, marks, rotation, slant, deskewed, segments, None

    bands = text_lines(cleaned.mask)
    if len(bands) == 1:
        return finish(*read_line(cleaned.mask, 0))
    read = [read_line(cleaned.mask[top:bottom], top) for top, bottom in bands]
    problems = [line[6] for line in read if line[6]]
    width = max(line[4].shape[1] for line in read)

    def stacked(images: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(
            [np.pad(im, ((0, 4), (0, width - im.shape[1])) + ((0, 0),) * (im.ndim - 2)) for im in images]
        )

    digits = [replace(digit, line=index) for index, line in enumerate(read) for digit in line[0]]
    marks = [replace(mark, line=index) for index, line in enumerate(read) for mark in line[1]]
    return finish(
        digits,
        marks,
        float(np.median([line[2] for line in read])),
        float(np.median([line[3] for line in read])),
        stacked([line[4] for line in read]),
        stacked([line[5] for line in read]),
        problems[0] if problems and not digits else None,
    )
