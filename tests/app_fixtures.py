"""Fixtures for the app tests: tiny synthetic MNIST on disk, and a run store holding small runs named like
the shipped ones plus a broken file and an incomplete run, all under a temp dir that the OCR_* variables
point at. The runs are trained once per session; every test gets its own copy, so tests that rename,
delete or add runs cannot disturb each other, whatever their order."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from safetensors.torch import save_file

from conftest import tiny_mnist, write_idx_dataset
from ocr_core import MnistData, RunStore, TrainConfig, build_model, train_run
from ocr_core.checkpoints import FORMAT
from ocr_core.jobs import jobs_folder, stop_worker

PROJECT_DIR = Path(__file__).resolve().parent.parent
TINY_RUN = TrainConfig(epochs=1, batch_size=64)
TINY_RUNS = {"best": "none", "seed": "none", "seed-aug": "seed"}  # name -> training augmentation
BROKEN_RUN = "broken"
INCOMPLETE_RUN = "old"  # a run file in the lab's format whose metadata holds only the architecture
TIMEOUT = 120  # seconds per AppTest script run: generous for a loaded 2-core CI machine


def texts(elements) -> str:
    """The values of AppTest elements (markdown, captions, alerts…) as one string to search."""
    return " ".join(str(element.value) for element in elements)


@dataclass
class AppEnvironment:
    root: Path
    data_dir: Path
    store: RunStore
    data: MnistData

    def variables(self) -> dict[str, str]:
        return {
            "OCR_DATA_DIR": str(self.data_dir),
            "OCR_CACHE_DIR": str(self.root / "cache"),
            "OCR_CHECKPOINT_DIR": str(self.store.root),
            "OCR_SAMPLES_DB": str(self.root / "samples.sqlite"),
        }


def make_app_environment(root: Path) -> AppEnvironment:
    data = tiny_mnist()
    write_idx_dataset(root / "data", data)
    store = RunStore(root / "checkpoints")
    for name, augment in TINY_RUNS.items():
        train_run(name, replace(TINY_RUN, augment=augment), store, data)
    (store.root / f"{BROKEN_RUN}.safetensors").write_bytes(b"not a checkpoint")
    weights = {key: value.contiguous() for key, value in build_model("fast").state_dict().items()}
    save_file(
        weights,
        str(store.root / f"{INCOMPLETE_RUN}.safetensors"),
        metadata={"format": FORMAT, "format_version": "1", "metadata": json.dumps({"architecture": "fast"})},
    )
    return AppEnvironment(root, root / "data", store, data)


@pytest.fixture(scope="session")
def app_template(tmp_path_factory) -> AppEnvironment:
    """Trained once per session; never handed to a test (see app_env)."""
    return make_app_environment(tmp_path_factory.mktemp("app-template"))


@pytest.fixture
def app_env(app_template, tmp_path, monkeypatch) -> AppEnvironment:
    """A private copy of the template for one test, with the OCR_* variables pointing at it."""
    root = tmp_path / "app"
    shutil.copytree(app_template.root, root, ignore=shutil.ignore_patterns("cache"))
    environment = AppEnvironment(root, root / "data", RunStore(root / "checkpoints"), app_template.data)
    for name, value in environment.variables().items():
        monkeypatch.setenv(name, value)
    yield environment
    stop_worker(jobs_folder())  # a training worker the test's pages started ends with the test


def canvas_drawing() -> np.ndarray:
    """What the canvas returns for a drawn '7': RGBA uint8, white ink on opaque black."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(image).line([(70, 60), (200, 60), (110, 230)], fill=(255, 255, 255, 255), width=20)
    return np.asarray(image)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
