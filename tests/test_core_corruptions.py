"""The corruption suite: every corruption at every severity keeps shape and range, is seeded, does more damage
as the severity grows, and shares no code with the training augmentation."""

import ast
import itertools

import pytest
import torch
from torchvision.transforms.v2.functional import gaussian_blur

from conftest import PROJECT_DIR, synthetic_digits
from ocr_core.corruptions import CORRUPTIONS, SEVERITIES, as_float_images, canny, corrupt
from ocr_core.errors import UserError


def digits(count=48):
    """Synthetic bar digits with soft 3-5 px strokes (float in [0, 1]), so a shift of one pixel more always
    overlaps the original less."""
    images, _ = synthetic_digits(count, seed=5)
    soft = gaussian_blur(as_float_images(images), [7, 7], [1.2, 1.2])
    return soft / soft.amax((1, 2, 3), keepdim=True)


def damage(corrupted: torch.Tensor, clean: torch.Tensor) -> float:
    """1 - cosine similarity to the clean image, averaged: 0 for no change, larger as less of the digit is left
    (L1 distance would call a broken outline less damage than a whole one)."""
    return float(1 - torch.nn.functional.cosine_similarity(corrupted.flatten(1), clean.flatten(1)).mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_keeps_shape_and_range_and_is_seeded(name):
    images = digits()
    first = corrupt(images, name, 3)
    assert first.shape == (48, 1, 28, 28) and first.dtype == torch.float32
    assert torch.isfinite(first).all() and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, corrupt(images, name, 3)), "same images, same seed: same corrupted images"
    assert not torch.equal(first, as_float_images(images)), "the corruption changed nothing"


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_damage_grows_with_severity(name):
    images = digits()
    clean = as_float_images(images)
    damages = [damage(corrupt(images, name, severity), clean) for severity in SEVERITIES]
    assert all(later > earlier for earlier, later in itertools.pairwise(damages)), damages


def test_random_corruptions_differ_with_the_seed():
    images = digits()
    for name in ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "rotate", "fog", "spatter", "zigzag"):
        assert not torch.equal(corrupt(images, name, 3, seed=1), corrupt(images, name, 3, seed=2)), name


def test_default_severity_matches_the_reference_settings():
    images = digits(8)
    clean = as_float_images(images)
    assert torch.allclose(corrupt(images, "brightness", 3), (clean + 0.5).clamp(0, 1))
    striped = corrupt(images, "stripe", 3)
    assert torch.equal(striped[..., :7], 1 - clean[..., :7]) and torch.equal(striped[..., 7:21], clean[..., 7:21])
    shifted = corrupt(images, "translate", 3)  # 3 whole pixels along each axis, either way
    inner = (..., slice(3, -3), slice(3, -3))  # away from where roll wraps around
    for sample in range(8):
        assert any(
            torch.allclose(shifted[sample][inner], clean[sample].roll((dy, dx), (1, 2))[inner], atol=1e-5)
            for dy in (-3, 3)
            for dx in (-3, 3)
        )


def test_canny_finds_the_outline_of_a_square_and_nothing_inside():
    square = torch.zeros(1, 1, 28, 28)
    square[..., 8:20, 8:20] = 1
    edges = canny(square)
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    assert edges[..., 12:16, 12:16].sum() == 0 and edges[..., 0:4, :].sum() == 0
    assert edges[..., 6:22, 6:22].sum() >= 40, "the outline is found"


def test_unknown_corruption_or_severity_is_a_clear_error():
    with pytest.raises(UserError, match="unknown corruption 'snow'"):
        corrupt(digits(2), "snow", 3)
    with pytest.raises(UserError, match="severity must be one of 1-5"):
        corrupt(digits(2), "fog", 6)


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return names | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def test_training_and_testing_damage_share_no_code():
    core = PROJECT_DIR / "ocr_core"
    assert not {"augment", ".augment", "ocr_core.augment"} & imported_modules(core / "corruptions.py")
    for trainer in ("augment.py", "training.py"):
        assert not any("corruptions" in module for module in imported_modules(core / trainer)), trainer
