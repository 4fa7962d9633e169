"""The engine of the digit OCR lab. Every entry point (the CLI `python -m ocr_core`, the app's pages, the
benchmarks, the tests) calls these same functions; nothing here imports streamlit.

The modules by role:

- base: `errors` (UserError and kin: one-line messages; `printable` for names), `files` (the one atomic
  write, damaged caches discarded), `data` (MNIST, checked and cached), `models`
  (the architectures), `metadata` (a run's schema, validated when read), `checkpoints` (run files: atomic
  saves, and the weights hash every cache of a run is keyed by);
- training: `augment` (the op table, batched augmentation), `outliers` (drawings of non-digits for outlier
  exposure), `optimizers` (Adam, AdamW, SGD, one-cycle, without torch.optim's start-up), `training` (`fit`,
  the recipes, callbacks), `duration` (a training's time measured
  before it starts), `runs` (train, score, calibrate and save a run in one call; the shipped runs' names),
  `jobs` (trainings queued for worker processes), `export` (a run as one ONNX file);
- your handwriting: `samples` (the SQLite sample store), `personal` (scoring on a writer's digits, personalise);
- reading: `preprocess` (an image to MNIST's 28x28), `cleanup` (lighting, ruled paper, specks),
  `calibration` (temperature and the not-a-digit check), `pairs` (the touching-pair reader), `reading`
  (a whole number: segmentation and recognition);
- analysis: `evaluation`, `corruptions` (the MNIST-C-style suite), `robustness` (reports, mCE), `sweeps`
  (accuracy against one op's strength), `explain` (feature maps, attributions), `feature_space` (similar
  training digits, the test-set map);
- `cli`: the command line over all of it.

Imports run one way, in this order (a module imports only modules before it): errors, files; data, models,
augment, outliers, corruptions, cleanup, explain; evaluation, optimizers, training; metadata (a run records training's
config and evaluation's class metrics), checkpoints, calibration, duration, export; preprocess, samples,
pairs, reading; runs, personal, jobs, robustness, sweeps, feature_space; cli.

The headline verbs, as whisper exports its few: `train_run`, `evaluate`, `predict_probabilities`,
`read_number` (a photo or drawing of a number to its digits), `calibrate_run`, `run_report` (a run's
robustness report) and `run_sweeps`.
"""

from .augment import PRESETS, AugmentSpec, augment_images, parse_augment, preview_grid, preview_samples
from .checkpoints import CheckpointError, RunInfo, RunStore, validate_run_name
from .data import DataUnavailableError, MnistData, data_status, load_mnist
from .errors import ConfigError, UserError
from .evaluation import Evaluation, evaluate, predict_probabilities
from .metadata import RunMetadata
from .models import ARCHITECTURES, build_model, multiply_adds, parameter_count
from .preprocess import ImageError, digit_from_image, load_image, prepare_digit
from .reading import read_number
from .robustness import run_report
from .runs import calibrate_run, score, train_run
from .sweeps import run_sweeps
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
    "calibrate_run",
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
    "read_number",
    "run_report",
    "run_sweeps",
    "score",
    "train_run",
    "validate_run_name",
]
