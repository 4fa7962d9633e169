"""How long a training will take here, before it starts: measured, not guessed.

`measure_speed(config)` trains a few steps of the config's net, batch size, augmentation, precision and device
through `fit` itself, on random digits, and times them after a warm-up step; it also times scoring (the
net in eval mode on a batch of digits). `estimate_duration` turns the two rates into seconds for a run on
`train_count` digits: the optimizer steps, the scoring during training (`scores_per_epoch`, each of the test
set and as many training digits), the final scoring of the `seed`-augmented test set, batch-norm
re-estimation and calibration. Rates are cached per setting that changes them, for the life of the process,
so a form can ask on every change. The machine's load at the moment of measuring is in the figure, as it
will be in the training.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace

import torch

from .calibration import FIT_IMAGES
from .data import MnistData
from .evaluation import evaluate
from .models import build_model
from .training import Progress, TrainConfig, TrainingCallback, fit

TIMED_STEPS = 3  # after one warm-up step; a few steps suffice, as every step does the same work
SCORING_BATCH = 512


@dataclass(frozen=True)
class Speed:
    training_images_per_second: float
    scoring_images_per_second: float


@dataclass(frozen=True)
class DurationEstimate:
    training_seconds: float  # the optimizer steps
    scoring_seconds: float  # everything else: scoring during and after training, batch norm, calibration
    speed: Speed

    @property
    def total_seconds(self) -> float:
        return self.training_seconds + self.scoring_seconds


class StepClock(TrainingCallback):
    """Elapsed time at the end of the first (warm-up) step and of the last."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None

    def on_batch(self, progress: Progress) -> None:
        if progress.step == 1:
            self.first = progress.elapsed_seconds
        self.last = progress.elapsed_seconds


def speed_key(config: TrainConfig) -> TrainConfig:
    """The settings that change the time of a step: the others (rates, seed, schedule) are reset."""
    defaults = TrainConfig()
    return replace(
        defaults,
        architecture=config.architecture,
        batch_size=config.batch_size,
        optimizer=config.optimizer,
        augment=config.augment,
        ema_decay=config.ema_decay,
        outliers=config.outliers,  # a quarter more images per step for `best`
        device=config.device,
        precision=config.precision,
    )


@functools.lru_cache(maxsize=64)
def measured_speed(key: TrainConfig) -> Speed:
    generator = torch.Generator().manual_seed(0)
    count = key.batch_size * (TIMED_STEPS + 1)
    images = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.arange(count) % 10
    data = MnistData(images, labels, images[:2], labels[:2], "random", "duration estimate")
    clock = StepClock()
    fit(replace(key, epochs=1.0), data, (clock,))
    training = key.batch_size * TIMED_STEPS / max(clock.last - clock.first, 1e-6)
    model = build_model(key.architecture)
    evaluate(model, images[:16], labels[:16])  # warm-up
    started = time.perf_counter()
    evaluate(model, images[:SCORING_BATCH], labels[:SCORING_BATCH])
    scoring = min(count, SCORING_BATCH) / max(time.perf_counter() - started, 1e-6)
    return Speed(training, scoring)


def measure_speed(config: TrainConfig) -> Speed:
    return measured_speed(speed_key(config))


def estimate_duration(
    config: TrainConfig, train_count: int, test_count: int, scores_per_epoch: int = 0, speed: Speed | None = None
) -> DurationEstimate:
    """Seconds for `fit` plus what `runs.train_run` does after it, for `train_count` digits trained on."""
    speed = speed or measure_speed(config)
    steps = max(1, round(config.epochs * math.ceil(train_count / config.batch_size)))
    training = steps * config.batch_size / speed.training_images_per_second
    epochs = math.ceil(config.epochs)
    scored = epochs * test_count  # after each epoch
    scored += max(0, scores_per_epoch * epochs - epochs) * 2 * test_count  # extra points: test + training digits
    scored += test_count  # the seed-augmented test set (the clean one is the last epoch's scoring, reused)
    scored += config.batchnorm_images
    if config.holdout:
        scored += config.holdout + min(FIT_IMAGES, train_count)  # calibration's feature passes
    return DurationEstimate(training, scored / speed.scoring_images_per_second, speed)
