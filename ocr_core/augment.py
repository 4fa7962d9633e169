"""Per-sample random transforms applied to whole batches of tensors, reproducible from a generator.

Every geometric op folds into one affine matrix per sample, so rotation, shift, zoom, shear and flip
cost a single `grid_sample`; elastic distortion adds a smooth random field to the same grid.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F

from .errors import ConfigError

IMAGE_SIZE = 28
AUGMENT_CHUNK = 1000  # fixed chunking keeps a seeded augmented set identical whatever batch size reads it


@dataclass(frozen=True)
class AugmentSpec:
    """Strengths of each op; zero (or a 1-1 range) turns an op off."""

    rotate: float = 0.0  # max degrees either way
    translate: float = 0.0  # max shift, as a fraction of the image side, either way, per axis
    scale: tuple[float, float] = (1.0, 1.0)  # zoom factor range
    crop: tuple[float, float] = (1.0, 1.0)  # area range of a random crop resized back, as RandomResizedCrop
    shear: float = 0.0  # max degrees either way
    hflip: float = 0.0  # probability of a mirror image
    elastic: float = 0.0  # typical displacement of a smooth random field, in pixels
    noise: float = 0.0  # std of additive gaussian noise (pixels in [0, 1])
    blur: float = 0.0  # max gaussian blur sigma, in pixels
    erase: float = 0.0  # probability of blanking a random rectangle

    def __post_init__(self) -> None:
        checks = {
            "rotate": 0 <= self.rotate <= 180,
            "translate": 0 <= self.translate <= 0.5,
            "scale": 0.2 <= self.scale[0] <= self.scale[1] <= 3.0,
            "crop": 0.05 <= self.crop[0] <= self.crop[1] <= 2.0,
            "shear": 0 <= self.shear <= 60,
            "hflip": 0 <= self.hflip <= 1,
            "elastic": 0 <= self.elastic <= 10,
            "noise": 0 <= self.noise <= 1,
            "blur": 0 <= self.blur <= 3,
            "erase": 0 <= self.erase <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"augmentation strength out of range: {', '.join(f'{n}={getattr(self, n)}' for n in bad)} "
                             f"(ranges: {SPEC_RANGES})")

    @property
    def is_identity(self) -> bool:
        return self == AugmentSpec()

    @property
    def is_geometric(self) -> bool:
        return bool(self.rotate or self.translate or self.scale != (1.0, 1.0) or self.crop != (1.0, 1.0)
                    or self.shear or self.hflip or self.elastic)

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


RANGE_OPS = ("scale", "crop")  # written low-high
SPEC_RANGES = ("rotate 0-180, translate 0-0.5, scale 0.2-3 (low-high), crop 0.05-2 (low-high), shear 0-60, hflip 0-1, "
               "elastic 0-10, noise 0-1, blur 0-3, erase 0-1")

PRESETS = {
    "none": AugmentSpec(),
    # The tutorial's four: RandomRotation(20), RandomAffine(translate 0.2), RandomResizedCrop(28, scale
    # 0.8-1.2), RandomHorizontalFlip.
    "seed": AugmentSpec(rotate=20, translate=0.2, crop=(0.8, 1.2), hflip=0.5),
    # Tuned for the variation real handwriting has (slant, size, position, wobble); no mirroring,
    # since mirrored digits are not digits.
    "recommended": AugmentSpec(rotate=10, translate=0.1, scale=(0.9, 1.1), shear=10, elastic=1.0),
}


def parse_augment(text: str) -> AugmentSpec:
    """`recommended`, `rotate=15,translate=0.1,scale=0.9-1.1` or a preset with overrides: `seed,hflip=0`."""
    spec = AugmentSpec()
    names = {field.name for field in fields(AugmentSpec)}
    for token in filter(None, (part.strip() for part in text.strip().split(","))):
        if "=" not in token:
            if token not in PRESETS:
                raise ConfigError(f"unknown augmentation preset {token!r}; presets: {', '.join(PRESETS)}")
            spec = PRESETS[token]
            continue
        key, _, value = (piece.strip() for piece in token.partition("="))
        if key not in names:
            raise ConfigError(f"unknown augmentation {key!r}; known: {', '.join(sorted(names))}")
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


def resized_crop(crop: tuple[float, float], count: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
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


def affine_grid(spec: AugmentSpec, count: int, generator: torch.Generator) -> torch.Tensor:
    """Sampling grid (N, 28, 28, 2) mapping each output pixel to where it reads the input."""
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
    centre, half_size = resized_crop(spec.crop, count, generator) if spec.crop != (1.0, 1.0) else (
        torch.zeros(count, 2), torch.ones(count, 2))
    linear = inverse @ torch.diag_embed(half_size)
    theta = torch.cat([linear, inverse @ (centre - shift).unsqueeze(-1)], dim=2)
    grid = F.affine_grid(theta, [count, 1, IMAGE_SIZE, IMAGE_SIZE], align_corners=False)
    if spec.elastic:
        # A coarse random field upsampled smoothly: a Simard-style elastic distortion without a big blur.
        coarse = torch.randn(count, 2, 4, 4, generator=generator) * (spec.elastic * 2 / IMAGE_SIZE)
        field = F.interpolate(coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


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


def augment_batch(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Random transforms of float images (N, 1, 28, 28) in [0, 1]; random draws come from `generator`
    (on the CPU, so a seed gives the same samples on any device)."""
    if spec.is_identity:
        return images
    count, device = images.shape[0], images.device
    if spec.is_geometric:
        grid = affine_grid(spec, count, generator).to(device)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if spec.blur:
        images = gaussian_blur(images, torch.rand(count, generator=generator) * spec.blur)
    if spec.noise:
        noise = torch.randn(images.shape, generator=generator).to(device) * spec.noise
        images = (images + noise).clamp(0, 1)
    if spec.erase:
        images = images * erase_mask(count, spec.erase, generator).to(device)
    return images


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def augment_images(images: torch.Tensor, augment: AugmentSpec | str | None, seed: int = 0) -> torch.Tensor:
    """A whole set, seeded: uint8 (N, 28, 28) in, float (N, 1, 28, 28) in [0, 1] out."""
    spec = as_spec(augment)
    generator = torch.Generator().manual_seed(seed)
    chunks = [augment_batch(to_float_images(chunk), spec, generator) for chunk in images.split(AUGMENT_CHUNK)]
    return torch.cat(chunks) if chunks else to_float_images(images)


def preview_grid(images: torch.Tensor, augment: AugmentSpec | str | None, seed: int = 0,
                 rows: int = 4, columns: int = 8, variants_of_first: bool = False) -> torch.Tensor:
    """uint8 (H, W) grid of augmented samples for previews: distinct digits, or, with
    `variants_of_first`, `rows` digits each shown `columns` times to expose the spread of one op."""
    from torchvision.utils import make_grid

    count = rows * columns
    source = images[:rows].repeat_interleave(columns, 0) if variants_of_first else images[:count]
    augmented = augment_images(source, augment, seed)
    grid = make_grid(augmented, nrow=columns, padding=2, pad_value=0.35)
    return (grid[0] * 255).round().to(torch.uint8)
