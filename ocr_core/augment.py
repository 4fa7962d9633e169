"""Per-sample random transforms applied to whole batches of tensors, reproducible from a generator.

Every geometric op folds into one affine matrix per sample, so rotation, shift, zoom, shear and flip
cost a single `grid_sample`; elastic distortion adds a smooth random field to the same grid. The other
ops model what pens, paper, lighting and scanners do to a digit: stroke width, clutter lines, blur,
paper brightness, faint ink, gamma, sensor noise, dust (salt and pepper) and occlusion.

`AUGMENT_OPS` is the one table of the ops: validation, error messages, the CLI help, the README table and
the Train page's sliders all read it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F

from .errors import ConfigError

IMAGE_SIZE = 28
LOW_RESOLUTION_SIDES = (6, 16)  # pixels across the 20-pixel digit box of a coarse scan, lowest and highest
AUGMENT_CHUNK = 1000  # fixed chunking keeps a seeded augmented set identical whatever batch size reads it


@dataclass(frozen=True)
class AugmentOp:
    """One op's facts. `typical` is the strength a switched-on op starts from; a range op's strength is a
    `(low, high)` pair written `low-high`, any other op's a single number (0 turns it off)."""

    name: str
    label: str
    lowest: float
    highest: float
    step: float
    typical: float | tuple[float, float]
    meaning: str

    @property
    def is_range(self) -> bool:
        return isinstance(self.typical, tuple)

    @property
    def off(self) -> float | tuple[float, float]:
        return (1.0, 1.0) if self.is_range else 0.0

    def accepts(self, value: float | tuple[float, float]) -> bool:
        if self.is_range:
            return self.lowest <= value[0] <= value[1] <= self.highest
        return self.lowest <= value <= self.highest

    @property
    def range_text(self) -> str:
        return f"{self.lowest:g}-{self.highest:g}" + (" (low-high)" if self.is_range else "")


AUGMENT_OPS: dict[str, AugmentOp] = {
    op.name: op
    for op in (
        AugmentOp("rotate", "Rotate", 0, 180, 1, 15.0, "max degrees either way"),
        AugmentOp("translate", "Shift", 0, 0.5, 0.01, 0.1, "max shift per axis, as a fraction of the side"),
        AugmentOp("scale", "Zoom", 0.2, 3, 0.05, (0.9, 1.1), "zoom range `low-high` (one number: fixed zoom)"),
        AugmentOp(
            "crop",
            "Crop",
            0.05,
            2,
            0.05,
            (0.8, 1.0),
            "area range `low-high` of a random crop (aspect 3/4-4/3) resized back to 28x28, as torchvision's "
            "`RandomResizedCrop`; a crop that cannot fit in 10 tries leaves the image whole, as there",
        ),
        AugmentOp("shear", "Shear", 0, 60, 1, 10.0, "max degrees either way"),
        AugmentOp(
            "hflip", "Mirror", 0, 1, 0.05, 0.5, "probability of a mirror image (a mirrored digit is rarely a digit)"
        ),
        AugmentOp("elastic", "Elastic", 0, 10, 0.25, 1.0, "typical displacement of a smooth random field, pixels"),
        AugmentOp(
            "narrow",
            "Narrow",
            0,
            0.6,
            0.05,
            0.3,
            "max share by which a digit's width shrinks (condensed, tall writing; the height stays); labelled 7s "
            "keep their width: a narrowed 7's short bar over a long stem is a flagged 1's shape",
        ),
        AugmentOp(
            "square",
            "Size-normalised",
            0,
            1,
            0.05,
            0.2,
            "probability that a digit's ink box is stretched towards a square, half to all of the way (scanned "
            "digit sets that normalise both sides: a 1 fills its frame as a broad bar)",
        ),
        AugmentOp(
            "flag1",
            "Flagged 1s",
            0,
            1,
            0.05,
            0.5,
            "probability that a 1 gets a flag (a stroke down-left from its top) and, half of those, a foot (a bar "
            "under it), as 1s are written in much of the world",
        ),
        AugmentOp(
            "cross7",
            "Crossed 7s",
            0,
            1,
            0.05,
            0.5,
            "probability that a 7 gets a bar across the middle of its stem",
        ),
        AugmentOp(
            "plain",
            "Plain share",
            0,
            1,
            0.05,
            0.3,
            "probability that a digit gets only the shape ops above it (rotate to cross7): its clean pen, paper "
            "and sensor stay in view, which keeps clean accuracy while the other ops add robustness",
        ),
        AugmentOp(
            "thickness",
            "Pen width",
            0,
            2,
            0.1,
            1.0,
            "max change of stroke width either way, in pixels per side: thinner (erosion) or thicker "
            "(dilation) ink, fractions blend",
        ),
        AugmentOp(
            "outline",
            "Hollow ink",
            0,
            1,
            0.05,
            0.2,
            "probability of drawing the strokes hollow, as their outer contour (bubble lettering, traced or "
            "edge-enhanced scans)",
        ),
        AugmentOp(
            "lines",
            "Clutter lines",
            0,
            4,
            0.25,
            1.0,
            "mean number of random straight lines (ruled paper, stray strokes) drawn across the image",
        ),
        AugmentOp(
            "strokes",
            "Scribbles",
            0,
            4,
            0.25,
            1.0,
            "mean number of random pen strokes drawn over the digit: polylines of 2-5 segments turning by up to "
            "150 degrees at each corner (zigzags, crossings-out, a pen slipping), not only straight lines",
        ),
        AugmentOp("blur", "Blur", 0, 3, 0.1, 1.0, "max gaussian sigma, pixels"),
        AugmentOp(
            "lowres",
            "Low resolution",
            0,
            1,
            0.05,
            0.2,
            f"probability of a coarse scan: the image sampled at {LOW_RESOLUTION_SIDES[0]}-{LOW_RESOLUTION_SIDES[1]} "
            "pixels across the digit's 20-pixel box and enlarged back smoothly (bicubic)",
        ),
        AugmentOp("brightness", "Grey paper", 0, 0.9, 0.05, 0.4, "max grey level of the background (paper)"),
        AugmentOp("contrast", "Faint ink", 0, 0.9, 0.05, 0.4, "max share by which the ink's darkness fades"),
        AugmentOp(
            "gamma", "Gamma", 0, 2, 0.1, 0.5, "max log of a gamma curve either way (lighter or darker mid-tones)"
        ),
        AugmentOp("noise", "Noise", 0, 1, 0.01, 0.1, "std of gaussian noise on pixels in [0, 1]"),
        AugmentOp(
            "saltpepper",
            "Specks",
            0,
            0.5,
            0.01,
            0.1,
            "max share of pixels set to black or white (dust, sensor defects)",
        ),
        AugmentOp(
            "erase",
            "Erase",
            0,
            1,
            0.05,
            0.25,
            "probability of covering a random rectangle with a random grey (an occluder, a shadow, a glare), "
            "as Random Erasing (Zhong et al. 2017) does",
        ),
    )
}
# The ops that vary the writing itself rather than what lies over it; the digit detector learns these as digits
# (`runs.calibration_sets`).
WRITING_OPS = (
    "rotate",
    "translate",
    "scale",
    "crop",
    "shear",
    "elastic",
    "narrow",
    "square",
    "flag1",
    "cross7",
    "thickness",
)
RANGE_OPS = tuple(name for name, op in AUGMENT_OPS.items() if op.is_range)  # written low-high


def ranges_text() -> str:
    """The ops and their ranges in one line, for messages and help texts."""
    return ", ".join(f"{op.name} {op.range_text}" for op in AUGMENT_OPS.values())


def op_table_markdown() -> str:
    """The README's op table, generated from `AUGMENT_OPS` (a test keeps the README in step)."""
    rows = [f"| `{op.name}` | {op.meaning} | {op.range_text} |" for op in AUGMENT_OPS.values()]
    return "\n".join(["| op | strength | range |", "|---|---|---|", *rows])


@dataclass(frozen=True)
class AugmentSpec:
    """Strengths of each op (see `AUGMENT_OPS`); zero (or a 1-1 range) turns an op off. The order of the
    fields is the order of the table."""

    rotate: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    crop: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    hflip: float = 0.0
    elastic: float = 0.0
    narrow: float = 0.0
    square: float = 0.0
    flag1: float = 0.0
    cross7: float = 0.0
    plain: float = 0.0
    thickness: float = 0.0
    outline: float = 0.0
    lines: float = 0.0
    strokes: float = 0.0
    blur: float = 0.0
    lowres: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    noise: float = 0.0
    saltpepper: float = 0.0
    erase: float = 0.0

    def __post_init__(self) -> None:
        bad = [name for name, op in AUGMENT_OPS.items() if not op.accepts(getattr(self, name))]
        if bad:
            raise ConfigError(
                f"augmentation strength out of range: "
                f"{', '.join(f'{n}={getattr(self, n)}' for n in bad)} (ranges: {ranges_text()})"
            )

    @property
    def is_identity(self) -> bool:
        return self == AugmentSpec()

    @property
    def is_geometric(self) -> bool:
        return bool(
            self.rotate
            or self.translate
            or self.scale != (1.0, 1.0)
            or self.crop != (1.0, 1.0)
            or self.shear
            or self.hflip
            or self.elastic
            or self.narrow
            or self.square
        )

    def unmirrored(self) -> AugmentSpec:
        """Every op but mirroring: all the ways the run learned to read a digit (a mirrored one is not)."""
        return replace(self, hflip=0.0)

    def writing(self) -> AugmentSpec:
        """Only the ops that change how a digit is written (`WRITING_OPS`: the hand's slant, size, position and
        wobble, condensed or size-normalised digits, a 1's flag, a 7's bar, the pen's width), none of the clutter,
        optics, lighting, sensor or occlusion ops, and no mirroring (a mirrored digit is not a digit)."""
        return AugmentSpec(**{name: getattr(self, name) for name in WRITING_OPS})

    @property
    def needs_labels(self) -> bool:
        """Whether an op adds strokes that only some digits are written with (a 1's flag, a 7's bar)."""
        return bool(self.flag1 or self.cross7)

    def to_string(self) -> str:
        """Canonical spec string; `parse_augment(spec.to_string()) == spec`."""
        parts = []
        for field in fields(self):
            value = getattr(self, field.name)
            if value == field.default:
                continue
            text = f"{value[0]:g}-{value[1]:g}" if field.name in RANGE_OPS else f"{value:g}"
            parts.append(f"{field.name}={text}")
        return ",".join(parts) or "none"

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "none": AugmentSpec(),
    # The tutorial's four: RandomRotation(20), RandomAffine(translate 0.2), RandomResizedCrop(28, scale
    # 0.8-1.2), RandomHorizontalFlip.
    "seed": AugmentSpec(rotate=20, translate=0.2, crop=(0.8, 1.2), hflip=0.5),
    # The variation real digits have: slant, size, position and wobble of the hand; pen width, hollow
    # strokes and stray lines; blur; grey paper, faint ink and gamma; sensor noise, dust and occluders. No
    # mirroring (mirrored digits are not digits), and nothing from the corruption suite used for testing. Half
    # the digits keep their clean pen and paper.
    "recommended": AugmentSpec(
        rotate=10,
        translate=0.1,
        scale=(0.8, 1.1),
        shear=10,
        elastic=1.0,
        plain=0.5,  # measured on held-out digits: 99.28% -> 99.54% clean, with the suite's mean still ~97%
        thickness=0.5,
        outline=0.1,
        lines=0.5,
        blur=0.8,
        brightness=0.5,
        contrast=0.4,
        gamma=0.4,
        noise=0.05,
        saltpepper=0.08,
        erase=0.2,
    ),
}


def parse_augment(text: str) -> AugmentSpec:
    """`recommended`, `rotate=15,translate=0.1,scale=0.9-1.1` or a preset with overrides: `seed,hflip=0`."""
    spec = AugmentSpec()
    for token in filter(None, (part.strip() for part in text.strip().split(","))):
        if "=" not in token:
            if token not in PRESETS:
                raise ConfigError(f"unknown augmentation preset {token!r}; presets: {', '.join(PRESETS)}")
            spec = PRESETS[token]
            continue
        key, _, value = (piece.strip() for piece in token.partition("="))
        if key not in AUGMENT_OPS:
            raise ConfigError(f"unknown augmentation {key!r}; known: {', '.join(AUGMENT_OPS)}")
        try:
            if key in RANGE_OPS:
                low, _, high = value.partition("-")
                parsed = (float(low), float(high or low))
            else:
                parsed = float(value)
        except ValueError:
            raise ConfigError(f"augmentation {key!r} needs a number, got {value!r}") from None
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise ConfigError(f"augmentation {key!r} needs a finite number, got {value!r}")
        spec = replace(spec, **{key: parsed})
    return spec


def as_spec(augment: AugmentSpec | str | None) -> AugmentSpec:
    if augment is None:
        return AugmentSpec()
    return augment if isinstance(augment, AugmentSpec) else parse_augment(augment)


def uniform(generator: torch.Generator, count: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(count, generator=generator) * (high - low) + low


def resized_crop(
    crop: tuple[float, float], count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's RandomResizedCrop(28, scale=crop) per sample, as the centre (N, 2) and half-size (N, 2)
    of the crop window in [-1, 1] units: up to ten tries of an area share in `crop` and an aspect ratio in
    3/4-4/3 (log-uniform) that fits the image, else the whole image, as torchvision falls back."""
    tries = 10
    area = uniform(generator, count * tries, *crop).view(count, tries) * IMAGE_SIZE**2
    aspect = torch.exp(uniform(generator, count * tries, math.log(3 / 4), math.log(4 / 3))).view(count, tries)
    width, height = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (width >= 1) & (width <= IMAGE_SIZE) & (height >= 1) & (height <= IMAGE_SIZE)
    first = fits.int().argmax(1, keepdim=True)  # the first try that fits
    found = fits.any(1)
    width = torch.where(found, width.gather(1, first)[:, 0], float(IMAGE_SIZE))
    height = torch.where(found, height.gather(1, first)[:, 0], float(IMAGE_SIZE))
    # Integer top-left corners, uniform over the positions where the window fits, as torch.randint draws them.
    left = (torch.rand(count, generator=generator) * (IMAGE_SIZE - width + 1)).floor()
    top = (torch.rand(count, generator=generator) * (IMAGE_SIZE - height + 1)).floor()
    size = torch.stack([width, height], -1)
    centre = (torch.stack([left, top], -1) + size / 2) / IMAGE_SIZE * 2 - 1
    return centre, size / IMAGE_SIZE


def affine_grid(
    spec: AugmentSpec, count: int, generator: torch.Generator, full_width: torch.Tensor | None = None
) -> torch.Tensor:
    """Sampling grid (N, 28, 28, 2) mapping each output pixel to where it reads the input; `full_width` marks
    the samples `narrow` leaves their width."""
    angle = torch.deg2rad(uniform(generator, count, -spec.rotate, spec.rotate))
    shear = torch.tan(torch.deg2rad(uniform(generator, count, -spec.shear, spec.shear)))
    zoom = uniform(generator, count, *spec.scale)
    mirror = torch.where(torch.rand(count, generator=generator) < spec.hflip, -1.0, 1.0)
    shift = uniform(generator, 2 * count, -spec.translate, spec.translate).view(count, 2) * 2  # [-1, 1] units
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shearing = torch.zeros(count, 2, 2)
    shearing[:, 0, 0] = shearing[:, 1, 1] = 1
    shearing[:, 0, 1] = shear
    forward = rotation @ shearing @ torch.diag_embed(torch.stack([zoom * mirror, zoom], -1))
    inverse = torch.linalg.inv(forward)
    # Output coordinates u read the transformed image at c + s*u when a crop window (centre c, half-size s)
    # was cut from it last, as the tutorial crops after rotating and shifting.
    centre, half_size = (
        resized_crop(spec.crop, count, generator)
        if spec.crop != (1.0, 1.0)
        else (torch.zeros(count, 2), torch.ones(count, 2))
    )
    linear = inverse @ torch.diag_embed(half_size)
    theta = torch.cat([linear, inverse @ (centre - shift).unsqueeze(-1)], dim=2)
    grid = F.affine_grid(theta, [count, 1, IMAGE_SIZE, IMAGE_SIZE], align_corners=False)
    if spec.elastic:
        # A coarse random field upsampled smoothly: a Simard-style elastic distortion without a big blur.
        coarse = torch.randn(count, 2, 4, 4, generator=generator) * (spec.elastic * 2 / IMAGE_SIZE)
        field = F.interpolate(coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    if spec.narrow:  # drawn last, so specs without it keep their samples
        width = uniform(generator, count, 1 - spec.narrow, 1)
        if full_width is not None:
            width = torch.where(full_width.cpu(), 1.0, width)
        width = width.view(count, 1, 1)
        grid = torch.stack([grid[..., 0] / width, grid[..., 1]], -1)
    return grid


def squared_grid(grid: torch.Tensor, images: torch.Tensor, probability: float, generator: torch.Generator):
    """`grid` reading, in a `probability` share of samples, an image whose ink box was first stretched about its
    centre towards a square: the short side grows by (long / short) ** t, t ~ U(1/2, 1) (t = 1: a square)."""
    count = images.shape[0]
    chosen = torch.rand(count, generator=generator) < probability
    reach = uniform(generator, count, 0.5, 1)
    top, bottom, left, right, _ = (edge.cpu() for edge in ink_box(images))
    inked = chosen & (bottom >= top)
    # The box's centre in grid units ([-1, 1] across the image, pixel edges included), and its sides (their ratio).
    size = torch.stack([right - left + 1, bottom - top + 1], -1).clamp_min(1) / IMAGE_SIZE
    centre = torch.stack([left + right + 1, top + bottom + 1], -1) / IMAGE_SIZE - 1
    shrink = (size / size.amax(-1, keepdim=True)) ** reach[:, None]  # 1 on the long side
    shrink = torch.where(inked[:, None], shrink, 1.0).to(grid.device)[:, None, None, :]
    centre = centre.to(grid.device)[:, None, None, :]
    return centre + (grid - centre) * shrink


def coarse_scans(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """In a `probability` share of samples, the image area-sampled down to `LOW_RESOLUTION_SIDES` pixels across
    the 20-pixel digit box (uniform whole numbers) and enlarged back bicubically."""
    count = images.shape[0]
    chosen = torch.rand(count, generator=generator) < probability
    low, high = LOW_RESOLUTION_SIDES
    sides = torch.randint(low, high + 1, (count,), generator=generator)
    images = images.clone()
    for side in sides[chosen].unique().tolist():
        which = (chosen & (sides == side)).nonzero()[:, 0].to(images.device)
        small = F.interpolate(images[which], size=round(IMAGE_SIZE * side / 20), mode="area")
        images[which] = F.interpolate(small, size=IMAGE_SIZE, mode="bicubic", align_corners=False).clamp(0, 1)
    return images


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable blur with a different sigma per sample, as one grouped convolution per axis."""
    count = images.shape[0]
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    sigma = sigma.to(images.device).clamp_min(1e-3).unsqueeze(1)
    kernels = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernels = kernels / kernels.sum(1, keepdim=True)
    stacked = images.reshape(1, count, IMAGE_SIZE, IMAGE_SIZE)
    stacked = F.conv2d(stacked, kernels.view(count, 1, -1, 1), padding=(radius, 0), groups=count)
    stacked = F.conv2d(stacked, kernels.view(count, 1, 1, -1), padding=(0, radius), groups=count)
    return stacked.view_as(images)


def erase_mask(count: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Keep-mask (N, 1, 28, 28) with one random rectangle zeroed in a `probability` share of samples."""
    area = uniform(generator, count, 0.02, 0.2) * IMAGE_SIZE**2
    aspect = torch.exp(uniform(generator, count, math.log(0.3), math.log(3.3)))
    height = (area * aspect).sqrt().clamp(1, IMAGE_SIZE)
    width = (area / aspect).sqrt().clamp(1, IMAGE_SIZE)
    top = torch.rand(count, generator=generator) * (IMAGE_SIZE - height)
    left = torch.rand(count, generator=generator) * (IMAGE_SIZE - width)
    chosen = torch.rand(count, generator=generator) < probability
    positions = torch.arange(IMAGE_SIZE, dtype=torch.float32)
    rows = (positions >= top[:, None]) & (positions < (top + height)[:, None])
    columns = (positions >= left[:, None]) & (positions < (left + width)[:, None])
    erased = rows[:, :, None] & columns[:, None, :] & chosen[:, None, None]
    return (~erased).float().unsqueeze(1)


def stroke_width(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Thinner or thicker ink: a change t ~ U(-strength, strength) pixels per side for each sample."""
    return changed_stroke_width(images, uniform(generator, images.shape[0], -strength, strength))


def dilated(images: torch.Tensor) -> torch.Tensor:
    """3x3 max filter of (N, 1, H, W) images, as `F.max_pool2d(images, 3, stride=1, padding=1)` computes it but
    as two passes of shifted maxima: CPU max pooling of one channel is ~20x slower (3.0 vs 0.14 ms per batch
    of 128, measured), and three of them were a third of the `recommended` augmentation's time."""
    padded = F.pad(images, (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def changed_stroke_width(images: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """Each sample's ink thinned (change < 0) or thickened (> 0) by `change` pixels per side: whole pixels by
    repeated 3x3 erosion (min filter) or dilation (max filter), the fraction blended with one step more."""
    count = images.shape[0]
    change = change.to(images.device)
    steps = max(1, math.ceil(float(change.abs().max())))
    thinner, thicker = [images], [images]
    for _ in range(steps):
        thinner.append(-dilated(-thinner[-1]))
        thicker.append(dilated(thicker[-1]))
    levels = torch.stack(thinner[::-1] + thicker[1:])  # (2 steps + 1, N, 1, 28, 28); index `steps` = unchanged
    position = change + steps
    lower = position.floor().long().clamp(0, 2 * steps - 1)
    blend = (position - lower).view(count, 1, 1, 1)
    samples = torch.arange(count, device=images.device)
    return torch.lerp(levels[lower, samples], levels[lower + 1, samples], blend)


def hollow_strokes(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """In a `probability` share of samples, the strokes replaced by their outer contour (a 3x3 dilation minus
    the strokes), scaled so its brightest pixel is full ink."""
    count = images.shape[0]
    chosen = (torch.rand(count, generator=generator) < probability).view(count, 1, 1, 1).to(images.device)
    contour = (dilated(images) - images).clamp(0, 1)
    contour = contour / contour.amax((1, 2, 3), keepdim=True).clamp_min(1e-6)
    return torch.where(chosen, contour, images)


def chosen_per_image(count: int, mean_count: float, generator: torch.Generator) -> torch.Tensor:
    """(N, most) bools: up to 2x`mean_count` candidates per image, each kept with probability 1/2."""
    most = max(1, math.ceil(2 * mean_count))
    return torch.rand(count, most, generator=generator) < mean_count / most


def draw_polylines(images: torch.Tensor, points: torch.Tensor, half_width: torch.Tensor, level: torch.Tensor):
    """`images` with anti-aliased polylines drawn over them (where strokes cross, the darker ink): `points`
    (N, S, V, 2) are S strokes of V vertices (x, y) per image, each with its `half_width` and ink `level`
    (N, S, 1, 1; level 0 draws nothing). The one stroke renderer of the ops. Only the images with ink to draw
    are computed (the distance of every pixel to every segment is most of the cost)."""
    inked = (level > 0).flatten(1).any(1).nonzero()[:, 0]
    if len(inked) == 0:
        return images
    device = images.device
    points, half_width, level = (tensor[inked].to(device, images.dtype) for tensor in (points, half_width, level))
    positions = torch.arange(IMAGE_SIZE, device=device, dtype=images.dtype)
    x, y = positions.repeat(IMAGE_SIZE), positions.repeat_interleave(IMAGE_SIZE)  # (784,), row by row
    start_x, start_y = points[:, :, :-1, 0, None], points[:, :, :-1, 1, None]  # (n, S, V - 1, 1)
    step_x, step_y = points[:, :, 1:, 0, None] - start_x, points[:, :, 1:, 1, None] - start_y
    from_x, from_y = x - start_x, y - start_y  # (n, S, V - 1, 784)
    along = ((from_x * step_x + from_y * step_y) / (step_x**2 + step_y**2).clamp_min(1e-6)).clamp_(0, 1)
    distance = torch.hypot(from_x - along * step_x, from_y - along * step_y)
    ink = (level * (half_width + 0.5 - distance).clamp_(0, 1)).amax((1, 2))
    images = images.clone()
    images[inked] = torch.maximum(images[inked], ink.view(-1, *images.shape[1:]))
    return images


def segment_ink(images: torch.Tensor, points: torch.Tensor, drawn: torch.Tensor, generator: torch.Generator):
    """Random pen marks: the polylines `points` (N, S, V, 2) whose `drawn` (N, S) is set, each with a width of
    0.6-2.6 px and an ink level of 0.4-1."""
    count, strokes = images.shape[0], points.shape[1]
    half_width = uniform(generator, count * strokes, 0.3, 1.3).view(count, strokes, 1, 1)
    level = uniform(generator, count * strokes, 0.4, 1.0).view(count, strokes, 1, 1) * drawn.view(count, strokes, 1, 1)
    return draw_polylines(images, points, half_width, level)


def clutter_lines(images: torch.Tensor, mean_count: float, generator: torch.Generator) -> torch.Tensor:
    """Random straight strokes (ruled paper, stray pen marks, scratches): up to 2x`mean_count` candidates per
    image, each drawn with probability 1/2, anti-aliased, 0.6-2.6 px wide, ink level 0.4-1, endpoints anywhere
    within 4 px around the image so most cross it."""
    count = images.shape[0]
    drawn = chosen_per_image(count, mean_count, generator)
    most = drawn.shape[1]
    start, end = (uniform(generator, count * most * 2, -4, IMAGE_SIZE + 3).view(count, most, 2) for _ in range(2))
    return segment_ink(images, torch.stack([start, end], 2), drawn, generator)


SCRIBBLE_VERTICES = 6  # at most 5 segments a stroke


def scribbles(images: torch.Tensor, mean_count: float, generator: torch.Generator) -> torch.Tensor:
    """Random pen strokes over the digit: up to 2x`mean_count` candidates per image, each drawn with
    probability 1/2, as a polyline of 2-5 segments of 4-12 px from a start in the middle 20x20, turning by up to
    150 degrees either way at each corner (sharp turns make zigzags, gentle ones curves); width and ink as
    `clutter_lines`."""
    count = images.shape[0]
    drawn = chosen_per_image(count, mean_count, generator)
    most, vertices = drawn.shape[1], SCRIBBLE_VERTICES
    start = uniform(generator, count * most * 2, 4, IMAGE_SIZE - 4).view(count, most, 1, 2)
    heading = uniform(generator, count * most, -math.pi, math.pi).view(count, most, 1)
    turns = uniform(generator, count * most * (vertices - 2), -1, 1).view(count, most, vertices - 2)
    headings = torch.cat([heading, heading + torch.cumsum(turns * math.radians(150), -1)], -1)
    lengths = uniform(generator, count * most * (vertices - 1), 4, 12).view(count, most, vertices - 1)
    # 2-5 segments: the ones past a stroke's own count have no length (points repeat, drawing nothing new).
    segments = torch.randint(2, vertices, (count, most, 1), generator=generator)
    lengths = lengths * (torch.arange(vertices - 1) < segments)
    steps = torch.stack([torch.cos(headings), torch.sin(headings)], -1) * lengths[..., None]
    points = torch.cat([start, start + torch.cumsum(steps, 2)], 2)
    return segment_ink(images, points, drawn, generator)


def ink_box(images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per sample (N,): the ink's top, bottom, left and right (pixels above half ink), and its stroke width
    (ink over the height of the ink box: exact for a 1's stem, about right for a 7's)."""
    ink = images[:, 0] > 0.5
    rows, columns = ink.any(2), ink.any(1)
    positions = torch.arange(IMAGE_SIZE, dtype=images.dtype, device=images.device)
    top = torch.where(rows, positions, float(IMAGE_SIZE)).amin(1)
    bottom = torch.where(rows, positions, -1.0).amax(1)
    left = torch.where(columns, positions, float(IMAGE_SIZE)).amin(1)
    right = torch.where(columns, positions, -1.0).amax(1)
    height = (bottom - top + 1).clamp_min(1)
    return top, bottom, left, right, (images[:, 0].sum((1, 2)) / height).clamp(1.5, 4)


def row_centre(images: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Per sample, the centre of mass of the ink in one row (N,) of pixels (the middle when it is empty)."""
    samples = torch.arange(images.shape[0], device=images.device)
    line = images[samples, 0, row.long().clamp(0, IMAGE_SIZE - 1)]
    positions = torch.arange(IMAGE_SIZE, dtype=images.dtype, device=images.device)
    mass = line.sum(1)
    return torch.where(mass > 0, (line * positions).sum(1) / mass.clamp_min(1e-6), (IMAGE_SIZE - 1) / 2)


def written_forms(
    images: torch.Tensor, labels: torch.Tensor, spec: AugmentSpec, generator: torch.Generator
) -> torch.Tensor:
    """Strokes MNIST's writers seldom add, drawn with the digit's own pen width: on a `flag1` share of the 1s a
    flag from the stem's top, 30-50% of the digit's height long, 25-65 degrees below horizontal (and on half
    of them a foot, a bar 45-80% of the height wide under the stem); on a `cross7` share of the 7s a bar
    35-60% of the height wide across the stem, 45-65% of the way down."""
    count, device = images.shape[0], images.device
    labels = labels.to(device)
    top, bottom, _, _, width = ink_box(images)
    height = (bottom - top + 1).clamp_min(4)
    starts, ends, chosen = [], [], []
    if spec.flag1:
        flagged = (torch.rand(count, generator=generator).to(device) < spec.flag1) & (labels == 1)
        footed = flagged & (torch.rand(count, generator=generator).to(device) < 0.5)
        length = uniform(generator, count, 0.3, 0.5).to(device) * height
        angle = torch.deg2rad(uniform(generator, count, 25, 65)).to(device)
        foot = uniform(generator, count, 0.45, 0.8).to(device) * height
        x_top, x_bottom = row_centre(images, top + 1), row_centre(images, bottom - 1)
        flag_start = torch.stack([x_top, top + width / 2], -1)
        starts += [flag_start, torch.stack([x_bottom - foot / 2, bottom], -1)]
        ends += [flag_start + torch.stack([-torch.cos(angle), torch.sin(angle)], -1) * length[:, None]]
        ends += [torch.stack([x_bottom + foot / 2, bottom], -1)]
        chosen += [flagged, footed]
    if spec.cross7:
        crossed = (torch.rand(count, generator=generator).to(device) < spec.cross7) & (labels == 7)
        row = top + uniform(generator, count, 0.45, 0.65).to(device) * height
        bar = uniform(generator, count, 0.35, 0.6).to(device) * height
        x = row_centre(images, row)
        starts.append(torch.stack([x - bar / 2, row], -1))
        ends.append(torch.stack([x + bar / 2, row], -1))
        chosen.append(crossed)
    if not chosen:
        return images
    level = torch.stack(chosen, 1).to(images.dtype)[:, :, None, None]
    half_width = (width / 2 - 0.5).clamp_min(0.3)[:, None, None, None].expand_as(level)
    return draw_polylines(images, torch.stack([torch.stack(starts, 1), torch.stack(ends, 1)], 2), half_width, level)


def lighting(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Gamma, faint ink and grey paper, per sample: ink levels are curved by x**exp(U(-gamma, gamma)), scaled
    by U(1 - contrast, 1), and the background lifted to U(0, brightness) with ink on top (never inverted)."""
    count, device = images.shape[0], images.device
    shape = (count, 1, 1, 1)
    if spec.gamma:
        exponent = torch.exp(uniform(generator, count, -spec.gamma, spec.gamma)).view(shape).to(device)
        images = images.clamp_min(0) ** exponent
    if spec.contrast:
        images = images * uniform(generator, count, 1 - spec.contrast, 1).view(shape).to(device)
    if spec.brightness:
        paper = uniform(generator, count, 0, spec.brightness).view(shape).to(device)
        images = paper + (1 - paper) * images
    return images


def salt_and_pepper(images: torch.Tensor, most: float, generator: torch.Generator) -> torch.Tensor:
    """A share U(0, most) of each sample's pixels set to 0 or 1 (half each)."""
    count = images.shape[0]
    share = uniform(generator, count, 0, most).view(count, 1, 1, 1)
    hit = torch.rand(images.shape, generator=generator) < share
    white = torch.rand(images.shape, generator=generator) < 0.5
    return torch.where(hit.to(images.device), white.to(images.device, images.dtype), images)


def augment_batch(
    images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Random transforms of float images (N, 1, 28, 28) in [0, 1]; random draws come from `generator`
    (on the CPU, so a seed gives the same samples on any device). The written forms of some digits first
    (`flag1`, `cross7`: they need the digits' `labels`), then the hand and the scanner's framing (shape), the pen
    (width, stray lines), optics (blur, coarse scans), lighting, sensor (noise, salt and pepper) and occlusion; a
    `plain` share of the samples then gets back its shape-only version. An op that is off draws nothing, so adding
    ops never changes the samples of a spec without them."""
    if spec.is_identity:
        return images
    count, device = images.shape[0], images.device
    if spec.needs_labels:
        if labels is None:
            raise ConfigError("the augmentations flag1 and cross7 need the digits' labels")
        images = written_forms(images, labels, spec, generator)
    if spec.is_geometric:
        sevens = labels == 7 if labels is not None else None
        grid = affine_grid(spec, count, generator, sevens).to(device)
        if spec.square:
            grid = squared_grid(grid, images, spec.square, generator)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    shaped = images
    if spec.thickness:
        images = stroke_width(images, spec.thickness, generator)
    if spec.outline:
        images = hollow_strokes(images, spec.outline, generator)
    if spec.lines:
        images = clutter_lines(images, spec.lines, generator)
    if spec.strokes:
        images = scribbles(images, spec.strokes, generator)
    if spec.blur:
        images = gaussian_blur(images, torch.rand(count, generator=generator) * spec.blur)
    if spec.lowres:
        images = coarse_scans(images, spec.lowres, generator)
    if spec.gamma or spec.contrast or spec.brightness:
        images = lighting(images, spec, generator)
    if spec.noise:
        noise = torch.randn(images.shape, generator=generator).to(device) * spec.noise
        images = (images + noise).clamp(0, 1)
    if spec.saltpepper:
        images = salt_and_pepper(images, spec.saltpepper, generator)
    if spec.erase:
        keep = erase_mask(count, spec.erase, generator).to(device)
        cover = torch.rand(count, 1, 1, 1, generator=generator).to(device)
        images = images * keep + cover * (1 - keep)
    if spec.plain:
        chosen = (torch.rand(count, generator=generator) < spec.plain).view(count, 1, 1, 1).to(device)
        images = torch.where(chosen, shaped, images)
    return images


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def augment_images(
    images: torch.Tensor, augment: AugmentSpec | str | None, seed: int = 0, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """A whole set, seeded: uint8 (N, 28, 28) in, float (N, 1, 28, 28) in [0, 1] out (`labels` (N,) for the
    ops that add a digit's written forms)."""
    spec = as_spec(augment)
    generator = torch.Generator().manual_seed(seed)
    label_chunks = labels.split(AUGMENT_CHUNK) if labels is not None else [None] * len(images.split(AUGMENT_CHUNK))
    chunks = [
        augment_batch(to_float_images(chunk), spec, generator, chunk_labels)
        for chunk, chunk_labels in zip(images.split(AUGMENT_CHUNK), label_chunks, strict=True)
    ]
    return torch.cat(chunks) if chunks else to_float_images(images)


def preview_samples(
    images: torch.Tensor,
    augment: AugmentSpec | str | None,
    seed: int = 0,
    rows: int = 4,
    columns: int = 8,
    variants_of_first: bool = False,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented samples for previews, row by row: float (rows * columns, 1, 28, 28), and the index in
    `images` each one comes from (to look up its label). Distinct digits, or, with `variants_of_first`,
    `rows` digits each shown `columns` times to expose the spread of one op."""
    count = rows * columns
    sources = torch.arange(rows).repeat_interleave(columns) if variants_of_first else torch.arange(count)
    chosen_labels = labels[sources] if labels is not None else None
    return augment_images(images[sources], augment, seed, chosen_labels), sources


def preview_grid(
    images: torch.Tensor,
    augment: AugmentSpec | str | None,
    seed: int = 0,
    rows: int = 4,
    columns: int = 8,
    variants_of_first: bool = False,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The samples of preview_samples as one uint8 (H, W) grid image."""
    from torchvision.utils import make_grid

    augmented, _ = preview_samples(images, augment, seed, rows, columns, variants_of_first, labels)
    grid = make_grid(augmented, nrow=columns, padding=2, pad_value=0.35)
    return (grid[0] * 255).round().to(torch.uint8)
