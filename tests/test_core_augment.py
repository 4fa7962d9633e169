import re
from dataclasses import fields

import pytest
import torch

from conftest import PROJECT_DIR
from ocr_core.augment import (
    AUGMENT_OPS,
    PRESETS,
    AugmentSpec,
    augment_batch,
    augment_images,
    op_table_markdown,
    parse_augment,
    preview_grid,
    preview_samples,
    to_float_images,
)
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


@pytest.mark.parametrize(
    "text, message",
    [
        ("spin=3", "unknown augmentation 'spin'"),
        ("rotate=lots", "needs a number"),
        ("rotate=nan", "finite"),
        ("rotate=500", "out of range"),
        ("scale=1.2-0.8", "out of range"),
        ("crop=0-1", "out of range"),
        ("fancy", "unknown augmentation preset"),
    ],
)
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
    spec = AugmentSpec(
        rotate=30, translate=0.2, scale=(0.7, 1.3), shear=20, hflip=0.5, elastic=2, noise=0.2, blur=1.5, erase=0.5
    )
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


def test_erasing_covers_a_rectangle_with_one_grey_in_each_sample():
    white = torch.full((32, 28, 28), 255, dtype=torch.uint8)
    erased = augment_images(white, "erase=1", seed=0)
    covered = erased < 1
    share = covered.float().mean((1, 2, 3))
    assert ((share >= 0.005) & (share <= 0.25)).all()
    greys = [sample[mask].unique() for sample, mask in zip(erased, covered, strict=True)]
    assert all(len(grey) == 1 for grey in greys) and len({float(grey) for grey in greys}) == 32


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


def test_preview_samples_say_which_image_each_comes_from():
    images = digit_batch(32)
    samples, sources = preview_samples(images, "none", rows=2, columns=3)
    assert samples.shape == (6, 1, 28, 28) and sources.tolist() == [0, 1, 2, 3, 4, 5]
    assert torch.equal((samples[:, 0] * 255).round().to(torch.uint8), images[:6])
    _, variant_sources = preview_samples(images, "rotate=30", rows=2, columns=3, variants_of_first=True)
    assert variant_sources.tolist() == [0, 0, 0, 1, 1, 1]


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
    tutorial = transforms.Compose(
        [
            transforms.RandomRotation(20),
            transforms.RandomAffine(0, translate=(0.2, 0.2)),
            transforms.RandomResizedCrop(28, scale=(0.8, 1.2)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ]
    )
    theirs = torch.stack([tutorial(Image.fromarray(image.numpy())) for image in images])
    ours = augment_images(images, "seed", seed=0)

    def figures(batch):
        ink = batch[:, 0]
        mass = ink.sum((1, 2)) + 1e-6
        rows = (ink.sum(2) * torch.arange(28.0)).sum(1) / mass
        border = ink.sum() - ink[:, 2:-2, 2:-2].sum()
        return torch.stack([ink.mean(), rows.std(), border / ink.sum()])

    assert torch.allclose(figures(ours), figures(theirs), rtol=0.1)


def test_the_op_table_is_the_one_source_of_ops_ranges_and_messages():
    assert [field.name for field in fields(AugmentSpec)] == list(AUGMENT_OPS)
    for op in AUGMENT_OPS.values():
        assert getattr(AugmentSpec(), op.name) == op.off, "a default spec switches every op off"
        assert op.accepts(op.typical) and op.lowest < op.highest and 0 < op.step <= op.highest - op.lowest
        too_strong = (op.lowest, op.highest + 1) if op.is_range else op.highest + 1
        with pytest.raises(ConfigError, match=f"{op.name}=.*ranges: .*{re.escape(op.name + ' ' + op.range_text)}"):
            AugmentSpec(**{op.name: too_strong})
    readme = (PROJECT_DIR / "README.md").read_text()
    assert op_table_markdown() in readme, "README's op table mirrors AUGMENT_OPS: paste op_table_markdown()"


def soft_digit_batch(count=16):
    """digit_batch with half-tone ink in one stroke, which gamma curves can change."""
    images = digit_batch(count)
    images[:, 6:9, 14:20] = 150
    return images


NEW_OPS = {
    "thickness": 1.0,
    "outline": 0.5,
    "lines": 1.0,
    "strokes": 1.0,
    "brightness": 0.5,
    "contrast": 0.5,
    "gamma": 1.0,
    "saltpepper": 0.2,
    "square": 1.0,
    "lowres": 1.0,
}


@pytest.mark.parametrize("op", list(NEW_OPS))
def test_new_ops_keep_shape_and_range_and_are_seeded(op):
    spec = AugmentSpec(**{op: NEW_OPS[op]})
    first = augment_images(soft_digit_batch(32), spec, seed=3)
    assert first.shape == (32, 1, 28, 28) and torch.isfinite(first).all()
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, augment_images(soft_digit_batch(32), spec, seed=3))
    assert not torch.equal(first, augment_images(soft_digit_batch(32), spec, seed=4))
    assert not torch.equal(first, to_float_images(soft_digit_batch(32))), "the op changed nothing"


@pytest.mark.parametrize(
    "op, weak, strong",
    [
        ("thickness", 0.3, 1.5),
        ("outline", 0.1, 0.6),
        ("lines", 0.5, 3.0),
        ("strokes", 0.5, 3.0),
        ("brightness", 0.2, 0.8),
        ("contrast", 0.2, 0.8),
        ("gamma", 0.3, 1.5),
        ("saltpepper", 0.05, 0.3),
    ],
)
def test_new_ops_change_more_as_strength_grows(op, weak, strong):
    clean = to_float_images(soft_digit_batch(256))

    def change(strength):
        return (augment_images(soft_digit_batch(256), AugmentSpec(**{op: strength}), seed=0) - clean).abs().mean()

    assert change(strong) > 1.5 * change(weak) > 0


def test_thickness_makes_ink_thinner_and_thicker_within_its_bound():
    clean = to_float_images(soft_digit_batch(512))
    out = augment_images(soft_digit_batch(512), "thickness=1", seed=0)
    ratio = out.sum((1, 2, 3)) / clean.sum((1, 2, 3))
    assert ratio.min() < 0.8 and ratio.max() > 1.2, "both thinner and thicker pens are drawn"
    dilated = torch.nn.functional.max_pool2d(clean, 3, stride=1, padding=1)
    assert (out <= dilated + 1e-6).all(), "never more than one pixel per side thicker at strength 1"


def test_lighting_ops_lift_paper_and_fade_ink_without_inverting():
    clean = to_float_images(soft_digit_batch(256))
    grey = augment_images(soft_digit_batch(256), "brightness=0.6", seed=0)
    paper = grey[:, 0, 0, 0]
    assert paper.min() >= 0 and paper.max() <= 0.6 and paper.std() > 0.1
    assert (grey[clean > 0.99] >= 0.99).all(), "full ink stays full"
    faint = augment_images(soft_digit_batch(256), "contrast=0.6", seed=0)
    assert faint.amax((1, 2, 3)).min() >= 0.4 - 1e-6 and (faint <= clean + 1e-6).all()


def test_hollow_strokes_keep_the_contour_and_empty_the_inside():
    bar = torch.zeros(4, 28, 28, dtype=torch.uint8)
    bar[:, 10:18, 6:22] = 255
    hollow = augment_images(bar, "outline=1", seed=0)
    assert (hollow[:, 0, 11:17, 7:21] == 0).all(), "the inside of the stroke is empty"
    assert (hollow[:, 0, 9, 6:22] == 1).all() and (hollow[:, 0, 10:18, 5] == 1).all(), "the contour is ink"


def test_a_plain_share_of_digits_keeps_only_the_shape_ops():
    images = soft_digit_batch(400)
    shape_only = augment_images(images, "rotate=10,elastic=1", seed=0)
    damaged = augment_images(images, "rotate=10,elastic=1,brightness=0.5,noise=0.2", seed=0)
    mixed = augment_images(images, "rotate=10,elastic=1,brightness=0.5,noise=0.2,plain=0.5", seed=0)
    plain = (mixed == shape_only).all((1, 2, 3))
    assert ((mixed == damaged).all((1, 2, 3)) | plain).all(), "each digit is either plain or damaged as without plain"
    assert 0.4 < plain.float().mean() < 0.6, "about half the digits stay plain"
    assert not (shape_only == damaged).all((1, 2, 3)).any()


def one_batch(count=32):
    """Upright 1s (a stem 3 px wide, rows 4-23) and 7s (a bar on top, a stem down the middle)."""
    images = torch.zeros(count, 28, 28, dtype=torch.uint8)
    images[: count // 2, 4:24, 13:16] = 255
    images[count // 2 :, 4:7, 8:20] = 255
    images[count // 2 :, 4:24, 16:19] = 255
    labels = torch.tensor([1] * (count // 2) + [7] * (count - count // 2))
    return images, labels


def test_flag1_draws_a_flag_down_left_from_the_top_of_1s_only():
    images, labels = one_batch()
    out = augment_images(images, "flag1=1", seed=0, labels=labels)
    clean = to_float_images(images)
    added = (out - clean).clamp_min(0)[:, 0]
    ones, sevens = added[labels == 1], added[labels == 7]
    assert sevens.sum() == 0, "only 1s get a flag"
    assert (ones[:, 4:13, :13].sum((1, 2)) > 3).all(), "each 1 gains ink left of its stem, in its upper half"
    footed = ones[:, 21:26, :].sum((1, 2)) > 3
    assert 0.2 < footed.float().mean() < 0.8, "about half of the flagged 1s also get a foot"
    assert torch.equal(out, augment_images(images, "flag1=1", seed=0, labels=labels))
    untouched = augment_images(images, "flag1=0.5", seed=1, labels=labels)
    assert 0 < ((untouched - clean).abs().sum((1, 2, 3))[labels == 1] > 0).float().mean() < 1


def test_cross7_draws_a_bar_across_the_stem_of_7s_only():
    images, labels = one_batch()
    out = augment_images(images, "cross7=1", seed=0, labels=labels)
    added = (out - to_float_images(images)).clamp_min(0)[:, 0]
    assert added[labels == 1].sum() == 0
    sevens = added[labels == 7]
    middle = sevens[:, 11:19]
    assert (middle[:, :, :16].sum((1, 2)) > 1).all() and (middle[:, :, 19:].sum((1, 2)) > 1).all(), "both sides"


def test_written_forms_need_labels_and_leave_other_specs_unchanged():
    images, labels = one_batch()
    with pytest.raises(ConfigError, match="labels"):
        augment_images(images, "cross7=0.5", seed=0)
    assert torch.equal(
        augment_images(images, "recommended", seed=0, labels=labels), augment_images(images, "recommended", seed=0)
    )


def test_narrow_shrinks_the_width_and_keeps_the_height():
    images = torch.zeros(16, 28, 28, dtype=torch.uint8)
    images[:, 4:24, 6:22] = 255  # a 16x20 block
    out = augment_images(images, "narrow=0.5", seed=0)[:, 0] > 0.5
    widths = out.any(1).sum(1).float()
    heights = out.any(2).sum(1).float()
    assert (widths <= 16).all() and widths.min() < 12 and (widths >= 7).all()
    assert (heights - 20).abs().max() <= 1


def test_narrow_leaves_sevens_their_width():
    images = torch.zeros(16, 28, 28, dtype=torch.uint8)
    images[:, 4:24, 6:22] = 255
    labels = torch.tensor([7, 3] * 8)
    out = augment_images(images, "narrow=0.5", seed=0, labels=labels)[:, 0] > 0.5
    widths = out.any(1).sum(1)
    assert (widths[labels == 7] == 16).all(), "a 7's bar keeps its length"
    assert widths[labels == 3].min() < 12, "the other digits narrow"


def test_square_stretches_a_narrow_stroke_towards_its_height_about_its_centre():
    images = torch.zeros(64, 28, 28, dtype=torch.uint8)
    images[:, 4:24, 12:16] = 255  # a 1's stem, 4x20
    out = augment_images(images, "square=1", seed=0)[:, 0] > 0.5
    widths, heights = out.any(1).sum(1).float(), out.any(2).sum(1).float()
    assert (heights - 20).abs().max() <= 1, "the long side stays"
    assert widths.min() >= 8 and widths.max() >= 18, "half to all of the way to a square (sqrt(20*4) ~ 9)"
    columns = torch.arange(28.0)
    centres = (out.any(1).float() * columns).sum(1) / widths
    assert (centres - 13.5).abs().max() <= 1, "stretched about the stem's centre"
    some = augment_images(images, "square=0.5", seed=0)[:, 0] > 0.5
    assert 0.2 < (some.any(1).sum(1) > 5).float().mean() < 0.8, "a 0.5 share is stretched"
    blank = torch.zeros(4, 28, 28, dtype=torch.uint8)
    assert augment_images(blank, "square=1", seed=0).abs().sum() == 0, "an image without ink stays blank"


def test_lowres_resamples_coarsely_and_keeps_the_digits_place():
    images = digit_batch(64)
    clean = to_float_images(images)
    out = augment_images(images, "lowres=1", seed=0)
    assert out.shape == clean.shape and out.min() >= 0 and out.max() <= 1
    changed = (out - clean).abs().sum((1, 2, 3))
    assert (changed > 5).all(), "every digit is resampled"
    assert (out[:, 0, 6:22, 10:14].mean((1, 2)) > 0.5).all(), "the stem stays where it was"
    # Coarse sampling leaves blurred edges: grey levels that the clean digit does not have.
    greys = ((out > 0.15) & (out < 0.85)).sum((1, 2, 3))
    assert (greys > 10).all()
    half = augment_images(images, "lowres=0.5", seed=1)
    assert 0.2 < ((half - clean).abs().sum((1, 2, 3)) > 5).float().mean() < 0.8


def test_the_max_filter_is_max_pooling_exactly():
    from ocr_core.augment import dilated

    images = torch.rand(5, 1, 28, 28)
    images[0] = 0  # blank, and ink touching every edge
    images[1, :, 0, :] = images[1, :, :, -1] = 1
    assert torch.equal(dilated(images), torch.nn.functional.max_pool2d(images, 3, stride=1, padding=1))
