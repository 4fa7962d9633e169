"""Our side of the benchmark, through the same ocr_core functions the CLI and the app use."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ocr_core import RunStore, TrainConfig, TrainingCallback, build_model, evaluate, fit, predict_probabilities
from ocr_core.augment import as_spec, augment_batch, to_float_images
from ocr_core.data import MnistData
from ocr_core.preprocess import prepare_digit
from ocr_core.robustness import run_report, summary
from ocr_core.training import RECIPES, Progress

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The tutorial recipe with our pipeline: only the input side differs from the reference.
# Speed figures train on every image they are given, as the tutorial pipeline they are compared with does.
SEED_MODEL_RECIPE = replace(RECIPES["tutorial"], holdout=0)


def progress(message: str) -> None:
    """A timestamped line on stderr: benchmarks print their figures on stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TargetRun:
    """How long a recipe took to reach the target accuracy; `seconds` is None when it never did."""

    seconds: float | None
    epochs: float
    accuracy: float


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float


class ThroughputMeter(TrainingCallback):
    """Images per second from the end of the first 5% of the steps (the warm-up) to the last step."""

    def __init__(self) -> None:
        self.first: Progress | None = None
        self.last: Progress | None = None

    def on_batch(self, progress: Progress) -> None:
        if self.first is None and progress.step >= max(1, progress.total_steps // 20):
            self.first = progress
        self.last = progress

    @property
    def images_per_second(self) -> float:
        if self.first is None or self.last is self.first:
            raise ValueError("too few progress reports to measure throughput: train for more steps")
        images = self.last.images_seen - self.first.images_seen
        return images / (self.last.elapsed_seconds - self.first.elapsed_seconds)


def training_throughput(data: MnistData, config: TrainConfig) -> float:
    meter = ThroughputMeter()
    fit(config, data.subset(test=1), (meter,))  # the test set only matters for the history
    return meter.images_per_second


def augmentation_seconds_per_batch(data: MnistData, augment: str, batch_size: int, batches: int) -> float:
    """Mean time of what fit adds per batch for `augment`: the batched per-sample transforms."""
    spec, generator = as_spec(augment), torch.Generator().manual_seed(0)
    chunks = [to_float_images(chunk) for chunk in data.train_images[: batch_size * batches].split(batch_size)]
    augment_batch(chunks[0], spec, generator)  # warm-up
    started = time.perf_counter()
    for chunk in chunks:
        augment_batch(chunk, spec, generator)
    return (time.perf_counter() - started) / len(chunks)


def fit_to_accuracy(data: MnistData, config: TrainConfig, target: float) -> TargetRun:
    """A whole recipe, in process; its clock is fit's training time (the per-epoch scoring left out)."""
    history = fit(config, data).history
    reached = next((index for index, record in enumerate(history) if record.test_accuracy >= target), None)
    last = history[-1 if reached is None else reached]
    seconds = sum(record.seconds for record in history[: reached + 1]) if reached is not None else None
    return TargetRun(seconds, last.epoch, last.test_accuracy)


@dataclass(frozen=True)
class CommandRun(TargetRun):
    """A `train` command's whole-process time and clean test accuracy, with its CPU seconds (user + system of
    the child, which a loaded machine inflates less than wall time) and, if asked, its corruption report."""

    cpu_seconds: float = 0.0
    robustness: dict | None = None  # robustness.summary() at the default severity


def train_command(extra_args: list[str], name: str = "bench", report: bool = False) -> CommandRun:
    """`python -m ocr_core train --name NAME [extra_args]` as a user runs it, into a temporary run store;
    the clock is the whole process: start-up, data loading, training, scoring, calibration and saving. With
    `report`, the run's robustness report is computed afterwards (not timed)."""
    with tempfile.TemporaryDirectory() as checkpoints:
        environment = {**os.environ, "OCR_CHECKPOINT_DIR": checkpoints}
        command = [sys.executable, "-m", "ocr_core", "train", "--name", name, *extra_args]
        before = os.times()
        started = time.perf_counter()
        finished = subprocess.run(command, cwd=PROJECT_DIR, env=environment, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        after = os.times()
        if finished.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-2000:]}")
        store = RunStore(Path(checkpoints))
        metadata = store.info(name).metadata
        robustness = summary(run_report(name, store), None) if report else None
    cpu = after.children_user + after.children_system - before.children_user - before.children_system
    return CommandRun(seconds, metadata.epochs_completed, metadata.metric("clean"), cpu, robustness)


def startup_seconds(imports: str, repeats: int = 3) -> float:
    """A fresh Python importing `imports` and leaving as the CLI does (without unloading), best of `repeats`:
    the floor under any command."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import os, {imports}; os._exit(0)"], cwd=PROJECT_DIR, check=True)
        timings.append(time.perf_counter() - started)
    return min(timings)


def evaluation_seconds(data: MnistData, architecture: str) -> float:
    """`evaluate` on the whole test set (after one warm-up call, as in a running app)."""
    model = build_model(architecture).eval()
    evaluate(model, data.test_images[:100], data.test_labels[:100])
    started = time.perf_counter()
    evaluate(model, data.test_images, data.test_labels)
    return time.perf_counter() - started


def canvas_drawing(side: int = 280) -> np.ndarray:
    """What the Draw page's canvas hands over: RGBA uint8, a white '4' on opaque black."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    stroke = {"fill": (255, 255, 255, 255), "width": side // 14}
    pen.line([(side * 0.55, side * 0.15), (side * 0.25, side * 0.6), (side * 0.75, side * 0.6)], **stroke)
    pen.line([(side * 0.6, side * 0.35), (side * 0.6, side * 0.85)], **stroke)
    return np.asarray(image)


def drawing_latency(architecture: str, repeats: int) -> Latency:
    """One drawing to ten probabilities: `prepare_digit` plus the forward pass, as the Draw page does it."""
    model, drawing = build_model(architecture).eval(), canvas_drawing()
    timings = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        predict_probabilities(model, prepare_digit(drawing)[None, None])
        timings.append(time.perf_counter() - started)
    return latency(timings[1:])  # the first call creates the kernels


def latency(seconds: list[float]) -> Latency:
    cuts = statistics.quantiles(seconds, n=20, method="inclusive")
    return Latency(statistics.median(seconds) * 1000, cuts[18] * 1000)
