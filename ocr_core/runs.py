"""Train, score and save a run in one call: what the CLI's `train` and the Train page both do."""
from __future__ import annotations

import platform
import threading
from dataclasses import replace
from datetime import datetime, timezone
from importlib.metadata import version

import safetensors
import torch

from .augment import PRESETS, as_spec
from .calibration import calibration_sets, fit_calibration
from .checkpoints import CheckpointError, RunInfo, RunStore, name_taken, validate_run_name
from .data import MnistData, load_mnist
from .evaluation import Evaluation, evaluate
from .metadata import DataInfo, RunMetadata, TestScore
from .models import multiply_adds, parameter_count
from .training import TrainConfig, TrainingCallback, TrainResult, fit

LIBRARY_VERSION = "1.0.0"
SEED_AUGMENTED = "seed"  # the tutorial's augmentation, as a robustness test set


def versions() -> dict[str, str]:
    # torchvision's version from package metadata: importing it would cost start-up time and memory
    return {"ocr_core": LIBRARY_VERSION, "torch": torch.__version__, "torchvision": version("torchvision"),
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def score(model: torch.nn.Module, data: MnistData, clean: Evaluation | None = None) -> dict[str, Evaluation]:
    """The two test sets every run is scored on: clean (pass `clean` if it was scored already), and
    transformed by the tutorial's augmentation."""
    return {
        "clean": clean or evaluate(model, data.test_images, data.test_labels),
        "seed_augmented": evaluate(model, data.test_images, data.test_labels, PRESETS[SEED_AUGMENTED]),
    }


def scores(evaluations: dict[str, Evaluation]) -> dict:
    """The metadata fields that scoring fills in: `metrics` and `per_class`."""
    return {"metrics": {name: TestScore(**evaluation.summary()) for name, evaluation in evaluations.items()},
            "per_class": tuple(evaluations["clean"].per_class())}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_metadata(result: TrainResult, data: MnistData, evaluations: dict[str, Evaluation]) -> RunMetadata:
    return RunMetadata(
        architecture=result.config.architecture,
        parameters=parameter_count(result.model),
        multiply_adds=multiply_adds(result.model),
        config=result.config,
        augment=as_spec(result.config.augment).to_string(),
        history=tuple(result.history),
        **scores(evaluations),
        stopped_early=result.stopped,
        epochs_completed=result.history[-1].epoch if result.history else 0.0,
        training_seconds=round(result.seconds, 2),
        device=result.device,
        precision=result.precision,
        data=DataInfo(data.fingerprint, len(data.train_labels), len(data.test_labels)),
        created=now(),
        versions=versions(),
    )


def holdout_digits(metadata: RunMetadata, data: MnistData) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's held-out training digits, which it never saw: the last `config.holdout` of the
    `data.train_size` images it was given (none for a run trained with no holdout). CheckpointError if the
    run was trained on other data."""
    if metadata.data.fingerprint != data.fingerprint:
        raise CheckpointError(f"the run was trained on other data than the data at hand "
                              f"({metadata.data.fingerprint} vs {data.fingerprint})")
    return data.subset(train=metadata.data.train_size).holdout_part(metadata.config.holdout)


def train_run(name: str, config: TrainConfig, store: RunStore | None = None, data: MnistData | None = None,
              callbacks: tuple[TrainingCallback, ...] = (), stop: threading.Event | None = None,
              overwrite: bool = False, keep_if_stopped: bool = True) -> tuple[RunInfo | None, TrainResult]:
    """Check the name, train, score, save. A stopped run is saved (marked so) unless `keep_if_stopped`
    is False; then the RunInfo is None."""
    store = store or RunStore()
    validate_run_name(name)
    if store.exists(name) and not overwrite:
        raise name_taken(name)
    data = data or load_mnist()
    result = fit(config, data, callbacks, stop)
    if not result.history or (result.stopped and not keep_if_stopped):
        return None, result
    metadata = run_metadata(result, data, score(result.model, data, result.final_test))
    return store.save(name, result.model, metadata, overwrite=overwrite), result


def holdout_of(metadata: RunMetadata, data: MnistData) -> int:
    """How many of the last training images of `data` the run never trained on: a run trained on the first N
    images of this very data (`--train-limit`, the Train page's first-N option) never saw the rest."""
    trained_on = metadata.data
    if trained_on.fingerprint.startswith(f"{data.fingerprint}[:"):
        return max(0, len(data.train_labels) - trained_on.train_size)
    if trained_on.fingerprint != data.fingerprint:
        raise CheckpointError(f"the run was trained on other data than the MNIST at hand "
                              f"({trained_on.fingerprint} vs {data.fingerprint})")
    return 0


def rescore_run(name: str, store: RunStore | None = None, data: MnistData | None = None) -> RunInfo:
    """Score a saved run again on the test sets as they are defined now (after a change to a preset, say)
    and rewrite its metrics in place; weights, config and history stay as they were."""
    store = store or RunStore()
    model, metadata = store.load(name)
    data = data or load_mnist()
    trained_on = metadata.data.fingerprint
    if trained_on != data.fingerprint:
        raise CheckpointError(f"{name!r} was trained on other data than the test set at hand "
                              f"({trained_on} vs {data.fingerprint})")
    rescored = replace(metadata, **scores(score(model, data)), rescored=now(), versions=versions())
    return store.save(name, model, rescored, overwrite=True)


def calibrate_run(name: str, store: RunStore | None = None, data: MnistData | None = None,
                  progress=None) -> RunInfo:
    """Fit a saved run's calibration (temperature, digit detector) on its held-out digits and store it in
    the run's metadata; CalibrationError when the run has none (it is then left "not calibrated")."""
    store = store or RunStore()
    model, metadata = store.load(name)
    data = data or load_mnist()
    calibration = fit_calibration(model, *calibration_sets(holdout_of(metadata, data), data), progress=progress)
    return store.save(name, model, replace(metadata, calibration=calibration.to_dict()), overwrite=True)
