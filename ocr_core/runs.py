"""Train, score and save a run in one call: what the CLI's `train` and the Train page both do."""

from __future__ import annotations

import platform
import threading
from contextlib import suppress
from dataclasses import replace
from datetime import datetime, timezone
from importlib.metadata import version

import safetensors
import torch

from .augment import PRESETS, AugmentSpec, as_spec, augment_images, to_float_images
from .calibration import FIT_IMAGES, NOT_CALIBRATED, Calibration, CalibrationError, CalibrationProgress, fit_calibration
from .checkpoints import CheckpointError, RunInfo, RunStore, name_taken, validate_run_name
from .data import MnistData, load_mnist
from .evaluation import Evaluation, evaluate
from .metadata import AUGMENTED_TEST, AUGMENTED_TEST_PRESET, CLEAN_TEST, DataInfo, RunMetadata, TestScore
from .models import multiply_adds, parameter_count
from .training import FINISHING_LABELS, TrainConfig, TrainingCallback, TrainResult, fit

LIBRARY_VERSION = "1.0.0"
# The runs shipped in checkpoints/ (README: "What is in the box"), named by the part each plays.
BEST_RUN, TUTORIAL_RUN, TUTORIAL_AUGMENTED_RUN = "best", "seed", "seed-aug"
SHIPPED_RUNS = (BEST_RUN, TUTORIAL_RUN, TUTORIAL_AUGMENTED_RUN)
# Where each part of the work after the last step starts, as a share of it (clean scoring starts at 0)
FINISHING_SHARES = {"augmented": 0.2, "calibrating": 0.45, "saving": 0.97}


def versions() -> dict[str, str]:
    # torchvision's version from package metadata: importing it would cost start-up time and memory
    return {
        "ocr_core": LIBRARY_VERSION,
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def score(model: torch.nn.Module, data: MnistData, clean: Evaluation | None = None) -> dict[str, Evaluation]:
    """The two test sets every run is scored on: clean (pass `clean` if it was scored already), and
    transformed by the tutorial's augmentation."""
    return {
        CLEAN_TEST: clean or evaluate(model, data.test_images, data.test_labels),
        AUGMENTED_TEST: evaluate(model, data.test_images, data.test_labels, PRESETS[AUGMENTED_TEST_PRESET]),
    }


def scores(evaluations: dict[str, Evaluation]) -> dict:
    """The metadata fields that scoring fills in: `metrics` and `per_class`."""
    return {
        "metrics": {name: TestScore(**evaluation.summary()) for name, evaluation in evaluations.items()},
        "per_class": tuple(evaluations[CLEAN_TEST].per_class()),
    }


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
        raise CheckpointError(
            f"the run was trained on other data than the data at hand "
            f"({metadata.data.fingerprint} vs {data.fingerprint})"
        )
    return data.subset(train=metadata.data.train_size).holdout_part(metadata.config.holdout)


def train_run(
    name: str,
    config: TrainConfig,
    store: RunStore | None = None,
    data: MnistData | None = None,
    callbacks: tuple[TrainingCallback, ...] = (),
    stop: threading.Event | None = None,
    overwrite: bool = False,
    keep_if_stopped: bool = True,
    scores_per_epoch: int = 0,
) -> tuple[RunInfo | None, TrainResult]:
    """Check the name, train, score, save. A stopped run is saved (marked so) unless `keep_if_stopped`
    is False; then the RunInfo is None. `scores_per_epoch` goes to `fit`."""
    store = store or RunStore()
    validate_run_name(name)
    if store.exists(name) and not overwrite:
        raise name_taken(name)
    data = data or load_mnist()
    result = fit(config, data, callbacks, stop, scores_per_epoch)
    if not result.history or (result.stopped and not keep_if_stopped):
        return None, result

    def finishing(fraction: float, step: str) -> None:
        for callback in callbacks:
            callback.on_finishing(fraction, FINISHING_LABELS[step])

    # rough shares of the work after the last step: scoring 10,000 clean digits, as many augmented ones,
    # then calibration's 15,000 (held-out and trained-on digits), then the save
    finishing(FINISHING_SHARES["augmented"], "augmented")
    metadata = run_metadata(result, data, score(result.model, data, result.final_test))
    if config.holdout:
        start, end = FINISHING_SHARES["calibrating"], FINISHING_SHARES["saving"]
        finishing(start, "calibrating")

        def calibrating(fraction: float, message: str) -> None:
            finishing(start + fraction * (end - start), "calibrating")

        with suppress(CalibrationError):  # too few held-out digits to calibrate on: saved "not calibrated"
            metadata = replace(
                metadata, calibration=calibration_for(result.model, metadata, data, calibrating).to_dict()
            )
    finishing(FINISHING_SHARES["saving"], "saving")
    info = store.save(name, result.model, metadata, overwrite=overwrite)
    finishing(1.0, "saving")
    return info, result


def rescore_run(name: str, store: RunStore | None = None, data: MnistData | None = None) -> RunInfo:
    """Score a saved run again on the test sets as they are defined now (after a change to a preset, say)
    and rewrite its metrics in place; weights, config and history stay as they were."""
    store = store or RunStore()
    model, metadata = store.load(name)
    data = data or load_mnist()
    trained_on = metadata.data.fingerprint
    if trained_on != data.fingerprint:
        raise CheckpointError(
            f"{name!r} was trained on other data than the test set at hand ({trained_on} vs {data.fingerprint})"
        )
    rescored = replace(metadata, **scores(score(model, data)), rescored=now(), versions=versions())
    return store.save(name, model, rescored, overwrite=True)


WRITTEN_SEED = 20261202  # the seeded draws of the calibration's written variants: the same on every machine


def kept_clean(count: int, spec: AugmentSpec) -> int:
    """How many of `count` digits `half_redrawn` leaves as they are, first: all under an identity spec, else half."""
    return count if spec.is_identity else count // 2


def half_redrawn(images: torch.Tensor, labels: torch.Tensor, spec: AugmentSpec, seed: int) -> torch.Tensor:
    """`images` as float, the second half redrawn under `spec` (as they are when `spec` changes nothing)."""
    clean = kept_clean(len(labels), spec)
    if clean == len(labels):
        return images
    return torch.cat([to_float_images(images[:clean]), augment_images(images[clean:], spec, seed, labels[clean:])])


def calibration_sets(metadata: RunMetadata, data: MnistData) -> tuple[torch.Tensor, ...]:
    """(held-out images, labels, trained-on images, labels): the run's held-out digits (for the temperature and
    the threshold) and the first FIT_IMAGES it trained on (for the detector's class statistics).
    - The second half of the trained-on digits is redrawn in the writing part of the run's own augmentation
      (`AugmentSpec.writing`: slant, size, flags, bars, pen width; no clutter), so that the detector's classes
      hold every hand the run learned to read. Fitted on clean digits only, it called 41% of flagged 1s "not
      a digit" for a run trained to read them, against 7.5% so fitted.
    - The second half of the held-out digits is redrawn under all of the run's augmentation but mirroring
      (`AugmentSpec.unmirrored`: pens, clutter, blur, noise too), so that the threshold lets through what the
      run was trained to read as a digit. With the threshold on clean held-out digits only, `best` flagged 4-11%
      of held-out photos of real digits (cropped, marker, low-resolution, flagged 1s); the numbers per run are
      in docs/benchmarks.md ("Issue 17, third session").
    CalibrationError for a run with no held-out digits: it stays "not calibrated"."""
    if not metadata.config.holdout:
        raise CalibrationError(NOT_CALIBRATED)
    held_out_images, held_out_labels = holdout_digits(metadata, data)
    trained = data.subset(train=metadata.data.train_size).without_holdout(metadata.config.holdout)
    fit_images, fit_labels = trained.train_images[:FIT_IMAGES], trained.train_labels[:FIT_IMAGES]
    augmentation = as_spec(metadata.config.augment)
    return (
        half_redrawn(held_out_images, held_out_labels, augmentation.unmirrored(), WRITTEN_SEED + 1),
        held_out_labels,
        half_redrawn(fit_images, fit_labels, augmentation.writing(), WRITTEN_SEED),
        fit_labels,
    )


def calibration_for(
    model: torch.nn.Module, metadata: RunMetadata, data: MnistData, progress: CalibrationProgress | None = None
) -> Calibration:
    sets = calibration_sets(metadata, data)
    return fit_calibration(model, *sets, progress, clean_held_out(metadata, len(sets[0])))


def clean_held_out(metadata: RunMetadata, count: int) -> int:
    """How many of the run's `count` held-out calibration digits come first as they are (`calibration_sets`)."""
    return kept_clean(count, as_spec(metadata.config.augment).unmirrored())


def calibrate_run(
    name: str, store: RunStore | None = None, data: MnistData | None = None, progress: CalibrationProgress | None = None
) -> RunInfo:
    """Fit a saved run's calibration and store it in the run's metadata (as `train_run` does after training)."""
    store = store or RunStore()
    model, metadata = store.load(name)
    calibration = calibration_for(model, metadata, data or load_mnist(), progress)
    return store.save(name, model, replace(metadata, calibration=calibration.to_dict()), overwrite=True)
