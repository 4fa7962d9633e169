"""Robustness reports: a run's accuracy under every corruption of the suite at every severity, cached on disk.

A report is scored on a fixed, class-balanced subset of the test set: the first `DIGITS_PER_CLASS` test
digits of each class (2,000 digits). That keeps a full report (15 corruptions x 5 severities = 75 test sets)
near a minute for the `deep` net on a 2-core CPU, and its accuracies have a standard error of at most 1.1
points (0.6 near 93%), well below the gaps between runs it is meant to show. The mean corruption error (mCE)
is ImageNet-C's: for each corruption, the run's errors summed over the severities divided by the baseline
run's (`seed`, the tutorial CNN), then averaged over corruptions; below 1 means more robust than `seed`.

Reports are cached per run as JSON, keyed by a hash of the run's weights (tensor names, shapes and bytes,
plus the architecture) and the suite's version: renaming a run or rewriting its metadata (rescoring,
calibration) keeps its report, retraining or a new suite version does not. They are looked up in the run
store's `reports/` folder first (the shipped runs' reports are committed there, so a fresh clone shows them
at once) and then in `OCR_CACHE_DIR/robustness/`, where new reports are written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from .checkpoints import RunInfo, RunStore, run_weights_hash
from .corruptions import CORRUPTIONS, DEFAULT_SEVERITY, SEVERITIES, SUITE_VERSION, corrupt
from .data import MnistData, cache_dir, load_mnist
from .errors import UserError
from .evaluation import folded_for_inference, predict_probabilities
from .files import read_cached_arrays, write_cache, write_text_atomically
from .runs import TUTORIAL_RUN

T = TypeVar("T")

DIGITS_PER_CLASS = 200
BASELINE_RUN = TUTORIAL_RUN  # mCE is relative to the tutorial CNN, as ImageNet-C's is to AlexNet
REPORT_FORMAT = 1

ReportProgress = Callable[[int, int, str], None]  # (test sets done, test sets in all, what is being scored)


def report_subset(
    images: torch.Tensor, labels: torch.Tensor, per_class: int = DIGITS_PER_CLASS
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` digits of each class, in their test-set order."""
    chosen = np.concatenate([np.flatnonzero(labels.numpy() == digit)[:per_class] for digit in range(10)])
    chosen.sort()
    index = torch.from_numpy(chosen)
    return images[index], labels[index]


@dataclass(frozen=True)
class RobustnessReport:
    """Accuracies as fractions: `accuracy[corruption][severity]`; `clean` on the same digits."""

    weights: str  # content hash of the run's weights, the cache key
    suite_version: int
    digits: int
    clean: float
    accuracy: dict[str, dict[int, float]]
    seconds: float  # time to compute it

    @property
    def corruptions(self) -> list[str]:
        return list(self.accuracy)

    def mean(self, severity: int = DEFAULT_SEVERITY) -> float:
        """Mean accuracy over the corruptions at one severity."""
        return float(np.mean([by_severity[severity] for by_severity in self.accuracy.values()]))

    def means(self) -> dict[int, float]:
        return {severity: self.mean(severity) for severity in SEVERITIES}

    def worst(self, severity: int = DEFAULT_SEVERITY) -> tuple[str, float]:
        name = min(self.accuracy, key=lambda corruption: self.accuracy[corruption][severity])
        return name, self.accuracy[name][severity]

    def corruption_errors(self, baseline: RobustnessReport) -> dict[str, float]:
        """CE per corruption: errors summed over the severities, relative to the baseline's."""
        errors = {}
        for name, by_severity in self.accuracy.items():
            own = sum(1 - by_severity[severity] for severity in SEVERITIES)
            reference = sum(1 - baseline.accuracy[name][severity] for severity in SEVERITIES)
            errors[name] = own / max(reference, 1e-9)
        return errors

    def mce(self, baseline: RobustnessReport | None) -> float | None:
        """Mean corruption error relative to `baseline` (None without one)."""
        if baseline is None:
            return None
        return float(np.mean(list(self.corruption_errors(baseline).values())))

    def to_dict(self) -> dict:
        values = asdict(self)
        values["accuracy"] = {
            name: {str(severity): accuracy for severity, accuracy in by_severity.items()}
            for name, by_severity in self.accuracy.items()
        }
        return {"format": REPORT_FORMAT, **values}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, values: dict) -> RobustnessReport:
        try:
            if values.get("format") != REPORT_FORMAT:
                raise ValueError("unknown report format")
            accuracy = {
                str(name): {int(severity): float(value) for severity, value in by_severity.items()}
                for name, by_severity in values["accuracy"].items()
            }
            if set(accuracy) != set(CORRUPTIONS) or any(set(by) != set(SEVERITIES) for by in accuracy.values()):
                raise ValueError("corruptions or severities differ from the suite's")
            return cls(
                str(values["weights"]),
                int(values["suite_version"]),
                int(values["digits"]),
                float(values["clean"]),
                accuracy,
                float(values["seconds"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UserError(f"not a robustness report of this suite ({error})") from None

    @classmethod
    def from_json(cls, text: str) -> RobustnessReport:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"not a robustness report ({error})") from None
        return cls.from_dict(values if isinstance(values, dict) else {})


def corrupted_suite(images: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 (5, N, 28, 28): `images` under corruption `name` at severities 1-5, rounded to 8 bits as stored
    images are. The same for every run, so cached in `OCR_CACHE_DIR/robustness/` (keyed by the suite's
    version and the images' bytes; 1.6 MB per corruption for the 2,000 report digits)."""
    key = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]
    path = report_cache_dir() / f"suite{SUITE_VERSION}-{key}-{name}.npy"
    expected = (len(SEVERITIES), *images.shape)
    cached = read_cached_arrays(path, lambda arrays: arrays[""].shape == expected and arrays[""].dtype == np.uint8)
    if cached is not None:
        return torch.from_numpy(cached[""])
    sets = torch.stack(
        [(corrupt(images, name, severity)[:, 0] * 255).round().to(torch.uint8) for severity in SEVERITIES]
    )
    write_cache(path, lambda stream: np.save(stream, sets.numpy(), allow_pickle=False))
    return sets


def compute_report(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, weights: str, progress: ReportProgress | None = None
) -> RobustnessReport:
    """Score `model` on `images` (uint8 (N, 28, 28), usually `report_subset` of the test set) clean and
    under every corruption at every severity. `progress` hears after each of the 76 test sets."""
    started = time.perf_counter()
    fast = folded_for_inference(model)
    truth = labels.numpy()
    total = 1 + len(CORRUPTIONS) * len(SEVERITIES)

    def accuracy_on(inputs: torch.Tensor) -> float:
        return float((predict_probabilities(fast, inputs).argmax(1) == truth).mean())

    clean, done = accuracy_on(images), 1
    if progress:
        progress(done, total, "clean")
    accuracy: dict[str, dict[int, float]] = {name: {} for name in CORRUPTIONS}
    for name in CORRUPTIONS:
        for severity, corrupted in zip(SEVERITIES, corrupted_suite(images, name), strict=True):
            accuracy[name][severity] = accuracy_on(corrupted)
            done += 1
            if progress:
                progress(done, total, f"{CORRUPTIONS[name].label}, severity {severity}")  # words people read
    return RobustnessReport(
        weights, SUITE_VERSION, len(truth), clean, accuracy, round(time.perf_counter() - started, 2)
    )


def report_file_name(weights: str) -> str:
    return f"{weights}-suite{SUITE_VERSION}.json"


def report_cache_dir() -> Path:
    return cache_dir() / "robustness"


def shipped_reports_dir(store: RunStore) -> Path:
    return store.root / "reports"


def cached_report(info: RunInfo, store: RunStore) -> RobustnessReport | None:
    """The run's report if one was computed or shipped for its exact weights, else None (never computes).
    A damaged cache file counts as missing."""
    return first_readable(
        store,
        report_file_name(run_weights_hash(info)),
        RobustnessReport.from_json,
        lambda report: report.suite_version == SUITE_VERSION,
    )


def first_readable(
    store: RunStore, file_name: str, parse: Callable[[str], T], current: Callable[[T], bool]
) -> T | None:
    """The first shipped-then-cached file of this name that parses and is `current`; damaged files count as missing.
    Robustness reports and sweeps are looked up this way."""
    for folder in (shipped_reports_dir(store), report_cache_dir()):
        try:
            value = parse((folder / file_name).read_text())
        except (OSError, ValueError, UserError):  # ValueError: bytes that are not UTF-8 text
            continue
        if current(value):
            return value
    return None


def write_result(folder: Path, file_name: str, text: str) -> Path:
    """A report or sweep as JSON text; concurrent readers see the old file or the new one, never half of one."""
    return write_text_atomically(folder / file_name, text)


def write_report(report: RobustnessReport, folder: Path) -> Path:
    return write_result(folder, report_file_name(report.weights), report.to_json())


def run_report(
    name: str,
    store: RunStore | None = None,
    data: MnistData | None = None,
    progress: ReportProgress | None = None,
    recompute: bool = False,
) -> RobustnessReport:
    """The run's report: from the shipped or cached copy if there is one for its weights, else computed
    (loading MNIST if `data` is not given) and cached in `OCR_CACHE_DIR/robustness/`."""
    store = store or RunStore()
    info = store.info(name)
    if not recompute:
        report = cached_report(info, store)
        if report is not None:
            return report
    model, _ = store.load(name)
    data = data or load_mnist()
    images, labels = report_subset(data.test_images, data.test_labels)
    report = compute_report(model, images, labels, run_weights_hash(info), progress)
    with contextlib.suppress(OSError):  # a read-only cache only costs the computation next time
        write_report(report, report_cache_dir())
    return report


def baseline_report(
    store: RunStore | None = None, data: MnistData | None = None, progress: ReportProgress | None = None
) -> RobustnessReport | None:
    """The `seed` run's report, the reference for mCE; None when there is no `seed` run."""
    store = store or RunStore()
    if not store.exists(BASELINE_RUN):
        return None
    return run_report(BASELINE_RUN, store, data, progress)


def summary(report: RobustnessReport, baseline: RobustnessReport | None, severity: int = DEFAULT_SEVERITY) -> dict:
    """The figures `info` and the README quote: clean, mean and worst at one severity, mCE."""
    worst, worst_accuracy = report.worst(severity)
    return {
        "suite_version": report.suite_version,
        "digits": report.digits,
        "clean": report.clean,
        "severity": severity,
        "mean": report.mean(severity),
        "worst": worst,
        "worst_accuracy": worst_accuracy,
        "mce": report.mce(baseline),
    }
