"""The engine of the digit OCR lab: data, models, augmentation, training, evaluation, runs."""

from .augment import PRESETS, AugmentSpec, augment_images, parse_augment, preview_grid, preview_samples
from .checkpoints import CheckpointError, RunInfo, RunStore, validate_run_name
from .data import DataUnavailableError, MnistData, data_status, load_mnist
from .errors import ConfigError, UserError
from .evaluation import Evaluation, evaluate, predict_probabilities
from .metadata import RunMetadata
from .models import ARCHITECTURES, build_model, multiply_adds, parameter_count
from .preprocess import ImageError, digit_from_image, load_image, prepare_digit
from .runs import score, train_run
from .training import (
    RECIPES,
    Cadence,
    EpochRecord,
    Progress,
    ScorePoint,
    TrainConfig,
    TrainingCallback,
    TrainResult,
    fit,
)

__all__ = [
    "ARCHITECTURES",
    "PRESETS",
    "RECIPES",
    "AugmentSpec",
    "Cadence",
    "CheckpointError",
    "ConfigError",
    "DataUnavailableError",
    "EpochRecord",
    "Evaluation",
    "ImageError",
    "MnistData",
    "Progress",
    "RunInfo",
    "RunMetadata",
    "RunStore",
    "ScorePoint",
    "TrainConfig",
    "TrainResult",
    "TrainingCallback",
    "UserError",
    "augment_images",
    "build_model",
    "data_status",
    "digit_from_image",
    "evaluate",
    "fit",
    "load_image",
    "load_mnist",
    "multiply_adds",
    "parameter_count",
    "parse_augment",
    "predict_probabilities",
    "prepare_digit",
    "preview_grid",
    "preview_samples",
    "score",
    "train_run",
    "validate_run_name",
]
