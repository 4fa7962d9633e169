"""OCR clean-up of a drawing, photo or scan: which pixels are the writing's strokes.

Steps (each kept in `CleanUp` so the app can show them): greyscale, polarity (dark on light or light on
dark), illumination normalisation (a wide median of the picture is the paper, lit however it is; ink is
measured against it, so gradients and soft shadows vanish; under strokes too wide for the median, a smooth
surface fitted to the paper's pixels), binarisation (Otsu's threshold, applied with hysteresis so faint
stroke ends stay attached to their strokes while isolated noise does not), removal of printed ruling and
grid lines (straight lines that cross the whole picture, found with a probabilistic Hough transform; where a
stroke crosses a line the stroke's pixels are kept; in a colour picture, a line in another colour than the
writing is printed however dark), despeckling (components far smaller than a stroke's
width squared).

OpenCV (`opencv-python-headless`) does the pixel work: median blur, Gaussian blur, Hough lines, morphology
and connected components in C++, each a few milliseconds on a 1,000-pixel photo, against tens to hundreds
for the scikit-image equivalents; scikit-image adds only its Otsu and hysteresis helpers."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.filters import apply_hysteresis_threshold, threshold_otsu

from .errors import ImageError

STATISTICS_SAMPLE = 40_000  # pixels enough for a percentile or Otsu's threshold
FLAT = 0.01  # brightness spread of paper that is one flat colour (a drawing, not a photo)
MIN_WORKING_SIDE = 128  # smaller inputs (a 28x28 MNIST digit) are enlarged first, so the filters have room
# Bounds on that enlargement, so that every later step's cost (kernels scale with the picture) stays bounded
# for any shape: at most 16x (an 8-pixel scan reaches 128) and at most this many working pixels.
MAX_ENLARGEMENT = 16.0
MAX_WORKING_PIXELS = 1_500_000
BACKGROUND_SIDE = 160  # the paper's lighting is smooth: estimated on a copy at most this large
BACKGROUND_WINDOW = 0.4  # median window, as a fraction of the picture's shorter side
UNIFORM_BORDER = 0.1  # spread of the border's brightness (10th to 90th percentile) under even light
BORDER_MAJORITY = 0.7  # a brightness class holding this share of the border is the paper
# Hysteresis: ink connected to certain ink is kept down to this share of the strong threshold (over the paper);
# without a margin (a smoothly enlarged scan, a cropped digit) half would fatten the strokes into their blur.
HYSTERESIS = {True: 0.5, False: 0.7}
WRITING_SPAN = 0.8  # writing (its largest piece) across this share of the picture may be cropped to its ink
WRITING_AT_EDGE = 0.25  # a component this share of the largest one's size, at the edge, is writing there
PAPER_FIT_ROUNDS, PAPER_FIT_SIGMAS = 3, 3.0  # refits of the paper's surface, each without the pixels this many
# deviations on the ink's side of the last one
INK_CLEAR_OF_BORDER = 0.02  # share of the border in the ink's brightness class that is still paper all around
INK_FILLS_WINDOWS = 0.05  # share of the picture where the paper's median took strokes for paper (a marker)
MIN_CONTRAST = 0.12  # weaker ink (after normalisation) is paper texture, not writing
NOISE_SIGMAS = 5.0  # the strong threshold stays this many noise deviations above the paper
LINE_SPAN = 0.85  # a printed line crosses at least this fraction of the picture
HOUGH_SIDE = 512
LINE_ANGLE = 12.0  # degrees from horizontal or vertical
LINE_RUN = 9  # pixels (on the transform's copy) a line's ink runs straight, tilted up to LINE_ANGLE
LINE_AS_STROKE = 0.7  # ink this share of the writing's median strength is as strong as the writing
WRITING_OVER_LINE = 2.0  # ink on a printed line this many times as strong as the line (and as writing) is writing
MAX_STRAIGHT_STROKES = 2  # of one orientation crossing a digit cropped to its ink (a 9's loop: two)
LINE_TOLERANCE = 3  # pixels: a run of ink across a line up to its thickness plus this is the line alone
SLIVER = 6  # longer than this many times its width (or a stroke's), at the edge: a printed line's leftover
# Colour (of a colour picture): inks whose shares of absorbed light (`hue`) differ by more than HUE_APART in a
# channel are told apart (red or blue printed lines from pencil or black ink: 0.15-0.25; JPEG's colour noise on
# one ink: up to 0.07); a pixel is the writing's colour within half of it. Below HUE_MIN_ABSORPTION in all
# (faint ink) the shares are noise. The paper for comparison is looked for within HUE_RING pixels; a picture
# whose channels differ by less than GREY_SPREAD everywhere is grey.
HUE_APART = 0.1
HUE_MIN_ABSORPTION = 0.15
HUE_RING = 9
GREY_SPREAD = 0.04
SPECK_AREA = 0.3  # components smaller than this times the stroke width squared are specks
LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class CleanUp:
    """The steps of the clean-up, all (H, W) at the working size (`scale` x the input's size)."""

    grey: np.ndarray  # float32 in [0, 1], 1 = light
    dark_on_light: bool
    ink: np.ndarray  # float32 in [0, 1]: how much darker (or lighter) than the paper around it
    binary: np.ndarray  # bool: after thresholding
    lines: np.ndarray  # bool: pixels removed as printed ruling or grid lines
    mask: np.ndarray  # bool: the strokes (binary minus lines minus specks)
    stroke_width: float  # pixels, estimated from the mask (0 when empty)
    scale: float  # working size / input size
    flat_paper: bool = False  # a drawing on one flat colour (the canvas): no lighting or margin to judge

    @property
    def empty(self) -> bool:
        return not self.mask.any()

    def ink_image(self) -> np.ndarray:
        """The kept ink as light-on-dark float, for display and for the model's input."""
        return np.where(self.mask, 1.0, 0.0).astype(np.float32)


def to_unit_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    array = np.nan_to_num(array.astype(np.float32))
    return array / 255.0 if array.max() > 1.0 else array


def greyscale(array: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1], 1 = light. Transparent parts are laid on a background that contrasts with
    the opaque pixels, so a drawing on a transparent canvas keeps its ink."""
    values = to_unit_float(np.asarray(array))
    if values.ndim == 3 and values.shape[2] in (2, 4):  # with alpha
        alpha, colour = values[..., -1], values[..., :-1]
        luminance = colour[..., 0] if colour.shape[2] == 1 else colour[..., :3] @ LUMINANCE
        if alpha.min() < 0.99:
            opaque = alpha > 0.5
            if not opaque.any():
                return np.zeros(alpha.shape, np.float32)
            background = 0.0 if luminance[opaque].mean() > 0.5 else 1.0
            luminance = luminance * alpha + background * (1 - alpha)
        values = luminance
    elif values.ndim == 3:
        values = values[..., :3] @ LUMINANCE if values.shape[2] >= 3 else values[..., 0]
    if values.ndim != 2:
        raise ImageError(f"expected a 2-D image, got shape {np.shape(array)}")
    return np.ascontiguousarray(values, np.float32)


def border_pixels(array: np.ndarray) -> np.ndarray:
    """The values of the picture's outermost rows and columns, in one flat array."""
    return np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])


def sample(image: np.ndarray) -> np.ndarray:
    """Every pixel of a small image, a regular sample of a large one: enough for its statistics."""
    step = max(1, round(np.sqrt(image.size / STATISTICS_SAMPLE)))
    return image[::step, ::step]


def odd(value: float) -> int:
    return max(3, int(value) // 2 * 2 + 1)


def paper_level(grey: np.ndarray, strokes: tuple[bool, np.ndarray] | None = None, fit: bool = False) -> np.ndarray:
    """The paper's brightness at each pixel: a median over windows much wider than a stroke (ink is a
    minority in each), on a shrunken copy, enlarged again (the lighting varies smoothly). Where ink may be
    the majority of a window (a marker's digit, a digit cropped to its ink), `strokes` (dark_on_light, the
    light class of `two_classes`) closes the dark strokes over (opens light ones away) first, with a kernel
    from their width on the shrunken copy: a grey closing removes only features narrower than its kernel and
    keeps a shadow's edge where it is. Strokes wider than the window (a marker's 1 on a narrow photo) are
    closed over only up to it, so the median is the stroke itself; with `fit` (the no-margin pass) their
    paper is `fitted_paper` instead, and so is dark paper's always: light strokes on dark are a scan, a
    screen or a board, not a photo of ruled paper under hard shadows, and a smoothly enlarged scan's blurred
    strokes fill whole windows, whose median then hollowed a loop out (held-out low-res scans 95.75 ->
    96.50%; fitting light paper too kept grid lines as strokes: tight crops 95.00 -> 94.50%). The margin
    test keeps the capped closing (a hard shadow's class would count as a wide stroke) unless the ink's class
    is clear of the picture's border."""
    height, width = grey.shape
    small = shrink_to(grey, BACKGROUND_SIDE)
    window = odd(min(small.shape) * BACKGROUND_WINDOW)
    pixels = (small * 255).round().astype(np.uint8)
    if strokes is not None:
        dark_on_light, light = strokes
        side = odd(2 * stroke_width(~light if dark_on_light else light) + 3)
        if fit and (side > window or not dark_on_light):
            paper = fitted_paper(small, dark_on_light, light)
            return cv2.resize(paper, (width, height), interpolation=cv2.INTER_LINEAR)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (min(side, window),) * 2)
        pixels = cv2.morphologyEx(pixels, cv2.MORPH_CLOSE if dark_on_light else cv2.MORPH_OPEN, kernel)
    small = cv2.medianBlur(pixels, window).astype(np.float32) / 255
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def two_classes(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the lightly smoothed shrunken copy, its light class by Otsu's split)."""
    small = cv2.GaussianBlur(shrink_to(grey, BACKGROUND_SIDE), (0, 0), 1.0)
    split = float(threshold_otsu(small)) if np.ptp(small) > 0 else float(small.flat[0])
    return small, small > split


def polynomial_terms(shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 10): the monomials of x and y up to the third degree, x and y in [-0.5, 0.5] across the picture."""
    height, width = shape
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = rows / max(height - 1, 1) - 0.5, columns / max(width - 1, 1) - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y, x**3, x * x * y, x * y * y, y**3], -1)


def fitted_paper(small: np.ndarray, dark_on_light: bool, light: np.ndarray) -> np.ndarray:
    """The paper's brightness on the shrunken copy `small` where ink may be most of the picture: a smooth
    surface (a cubic in x and y: a gradient, vignetting) fitted by least squares to the paper's class, then
    again to the pixels not clearly on the ink's side of the last fit."""
    terms = polynomial_terms(small.shape)
    paper = light if dark_on_light else ~light
    # light multiplies the paper's brightness (a fit of its logarithm), while dark paper's own level is a
    # difference (its logarithm would blow the scanner's noise near black up)
    levels = np.log(np.maximum(small, 0.02)) if dark_on_light else small
    for _ in range(PAPER_FIT_ROUNDS):
        if np.count_nonzero(paper) < 4 * terms.shape[-1]:  # too few paper pixels to fit: their median level
            surface = np.full(small.shape, float(np.median(levels)), np.float32)
        else:
            coefficients, *_ = np.linalg.lstsq(terms[paper], levels[paper], rcond=None)
            surface = (terms @ coefficients).astype(np.float32)
        residual = (levels - surface) * (1 if dark_on_light else -1)
        spread = 1.4826 * float(np.median(np.abs(residual[paper]))) + 1e-3
        paper = residual > -PAPER_FIT_SIGMAS * spread
    return np.exp(surface) if dark_on_light else surface


def pieces(mask: np.ndarray) -> int:
    """Connected parts of a brightness class that are more than a crumb (1% of the picture)."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    return int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] > 0.01 * mask.size))


def normalise_illumination(grey: np.ndarray, margin: bool = True) -> tuple[np.ndarray, bool]:
    """(ink strength in [0, 1], dark_on_light). Dark ink is measured as a fraction of the local paper
    brightness (shadows multiply light, so a ratio removes them); light ink as a difference. Without a
    `margin` of paper around the writing, the polarity and the strokes' width come from the whole picture's
    two brightness classes, and the paper's level is taken with the strokes closed over."""
    paper = paper_level(grey)
    border = border_pixels(grey)
    low, middle, high = np.percentile(border, [10, 50, 90])
    darkest, lightest = np.percentile(sample(grey), [0.5, 99.5])
    _, light = two_classes(grey)
    light_border = float(border_pixels(light).mean())
    if high - low < UNIFORM_BORDER:  # an evenly lit border is paper: the ink is the extreme farther from it
        dark_on_light = bool(middle - darkest > lightest - middle)
    elif not margin and abs(light_border - 0.5) >= BORDER_MAJORITY - 0.5:
        # of the picture's two brightness classes, the one holding most of the border is the paper (the ink
        # of a digit cropped to its ink box reaches the edge in a few places only)
        dark_on_light = light_border > 0.5
    elif not margin and (dark_pieces := pieces(~light)) != (light_pieces := pieces(light)):
        # ink on much of the border (a low-resolution scan, a 0 touching all four sides): the writing is one
        # or two strokes, while the paper it touches the frame with is cut into corners and holes
        dark_on_light = dark_pieces < light_pieces
    else:
        # uneven light: the ink is the stronger tail around the local paper level. So too when the two classes
        # are one piece each, split by a shadow or a dark corner as much as by the ink of a marker's 2 or 7
        # (there, fewer pieces of ink said light on dark: docs/benchmarks.md, issue 17's fourth session)
        residual = grey - paper
        darker, lighter = np.percentile(sample(residual), [0.5, 99.5])
        dark_on_light = bool(-darker > lighter)
    if not margin:
        paper = paper_level(grey, (dark_on_light, light), fit=True)
    # (light ink is not scaled up by the paper's darkness: over light paper that would turn noise into ink)
    ink = 1 - grey / np.maximum(paper, 0.05) if dark_on_light else grey - paper
    return np.clip(ink, 0, 1).astype(np.float32), dark_on_light


@dataclass(frozen=True)
class Thresholds:
    smooth: np.ndarray  # the ink, smoothed against noise
    faint: float  # printed lines (often lighter and thinner than the writing) are above this
    low: float  # ink connected to certain ink is above this
    high: float  # certain ink is above this


def thresholds(ink: np.ndarray, margin: bool = True) -> Thresholds | None:
    """Otsu's threshold on the smoothed ink, kept above the paper's noise, and a share of it for hysteresis
    (HYSTERESIS); None when nothing stands out of the paper. Without a `margin` of paper, ink may be most of
    the picture: the paper's level and noise come from the class below Otsu's split, not from every pixel."""
    sigma = max(0.7, min(ink.shape) / 400)
    smooth = cv2.GaussianBlur(ink, (0, 0), sigma)
    values = sample(smooth)
    split = float(threshold_otsu(values)) if np.ptp(values) > 0 else float(values.flat[0])
    below = values if margin else values[values <= split]
    paper = float(np.median(below))
    noise = 1.4826 * float(np.median(np.abs(below - paper)))
    if np.percentile(values, 99.9) - paper < MIN_CONTRAST:
        return None
    high = max(split, paper + NOISE_SIGMAS * noise, paper + MIN_CONTRAST)
    low = max(paper + HYSTERESIS[margin] * (high - paper), paper + 3 * noise)
    return Thresholds(smooth, paper + (low - paper) / 2, low, high)


def stroke_width(mask: np.ndarray) -> float:
    """Twice the area over the outline's length: exact for long strokes of constant width."""
    area = np.count_nonzero(mask)
    if not area:
        return 0.0
    outline = np.count_nonzero(mask & ~cv2.erode(mask.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
    return 2.0 * area / max(outline, 1)


def line_centres(candidates: np.ndarray, horizontal: bool, margin: bool) -> tuple[np.ndarray, float]:
    """(the middles of the straight lines of one orientation that cross the picture, drawn 3 pixels wide as
    the transform places them within a pixel or so; the lines' thickness, 0 when there are none); `margin`:
    whether the picture has a margin of paper around the writing."""
    height, width = candidates.shape
    pixels = candidates.view(np.uint8)
    # The Hough transform's cost grows with the number of pixels: look for lines on a copy at most
    # HOUGH_SIDE large (a thin line survives the shrinking as any overlap counts).
    factor = min(1.0, HOUGH_SIDE / max(height, width))
    small = (
        cv2.resize(
            pixels * 255, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
        )
        > 40
        if factor < 1
        else pixels
    )
    across = small.shape[1] if horizontal else small.shape[0]
    # Only runs of this orientation first: the other family's lines and the writing's curves otherwise take
    # the probabilistic transform's votes (the vertical lines of squared paper behind a number were found in
    # 2 of 4 held-out photos, 9 of 9 with this). Then thickened: a one-pixel line drawn in steps loses the
    # transform's votes between its steps.
    run = np.ones((1, LINE_RUN) if horizontal else (LINE_RUN, 1), np.uint8)
    small = cv2.morphologyEx(small.view(np.uint8), cv2.MORPH_OPEN, run)

    def search(image: np.ndarray) -> np.ndarray:
        segments = cv2.HoughLinesP(
            image,
            1,
            np.pi / 360,
            threshold=max(10, int(LINE_SPAN * across / 2)),
            minLineLength=LINE_SPAN * across,
            maxLineGap=max(3, int(0.04 * across)),
        )
        centres = np.zeros(candidates.shape, np.uint8)
        for x0, y0, x1, y1 in segments.reshape(-1, 4) / factor if segments is not None else ():
            angle = np.degrees(np.arctan2(abs(y1 - y0), abs(x1 - x0)))
            if angle <= LINE_ANGLE if horizontal else angle >= 90 - LINE_ANGLE:
                cv2.line(centres, (int(x0), int(y0)), (int(x1), int(y1)), 1, 3)
        return centres

    centres = search(cv2.dilate(small, np.ones((3, 3), np.uint8)))
    # On a thick line the walk from a voted point strays off the thickened line and wipes the pixels it
    # crossed, losing the line: with a margin, a ruling's pattern (more lines than a digit's straight strokes)
    # is also searched as it is (held-out numbers 4 apart on any paper, 400 at seeds 0-2: 81.25 / 83.25 /
    # 81.00 -> 82.00 / 84.00 / 82.75%; single digits unchanged). Not one or two lines: a tight crop's 7 bar or
    # 4 cross, found so, went as a line and the broken rest seemed to have a margin (searching every picture
    # with a margin so: held-out tight crops 97.00 -> 96.50%).
    if margin:
        both = centres | search(small)
        if cv2.connectedComponents(both)[0] - 1 > MAX_STRAIGHT_STROKES:
            centres = both
    on_line = centres.astype(bool) & candidates
    if not on_line.any():
        return np.zeros(candidates.shape, bool), 0.0
    return centres.astype(bool), 2 * float(np.percentile(cv2.distanceTransform(pixels, cv2.DIST_L2, 3)[on_line], 75))


def printed_lines(
    mask: np.ndarray,
    candidates: np.ndarray,
    strength: np.ndarray,
    margin: bool = True,
    colour: np.ndarray | None = None,
) -> np.ndarray:
    """Pixels of `mask` on straight near-horizontal or near-vertical lines that cross the picture (found
    among `candidates`, the faint ink too, as printed lines are often lighter than the writing). Across a
    line, a run of ink no thicker than the line that covers the line's middle is the line; a thicker run is
    a stroke crossing or running along it, ink beside the line (not touching its middle) is writing, and so
    is ink on the line as strong as the writing and `WRITING_OVER_LINE` times the line's own strength that
    joins the rest of the writing.
    Without a `margin` of paper (a digit cropped to its ink), a straight stroke crosses the picture too (a
    1's stem, a 7's bar): a line whose ink `strength` is near the writing's is a stroke (printed lines are
    lighter than the ink); with a margin too when it runs along the picture's edge (`at_edge`).
    With the picture's `colour` (dark on light), a line away from the edge in another colour than the
    writing (`hue`) is printed whatever its strength, and ink on it in the writing's colour is writing."""
    height, width = mask.shape
    rows, columns = np.flatnonzero(candidates.any(1)), np.flatnonzero(candidates.any(0))
    if columns[-1] - columns[0] < LINE_SPAN * width * 0.95 and rows[-1] - rows[0] < LINE_SPAN * height * 0.95:
        return np.zeros_like(mask)  # nothing crosses the picture (a drawing on a canvas): spare the Hough transform
    found = {horizontal: line_centres(candidates, horizontal, margin) for horizontal in (True, False)}
    on_any = found[True][0] | found[False][0]
    beside = mask & ~cv2.dilate(on_any.view(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    dark = LINE_AS_STROKE * float(np.median(strength[beside])) if beside.any() else np.inf
    paper = ~cv2.dilate(mask.view(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    writing_hue = hue(colour, beside, paper)
    reach = np.ones((odd(max(thickness for _, thickness in found.values()) + LINE_TOLERANCE),) * 2, np.uint8)
    writing_on_line = np.full(mask.shape, np.inf, np.float32)  # the strength from which ink on a line is writing
    for horizontal, (centres, thickness) in list(found.items()):
        count, labels = cv2.connectedComponents(centres.view(np.uint8))
        medians = np.array([np.inf] + [np.median(strength[(labels == n) & candidates]) for n in range(1, count)])
        strong = [n for n in range(1, count) if medians[n] >= dark]
        # A line as strong as the writing is a stroke of it (printed lines are lighter than ink): without a
        # margin, unless its family is a ruling's pattern (a digit has at most two straight strokes of one
        # orientation); with a margin, when it runs along the picture's edge (a 7's bar cropped to its ink, not
        # a printed line that the crop happens to follow). Its thickness tells nothing: a margin line is as thick
        # as a fine-liner's strokes (cropped photos of digits beside a margin line kept it as a stroke; held-out
        # tight crops 93.0 -> 94.0%). Its colour does: one away from the edge in another colour than the writing
        # is printed (a red margin line or a blue grid line beside pencil), whatever its strength.
        edge = {n: at_edge(labels == n, horizontal, thickness + LINE_TOLERANCE) for n in strong}
        if margin:
            strokes = [n for n in strong if edge[n]]
        elif count - 1 <= MAX_STRAIGHT_STROKES:
            strokes = strong
        else:
            strokes = []
        hues = {n: hue(colour, (labels == n) & mask, paper, 2 * int(thickness)) for n in range(1, count)}
        coloured = [n for n in range(1, count) if differs(hues[n], writing_hue)]
        strokes = [n for n in strokes if edge[n] or n not in coloured]
        for n in coloured:
            # ink on a line in another colour that has the writing's colour is a stroke running along it
            on_line = cv2.dilate((labels == n).view(np.uint8), reach).astype(bool) & mask & (strength >= dark)
            absorbed = light_absorbed(colour, on_line, paper, 2 * int(thickness))
            if absorbed is not None:
                shares = absorbed / np.maximum(absorbed.sum(1, keepdims=True), 1e-6)
                writing_colour = (np.abs(shares - writing_hue).max(1) < HUE_APART / 2) & (
                    np.abs(shares - hues[n]).max(1) > HUE_APART
                )
                writing_on_line[tuple(np.argwhere(on_line)[writing_colour].T)] = 0
        if strokes:
            found[horizontal] = (centres & ~np.isin(labels, strokes), thickness)
        # each line's level, spread over its thickness (a minimum filter: the lower level where lines cross)
        levels = np.maximum(dark, WRITING_OVER_LINE * medians).astype(np.float32)[labels]
        writing_on_line = np.minimum(writing_on_line, cv2.erode(levels, reach))

    def on_lines(horizontal: bool, ink: np.ndarray) -> np.ndarray:
        centres, thickness = found[horizontal]
        if not thickness:
            return np.zeros_like(mask)
        reach = odd(thickness + LINE_TOLERANCE)
        across = np.ones((reach, 1) if horizontal else (1, reach), np.uint8)
        thin = ink & ~cv2.morphologyEx(ink.view(np.uint8), cv2.MORPH_OPEN, across).astype(bool)
        # the thin runs that cover a line's middle, grown across the line only
        step = np.ones((3, 1) if horizontal else (1, 3), np.uint8)
        line = thin & centres
        for _ in range(reach // 2 + 1):
            line = cv2.dilate(line.view(np.uint8), step).astype(bool) & thin
        return line

    # A grid's crossings look like strokes across each family: judge each family without the other's lines.
    horizontal_lines, vertical_lines = on_lines(True, mask), on_lines(False, mask)
    lines = on_lines(True, mask & ~vertical_lines) | on_lines(False, mask & ~horizontal_lines)
    # Ink on a line as strong as the writing and far stronger than the line is a stroke running along it (a
    # condensed digit's stem on a grid line), not the line, when it joins the rest of the writing (a stretch
    # of line that the uneven light left darker does not).
    along = lines & (strength >= writing_on_line)
    _, joined = cv2.connectedComponents((mask & ~lines | along).view(np.uint8))
    along &= np.isin(joined, np.unique(joined[mask & ~lines]))
    return lines & ~along


def colour_of(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """(H, W, 3) float32 RGB of a colour picture at the working `shape`; None for a grey one."""
    values = np.asarray(array)
    if values.ndim != 3 or values.shape[2] not in (3, 4):
        return None
    if values.shape[2] == 4 and to_unit_float(values[..., 3]).min() < 0.99:
        return None  # a drawing with transparency: a canvas, no printed lines
    rgb = to_unit_float(values[..., :3])
    if np.ptp(sample(rgb), axis=2).max() < GREY_SPREAD:
        return None
    if rgb.shape[:2] != shape:
        rgb = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb, np.float32)


def light_absorbed(colour: np.ndarray, region: np.ndarray, paper: np.ndarray, reach: int = 0) -> np.ndarray | None:
    """(N, 3): the share of each channel's light that each pixel of `region` (in `np.argwhere` order) absorbs,
    against the `paper` pixels within `reach` + HUE_RING pixels of it, so lighting and the paper's tint cancel;
    None when too little paper is near."""
    side = odd(reach + HUE_RING)
    rows, columns = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    if not len(rows):
        return None
    # within the region's box grown by the kernel (a line is a strip): the same pixels as over the whole picture,
    # in a fraction of the time (indexing a whole colour picture costs a millisecond per line)
    box = np.s_[max(0, rows[0] - side) : rows[-1] + side + 1, max(0, columns[0] - side) : columns[-1] + side + 1]
    region, colour = region[box], colour[box]
    around = cv2.dilate(region.view(np.uint8), np.ones((side, side), np.uint8)).astype(bool) & paper[box]
    if np.count_nonzero(around) < 10:
        return None
    return np.clip(1 - colour[region] / np.maximum(np.median(colour[around], axis=0), 0.05), 0, 1)


def hue(colour: np.ndarray | None, region: np.ndarray, paper: np.ndarray, reach: int = 0) -> np.ndarray | None:
    """The colour of the ink (dark on light) over `region`: each channel's share of the light it absorbs
    (`light_absorbed`): black and grey absorb all alike, blue ink red the most, a red margin line green and
    blue. None where too little paper or absorption is there to tell, or no `colour` (a grey picture)."""
    absorbed = light_absorbed(colour, region, paper, reach) if colour is not None else None
    if absorbed is None or len(absorbed) < 10:
        return None
    typical = np.median(absorbed, axis=0)
    return typical / typical.sum() if typical.sum() >= HUE_MIN_ABSORPTION else None


def differs(hue: np.ndarray | None, other: np.ndarray | None) -> bool:
    """Whether two inks' colours (`hue`) are told apart; not when either is unknown."""
    return hue is not None and other is not None and float(np.abs(hue - other).max()) > HUE_APART


def at_edge(line: np.ndarray, horizontal: bool, band: float) -> bool:
    """Whether a line's middle lies within `band` pixels of the picture's top or bottom (left or right)."""
    position = float(np.median(np.nonzero(line)[0 if horizontal else 1]))
    return min(position, line.shape[0 if horizontal else 1] - 1 - position) <= band


def despeckle(mask: np.ndarray, width: float) -> np.ndarray:
    """Drop specks (far smaller than a stroke's width squared) and the leftovers of printed lines that the
    line removal missed: long thin components that run into the picture's edge, unless nothing else is left
    (then the largest is the writing)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    left, top, across, down, area = stats.T
    rows, columns = mask.shape
    at_edge = (left == 0) | (top == 0) | (left + across == columns) | (top + down == rows)
    sliver = at_edge & (np.maximum(across, down) > SLIVER * np.maximum(np.minimum(across, down), width))
    sizeable = area >= max(3.0, SPECK_AREA * width * width)
    sizeable[0] = False
    keep = sizeable & ~sliver
    if not keep.any() and sizeable.any():
        # Slivers alone: no printed line's leftover beside writing but the writing itself, a 1 cropped to its ink.
        keep[np.argmax(np.where(sizeable, area, 0))] = True
    return keep[labels]


def shrink_to(grey: np.ndarray, side: int) -> np.ndarray:
    """A copy at most `side` pixels large."""
    height, width = grey.shape
    factor = min(1.0, side / max(height, width))
    if factor == 1:
        return grey
    return cv2.resize(
        grey, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
    )


def lacks_paper_margin(result: CleanUp) -> bool:
    """Whether the clean-up's assumptions failed: a margin of paper around the writing (no ink found, or
    a substantial stroke reaching the picture's edge) or ink a minority of every window of the paper's
    median (where strokes are the majority, a marker's or a cropped digit's, the median takes the ink for
    paper and hollows the strokes out: there, the paper's level with the strokes closed over is brighter
    than the median by the least contrast of ink, on more than INK_FILLS_WINDOWS of the picture)."""
    mask, grey = result.mask, result.grey
    if result.empty:
        return True

    def pieces(of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return cv2.connectedComponentsWithStats(of.view(np.uint8), connectivity=8)[1:3]

    labels, stats = pieces(mask)
    writing = stats[1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])]
    span = max(writing[cv2.CC_STAT_HEIGHT] / mask.shape[0], writing[cv2.CC_STAT_WIDTH] / mask.shape[1])
    if result.lines.any() and span >= WRITING_SPAN:
        # A removed line as dark as the writing is writing for this test (a 7's bar cropped to the ink crossed
        # the picture and went as ruling, so the rest of the 7 seemed to have a margin of paper).
        _, pieces_of_lines = cv2.connectedComponents(result.lines.view(np.uint8), connectivity=8)
        ink_per_piece = np.bincount(pieces_of_lines.ravel(), result.ink.ravel()) / np.bincount(pieces_of_lines.ravel())
        strong = ink_per_piece >= LINE_AS_STROKE * float(np.median(result.ink[mask]))  # one pass, for any grid
        strong[0] = False
        labels, stats = pieces(mask | strong[pieces_of_lines])
    at_edge = np.unique(border_pixels(labels))
    areas = stats[1:, cv2.CC_STAT_AREA]
    if (stats[at_edge[at_edge > 0], cv2.CC_STAT_AREA] >= WRITING_AT_EDGE * areas.max()).any():
        return True  # the writing, not a crumb of a shadow's edge, reaches the picture's edge
    _, light = two_classes(grey)
    ink_class = ~light if result.dark_on_light else light
    # A shadow is cast from outside the picture; ink with paper all around it is writing however wide (a
    # marker's 1 wider than the median's window, whose strokes the capped closing keeps): there, the paper is
    # the fitted surface.
    ink_on_border = float(border_pixels(ink_class).mean())
    closed = paper_level(grey, (result.dark_on_light, light), fit=ink_on_border <= INK_CLEAR_OF_BORDER)
    hollowed = (closed - paper_level(grey)) * (1 if result.dark_on_light else -1) > MIN_CONTRAST
    return float(np.mean(hollowed)) > INK_FILLS_WINDOWS


def clean_up(array: np.ndarray) -> CleanUp:
    """Every step from an input image (any polarity, colour, alpha, size) to a mask of its strokes. A
    picture without a margin of paper (a digit cropped to its ink, a low-resolution scan whose ink touches
    the frame, a marker digit that is half the picture) is cleaned up again without assuming one."""
    grey = greyscale(array)
    scale = max(1.0, min(MIN_WORKING_SIDE / min(grey.shape), MAX_ENLARGEMENT, np.sqrt(MAX_WORKING_PIXELS / grey.size)))
    if scale > 1:
        grey = cv2.resize(
            grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)), interpolation=cv2.INTER_LINEAR
        )
    colour = colour_of(array, grey.shape)
    result = clean_up_at_working_size(grey, scale, colour=colour)
    if result.flat_paper or not lacks_paper_margin(result):
        return result
    again = clean_up_at_working_size(grey, scale, margin=False, colour=colour)
    # A second look that finds no ink at all is no better than the first (an edge line on a canvas is ink to
    # report as an edge line, not a blank picture).
    return result if again.empty and not result.empty else again


def clean_up_at_working_size(
    grey: np.ndarray, scale: float, margin: bool = True, colour: np.ndarray | None = None
) -> CleanUp:
    """The clean-up's steps on a greyscale picture already at its working size; `margin`: whether the
    picture's border is paper and ink a minority of it."""
    border = border_pixels(grey)
    paper = float(np.median(border))
    flat = bool(np.ptp(border) < FLAT and np.mean(np.abs(sample(grey) - paper) < FLAT) > 0.5)
    if flat:
        # A drawing on flat paper (the canvas): no lighting to undo, no noise to smooth; ink is what differs
        # from the paper by half the contrast. Saves most of the clean-up's time on every canvas stroke.
        dark_on_light = paper > 0.5
        ink = np.abs(grey - paper) / max(paper if dark_on_light else 1 - paper, FLAT)
        levels = Thresholds(ink, 0.5, 0.5, 0.5) if ink.max() >= MIN_CONTRAST else None
    else:
        ink, dark_on_light = normalise_illumination(grey, margin)
        levels = thresholds(ink, margin)
    if levels is None:
        binary = lines = np.zeros(ink.shape, bool)
    else:
        binary = apply_hysteresis_threshold(levels.smooth, levels.low, levels.high)
        lines = (
            printed_lines(
                binary,
                levels.smooth > levels.faint,
                levels.smooth,
                margin,
                colour if dark_on_light else None,
            )
            if binary.any()
            else np.zeros_like(binary)
        )
    strokes = binary & ~lines
    width = stroke_width(strokes)
    mask = despeckle(strokes, width) if strokes.any() else strokes
    return CleanUp(grey, dark_on_light, ink, binary, lines, mask, stroke_width(mask), scale, flat)
