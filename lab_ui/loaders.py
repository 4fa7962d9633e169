"""Cached access to runs, models, MNIST and evaluations, shared by every session of the server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch
from torch import nn

from ocr_core import MnistData, RunInfo, RunStore, evaluate, load_mnist, predict_probabilities
from ocr_core.calibration import Calibration, Reading, calibration_of, read_digits
from ocr_core.data import data_dir
from ocr_core.evaluation import folded_for_inference


def run_store() -> RunStore:
    """A store on the configured checkpoint dir (cheap: it only holds a path)."""
    return RunStore()


def list_runs() -> tuple[list[RunInfo], list[RunInfo]]:
    """(usable runs, files that are skipped because they are broken or not ours)."""
    runs = run_store().list()
    return [run for run in runs if run.ok], [run for run in runs if not run.ok]


@st.cache_resource(max_entries=16, show_spinner=False)
def load_model(path: str, modified: float) -> nn.Module:
    """`modified` is only part of the key, so a retrained or replaced run is never served stale."""
    checkpoint = Path(path)
    model, _ = RunStore(checkpoint.parent).load(checkpoint.stem)
    return model


def model_for(run: RunInfo) -> nn.Module:
    return load_model(str(run.path), run.modified)


def onnx_file(name: str) -> bytes:
    """The run as one ONNX file (ocr_core.export), made when the download is asked for (about 5 s)."""
    from ocr_core.export import onnx_bytes  # the exporter's packages are optional

    model, metadata = run_store().load(name)
    return onnx_bytes(name, model, metadata)


@st.cache_resource(max_entries=4, show_spinner=False)
def load_reader_model(path: str, modified: float) -> nn.Module:
    """The run with its batch norms folded: a number's digits go through it in one batch, several times faster."""
    return folded_for_inference(load_model(path, modified))


def reader_model(run: RunInfo) -> nn.Module:
    return load_reader_model(str(run.path), run.modified)


def predict(run: RunInfo, digit: torch.Tensor) -> np.ndarray:
    """Ten class probabilities for one prepared 28x28 digit."""
    return predict_probabilities(model_for(run), digit[None, None])[0]


@st.cache_resource(max_entries=16, show_spinner=False)
def load_calibration(path: str, modified: float) -> Calibration | None:
    """The run's validated calibration (decoded once per file version); CalibrationError if damaged."""
    return calibration_of(RunStore(Path(path).parent).info(Path(path).stem).metadata)


def read(run: RunInfo, digit: torch.Tensor) -> Reading:
    """One prepared 28x28 digit read with the run's calibration: calibrated confidence and the not-a-digit
    flag when it has one, the plain softmax otherwise."""
    return read_digits(model_for(run), digit[None], load_calibration(str(run.path), run.modified))[0]


@st.cache_resource(max_entries=2, show_spinner=False)
def load_dataset(source: str) -> MnistData:
    """`source` is only the cache key: a different OCR_DATA_DIR is a different dataset."""
    return load_mnist(download=False)


def dataset() -> MnistData:
    """MNIST from the data dir (no download here); raises DataUnavailableError when it is missing."""
    return load_dataset(str(data_dir()))


@dataclass(frozen=True)
class Scores:
    """One run on one test set, as the Evaluate page shows it; only the mistakes keep their images."""

    augment: str
    accuracy: float
    loss: float
    confusion: np.ndarray  # counts[true, predicted]
    per_class: pd.DataFrame
    mistakes: pd.DataFrame  # true, predicted, confidence; most confident first, rows match mistake_images
    mistake_images: np.ndarray  # uint8 (M, 28, 28)


@st.cache_data(max_entries=64, show_spinner=False)
def evaluate_run(path: str, modified: float, augment: str, data_fingerprint: str, _data: MnistData) -> Scores:
    """`data_fingerprint` stands in the cache key for `_data`, which Streamlit does not hash."""
    evaluation = evaluate(load_model(path, modified), _data.test_images, _data.test_labels, augment)
    wrong = evaluation.misclassified
    return Scores(
        augment=evaluation.augment,
        accuracy=evaluation.accuracy,
        loss=evaluation.loss,
        confusion=evaluation.confusion,
        per_class=pd.DataFrame([vars(metrics) for metrics in evaluation.per_class()]),
        mistakes=pd.DataFrame(
            {
                "true": evaluation.labels[wrong],
                "predicted": evaluation.predictions[wrong],
                "confidence": evaluation.confidences[wrong],
            }
        ),
        mistake_images=(evaluation.images[wrong, 0] * 255).round().to(torch.uint8).numpy(),
    )


def scores(run: RunInfo, augment: str, data: MnistData) -> Scores:
    return evaluate_run(str(run.path), run.modified, augment, data.fingerprint, data)
