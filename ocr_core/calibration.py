"""Know when the model does not know: calibrated confidence and an "is this a digit at all?" flag.

A softmax always names a digit, and a network trained with cross-entropy is over- or under-confident. Both
fixes here are fitted on a run's held-out training digits (never trained on; never the test set) and stored
as a small `calibration` block in the run's metadata, so reading a drawing needs no MNIST:

- temperature scaling (Guo et al. 2017): one number dividing the logits, fitted by likelihood; the expected
  calibration error (ECE) before and after is recorded;
- out-of-distribution score: the Mahalanobis distance (Lee et al. 2018) of the input's penultimate features
  to the nearest class mean, under one covariance shared by the classes. Features are L2-normalised and
  projected to `PROJECTED_DIMENSIONS` by a seeded Gaussian random projection, which is regenerated from its
  seed when read, so only ten means and one small precision matrix are stored. The class statistics come
  from trained-on digits, half of them redrawn in the writing part of the run's augmentation
  (`runs.calibration_sets`), so a hand the run reads (a flagged 1, a slant) is not called "not a digit".
  Measured against the energy score (Liu et al. 2020) and other variants in `bench/calibration.py`
  (docs/benchmarks.md): it flags far more letters, shapes and scribbles at the same false-alarm rate. The
  threshold is the highest score that keeps the false alarms on held-out digits below `FALSE_ALARM_TARGET`
  with 95% confidence.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import betaincinv  # the beta quantile; scipy.stats would add ~0.5 s to start-up
from torch import nn

from .errors import UserError
from .evaluation import EVAL_BATCH, folded_for_inference
from .metadata import RunMetadata
from .models import penultimate_features

CALIBRATION_VERSION = 2  # 2: the precision matrix stored as its upper triangle
METHOD = "mahalanobis-l2-randproj"
PROJECTED_DIMENSIONS = 128
PROJECTION_SEED = 0
FALSE_ALARM_TARGET = 0.01  # share of real digits called "not a digit" that we accept
TARGET_CONFIDENCE = 0.95  # the held-out false-alarm rate's upper bound must meet the target at this level
ECE_BINS = 15
FIT_IMAGES = 10_000  # trained-on images the class means and covariance come from
TEMPERATURE_RANGE = (0.05, 20.0)
COVARIANCE_RIDGE = 1e-3  # share of the mean variance added to the diagonal, so the inverse is stable


NOT_CALIBRATED = (
    "not calibrated: the run was trained on every training image, so there are no held-out digits "
    "to calibrate on (and the test set is not for tuning); train it with a holdout"
)
CalibrationProgress = Callable[[float, str], None]  # (share done, what is being done)


class CalibrationError(UserError):
    """A run that cannot be calibrated, or a calibration block that cannot be used; the message says why."""


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the share in each bin."""
    confidences, correct = probabilities.max(1), probabilities.argmax(1) == labels
    which = np.minimum((confidences * bins).astype(int), bins - 1)
    total = 0.0
    for index in np.unique(which):
        members = which == index
        total += members.mean() * abs(correct[members].mean() - confidences[members].mean())
    return float(total)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float64) / temperature, 1).numpy()


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return float(torch.nn.functional.cross_entropy(scaled, torch.as_tensor(labels)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that maximises the likelihood of the labels (searched on a log scale)."""
    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)), bounds=(low, high), method="bounded"
    )
    return float(math.exp(result.x))


def projection(features: int, seed: int = PROJECTION_SEED, dimensions: int = PROJECTED_DIMENSIONS) -> torch.Tensor:
    """The seeded Gaussian random projection (features, dimensions), the same on every machine."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(features, dimensions, generator=generator, dtype=torch.float32) / math.sqrt(dimensions)


def projected(features: torch.Tensor, seed: int = PROJECTION_SEED) -> torch.Tensor:
    normalised = features / features.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return normalised @ projection(features.shape[1], seed)


def false_alarm_threshold(
    scores: np.ndarray, target: float = FALSE_ALARM_TARGET, confidence: float = TARGET_CONFIDENCE
) -> tuple[float, float]:
    """(threshold, share of `scores` above it): the most false alarms whose Clopper-Pearson upper bound on
    the rate still meets `target`, so the rate on new digits stays within it with `confidence`."""
    count = len(scores)
    allowed = 0
    while betaincinv(allowed + 2, count - allowed - 1, confidence) <= target:
        allowed += 1
    ordered = np.sort(scores)[::-1]
    threshold = float(ordered[allowed]) if allowed < count else float(ordered[-1])
    return threshold, float((scores > threshold).mean())


def encode(array: np.ndarray) -> str:
    """float32 little-endian, base64: exact and a third the size of a JSON list of numbers."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def decode(text: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    if not isinstance(text, str):
        raise CalibrationError(f"calibration '{where}' must be base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise CalibrationError(f"calibration '{where}' is not valid base64") from None
    if len(raw) != 4 * math.prod(shape):
        raise CalibrationError(f"calibration '{where}' holds {len(raw) // 4} numbers, expected shape {shape}")
    array = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    if not np.isfinite(array).all():
        raise CalibrationError(f"calibration '{where}' holds numbers that are not finite")
    return array


@dataclass(frozen=True)
class DigitDetector:
    """Mahalanobis distance to the nearest class mean in the projected feature space; above `threshold`,
    the input does not look like a digit."""

    class_means: np.ndarray  # (10, PROJECTED_DIMENSIONS)
    precision: np.ndarray  # (PROJECTED_DIMENSIONS, PROJECTED_DIMENSIONS), the inverse shared covariance
    threshold: float
    held_out_false_alarms: float  # share of held-out digits above the threshold
    seed: int = PROJECTION_SEED
    # The same kind of threshold on the clean held-out digits alone: the unit of "how strange" the number reader
    # weighs pieces in (reading.py), which stays put when the threshold moves to let the run's hands through.
    # Runs calibrated before it was stored use their threshold.
    clean_threshold: float | None = None

    @property
    def strangeness_unit(self) -> float:
        return self.threshold if self.clean_threshold is None else self.clean_threshold

    @classmethod
    def fit(
        cls,
        fit_features: torch.Tensor,
        fit_labels: np.ndarray,
        held_out_features: torch.Tensor,
        seed: int = PROJECTION_SEED,
        clean_held_out: int | None = None,
    ) -> DigitDetector:
        """Class means and shared covariance from the fit features; the threshold from all the held-out
        features, the clean threshold from the first `clean_held_out` of them (all by default)."""
        points = projected(fit_features, seed).double()
        labels = torch.as_tensor(fit_labels)
        if len(torch.unique(labels)) < 10:
            raise CalibrationError("calibration needs training digits of all ten classes")
        means = torch.stack([points[labels == digit].mean(0) for digit in range(10)])
        residuals = points - means[labels]
        covariance = residuals.T @ residuals / len(points)
        covariance += COVARIANCE_RIDGE * covariance.diagonal().mean() * torch.eye(len(covariance), dtype=torch.float64)
        precision = torch.linalg.inv(covariance)
        precision = ((precision + precision.T) / 2).float().numpy()  # exactly symmetric: stored as one triangle
        unfitted = cls(means.float().numpy(), precision, math.inf, 0.0, seed)
        held_out_scores = unfitted.scores(held_out_features)
        threshold, false_alarms = false_alarm_threshold(held_out_scores)
        clean_threshold, _ = false_alarm_threshold(held_out_scores[:clean_held_out])
        return cls(unfitted.class_means, unfitted.precision, threshold, false_alarms, seed, clean_threshold)

    def scores(self, features: torch.Tensor) -> np.ndarray:
        """Higher is less like the digits the run was fitted on; (N,) for features (N, F)."""
        points = projected(features.float(), self.seed)
        offsets = points[:, None, :] - torch.from_numpy(self.class_means)[None]
        distances = torch.einsum("ncd,de,nce->nc", offsets, torch.from_numpy(self.precision), offsets)
        return distances.min(1).values.numpy()

    def to_dict(self) -> dict:
        return {
            "method": METHOD,
            "projection_seed": self.seed,
            "dimensions": PROJECTED_DIMENSIONS,
            "threshold": self.threshold,
            "false_alarm_target": FALSE_ALARM_TARGET,
            "held_out_false_alarms": self.held_out_false_alarms,
            "clean_threshold": self.strangeness_unit,
            "class_means": encode(self.class_means),
            "precision_upper": encode(self.precision[np.triu_indices(PROJECTED_DIMENSIONS)]),
        }

    @classmethod
    def from_dict(cls, values: Any) -> DigitDetector:
        values = as_mapping(values, "ood")
        if values.get("method") != METHOD or values.get("dimensions") != PROJECTED_DIMENSIONS:
            raise CalibrationError(
                f"calibration 'ood' uses method {values.get('method')!r}; this lab reads "
                f"{METHOD!r} with {PROJECTED_DIMENSIONS} dimensions: calibrate the run again"
            )
        side = PROJECTED_DIMENSIONS
        return cls(
            decode(values.get("class_means"), (10, side), "ood.class_means"),
            symmetric(decode(values.get("precision_upper"), (side * (side + 1) // 2,), "ood.precision_upper")),
            number(values, "threshold", "ood"),
            number(values, "held_out_false_alarms", "ood"),
            whole_number(values, "projection_seed", "ood"),
            number(values, "clean_threshold", "ood") if "clean_threshold" in values else None,
        )


def symmetric(upper: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle (row by row) is stored: half the numbers to keep."""
    matrix = np.zeros((PROJECTED_DIMENSIONS, PROJECTED_DIMENSIONS), np.float32)
    matrix[np.triu_indices(PROJECTED_DIMENSIONS)] = upper
    return matrix + np.triu(matrix, 1).T


def as_mapping(values: Any, where: str) -> Mapping:
    if not isinstance(values, Mapping):
        raise CalibrationError(f"calibration '{where}' must be a JSON object")
    return values


def number(values: dict, key: str, where: str) -> float:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CalibrationError(f"calibration '{where}.{key}' must be a finite number, got {value!r}")
    return float(value)


def whole_number(values: dict, key: str, where: str) -> int:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CalibrationError(f"calibration '{where}.{key}' must be a whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class Calibration:
    """What a run needs to give honest confidences and flag non-digits, without MNIST."""

    temperature: float
    ece_before: float
    ece_after: float
    held_out: int  # how many held-out digits it was fitted on
    detector: DigitDetector
    created: str

    def to_dict(self) -> dict:
        return {
            "version": CALIBRATION_VERSION,
            "temperature": self.temperature,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "ece_bins": ECE_BINS,
            "held_out": self.held_out,
            "ood": self.detector.to_dict(),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, values: Any) -> Calibration:
        """Validate a stored block; CalibrationError names what is wrong."""
        values = as_mapping(values, "calibration")
        if values.get("version") != CALIBRATION_VERSION:
            raise CalibrationError(
                f"calibration version {values.get('version')!r} is not {CALIBRATION_VERSION}: calibrate the run again"
            )
        temperature = number(values, "temperature", "calibration")
        if not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
            raise CalibrationError(f"calibration temperature {temperature} is outside {TEMPERATURE_RANGE}")
        created = values.get("created")
        if not isinstance(created, str):
            raise CalibrationError("calibration 'created' must be text")
        return cls(
            temperature,
            number(values, "ece_before", "calibration"),
            number(values, "ece_after", "calibration"),
            whole_number(values, "held_out", "calibration"),
            DigitDetector.from_dict(values.get("ood")),
            created,
        )


@dataclass(frozen=True)
class Reading:
    """A model's answer for one input, with how far to trust it."""

    probabilities: np.ndarray  # (10,), temperature-scaled when the run is calibrated
    calibrated: bool
    digit_score: float | None  # the out-of-distribution score; None for an uncalibrated run
    threshold: float | None

    @property
    def prediction(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max())

    @property
    def looks_like_digit(self) -> bool | None:
        """False when the input is unlike the digits the run knows; None when the run cannot tell."""
        return None if self.digit_score is None else bool(self.digit_score <= self.threshold)


def features_of(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Penultimate features of uint8 (N, 28, 28) or float (N, [1,] 28, 28) images, in batches."""
    if len(images) == 0:  # some layers refuse an empty batch; the width comes from one blank image
        return penultimate_features(model, torch.zeros(1, 1, 28, 28))[:0]
    chunks = [
        penultimate_features(model, chunk.float().div(255) if chunk.dtype == torch.uint8 else chunk)
        for chunk in images.split(EVAL_BATCH)
    ]
    return torch.cat(chunks)


def logits_of(model: nn.Module, features: torch.Tensor) -> np.ndarray:
    """The classifier (the model's last layer) on penultimate features."""
    with torch.no_grad():
        return model[-1](features).double().numpy()


def read_digits(model: nn.Module, digits: torch.Tensor, calibration: Calibration | None) -> list[Reading]:
    """Readings for prepared digits (N, [1,] 28, 28) in [0, 1]: calibrated probabilities and the digit flag
    when the run has a calibration, the plain softmax otherwise."""
    if len(digits) == 0:
        return []
    features = features_of(model, digits)
    logits = logits_of(model, features)
    if calibration is None:
        return [Reading(row, False, None, None) for row in softmax(logits)]
    probabilities = softmax(logits, calibration.temperature)
    scores = calibration.detector.scores(features)
    threshold = calibration.detector.threshold
    return [Reading(row, True, float(score), threshold) for row, score in zip(probabilities, scores, strict=True)]


def fit_calibration(
    model: nn.Module,
    held_out_images: torch.Tensor,
    held_out_labels: torch.Tensor,
    fit_images: torch.Tensor,
    fit_labels: torch.Tensor,
    progress: CalibrationProgress | None = None,
    clean_held_out: int | None = None,
) -> Calibration:
    """Temperature and digit detector from held-out digits (never trained on; the first `clean_held_out` of
    them as they are, for the detector's clean threshold) and trained-on digits."""
    report = progress or (lambda fraction, message: None)
    if len(held_out_labels) < 100:
        raise CalibrationError(f"calibration needs at least 100 held-out digits, got {len(held_out_labels)}")
    report(0.0, "features of the held-out digits")
    model = folded_for_inference(model)  # 15,000 images: the same features for a third less time (measured)
    held_out_features = features_of(model, held_out_images)
    report(0.35, "features of the training digits")
    fit_features = features_of(model, fit_images)
    report(0.85, "temperature and digit detector")
    labels = held_out_labels.numpy()
    logits = logits_of(model, held_out_features)
    temperature = fit_temperature(logits, labels)
    detector = DigitDetector.fit(fit_features, fit_labels.numpy(), held_out_features, clean_held_out=clean_held_out)
    report(1.0, "done")
    return Calibration(
        temperature=temperature,
        ece_before=expected_calibration_error(softmax(logits), labels),
        ece_after=expected_calibration_error(softmax(logits, temperature), labels),
        held_out=len(labels),
        detector=detector,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def calibration_of(metadata: RunMetadata) -> Calibration | None:
    """The run's validated calibration, or None when it has none; CalibrationError when it is damaged."""
    return None if metadata.calibration is None else Calibration.from_dict(metadata.calibration)
