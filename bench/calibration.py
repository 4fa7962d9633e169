"""How well do runs know when they do not know? `python -m bench.calibration RUN... [--per-template N]`

For each run with held-out digits: the expected calibration error before and after temperature scaling (on
the held-out digits it was fitted on and on the test set), and, for several out-of-distribution scores with
the threshold chosen the same way on held-out digits (false alarms <= 1% with 95% confidence), the false-alarm
rate on the 10,000 MNIST test digits and the share of canvas-style non-digits (bench/sketches.py) flagged.
Prints a markdown table for docs/benchmarks.md."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bench.sketches import NON_DIGIT_KINDS, sketches
from ocr_core import RunStore, load_mnist
from ocr_core.calibration import (
    ECE_BINS,
    DigitDetector,
    expected_calibration_error,
    false_alarm_threshold,
    features_of,
    fit_calibration,
    logits_of,
    softmax,
)
from ocr_core.data import MnistData
from ocr_core.preprocess import prepare
from ocr_core.runs import calibration_sets, clean_held_out

Score = Callable[[torch.Tensor], np.ndarray]  # features -> scores, higher = less like a digit
CHOSEN = "Mahalanobis, features (chosen)"  # the app's detector, ocr_core.calibration.DigitDetector


@dataclass
class SketchSet:
    kind: str
    digits: torch.Tensor  # prepared 28x28 inputs of the sketches the preprocessing lets through
    caught_before: int  # sketches the degenerate-ink check flagged before any model
    total: int


def sketch_sets(per_template: int, seed: int) -> list[SketchSet]:
    sets = []
    for kind in (*NON_DIGIT_KINDS, "digit", "degenerate"):
        drawn = sketches(kind, per_template * (15 if kind == "scribble" else 1), seed)
        prepared = [prepare(sketch.image) for sketch in drawn]
        readable = [item.digit for item in prepared if item.readable]
        sets.append(
            SketchSet(
                kind,
                torch.stack(readable) if readable else torch.zeros(0, 28, 28),
                len(prepared) - len(readable),
                len(prepared),
            )
        )
    return sets


def compared_scores(model, fit_features, fit_labels, held_out_features) -> dict[str, Score]:
    """The chosen detector and the alternatives it was measured against."""
    chosen = DigitDetector.fit(fit_features, fit_labels, held_out_features)

    return {
        "max softmax": lambda features: -softmax(logits_of(model, features)).max(1),
        "energy": lambda features: -torch.logsumexp(torch.from_numpy(logits_of(model, features)), 1).numpy(),
        "Mahalanobis, logits": logit_mahalanobis(model, fit_features, fit_labels),
        CHOSEN: chosen.scores,
    }


def logit_mahalanobis(model, fit_features, fit_labels) -> Score:
    """Class-conditional Mahalanobis distance in the 10-d logit space: the cheapest feature-space variant."""
    logits = torch.from_numpy(logits_of(model, fit_features))
    labels = torch.as_tensor(fit_labels)
    means = torch.stack([logits[labels == digit].mean(0) for digit in range(10)])
    residuals = logits - means[labels]
    precision = torch.linalg.inv(residuals.T @ residuals / len(logits) + 1e-6 * torch.eye(10, dtype=logits.dtype))

    def score(features: torch.Tensor) -> np.ndarray:
        offsets = torch.from_numpy(logits_of(model, features))[:, None] - means[None]
        return torch.einsum("ncd,de,nce->nc", offsets, precision, offsets).min(1).values.numpy()

    return score


def measure_run(name: str, data: MnistData, sets: list[SketchSet], store: RunStore) -> list[str]:
    model, metadata = store.load(name)
    started = time.perf_counter()
    held_images, held_labels, fit_images, fit_labels = calibration_sets(metadata, data)
    clean = clean_held_out(metadata, len(held_labels))
    calibration = fit_calibration(model, held_images, held_labels, fit_images, fit_labels, clean_held_out=clean)
    fit_seconds = time.perf_counter() - started
    held_features, fit_features = features_of(model, held_images), features_of(model, fit_images)
    test_features = features_of(model, data.test_images)
    test_logits, labels = logits_of(model, test_features), data.test_labels.numpy()
    lines = [
        (
            f"### `{name}` ({metadata.architecture}, {calibration.held_out:,} held-out digits, "
            f"calibrated in {fit_seconds:.1f} s)"
        ),
        "",
        (
            f"Temperature {calibration.temperature:.3f}. Expected calibration error ({ECE_BINS} bins): held-out "
            f"{calibration.ece_before:.4f} → {calibration.ece_after:.4f}; test digits "
            f"{expected_calibration_error(softmax(test_logits), labels):.4f} → "
            f"{expected_calibration_error(softmax(test_logits, calibration.temperature), labels):.4f}."
        ),
        "",
        "| score | held-out false alarms | test false alarms | "
        + " | ".join(f"{s.kind}s flagged" for s in sets)
        + " |",
        "|---" * (3 + len(sets)) + "|",
    ]
    sketch_features = {s.kind: features_of(model, s.digits) for s in sets}

    def row(method: str, score: Score, threshold: float, held_rate: float) -> str:
        test_rate = float((score(test_features) > threshold).mean())
        shares = [
            f"{(s.caught_before + int((score(sketch_features[s.kind]) > threshold).sum())) / s.total:.1%}" for s in sets
        ]
        return f"| {method} | {held_rate:.2%} | {test_rate:.2%} | " + " | ".join(shares) + " |"

    scores = compared_scores(model, fit_features, fit_labels.numpy(), held_features)
    for method, score in scores.items():
        threshold, held_rate = false_alarm_threshold(score(held_features))
        lines.append(row(method, score, threshold, held_rate))
    # The figure, "flagged at <= 1% false alarms on test digits", needs a threshold read off the test
    # digits themselves: printed for the chosen score as analysis only; the app keeps the held-out threshold.
    chosen = scores[CHOSEN]
    at_one_percent = float(np.quantile(chosen(test_features), 0.99))
    held_rate_there = float((chosen(held_features) > at_one_percent).mean())
    lines.append(row("same, threshold at 1% of test digits (analysis only)", chosen, at_one_percent, held_rate_there))
    caught = ", ".join(f"{s.kind}s {s.caught_before}/{s.total}" for s in sets)
    lines += [
        "",
        (f"Flagged by the degenerate-ink check before any model: {caught}. Sketch shares count them as flagged."),
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--per-template", type=int, default=20, help="drawings of each letter, shape and digit")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    data, store = load_mnist(), RunStore()
    sets = sketch_sets(args.per_template, args.seed)
    print(f"Sketches: {', '.join(f'{s.total} {s.kind}s' for s in sets)} (seed {args.seed}).\n")
    for name in args.runs:
        print("\n".join(measure_run(name, data, sets, store)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
