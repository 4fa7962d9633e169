"""A corruption suite in the spirit of MNIST-C (Mu & Gilmer 2019), for testing robustness, never for training.

Fifteen corruptions of the reference's `CORRUPTIONS` list, each at five severities; severity 3 is the
reference's default strength (for the reference's corruptions without a strength, severity 3 is its one
setting and the others are milder or harsher versions). Every corruption works on a whole batch of float
images (N, 1, 28, 28) in [0, 1] at once and draws its randomness from a generator seeded from the suite's seed,
the corruption and the severity: the same images always give the same corrupted images.

This module shares no code with `augment` on purpose: a model is only tested honestly on damage it was not
trained on, so none of these functions may end up in a training pipeline. Where the reference uses
ImageMagick (Wand) or per-pixel Python loops, the docstring says what the batched equivalent does instead.
Bump `SUITE_VERSION` whenever any corruption's output changes: cached robustness reports are keyed by it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import UserError

SUITE_VERSION = 1
SUITE_SEED = 2019
SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEVERITY = 3
SIDE = 28
CENTRE = (SIDE - 1) / 2  # 13.5, the reference's fixed point for rotation, shear and zoom

Levels = tuple  # five settings, severity 1-5


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur as skimage's `gaussian` (truncated at 4 sigma)."""
    # Imported here: torchvision pulls in torch._dynamo (~1 s), which `train` and `predict` never need.
    from torchvision.transforms.v2.functional import gaussian_blur as torchvision_blur

    radius = max(1, int(4 * sigma + 0.5))
    return torchvision_blur(images, [2 * radius + 1] * 2, [sigma, sigma])


def random_signs(count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)


def warp(images: torch.Tensor, linear: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """skimage's `warp(x, inverse_map)` with bilinear sampling and a black outside, batched: output pixel p
    (x = column, y = row) reads the input at `linear @ (p - centre) + centre + shift`, per sample."""
    count = images.shape[0]
    shift = torch.zeros(count, 2) if shift is None else shift
    theta = torch.cat([linear, (shift / (SIDE / 2)).unsqueeze(-1)], 2).to(images)
    grid = F.affine_grid(theta, [count, 1, SIDE, SIDE], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shot_noise(images: torch.Tensor, photons: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson noise: each pixel is a photon count of mean `photons` x brightness, scaled back."""
    return (torch.poisson(images * photons, generator=generator) / photons).clamp(0, 1)


def impulse_noise(images: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper as skimage's `random_noise(mode='s&p')`: a share `amount` of pixels, half white."""
    hit = torch.rand(images.shape, generator=generator) < amount
    salt = torch.rand(images.shape, generator=generator) < 0.5
    return torch.where(hit, salt.to(images.dtype), images)


def glass_blur(images: torch.Tensor, setting: tuple[float, int, int], generator: torch.Generator) -> torch.Tensor:
    """Blur, scramble pixels locally, blur again. The reference swaps pixel pairs one at a time in a Python
    loop (order-dependent); here each pass moves every other inner pixel (chosen at random) to a random
    offset within +-`delta`, all at once with a gather: the same local shuffling, batched. As in the
    reference, the first blur is quantised to 8 bits."""
    sigma, delta, passes = setting
    count = images.shape[0]
    images = (blurred(images, sigma) * 255).floor() / 255
    index = torch.arange(SIDE * SIDE).view(SIDE, SIDE)
    inner = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    inner[delta : SIDE - delta, delta : SIDE - delta] = True
    for _ in range(passes):
        moved = (torch.rand(count, SIDE, SIDE, generator=generator) < 0.5) & inner
        offsets = torch.randint(-delta, delta + 1, (2, count, SIDE, SIDE), generator=generator)
        rows = (index // SIDE + offsets[0]).clamp(0, SIDE - 1)
        columns = (index % SIDE + offsets[1]).clamp(0, SIDE - 1)
        source = torch.where(moved, rows * SIDE + columns, index)
        images = images.flatten(1).gather(1, source.flatten(1)).view_as(images)
    return blurred(images, sigma).clamp(0, 1)


def motion_blur(images: torch.Tensor, setting: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """ImageMagick's MotionBlurImage(radius, sigma, angle) as the reference calls it through Wand, with the
    angle uniform in -45..45 degrees: a one-sided gaussian kernel (weights exp(-i^2 / 2 sigma^2), i = 0..2
    radius) along the angle, here one bilinear shifted copy per tap (taps beyond 3 sigma are dropped: < 1.2%)."""
    radius, sigma = setting
    count = images.shape[0]
    angle = torch.deg2rad(torch.rand(count, generator=generator) * 90 - 45)
    direction = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    taps = range(min(int(2 * radius), math.ceil(3 * sigma)) + 1)
    weights = torch.tensor([math.exp(-(tap**2) / (2 * sigma**2)) for tap in taps])
    weights = weights / weights.sum()
    identity = torch.eye(2).expand(count, 2, 2)
    trail = sum(weight * warp(images, identity, tap * direction) for tap, weight in zip(taps, weights, strict=True))
    return trail.clamp(0, 1)


def shear(images: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """skimage's AffineTransform(shear=amount) about the centre, in a random direction."""
    angle = random_signs(images.shape[0], generator) * amount
    linear = torch.zeros(len(angle), 2, 2)
    linear[:, 0, 0] = 1
    linear[:, 0, 1] = -torch.sin(angle)
    linear[:, 1, 1] = torch.cos(angle)
    return warp(images, linear).clamp(0, 1)


def rotate(images: torch.Tensor, radians: float, generator: torch.Generator) -> torch.Tensor:
    """Rotation about the centre by `radians`, in a random direction."""
    angle = random_signs(images.shape[0], generator) * radians
    cos, sin = torch.cos(angle), torch.sin(angle)
    linear = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    return warp(images, linear).clamp(0, 1)


def scale(images: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """The digit shrunk to `factor` of its size about the centre (the reference's inverse map 1/factor)."""
    linear = torch.eye(2).expand(images.shape[0], 2, 2) / factor
    return warp(images, linear).clamp(0, 1)


def translate(images: torch.Tensor, pixels: float, generator: torch.Generator) -> torch.Tensor:
    """A shift by `pixels` along both axes, each in a random direction."""
    count = images.shape[0]
    shift = torch.stack([random_signs(count, generator), random_signs(count, generator)], -1) * pixels
    return warp(images, torch.eye(2).expand(count, 2, 2), shift).clamp(0, 1)


def brightness(images: torch.Tensor, lift: float, generator: torch.Generator) -> torch.Tensor:
    """The reference's HSV value + `lift`: for a grey image, every pixel brightened by `lift`, clipped."""
    return (images + lift).clamp(0, 1)


def stripe(images: torch.Tensor, width: int, generator: torch.Generator) -> torch.Tensor:
    """The `width` leftmost and rightmost columns inverted (the reference: 7)."""
    out = images.clone()
    out[..., :width] = 1 - out[..., :width]
    out[..., SIDE - width :] = 1 - out[..., SIDE - width :]
    return out


def fractal_noise(count: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """(N, 1, 28, 28) in [0, 1]: a 28x28 window of a 256x256 fractal whose detail at each halving of scale
    is `decay` times weaker, as the reference's diamond-square `plasma_fractal(wibbledecay=decay)`. Built
    as a sum of random grids (cell sizes 256 down to 2 px, offset at random) read bilinearly at the window's
    pixels, scaled by the sum's bound instead of the whole map's min and max: the same kind of cloud, batched."""
    total = torch.zeros(count, 1, SIDE, SIDE)
    rows, columns = torch.meshgrid(torch.arange(float(SIDE)), torch.arange(float(SIDE)), indexing="ij")
    pixels = torch.stack([columns, rows], -1).unsqueeze(0)  # (1, 28, 28, 2) as (x, y)
    amplitude, bound = 1.0, 0.0
    for cell in (256, 128, 64, 32, 16, 8, 4, 2):
        points = math.ceil(SIDE / cell) + 1
        coarse = torch.rand(count, 1, points, points, generator=generator) * 2 - 1
        offset = torch.rand(count, 2, generator=generator) * (points - 1 - (SIDE - 1) / cell)
        where = (offset[:, None, None, :] + pixels / cell) / (points - 1) * 2 - 1
        total += amplitude * F.grid_sample(coarse, where, mode="bilinear", align_corners=True)
        bound += amplitude
        amplitude /= decay
    return (total / bound + 1) / 2


def fog(images: torch.Tensor, setting: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """A fractal haze of strength `thickness` added and the result scaled to keep the image's maximum, as
    the reference does (its plasma fractal replaced by `fractal_noise`)."""
    thickness, decay = setting
    peak = images.amax((1, 2, 3), keepdim=True)
    hazy = images + thickness * fractal_noise(images.shape[0], decay, generator)
    return (hazy * peak / (peak + thickness)).clamp(0, 1)


def spatter(images: torch.Tensor, setting: tuple[float, ...], generator: torch.Generator) -> torch.Tensor:
    """Mud drops as in the reference: blurred gaussian noise thresholded into blobs, their blurred mask
    (kept where > 0.8) painted in grey 63/255 over the image."""
    mean, spread, sigma, threshold, mask_sigma = setting
    liquid = blurred(torch.randn(images.shape, generator=generator) * spread + mean, sigma)
    mask = blurred((liquid > threshold).to(images.dtype), mask_sigma)
    mask = torch.where(mask < 0.8, 0.0, mask)
    return (images * (1 - mask) + 63 / 255 * mask).clamp(0, 1)


def line_profile(c0: torch.Tensor, r0: torch.Tensor, c1: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
    """The reference's `line_from_points` for a batch of segments (each argument (N,)): ink 1 + log(1 - d/2.3)
    at vertical distance d from the line through both points, between columns floor(c0) and ceil(c1)."""
    grid = torch.arange(SIDE, dtype=torch.float32)
    rows, columns = grid.view(1, SIDE, 1), grid.view(1, 1, SIDE)
    vertical = (c1 - c0).abs() > 1e-9
    slope = ((r1 - r0) / torch.where(vertical, c1 - c0, torch.ones_like(c0))).view(-1, 1, 1)
    distance = (rows - (slope * (columns - c0.view(-1, 1, 1)) + r0.view(-1, 1, 1))).abs().clamp(0, 2.3 - 1e-6)
    ink = (torch.log(1 - distance / 2.3) + 1).clamp(0, 1)
    inside = (columns >= c0.floor().view(-1, 1, 1)) & (columns < c1.ceil().view(-1, 1, 1))
    return (ink * inside * vertical.view(-1, 1, 1)).unsqueeze(1)


def dotted_line(images: torch.Tensor, setting: tuple[int, float], generator: torch.Generator) -> torch.Tensor:
    """`lines` dotted lines (dashes 2 px long, 2 px apart) from the left edge to the right at random rows,
    of ink level `ink`, as the reference's one line at full ink (severity 3)."""
    lines, ink = setting
    count = images.shape[0]
    dashes = (torch.arange(SIDE) // 2 % 2 == 1).to(images.dtype)
    for _ in range(lines):
        rows = torch.randint(0, SIDE - 1, (2, count), generator=generator).float()
        profile = line_profile(torch.zeros(count), rows[0], torch.full((count,), SIDE - 1.0), rows[1])
        images = (images + ink * profile * dashes).clamp(0, 1)
    return images


def zigzag(images: torch.Tensor, setting: tuple[int, float], generator: torch.Generator) -> torch.Tensor:
    """`lines` zigzags of ink level `ink` (the reference: one, full ink): teeth 2 px high every 2 px along a
    line from column 2 to 25, tilted by up to 5 rows. The reference ends on a point slightly off the line's
    axis; here the last segment returns to the axis."""
    lines, ink = setting
    count = images.shape[0]
    half_period, height, first, last = 2.0, 2.0, 2.0, 25.0
    for _ in range(lines):
        start_row = torch.randint(0, SIDE - 1, (count,), generator=generator).float()
        rise = torch.randint(-5, 5, (count,), generator=generator).float()
        theta = torch.atan(rise / (last - first))
        length = (last - first) / torch.cos(theta)  # 23-23.5 px: six teeth for every tilt
        teeth = torch.arange(6, dtype=torch.float32)
        along = torch.cat([torch.zeros(count, 1), ((2 * teeth + 1) * half_period).expand(count, 6), length[:, None]], 1)
        across = torch.cat([torch.zeros(count, 1), (height * (-1) ** teeth).expand(count, 6), torch.zeros(count, 1)], 1)
        cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
        columns = cos * along - sin * across + first
        rows = sin * along + cos * across + start_row[:, None]
        for segment in range(along.shape[1] - 1):
            profile = line_profile(columns[:, segment], rows[:, segment], columns[:, segment + 1], rows[:, segment + 1])
            images = (images + ink * profile).clamp(0, 1)
    return images


def canny(images: torch.Tensor, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> torch.Tensor:
    """skimage's `feature.canny` defaults, batched: gaussian smoothing, Sobel gradients, non-maximum
    suppression (here against the two neighbours in the nearest of four directions; skimage interpolates
    between neighbours), then hysteresis (weak edges kept where connected to strong ones), as 0/1 images."""
    smooth = blurred(images, sigma)
    sobel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)
    gradient = F.conv2d(F.pad(smooth, (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = gradient.norm(dim=1, keepdim=True)
    angle = torch.rad2deg(torch.atan2(gradient[:, 1:2], gradient[:, 0:1])) % 180
    sector = ((angle + 22.5) // 45).long() % 4  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135 degrees
    padded = F.pad(magnitude, (1, 1, 1, 1))
    neighbours = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}
    peak = torch.zeros_like(magnitude, dtype=torch.bool)
    for direction, offsets in neighbours.items():
        larger = torch.ones_like(peak)
        for dy, dx in offsets:
            larger &= magnitude >= padded[..., 1 + dy : 1 + dy + SIDE, 1 + dx : 1 + dx + SIDE]
        peak |= (sector == direction) & larger
    weak = peak & (magnitude >= low)
    edges = weak & (magnitude >= high)
    for _ in range(SIDE * SIDE):
        grown = weak & (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges.to(images.dtype)


def canny_edges(images: torch.Tensor, setting: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """The reference's Canny edge map (severity 3). Milder: the strokes kept at a share of their ink under
    the edges; harsher: a share of the edge pixels dropped at random, leaving broken outlines."""
    kept_ink, dropped = setting
    edges = canny(images)
    if dropped:
        edges = edges * (torch.rand(images.shape, generator=generator) >= dropped)
    return torch.maximum(edges, images * kept_ink)


@dataclass(frozen=True)
class Corruption:
    name: str
    label: str
    apply: Callable[[torch.Tensor, object, torch.Generator], torch.Tensor]
    levels: Levels  # the setting at each severity 1-5
    meaning: str  # what a severity's setting is

    def setting(self, severity: int) -> object:
        return self.levels[severity - 1]


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("shot_noise", "Shot noise", shot_noise, (12, 6, 3, 2, 1.5), "photons at full brightness"),
        Corruption(
            "impulse_noise",
            "Impulse noise",
            impulse_noise,
            (0.06, 0.11, 0.17, 0.23, 0.3),
            "share of pixels set black or white",
        ),
        Corruption(
            "glass_blur",
            "Glass blur",
            glass_blur,
            ((0.5, 1, 1), (0.6, 1, 2), (0.7, 1, 2), (0.9, 2, 2), (1.1, 3, 2)),
            "(sigma, max offset, passes)",
        ),
        Corruption(
            "motion_blur",
            "Motion blur",
            motion_blur,
            ((6, 1.5), (8, 2), (10, 3), (15, 5), (15, 8)),
            "(radius, sigma) of ImageMagick's motion blur",
        ),
        Corruption("shear", "Shear", shear, (0.2, 0.3, 0.4, 0.6, 0.8), "shear angle, radians"),
        Corruption("scale", "Scale", scale, (0.9, 0.8, 0.7, 0.6, 0.5), "zoom factor (shrinks the digit)"),
        Corruption("rotate", "Rotate", rotate, (0.2, 0.3, 0.4, 0.6, 0.8), "angle, radians"),
        Corruption("brightness", "Brightness", brightness, (0.1, 0.3, 0.5, 0.6, 0.7), "added brightness"),
        Corruption("translate", "Translate", translate, (1, 2, 3, 4, 5), "shift per axis, pixels"),
        Corruption("stripe", "Stripe", stripe, (3, 5, 7, 9, 11), "width of the inverted side bands, pixels"),
        Corruption(
            "fog",
            "Fog",
            fog,
            ((1.5, 2.0), (2.0, 2.0), (3.0, 1.4), (3.5, 1.3), (4.0, 1.2)),
            "(thickness, detail decay) of the haze",
        ),
        Corruption(
            "spatter",
            "Spatter",
            spatter,
            (
                (0.65, 0.3, 1, 0.71, 1.5),
                (0.65, 0.3, 1, 0.68, 1.5),
                (0.65, 0.3, 1, 0.65, 1.5),
                (0.67, 0.4, 1, 0.65, 1.5),
                (0.7, 0.45, 1, 0.63, 1.5),
            ),
            "(mean, std, sigma, threshold, mask sigma) of the drops",
        ),
        Corruption(
            "dotted_line",
            "Dotted line",
            dotted_line,
            ((1, 0.5), (1, 0.75), (1, 1.0), (2, 1.0), (3, 1.0)),
            "(lines, ink level)",
        ),
        Corruption(
            "zigzag", "Zigzag", zigzag, ((1, 0.5), (1, 0.75), (1, 1.0), (2, 1.0), (3, 1.0)), "(zigzags, ink level)"
        ),
        Corruption(
            "canny_edges",
            "Canny edges",
            canny_edges,
            ((0.6, 0.0), (0.3, 0.0), (0.0, 0.0), (0.0, 0.25), (0.0, 0.5)),
            "(share of the stroke's ink kept, share of edge pixels dropped)",
        ),
    )
}


def corruption_seed(name: str, severity: int, seed: int = SUITE_SEED) -> int:
    """One stream per corruption and severity, stable across Python runs (crc32, not hash())."""
    return zlib.crc32(f"{seed}:{name}:{severity}".encode())


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) or float (N, [1,] 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return images.unsqueeze(1) if images.dim() == 3 else images


def corrupt(images: torch.Tensor, name: str, severity: int = DEFAULT_SEVERITY, seed: int = SUITE_SEED) -> torch.Tensor:
    """`images` (uint8 (N, 28, 28) or float in [0, 1]) under one corruption at severity 1-5, as float
    (N, 1, 28, 28) in [0, 1]; the same images, name, severity and seed always give the same result."""
    if name not in CORRUPTIONS:
        raise UserError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise UserError(f"severity must be one of 1-5, got {severity!r}")
    corruption = CORRUPTIONS[name]
    generator = torch.Generator().manual_seed(corruption_seed(name, severity, seed))
    with torch.no_grad():
        return corruption.apply(as_float_images(images), corruption.setting(severity), generator)
