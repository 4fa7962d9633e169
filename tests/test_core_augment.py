import pytest
import torch

from ocr_core.augment import (PRESETS, AugmentSpec, augment_batch, augment_images, parse_augment, preview_grid,
                              to_float_images)
from ocr_core.errors import ConfigError


def digit_batch(count=16):
    images = torch.zeros(count, 28, 28, dtype=torch.uint8)
    images[:, 6:22, 10:14] = 255
    images[:, 6:9, 10:20] = 255
    return images


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_their_spec_string(name):
    assert parse_augment(PRESETS[name].to_string()) == PRESETS[name]
    assert parse_augment(name) == PRESETS[name]


def test_seed_preset_is_the_tutorials_four_transforms():
    assert PRESETS["seed"] == AugmentSpec(rotate=20, translate=0.2, crop=(0.8, 1.2), hflip=0.5)
    assert PRESETS["seed"].to_string() == "rotate=20,translate=0.2,crop=0.8-1.2,hflip=0.5"
    assert PRESETS["none"].is_identity and PRESETS["none"].to_string() == "none"


def test_spec_string_with_preset_and_overrides():
    spec = parse_augment("seed, hflip=0, scale=0.9-1.1, noise=0.05, crop=1")
    assert spec == AugmentSpec(rotate=20, translate=0.2, scale=(0.9, 1.1), noise=0.05)
    assert spec.to_string() == "rotate=20,translate=0.2,scale=0.9-1.1,noise=0.05"


@pytest.mark.parametrize("text, message", [
    ("spin=3", "unknown augmentation 'spin'"),
    ("rotate=lots", "needs a number"),
    ("rotate=nan", "finite"),
    ("rotate=500", "out of range"),
    ("scale=1.2-0.8", "out of range"),
    ("crop=0-1", "out of range"),
    ("fancy", "unknown augmentation preset"),
])
def test_bad_spec_strings_are_clear_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_augment(text)


def test_identity_spec_returns_the_batch_untouched():
    images = to_float_images(digit_batch())
    assert augment_batch(images, AugmentSpec(), torch.Generator()) is images


def test_same_seed_same_samples_different_seed_different_samples():
    spec = parse_augment("recommended,noise=0.1,blur=1,erase=0.5")
    first = augment_images(digit_batch(), spec, seed=7)
    assert torch.equal(first, augment_images(digit_batch(), spec, seed=7))
    assert not torch.equal(first, augment_images(digit_batch(), spec, seed=8))


def test_every_op_keeps_shape_range_and_finiteness():
    spec = AugmentSpec(rotate=30, translate=0.2, scale=(0.7, 1.3), shear=20, hflip=0.5, elastic=2, noise=0.2,
                       blur=1.5, erase=0.5)
    out = augment_images(digit_batch(64), spec, seed=0)
    assert out.shape == (64, 1, 28, 28)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_samples_in_a_batch_get_different_transforms():
    out = augment_images(digit_batch(8), "rotate=30", seed=0)
    assert len({tuple(sample.flatten().tolist()) for sample in out}) == 8


def test_horizontal_flip_mirrors_exactly():
    images = digit_batch(4)
    flipped = augment_images(images, "hflip=1", seed=0)
    assert torch.allclose(flipped, to_float_images(images).flip(-1), atol=1e-5)


def test_translation_moves_ink_within_its_bound():
    images = digit_batch(64)
    shifted = augment_images(images, "translate=0.2", seed=0)
    columns = torch.arange(28.0)

    def centre(batch):
        mass = batch.sum((1, 2, 3))
        return (batch.sum((1, 2)) * columns).sum(-1) / mass

    moves = centre(shifted) - centre(to_float_images(images))
    assert moves.abs().max() <= 0.2 * 28 + 1 and moves.std() > 1


def test_rotation_keeps_ink_mass_roughly():
    images = digit_batch(32)
    rotated = augment_images(images, "rotate=15", seed=0)
    ratio = rotated.sum((1, 2, 3)) / to_float_images(images).sum((1, 2, 3))
    assert ((ratio > 0.85) & (ratio < 1.15)).all()


def test_erasing_blanks_a_rectangle_in_each_sample():
    white = torch.full((32, 28, 28), 255, dtype=torch.uint8)
    erased = augment_images(white, "erase=1", seed=0)
    blank_share = (erased == 0).float().mean((1, 2, 3))
    assert ((blank_share >= 0.01) & (blank_share <= 0.25)).all()


def test_blur_spreads_ink_but_keeps_its_mass():
    dot = torch.zeros(4, 28, 28, dtype=torch.uint8)
    dot[:, 14, 14] = 255
    blurred = augment_images(dot, "blur=2", seed=0)
    assert (blurred[:, 0, 14, 14] < 1).all()
    assert torch.allclose(blurred.sum((1, 2, 3)), torch.ones(4), atol=0.05)


def test_preview_grid_shapes():
    grid = preview_grid(digit_batch(32), "seed", rows=2, columns=4)
    assert grid.dtype == torch.uint8 and grid.shape == (2 + 2 * 30, 2 + 4 * 30)
    variants = preview_grid(digit_batch(32), "seed", rows=2, columns=4, variants_of_first=True)
    assert variants.shape == grid.shape



def horizontal_ramp(count: int) -> torch.Tensor:
    return torch.linspace(0, 1, 28).expand(count, 1, 28, 28).contiguous()


def test_a_crop_that_never_fits_falls_back_to_the_whole_image_as_torchvision_does():
    # 1.2 of the area cannot fit in the image at any allowed aspect ratio: every try fails.
    ramp = horizontal_ramp(32)
    out = augment_batch(ramp, AugmentSpec(crop=(1.2, 1.2)), torch.Generator().manual_seed(0))
    assert torch.allclose(out, ramp, atol=1e-5)


def test_a_quarter_area_crop_zooms_in_about_twice():
    ramp = horizontal_ramp(256)
    out = augment_batch(ramp, AugmentSpec(crop=(0.25, 0.25)), torch.Generator().manual_seed(0))
    row = out[:, 0, 14, 1:-1]  # the outermost pixels may blend with the zero padding beyond the image
    span = row.max(1).values - row.min(1).values  # the window's width, as a share of the side
    # sqrt(0.25 * aspect) for aspects 3/4..4/3, in whole pixels: 12 to 16 of the ramp's 27 steps, less one
    assert span.min() >= 10 / 27 and span.max() <= 16 / 27  # a whole row would span 25 / 27
    assert (row[:, 1:] >= row[:, :-1] - 1e-6).all(), "a crop is not a mirror"
    starts = row[:, 0]
    assert starts.min() < 0.1 and starts.max() > 0.4, "windows sit anywhere they fit"


def test_seed_preset_matches_the_tutorials_pil_transforms_in_distribution():
    """The same digits through torchvision's four PIL transforms and through our batched `seed` preset:
    how much ink survives, how far digits move and how much ends at the border agree within a few percent."""
    from PIL import Image
    from torchvision import transforms

    from conftest import synthetic_digits

    images, _ = synthetic_digits(1500, seed=3)
    torch.manual_seed(0)
    tutorial = transforms.Compose([
        transforms.RandomRotation(20), transforms.RandomAffine(0, translate=(0.2, 0.2)),
        transforms.RandomResizedCrop(28, scale=(0.8, 1.2)), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    theirs = torch.stack([tutorial(Image.fromarray(image.numpy())) for image in images])
    ours = augment_images(images, "seed", seed=0)

    def figures(batch):
        ink = batch[:, 0]
        mass = ink.sum((1, 2)) + 1e-6
        rows = (ink.sum(2) * torch.arange(28.0)).sum(1) / mass
        border = ink.sum() - ink[:, 2:-2, 2:-2].sum()
        return torch.stack([ink.mean(), rows.std(), border / ink.sum()])

    assert torch.allclose(figures(ours), figures(theirs), rtol=0.1)
