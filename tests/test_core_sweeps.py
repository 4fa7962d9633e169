"""Strength sweeps: each transform at growing strength, seeded, scored and cached per run."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

from ocr_core import sweeps
from ocr_core.augment import to_float_images
from ocr_core.runs import train_run
from ocr_core.sweeps import SWEEPS, compute_sweeps, run_sweeps, swept_images
from ocr_core.training import TrainConfig

ASKED_FOR = {"rotate", "translate", "zoom", "shear", "elastic", "noise", "blur", "contrast", "thinner", "thicker"}


def test_every_sweep_the_issue_asks_for_starts_from_the_untouched_digits(tiny_data):
    assert set(SWEEPS) == ASKED_FOR
    images = tiny_data.test_images[:16]
    for sweep in SWEEPS.values():
        untouched = sweep.strengths[0]
        assert torch.equal(swept_images(images, sweep, untouched), to_float_images(images)), sweep.name
        strongest = sweep.strengths[-1] if sweep.name != "zoom" else min(sweep.strengths)
        assert not torch.equal(swept_images(images, sweep, strongest), to_float_images(images)), sweep.name


@pytest.mark.parametrize("name", sorted(ASKED_FOR - {"zoom"}))
def test_damage_grows_with_strength_and_is_the_same_on_every_call(tiny_data, name):
    sweep = SWEEPS[name]
    images = tiny_data.test_images[:64]
    clean = to_float_images(images)
    change = [float((swept_images(images, sweep, strength) - clean).abs().mean()) for strength in sweep.strengths]
    assert change[-1] > change[1] > 0
    assert torch.equal(swept_images(images, sweep, sweep.strengths[2]), swept_images(images, sweep, sweep.strengths[2]))


def test_pen_sweeps_thin_and_thicken_every_digit(tiny_data):
    images = tiny_data.test_images[:32]
    ink = to_float_images(images).sum((1, 2, 3))
    thinner = swept_images(images, SWEEPS["thinner"], 1).sum((1, 2, 3))
    thicker = swept_images(images, SWEEPS["thicker"], 1).sum((1, 2, 3))
    assert (thinner < ink).all() and (thicker > ink).all()


def test_sweeps_are_scored_at_every_point_and_cached_per_run(store, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    train_run("tiny", TrainConfig(epochs=1, batch_size=64), store, tiny_data)
    heard, few = [], tiny_data.subset(test=40)  # 73 points: a few digits keep this test quick
    result = run_sweeps("tiny", store, few, progress=lambda *step: heard.append(step))
    points = sum(len(sweep.strengths) for sweep in SWEEPS.values())
    assert heard[-1][:2] == (points, points) and len(heard) == points
    assert heard[1][2] == f"{SWEEPS['rotate'].label} {SWEEPS['rotate'].strengths[1]:g}", "the axis's words"
    clean = {result.accuracy[name][0] for name in SWEEPS}
    assert len(clean) == 1  # every sweep starts from the same untouched digits
    assert all(0 <= value <= 1 for values in result.accuracy.values() for value in values)
    assert [strength for strength, _ in result.points("zoom")] == sorted(SWEEPS["zoom"].strengths)
    with mock.patch.object(sweeps, "compute_sweeps", side_effect=AssertionError("computed twice")):
        assert run_sweeps("tiny", store, few) == result


def test_compute_sweeps_accuracy_is_the_share_of_right_answers(tiny_data):
    model = mock.MagicMock()
    with (
        mock.patch.object(sweeps, "folded_for_inference", return_value=model),
        mock.patch.object(sweeps, "predict_probabilities", side_effect=lambda m, x: np.eye(10)[np.zeros(len(x), int)]),
    ):
        result = compute_sweeps(model, tiny_data.test_images[:40], tiny_data.test_labels[:40], "w")
    share_of_zeros = float((tiny_data.test_labels[:40].numpy() == 0).mean())
    assert all(value == pytest.approx(share_of_zeros) for values in result.accuracy.values() for value in values)
