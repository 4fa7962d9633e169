"""Fixtures that make tiny synthetic MNIST-like data, so engine tests need neither the network nor MNIST."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ocr_core.checkpoints import RunStore
from ocr_core.data import MnistData, locate_raw_files
from ocr_core.evaluation import ClassMetrics
from ocr_core.metadata import DataInfo, RunMetadata, TestScore
from ocr_core.training import EpochRecord, TrainConfig

PROJECT_DIR = Path(__file__).resolve().parent.parent
REAL_DATA_DIR = os.environ.get("OCR_DATA_DIR")
pytest_plugins = ["app_fixtures"]  # app_env and app_template, for every test module that asks for them


def synthetic_digits(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k is a thick bar at a class-specific row and angle, jittered: easy, but not trivial, to learn."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 10, count)
    images = np.zeros((count, 28, 28), np.uint8)
    for index, label in enumerate(labels):
        row = 4 + 2 * label + generator.integers(-1, 2)
        start, length = generator.integers(4, 9), generator.integers(12, 17)
        images[index, row : row + 3, start : start + length] = 255
        if label % 2:  # odd digits also get a vertical stroke, so classes differ in shape too
            images[index, 6:22, 12 + label // 2 : 14 + label // 2] = 200
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def tiny_mnist(train: int = 512, test: int = 128) -> MnistData:
    train_images, train_labels = synthetic_digits(train, seed=1)
    test_images, test_labels = synthetic_digits(test, seed=2)
    return MnistData(train_images, train_labels, test_images, test_labels, fingerprint="synthetic", source="tests")


def sample_metadata(architecture: str = "fast", clean: float = 0.5) -> RunMetadata:
    """Complete metadata for runs that tests save without training."""
    return RunMetadata(
        architecture=architecture,
        parameters=1,
        multiply_adds=1,
        config=TrainConfig(architecture=architecture),
        augment="none",
        history=(EpochRecord(1.0, 0.5, 0.8, 0.6, clean, 1.0, 100.0, 0.01),),
        metrics={"clean": TestScore("none", clean, 0.6, 128), "seed_augmented": TestScore("seed", 0.3, 2.0, 128)},
        per_class=tuple(ClassMetrics(digit, 0.5, 0.5, 0.5, 10) for digit in range(10)),
        stopped_early=False,
        epochs_completed=1.0,
        training_seconds=1.0,
        device="cpu",
        precision="fp32",
        data=DataInfo("synthetic", 512, 128),
        created="2026-01-01T00:00:00+00:00",
        versions={"ocr_core": "1.0.0"},
    )


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_idx_dataset(root: Path, data: MnistData) -> None:
    raw = root / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", data.train_images.numpy())
    write_idx(raw / "train-labels-idx1-ubyte", data.train_labels.numpy())
    write_idx(raw / "t10k-images-idx3-ubyte", data.test_images.numpy())
    write_idx(raw / "t10k-labels-idx1-ubyte", data.test_labels.numpy())


@pytest.fixture
def tiny_data() -> MnistData:
    return tiny_mnist()


@pytest.fixture
def tiny_data_dir(tmp_path, monkeypatch, tiny_data) -> Path:
    """OCR_DATA_DIR holding tiny uncompressed IDX files, with the decode cache in a temp dir."""
    root = tmp_path / "data"
    write_idx_dataset(root, tiny_data)
    monkeypatch.setenv("OCR_DATA_DIR", str(root))
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    return root


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("OCR_CHECKPOINT_DIR", str(root))
    return RunStore(root)


requires_mnist = pytest.mark.skipif(
    not REAL_DATA_DIR or locate_raw_files(Path(REAL_DATA_DIR)) is None,
    reason="real MNIST not available: set OCR_DATA_DIR to a folder with MNIST/raw/*.gz",
)
