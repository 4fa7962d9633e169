"""The checkpoints committed in checkpoints/: self-describing, small, and as accurate as they claim."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import PROJECT_DIR, requires_mnist
from ocr_core.augment import as_spec
from ocr_core.checkpoints import RunStore
from ocr_core.data import load_mnist
from ocr_core.evaluation import evaluate, predict_probabilities
from ocr_core.preprocess import prepare_digit
from ocr_core.robustness import cached_report, corrupted_suite, report_file_name, report_subset, run_weights_hash
from ocr_core.sweeps import DIGITS_PER_CLASS as SWEEP_DIGITS_PER_CLASS
from ocr_core.sweeps import SWEEPS, cached_sweeps, swept_images, sweep_file_name
from ocr_core.training import HOLDOUT, RECIPES

SHIPPED = RunStore(PROJECT_DIR / "checkpoints")
# Issue 9's goal was 99.6%; issue 19's `best` (99.55%, measured) was chosen on held-out digits (99.56% against
# 99.54% for the 99.62% run before it) and reads flagged 1s and crossed 7s that the earlier run did not.
BEST_CLEAN_FLOOR = 0.995
BEST_MEAN_CORRUPTED_FLOOR, BEST_WORST_CORRUPTION_FLOOR = 0.93, 0.60  # over the suite at severity 3 (issue 9)
EXPECTED = {
    "best": ("deep", as_spec(RECIPES["best"].augment).to_string()),
    "seed": ("seed", "none"),
    "seed-aug": ("seed", "rotate=20,translate=0.2,crop=0.8-1.2,hflip=0.5"),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shipped_run_describes_itself_and_loads(name):
    info = SHIPPED.info(name)
    architecture, augment = EXPECTED[name]
    metadata = info.metadata
    assert (metadata.architecture, metadata.augment) == (architecture, augment)
    assert not metadata.stopped_early and metadata.data.train_size == 60000
    assert metadata.config.holdout == HOLDOUT, "the last 5,000 training digits are held out, for calibration"
    assert info.size < 4 * 1024 * 1024
    model, _ = SHIPPED.load(name)
    assert not model.training


def test_shipped_recipes_are_the_tutorials_and_best_is_the_most_accurate():
    seed, seed_aug = SHIPPED.info("seed").metadata, SHIPPED.info("seed-aug").metadata
    for metadata in (seed, seed_aug):
        config = metadata.config
        assert (
            config.epochs,
            config.batch_size,
            config.learning_rate,
            config.optimizer,
            config.schedule,
            config.label_smoothing,
            config.precision,
        ) == (5, 64, 1e-3, "adam", "constant", 0, "fp32")
    best = SHIPPED.info("best").metric("clean")
    assert best >= BEST_CLEAN_FLOOR
    assert best > seed.metric("clean") and best > seed_aug.metric("clean"), "best is the most accurate shipped run"
    assert seed.metric("clean") >= 0.99


@requires_mnist
@pytest.mark.parametrize("name", list(EXPECTED))
def test_shipped_metrics_reproduce_on_the_real_test_set(name):
    data = load_mnist(download=False)
    model, metadata = SHIPPED.load(name)
    assert metadata.data.fingerprint == data.fingerprint
    for key, augment in (("clean", None), ("seed_augmented", "seed")):
        evaluation = evaluate(model, data.test_images, data.test_labels, augment)
        assert evaluation.accuracy == pytest.approx(metadata.metric(key), abs=2e-4)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shipped_runs_ship_their_robustness_report(name):
    report = cached_report(SHIPPED.info(name), SHIPPED)
    assert report is not None and report.weights == run_weights_hash(SHIPPED.info(name))
    assert (SHIPPED.root / "reports" / report_file_name(report.weights)).is_file(), "shipped, not only cached"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shipped_runs_ship_their_strength_sweeps(name):
    """Shipped as the reports are: the Robustness page's "Accuracy vs strength" opens at once, without MNIST."""
    weights = run_weights_hash(SHIPPED.info(name))
    assert (SHIPPED.root / "reports" / sweep_file_name(weights)).is_file(), "shipped, not only cached"
    sweeps = cached_sweeps(weights, SHIPPED)
    assert sweeps is not None and sweeps.weights == weights and set(sweeps.accuracy) == set(SWEEPS)


@requires_mnist
def test_a_shipped_sweep_reproduces_on_the_real_test_set():
    data = load_mnist(download=False)
    images, labels = report_subset(data.test_images, data.test_labels, SWEEP_DIGITS_PER_CLASS)
    model, _ = SHIPPED.load("seed")
    sweeps = cached_sweeps(run_weights_hash(SHIPPED.info("seed")), SHIPPED)
    sweep = SWEEPS["rotate"]
    strength = sweep.strengths[2]
    accuracy = (predict_probabilities(model, swept_images(images, sweep, strength)).argmax(1) == labels.numpy()).mean()
    assert accuracy == pytest.approx(sweeps.accuracy["rotate"][2], abs=1e-9)


def test_best_meets_the_robustness_targets_and_beats_seed():
    best, seed = (cached_report(SHIPPED.info(name), SHIPPED) for name in ("best", "seed"))
    assert best.mean(3) >= BEST_MEAN_CORRUPTED_FLOOR and best.worst(3)[1] >= BEST_WORST_CORRUPTION_FLOOR
    assert best.mean(3) > seed.mean(3) and best.mce(seed) < 1


@requires_mnist
def test_a_shipped_report_reproduces_on_the_real_test_set():
    data = load_mnist(download=False)
    images, labels = report_subset(data.test_images, data.test_labels)
    model, _ = SHIPPED.load("best")
    report = cached_report(SHIPPED.info("best"), SHIPPED)
    for name in ("fog", "impulse_noise"):
        corrupted = corrupted_suite(images, name)[2]  # severity 3
        accuracy = (predict_probabilities(model, corrupted).argmax(1) == labels.numpy()).mean()
        assert accuracy == pytest.approx(report.accuracy[name][3], abs=1e-9)


@requires_mnist
def test_cli_evaluate_best_prints_its_accuracy_as_a_fraction():
    completed = subprocess.run(
        [sys.executable, "-m", "ocr_core", "evaluate", "best", "--json"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OCR_CHECKPOINT_DIR": str(SHIPPED.root)},
    )
    assert completed.returncode == 0, completed.stderr
    assert BEST_CLEAN_FLOOR <= json.loads(completed.stdout)["accuracy"] <= 1


@requires_mnist
def test_drawing_preprocessing_keeps_mnist_digits_readable():
    """MNIST digits sent through the drawing pipeline (as if drawn) are still read by `best`."""
    data = load_mnist(download=False)
    images, labels = data.test_images[:1000], data.test_labels[:1000]
    prepared = [prepare_digit(image.numpy()) for image in images]
    assert all(digit is not None for digit in prepared)
    probabilities = predict_probabilities(SHIPPED.load("best")[0], torch.stack(prepared))
    # measured 0.989 for the `best` trained with non-digits (outlier exposure; 0.991 read straight), 0.991 for
    # the one before it on today's clean-up: the learned "not a digit" costs two of these 1,000
    assert (probabilities.argmax(1) == labels.numpy()).mean() >= 0.985


def canvas_drawing(strokes, width=18):
    """A 280x280 RGBA canvas (white ink on black), with lines and ellipses as a mouse would draw them."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    for kind, points in strokes:
        if kind == "line":
            pen.line(points, fill=(255, 255, 255, 255), width=width, joint="curve")
        else:
            pen.ellipse(points, outline=(255, 255, 255, 255), width=width)
    return np.asarray(image)


DRAWN_DIGITS = {
    0: [("ellipse", [90, 50, 190, 230])],
    1: [("line", [(140, 40), (140, 240)])],
    2: [("line", [(80, 80), (120, 45), (170, 50), (190, 90), (170, 140), (80, 230), (200, 230)])],
    3: [("line", [(80, 60), (180, 60), (130, 130), (190, 180), (150, 235), (80, 220)])],
    4: [("line", [(150, 40), (70, 170), (200, 170)]), ("line", [(160, 100), (160, 240)])],
    5: [("line", [(190, 50), (100, 50), (90, 130), (170, 130), (190, 190), (150, 235), (80, 220)])],
    6: [("line", [(170, 40), (100, 120), (90, 190)]), ("ellipse", [85, 140, 185, 235])],
    7: [("line", [(70, 50), (200, 50), (110, 240)])],
    8: [("ellipse", [100, 40, 180, 130]), ("ellipse", [90, 130, 190, 235])],
    9: [("ellipse", [90, 40, 180, 130]), ("line", [(178, 90), (170, 240)])],
}


def test_best_reads_canvas_drawings_of_every_digit():
    model, _ = SHIPPED.load("best")
    drawings = torch.stack([prepare_digit(canvas_drawing(strokes)) for strokes in DRAWN_DIGITS.values()])
    predictions = predict_probabilities(model, drawings).argmax(1)
    assert predictions.tolist() == list(DRAWN_DIGITS)


CONDENSED_DIGITS = {  # 30 pixels wide and 200 tall, as condensed handwriting is; and a 1, which has no loop
    0: [("ellipse", [125, 40, 155, 240])],
    1: [("line", [(145, 40), (135, 240)])],
    6: [("line", [(155, 40), (129, 140), (127, 190)]), ("ellipse", [125, 140, 155, 238])],
    8: [("ellipse", [128, 40, 152, 135]), ("ellipse", [125, 135, 155, 238])],
    9: [("ellipse", [125, 40, 155, 135]), ("line", [(153, 90), (152, 240)])],
}


def test_best_reads_condensed_digits_by_their_loops():
    # Fitted to MNIST's 20-pixel box as they are, their loops closed to a bar and `best` read each of them 1
    # (held-out condensed digits: 8s, 9s and 0s read 1); widened, the loops stay open. The 1 is left as it is.
    model, _ = SHIPPED.load("best")
    drawings = [prepare_digit(canvas_drawing(strokes, width=12)) for strokes in CONDENSED_DIGITS.values()]
    assert predict_probabilities(model, torch.stack(drawings)).argmax(1).tolist() == list(CONDENSED_DIGITS)
    assert (drawings[1].numpy().max(0) > 0.5).sum() <= 6  # the 1 keeps its width
