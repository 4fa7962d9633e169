"""Robustness reports and sweeps for the app: cached ones at once, missing ones computed under a progress bar,
and the strip of corrupted test digits with each run's predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pandas as pd
import streamlit as st
import torch

from ocr_core import MnistData, RunInfo, RunStore, predict_probabilities
from ocr_core.corruptions import CORRUPTIONS, SEVERITIES
from ocr_core.robustness import (
    BASELINE_RUN,
    RobustnessReport,
    cached_report,
    corrupted_suite,
    report_subset,
    run_report,
    run_weights_hash,
)
from ocr_core.sweeps import SWEEPS, SweepResult, cached_sweeps, run_sweeps

from . import loaders

T = TypeVar("T")
MCE_COLUMN = f"mCE (vs {BASELINE_RUN})"
STRIP_DIGITS = 10  # the first test digit of each class in the report's digits


def progress_bar(what: str) -> tuple[Callable[[int, int, str], None], Callable[[], None]]:
    """A callback drawing a progress bar for `what`, and a function removing the bar."""
    bar = st.progress(0.0, text=f"{what}…")

    def update(done: int, total: int, step: str) -> None:
        bar.progress(done / total, text=f"{what}: {step} ({done}/{total})")

    return update, bar.empty


def cached_or_computed(
    runs: list[RunInfo],
    data: MnistData | None,
    cached: Callable[[RunInfo, RunStore], T | None],
    compute: Callable[[str, RunStore, MnistData, Callable[[int, int, str], None]], T],
    what: str,
) -> tuple[dict[str, T], list[str]]:
    """{run: result} for the runs (cached or shipped ones at once, others computed with a progress bar saying
    `what` when MNIST is at hand), and the names of runs whose result is missing because MNIST is not."""
    store, found, missing = loaders.run_store(), {}, []
    for run in runs:
        result = cached(run, store)
        if result is None and data is None:
            missing.append(run.name)
            continue
        if result is None:
            update, done = progress_bar(what.format(run=run.name))
            result = compute(run.name, store, data, update)
            done()
        found[run.name] = result
    return found, missing


def reports(runs: list[RunInfo], data: MnistData | None) -> tuple[dict[str, RobustnessReport], list[str]]:
    """{run: robustness report}, and the runs whose report needs MNIST, which is not at hand."""
    return cached_or_computed(runs, data, cached_report, run_report, "Scoring `{run}` on 15 corruptions × 5 severities")


def baseline(
    runs: dict[str, RunInfo], found: dict[str, RobustnessReport], data: MnistData | None
) -> RobustnessReport | None:
    """The mCE reference (BASELINE_RUN's report) when there is such a run; computed if needed and possible."""
    if BASELINE_RUN in found:
        return found[BASELINE_RUN]
    if BASELINE_RUN not in runs:
        return None
    return reports([runs[BASELINE_RUN]], data)[0].get(BASELINE_RUN)


def sweeps(runs: list[RunInfo], data: MnistData | None) -> tuple[dict[str, SweepResult], list[str]]:
    """As `reports`, for the strength sweeps."""
    return cached_or_computed(
        runs,
        data,
        lambda run, store: cached_sweeps(run_weights_hash(run), store),
        run_sweeps,
        f"Sweeping `{{run}}` over {len(SWEEPS)} transforms",
    )


def summary_table(
    found: dict[str, RobustnessReport], base: RobustnessReport | None, severity: int | None
) -> pd.DataFrame:
    """One row per run: clean accuracy, mean and worst corruption at `severity` (None: over 1-5), mCE."""
    rows = []
    for name, report in found.items():
        by_corruption = corruption_accuracies(report, severity)
        worst = min(by_corruption, key=by_corruption.get)
        rows.append(
            {
                "run": name,
                "clean": report.clean,
                "mean over corruptions": float(np.mean(list(by_corruption.values()))),
                "worst corruption": CORRUPTIONS[worst].label,
                "worst accuracy": by_corruption[worst],
                MCE_COLUMN: report.mce(base),
            }
        )
    return pd.DataFrame(rows)


def corruption_accuracies(report: RobustnessReport, severity: int | None) -> dict[str, float]:
    """{corruption: accuracy} at one severity, or the mean over all five."""
    return {
        name: (by_severity[severity] if severity else float(np.mean(list(by_severity.values()))))
        for name, by_severity in report.accuracy.items()
    }


def heatmap_frame(found: dict[str, RobustnessReport], severity: int | None) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"run": run, "corruption": CORRUPTIONS[name].label, "accuracy": accuracy}
            for run, report in found.items()
            for name, accuracy in corruption_accuracies(report, severity).items()
        ]
    )


SUITE_ORDER, HARDEST_FIRST = "suite order", "hardest first"


def heatmap_orders(frame: pd.DataFrame, sort: str) -> tuple[list[str], list[str]]:
    """(corruption labels, runs) in the heatmap's order. Corruptions: the suite's order (SUITE_ORDER), by the
    mean accuracy over the runs, lowest first (HARDEST_FIRST), or by one run's accuracy, its worst first (a
    run's name). Runs: the most robust (highest mean) on top."""
    if sort == SUITE_ORDER:
        corruptions = [corruption.label for corruption in CORRUPTIONS.values()]
    else:
        rows = frame if sort == HARDEST_FIRST else frame[frame["run"] == sort]
        corruptions = list(rows.groupby("corruption")["accuracy"].mean().sort_values(kind="stable").index)
    runs = list(frame.groupby("run")["accuracy"].mean().sort_values(ascending=False, kind="stable").index)
    return corruptions, runs


def severity_frame(found: dict[str, RobustnessReport], corruption: str | None) -> pd.DataFrame:
    """Accuracy at severity 0 (clean) to 5 for one corruption, or the mean over corruptions (None)."""
    rows = []
    for run, report in found.items():
        rows.append({"run": run, "severity": 0, "accuracy": report.clean})
        for severity in SEVERITIES:
            accuracy = report.accuracy[corruption][severity] if corruption else report.mean(severity)
            rows.append({"run": run, "severity": severity, "accuracy": accuracy})
    return pd.DataFrame(rows)


def sweep_frame(found: dict[str, SweepResult], sweep: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"run": run, "strength": strength, "accuracy": accuracy}
            for run, result in found.items()
            for strength, accuracy in result.points(sweep)
        ]
    )


@st.cache_data(max_entries=8, show_spinner=False)
def strip_digits(data_fingerprint: str, _data: MnistData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions in the report's digits, uint8 images (K, 28, 28), labels): the first report digit of each
    class 0..STRIP_DIGITS-1."""
    images, labels = report_subset(_data.test_images, _data.test_labels)
    positions = np.array(
        [
            int(np.flatnonzero(labels.numpy() == digit)[0])
            for digit in range(STRIP_DIGITS)
            if (labels.numpy() == digit).any()
        ]
    )
    return positions, images[positions].numpy(), labels[positions].numpy()


@st.cache_data(max_entries=32, show_spinner=False)
def corrupted_strip(corruption: str, data_fingerprint: str, _data: MnistData) -> np.ndarray:
    """uint8 (5, K, 28, 28): the strip digits at severities 1-5, cut from the very sets the report scores."""
    images, _ = report_subset(_data.test_images, _data.test_labels)
    positions, _, _ = strip_digits(data_fingerprint, _data)
    return corrupted_suite(images, corruption)[:, positions].numpy()


def strip_predictions(run: RunInfo, images: np.ndarray) -> np.ndarray:
    """Predicted digits for uint8 images (..., 28, 28), in the same shape minus the pixels."""
    flat = torch.from_numpy(images.reshape(-1, 28, 28)).float().div(255)
    predicted = predict_probabilities(loaders.model_for(run), flat).argmax(1)
    return predicted.reshape(images.shape[:-2])
