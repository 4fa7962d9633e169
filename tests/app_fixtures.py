"""Fixtures for the app tests: tiny synthetic MNIST on disk, and a run store holding small runs named like
the shipped ones plus a broken file, all under a temp dir that the OCR_* variables point at."""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import tiny_mnist, write_idx_dataset
from ocr_core import MnistData, RunStore, TrainConfig, train_run

PROJECT_DIR = Path(__file__).resolve().parent.parent
TINY_RUN = TrainConfig(epochs=1, batch_size=64, report_every=2)
TINY_RUNS = {"best": "none", "seed": "none", "seed-aug": "seed"}  # name -> training augmentation
BROKEN_RUN = "broken"


@dataclass
class AppEnvironment:
    root: Path
    data_dir: Path
    store: RunStore
    data: MnistData

    def variables(self) -> dict[str, str]:
        return {"OCR_DATA_DIR": str(self.data_dir), "OCR_CACHE_DIR": str(self.root / "cache"),
                "OCR_CHECKPOINT_DIR": str(self.store.root)}


def make_app_environment(root: Path) -> AppEnvironment:
    data = tiny_mnist()
    write_idx_dataset(root / "data", data)
    store = RunStore(root / "checkpoints")
    for name, augment in TINY_RUNS.items():
        train_run(name, replace(TINY_RUN, augment=augment), store, data)
    (store.root / f"{BROKEN_RUN}.safetensors").write_bytes(b"not a checkpoint")
    return AppEnvironment(root, root / "data", store, data)


@pytest.fixture(scope="module")
def app_env(tmp_path_factory) -> AppEnvironment:
    """Module-scoped, so the variables are restored before the engine tests (which read real MNIST) run."""
    environment = make_app_environment(tmp_path_factory.mktemp("app"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.variables().items():
            patch.setenv(name, value)
        yield environment


def canvas_drawing() -> np.ndarray:
    """What the canvas returns for a drawn '7': RGBA uint8, white ink on opaque black."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(image).line([(70, 60), (200, 60), (110, 230)], fill=(255, 255, 255, 255), width=20)
    return np.asarray(image)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
