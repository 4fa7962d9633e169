"""Calibrated confidence, the not-a-digit detector and its storage in run metadata, degenerate ink."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.sketches import DEGENERATE, sketches
from ocr_core.calibration import (
    Calibration,
    CalibrationError,
    DigitDetector,
    calibration_of,
    expected_calibration_error,
    false_alarm_threshold,
    fit_temperature,
    read_digits,
    softmax,
)
from ocr_core.cli import main
from ocr_core.data import load_mnist
from ocr_core.preprocess import prepare
from ocr_core.runs import train_run
from ocr_core.training import TrainConfig

TINY = TrainConfig(architecture="fast", epochs=1, batch_size=64)
HELD_OUT = TrainConfig(architecture="fast", epochs=1, batch_size=64, holdout=128)  # of 512 synthetic digits


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy_and_measures_overconfidence():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    honest = np.tile([0.75, 0.25], (8, 1))  # 75% confident in 0, right 75% of the time on these...
    honest_labels = np.array([0, 0, 0, 1, 0, 0, 0, 1])
    assert expected_calibration_error(honest, honest_labels) == pytest.approx(0.0)
    overconfident = np.tile([0.99, 0.01], (8, 1))  # 99% sure of 0, right half of the time
    assert expected_calibration_error(overconfident, labels) == pytest.approx(0.49)


def test_temperature_scaling_recovers_the_temperature_that_made_the_labels():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20_000, 10, generator=generator, dtype=torch.float64) * 4
    labels = torch.multinomial(torch.softmax(logits / 2.5, 1), 1, generator=generator)[:, 0].numpy()
    temperature = fit_temperature(logits.numpy(), labels)
    assert temperature == pytest.approx(2.5, rel=0.08)
    before = expected_calibration_error(softmax(logits.numpy()), labels)
    after = expected_calibration_error(softmax(logits.numpy(), temperature), labels)
    assert after < before / 3


def test_false_alarm_threshold_keeps_held_out_false_alarms_under_the_target_with_margin():
    scores = np.random.default_rng(0).random(5000)
    threshold, rate = false_alarm_threshold(scores, target=0.01)
    assert 0.005 < rate < 0.01  # ~36 of 5,000 allowed: the 95% upper bound is then just under 1%
    assert rate == pytest.approx((scores > threshold).mean())
    few_threshold, few_rate = false_alarm_threshold(scores[:50], target=0.01)
    assert few_rate == 0 and few_threshold == scores[:50].max()  # too few digits to allow any false alarm


def clusters(count: int, seed: int, centre_scale: float = 4.0) -> tuple[torch.Tensor, np.ndarray]:
    """Ten tight Gaussian clusters of 64-d post-ReLU-like features."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(10, 64, generator=torch.Generator().manual_seed(99)) * centre_scale
    labels = torch.randint(0, 10, (count,), generator=generator)
    return (centres[labels] + 0.3 * torch.randn(count, 64, generator=generator)).clamp_min(0), labels.numpy()


def cluster_detector() -> DigitDetector:
    fit_features, fit_labels = clusters(2000, seed=1)
    held_out, _ = clusters(1000, seed=2)
    return DigitDetector.fit(fit_features, fit_labels, held_out)


def test_digit_detector_flags_what_lies_away_from_every_class_and_survives_a_json_round_trip():
    detector = cluster_detector()
    new_digits, _ = clusters(1000, seed=3)
    strangers = torch.rand(200, 64, generator=torch.Generator().manual_seed(4)) * 4
    assert (detector.scores(new_digits) > detector.threshold).mean() < 0.03
    assert (detector.scores(strangers) > detector.threshold).mean() > 0.9
    stored = json.loads(json.dumps(detector.to_dict()))
    assert np.array_equal(DigitDetector.from_dict(stored).scores(strangers), detector.scores(strangers))


@pytest.fixture
def calibrated(store, tiny_data):
    """A tiny run trained on the first 384 synthetic digits and calibrated, by `train_run`, on the other 128."""
    info, _ = train_run("tiny", HELD_OUT, store, tiny_data)
    return info


def test_training_with_a_holdout_stores_a_small_validated_calibration_that_reads_without_data(
    calibrated, store, tiny_data
):
    metadata = store.info("tiny").metadata
    calibration = calibration_of(metadata)
    assert calibration.held_out == 128 and 0.05 <= calibration.temperature <= 20
    assert 0 <= calibration.ece_after <= 1 and 0 <= calibration.ece_before <= 1
    assert len(json.dumps(metadata.calibration)) < 100_000
    model, _ = store.load("tiny")
    readings = read_digits(model, tiny_data.test_images[:8].float().div(255), calibration)
    assert all(reading.calibrated and reading.looks_like_digit is not None for reading in readings)
    assert all(reading.probabilities.sum() == pytest.approx(1) for reading in readings)


def test_a_run_trained_on_every_image_is_not_calibrated_on_the_test_set(tiny_data_dir, store, capsys):
    data = load_mnist()  # the tiny digits as the CLI reads them, fingerprinted by content
    train_run("part", HELD_OUT, store, data)
    train_run("whole", TINY, store, data)
    before = calibration_of(store.info("part").metadata)
    assert main(["calibrate", "part"]) == 0  # again, as for a run saved before calibration existed
    assert "temperature" in capsys.readouterr().out
    assert calibration_of(store.info("part").metadata).temperature == pytest.approx(before.temperature)
    assert main(["calibrate", "whole"]) == 2
    assert "not calibrated" in capsys.readouterr().err
    assert store.info("whole").metadata.calibration is None
    model, metadata = store.load("whole")
    reading = read_digits(model, data.test_images[:1].float().div(255), calibration_of(metadata))[0]
    assert not reading.calibrated and reading.looks_like_digit is None


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda block: {**block, "version": 99}, "version"),
        (lambda block: {**block, "temperature": "hot"}, "temperature"),
        (lambda block: {**block, "temperature": 1e9}, "outside"),
        (lambda block: {**block, "ood": {**block["ood"], "precision_upper": "!!"}}, "base64"),
        (
            lambda block: {**block, "ood": {**block["ood"], "class_means": block["ood"]["class_means"][:40]}},
            "expected shape",
        ),
        (lambda block: {**block, "ood": {**block["ood"], "threshold": None}}, "threshold"),
        (lambda block: {**block, "ood": {**block["ood"], "method": "energy"}}, "calibrate the run again"),
        (lambda block: [], "JSON object"),
    ],
)
def test_a_damaged_calibration_block_is_named_not_used(damage, message):
    block = Calibration(1.5, 0.1, 0.01, 1000, cluster_detector(), "2026-01-01T00:00:00+00:00").to_dict()
    assert Calibration.from_dict(json.loads(json.dumps(block))).temperature == 1.5
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_dict(damage(block))


def test_every_kind_of_degenerate_ink_is_flagged_before_the_model_and_drawn_digits_are_not():
    for sketch in sketches("degenerate", 4, seed=0):
        prepared = prepare(sketch.image)
        assert not prepared.readable and prepared.digit is not None, sketch.name
    assert {sketch.name for sketch in sketches("degenerate", 1)} == set(DEGENERATE)
    assert all(prepare(sketch.image).readable for sketch in sketches("digit", 3, seed=0))
    dash = np.zeros((280, 280), np.uint8)
    dash[130:150, 40:240] = 255
    assert "flat" in prepare(dash).problem
    blank = prepare(np.zeros((50, 50), np.uint8))
    assert blank.digit is None and "no ink" in blank.problem


def test_predict_json_carries_calibrated_confidence_and_the_not_a_digit_flag(
    calibrated, tiny_data_dir, tmp_path, capsys
):
    sketch = next(iter(sketches("digit", 1, seed=0)))
    drawing, dot = tmp_path / "digit.png", tmp_path / "dot.png"
    Image.fromarray(sketch.image).save(drawing)
    Image.fromarray(next(s for s in sketches("degenerate", 1) if s.name == "dot").image).save(dot)
    assert main(["predict", "tiny", str(drawing), str(dot), "--json"]) == 0  # a non-digit is an answer
    read, flagged = json.loads(capsys.readouterr().out)
    assert read["calibrated"] is True and isinstance(read["looks_like_digit"], bool)
    assert 0 < read["confidence"] <= 1 and read["digit_threshold"] > 0
    assert flagged["prediction"] is None and flagged["looks_like_digit"] is False and "dot" in flagged["problem"]
    assert main(["predict", "tiny", str(dot)]) == 0
    assert "not a digit" in capsys.readouterr().out


def test_the_detector_learns_and_is_thresholded_on_the_hands_the_run_was_trained_for_and_no_clutter():
    from dataclasses import replace

    from conftest import sample_metadata, tiny_mnist

    from ocr_core.augment import parse_augment
    from ocr_core.calibration import FIT_IMAGES
    from ocr_core.runs import calibration_sets

    spec = parse_augment("recommended,strokes=0.5,flag1=0.5,hflip=0.5")
    writing = spec.writing()
    assert (writing.rotate, writing.flag1, writing.thickness) == (spec.rotate, 0.5, spec.thickness)
    assert (writing.strokes, writing.lines, writing.noise, writing.erase, writing.hflip, writing.blur) == (0,) * 6

    data = tiny_mnist(train=600)
    metadata = sample_metadata()
    metadata = replace(
        metadata,
        config=replace(metadata.config, holdout=100, augment="rotate=20,lines=2"),
        data=replace(metadata.data, train_size=600, fingerprint=data.fingerprint),
    )
    held_out, held_out_labels, fit_images, fit_labels = calibration_sets(metadata, data)
    assert len(held_out) == 100 and len(fit_images) == len(fit_labels) == min(FIT_IMAGES, 500)
    held_clean = data.train_images[500:].float().div(255)  # the last 100 of the 600
    assert torch.equal(held_out[:50, 0], held_clean[:50])  # the threshold's digits: half clean, half redrawn...
    assert (held_out[50:, 0] - held_clean[50:]).abs().amax((1, 2)).gt(0.1).float().mean() > 0.9
    assert held_out[50:].mean() > held_clean[50:].mean() + 0.01, "...under all the augmentation, lines too"
    mirrored = replace(metadata, config=replace(metadata.config, augment="hflip=1"))
    assert torch.equal(calibration_sets(mirrored, data)[0], data.train_images[500:]), "never mirrored"
    assert torch.equal(held_out_labels, data.train_labels[500:])
    clean = data.train_images[: len(fit_labels)].float().div(255)
    half = len(fit_labels) // 2
    assert torch.equal(fit_images[:half, 0], clean[:half])  # the first half as trained on, clean
    changed = (fit_images[half:, 0] - clean[half:]).abs().amax((1, 2)) > 0.1
    assert changed.float().mean() > 0.9  # the second half rotated...
    assert fit_images[half:].mean() < clean[half:].mean() + 0.02  # ...and not cluttered with lines
    unaugmented = replace(metadata, config=replace(metadata.config, augment="lines=2"))
    assert torch.equal(calibration_sets(unaugmented, data)[2], data.train_images[: len(fit_labels)])


def test_the_clean_threshold_comes_from_the_clean_held_out_digits_and_old_blocks_fall_back_to_the_threshold():
    from ocr_core.calibration import DigitDetector

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(1000) % 10
    fit = torch.randn(1000, 64, generator=generator) + torch.nn.functional.one_hot(labels, 64) * 4
    clean = torch.randn(400, 64, generator=generator) + torch.nn.functional.one_hot(labels[:400], 64) * 4
    redrawn = clean + torch.randn(400, 64, generator=generator)  # the run's hands: farther from the means
    detector = DigitDetector.fit(fit, labels.numpy(), torch.cat([clean, redrawn]), clean_held_out=400)
    assert detector.clean_threshold < detector.threshold
    assert detector.strangeness_unit == detector.clean_threshold
    stored = detector.to_dict()
    assert DigitDetector.from_dict(stored).clean_threshold == pytest.approx(detector.clean_threshold)
    del stored["clean_threshold"]  # a run calibrated before the field existed
    assert DigitDetector.from_dict(stored).strangeness_unit == pytest.approx(detector.threshold)
