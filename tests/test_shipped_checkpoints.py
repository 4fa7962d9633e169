"""The checkpoints committed in checkpoints/: self-describing, small, and as accurate as they claim."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import PROJECT_DIR, requires_mnist
from ocr_core.checkpoints import RunStore
from ocr_core.data import load_mnist
from ocr_core.evaluation import evaluate, predict_probabilities
from ocr_core.preprocess import prepare_digit

SHIPPED = RunStore(PROJECT_DIR / "checkpoints")
EXPECTED = {"best": ("accurate", "rotate=10,translate=0.1,scale=0.9-1.1,shear=10,elastic=1"),
            "seed": ("seed", "none"),
            "seed-aug": ("seed", "rotate=20,translate=0.2,scale=0.8-1.2,hflip=0.5")}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shipped_run_describes_itself_and_loads(name):
    info = SHIPPED.info(name)
    architecture, augment = EXPECTED[name]
    metadata = info.metadata
    assert (metadata["architecture"], metadata["augment"]) == (architecture, augment)
    assert not metadata["stopped_early"] and metadata["data"]["train_size"] == 60000
    assert info.size < 4 * 1024 * 1024
    model, _ = SHIPPED.load(name)
    assert not model.training


def test_shipped_recipes_are_the_tutorials_and_best_clears_99_6():
    seed, seed_aug = SHIPPED.info("seed").metadata, SHIPPED.info("seed-aug").metadata
    for metadata in (seed, seed_aug):
        config = metadata["config"]
        assert (config["epochs"], config["batch_size"], config["learning_rate"], config["optimizer"],
                config["schedule"]) == (5, 64, 1e-3, "adam", "constant")
    assert SHIPPED.info("best").metric("clean") >= 0.996
    assert seed["metrics"]["clean"]["accuracy"] >= 0.99


@requires_mnist
@pytest.mark.parametrize("name", list(EXPECTED))
def test_shipped_metrics_reproduce_on_the_real_test_set(name):
    data = load_mnist(download=False)
    model, metadata = SHIPPED.load(name)
    assert metadata["data"]["fingerprint"] == data.fingerprint
    for key, augment in (("clean", None), ("seed_augmented", "seed")):
        evaluation = evaluate(model, data.test_images, data.test_labels, augment)
        assert evaluation.accuracy == pytest.approx(metadata["metrics"][key]["accuracy"], abs=2e-4)


@requires_mnist
def test_cli_evaluate_best_prints_accuracy_of_at_least_0_996():
    completed = subprocess.run([sys.executable, "-m", "ocr_core", "evaluate", "best", "--json"], cwd=PROJECT_DIR,
                               capture_output=True, text=True, timeout=300,
                               env={**os.environ, "OCR_CHECKPOINT_DIR": str(SHIPPED.root)})
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["accuracy"] >= 0.996


@requires_mnist
def test_drawing_preprocessing_keeps_mnist_digits_readable():
    """MNIST digits sent through the drawing pipeline (as if drawn) are still read by `best`."""
    data = load_mnist(download=False)
    images, labels = data.test_images[:1000], data.test_labels[:1000]
    prepared = [prepare_digit(image.numpy()) for image in images]
    assert all(digit is not None for digit in prepared)
    probabilities = predict_probabilities(SHIPPED.load("best")[0], torch.stack(prepared))
    assert (probabilities.argmax(1) == labels.numpy()).mean() >= 0.98
