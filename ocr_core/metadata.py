"""The schema of a run's metadata, in one place: what `RunStore` writes into a run file's header and what
every reader (CLI, app pages, sidebar, upload) gets back, validated, as a `RunMetadata`.

Forward compatible: keys this version does not know are kept in `extras` and written back unchanged, so a
run saved by a newer lab (or a branch that adds a section) is read, listed and rewritten without loss.
Optional sections (`calibration`, `robustness`) are validated when present, absent otherwise."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import CheckpointError, ConfigError
from .evaluation import ClassMetrics
from .training import EpochRecord, TrainConfig

CLEAN_TEST, AUGMENTED_TEST = "clean", "seed_augmented"  # the keys of a run's two test scores in `metrics`
AUGMENTED_TEST_PRESET = "seed"  # AUGMENTED_TEST's augmentation: the tutorial's, as a robustness test set
REQUIRED_TEST_SETS = (CLEAN_TEST, AUGMENTED_TEST)  # every run is scored on both (see runs.score)
OPTIONAL_SECTIONS = ("calibration", "robustness", "personalisation")  # JSON objects other features add to a run
PERSONALISATION_LAYERS = ("head", "block", "all")  # what a personalisation fine-tunes (ocr_core.personal)
# The `personalisation` section of a run fine-tuned on one writer's samples: field -> type.
PERSONALISATION_FIELDS = {
    "parent": "str",
    "writer": "str",
    "layers": "str",
    "why": "str",
    "samples_trained": "int",
    "samples_held_out": "int",
    "replayed_images": "int",
    "steps": "int",
    "seconds": "float",
    "created": "str",
}
PERSONALISATION_FIGURES = {"own_accuracy": "float", "own_count": "int", "mnist_accuracy": "float"}
PERSONALISATION_CHANGE = {"sample": "int", "label": "int", "before": "int", "after": "int"}


class RunMetadataError(CheckpointError):
    """Run metadata that is incomplete or of the wrong shape; the message names the field."""


@dataclass(frozen=True)
class TestScore:
    """A run's result on one test set, as `Evaluation.summary()` gives it."""

    augment: str
    accuracy: float
    loss: float
    count: int


@dataclass(frozen=True)
class DataInfo:
    fingerprint: str
    train_size: int
    test_size: int


SIMPLE_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
TYPE_NAMES = {"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false"}


FRACTION, NOT_NEGATIVE = (0.0, 1.0), (0.0, math.inf)
# The range of every stored number, by field name (the names mean the same in every record): what
# validation checks and its messages say. A field not named here may hold any finite number.
BOUNDS = {
    **dict.fromkeys(("accuracy", "train_accuracy", "test_accuracy", "precision", "recall", "f1"), FRACTION),
    **dict.fromkeys(
        (
            "parameters",
            "multiply_adds",
            "epochs_completed",
            "training_seconds",
            "loss",
            "train_loss",
            "test_loss",
            "count",
            "support",
            "train_size",
            "test_size",
            "epoch",
            "seconds",
            "images_per_second",
            "learning_rate",
        ),
        NOT_NEGATIVE,
    ),
    "digit": (0, 9),
}


def in_bounds(value: Any, key: str) -> bool:
    low, high = BOUNDS.get(key, (-math.inf, math.inf))
    return isinstance(value, bool) or not isinstance(value, (int, float)) or low <= value <= high


def fits(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a field annotated str, int, float or bool (an int is a float, a bool is
    neither: JSON and Python both let `true` pass for 1)."""
    if annotation == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if annotation == "float":
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, SIMPLE_TYPES[annotation])


def required(values: Mapping, key: str, parent: str = "", annotation: str | None = None) -> Any:
    """values[key], checked against `annotation` when given; `parent` is where `values` sits, for messages."""
    where = f"{parent}.{key}" if parent else key
    if key not in values:
        raise RunMetadataError(f"incomplete run metadata: '{where}' is missing")
    value = values[key]
    if annotation is not None and not fits(value, annotation):
        raise RunMetadataError(f"run metadata '{where}' must be {TYPE_NAMES[annotation]}, got {value!r}")
    if not in_bounds(value, key):
        low, high = BOUNDS[key]
        raise RunMetadataError(f"run metadata '{where}' must be in [{low:g}, {high:g}], got {value!r}")
    return value


def mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise RunMetadataError(f"run metadata '{where}' must be a JSON object, got {type(value).__name__}")
    return value


def sequence(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise RunMetadataError(f"run metadata '{where}' must be a list, got {type(value).__name__}")
    return value


def record(cls: type, value: Any, where: str):
    """A flat dataclass of str/int/float/bool fields from a JSON object (keys it does not know are ignored)."""
    values = mapping(value, where)
    return cls(**{item.name: required(values, item.name, where, item.type) for item in fields(cls)})


@dataclass(frozen=True)
class RunMetadata:
    architecture: str
    parameters: int
    multiply_adds: int
    config: TrainConfig
    augment: str  # canonical spec string of the training augmentation
    history: tuple[EpochRecord, ...]
    metrics: Mapping[str, TestScore]  # by test set; REQUIRED_TEST_SETS at least
    per_class: tuple[ClassMetrics, ...]  # on the clean test set
    stopped_early: bool
    epochs_completed: float
    training_seconds: float
    device: str
    precision: str
    data: DataInfo
    created: str  # ISO 8601, UTC
    versions: Mapping[str, str]
    rescored: str | None = None
    calibration: Mapping[str, Any] | None = None
    robustness: Mapping[str, Any] | None = None
    personalisation: Mapping[str, Any] | None = None  # parent, writer, samples, before/after: see check_personalisation
    extras: Mapping[str, Any] = field(default_factory=dict)  # keys a newer lab wrote, kept as they were

    @property
    def trained_images(self) -> int:
        """The digits the run trained on: the images it was given less the held-out ones it never saw."""
        return self.data.train_size - self.config.holdout

    def metric(self, test_set: str = CLEAN_TEST) -> float | None:
        score = self.metrics.get(test_set)
        return None if score is None else score.accuracy

    def to_dict(self) -> dict:
        """The JSON object stored in the run file (the inverse of `from_dict`)."""
        values = {
            "architecture": self.architecture,
            "parameters": self.parameters,
            "multiply_adds": self.multiply_adds,
            "config": self.config.as_dict(),
            "augment": self.augment,
            "history": [asdict(epoch) for epoch in self.history],
            "metrics": {name: asdict(score) for name, score in self.metrics.items()},
            "per_class": [asdict(metrics) for metrics in self.per_class],
            "stopped_early": self.stopped_early,
            "epochs_completed": self.epochs_completed,
            "training_seconds": self.training_seconds,
            "device": self.device,
            "precision": self.precision,
            "data": asdict(self.data),
            "created": self.created,
            "versions": dict(self.versions),
        }
        for name in ("rescored", *OPTIONAL_SECTIONS):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        return {**self.extras, **values}

    @classmethod
    def from_dict(cls, values: Any) -> RunMetadata:
        """Validate a run file's JSON metadata; RunMetadataError names the first missing or malformed field."""
        values = mapping(values, "metadata")
        simple = {
            item.name: required(values, item.name, annotation=item.type)
            for item in fields(cls)
            if item.type in SIMPLE_TYPES
        }
        try:
            config = TrainConfig.from_dict(mapping(required(values, "config"), "config"))
        except ConfigError as error:
            raise RunMetadataError(f"run metadata 'config' is not a valid training config: {error}") from None
        metrics = {
            str(name): record(TestScore, score, f"metrics.{name}")
            for name, score in mapping(required(values, "metrics"), "metrics").items()
        }
        missing = [name for name in REQUIRED_TEST_SETS if name not in metrics]
        if missing:
            raise RunMetadataError(f"incomplete run metadata: no score on the {', '.join(missing)} test set")
        versions = mapping(required(values, "versions"), "versions")
        if not all(isinstance(value, str) for value in versions.values()):
            raise RunMetadataError("run metadata 'versions' must map names to version strings")
        rescored = values.get("rescored")
        if rescored is not None and not isinstance(rescored, str):
            raise RunMetadataError(f"run metadata 'rescored' must be text, got {rescored!r}")
        sections = {
            name: dict(mapping(values[name], name)) for name in OPTIONAL_SECTIONS if values.get(name) is not None
        }
        if "personalisation" in sections:
            check_personalisation(sections["personalisation"])
        known = {item.name for item in fields(cls)} - {"extras"}
        return cls(
            **simple,
            config=config,
            metrics=metrics,
            versions=dict(versions),
            rescored=rescored,
            **sections,
            history=tuple(
                record(EpochRecord, epoch, f"history[{index}]")
                for index, epoch in enumerate(sequence(required(values, "history"), "history"))
            ),
            per_class=tuple(
                record(ClassMetrics, metrics, f"per_class[{index}]")
                for index, metrics in enumerate(sequence(required(values, "per_class"), "per_class"))
            ),
            data=record(DataInfo, required(values, "data"), "data"),
            extras={key: value for key, value in values.items() if key not in known},
        )


def check_personalisation(values: Mapping) -> None:
    """Validate a `personalisation` section (RunMetadataError names the first bad field); keys it does not
    know are allowed, as everywhere in the metadata."""
    where = "personalisation"
    for key, annotation in PERSONALISATION_FIELDS.items():
        required(values, key, where, annotation)
    if values["layers"] not in PERSONALISATION_LAYERS:
        raise RunMetadataError(f"run metadata '{where}.layers' must be one of {', '.join(PERSONALISATION_LAYERS)}")
    for key in ("before", "after"):
        figures = mapping(required(values, key, where), f"{where}.{key}")
        for name, annotation in PERSONALISATION_FIGURES.items():
            required(figures, name, f"{where}.{key}", annotation)
    for key in ("sample_ids", "held_out_ids"):
        ids = sequence(required(values, key, where), f"{where}.{key}")
        if not all(fits(value, "int") for value in ids):
            raise RunMetadataError(f"run metadata '{where}.{key}' must be a list of whole numbers")
    for index, change in enumerate(sequence(required(values, "changed", where), f"{where}.changed")):
        change = mapping(change, f"{where}.changed[{index}]")
        for name, annotation in PERSONALISATION_CHANGE.items():
            required(change, name, f"{where}.changed[{index}]", annotation)
