"""`fit(config)`: the one training loop behind the CLI, the app and the benchmark."""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .augment import as_spec, augment_batch, to_float_images
from .data import MnistData, load_mnist
from .errors import ConfigError
from .evaluation import Evaluation, evaluate
from .models import ARCHITECTURES, as_model_input, build_model
from .optimizers import OPTIMIZERS, Optimizer, Schedule

SCHEDULES = ("constant", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")


TYPE_NAMES = {"str": "text", "int": "a whole number", "float": "a number"}


def has_type(value, annotation: str) -> bool:
    """Whether `value` fits a field annotated `str`, `int` or `float` (an int is a float; a bool is neither)."""
    if annotation == "str":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    return isinstance(value, numbers.Integral if annotation == "int" else numbers.Real)


@dataclass(frozen=True)
class TrainConfig:
    architecture: str = "fast"
    epochs: float = 1.0  # fractions train on part of the last epoch
    batch_size: int = 128
    learning_rate: float = 0.01  # the peak rate under onecycle
    optimizer: str = "adam"
    schedule: str = "onecycle"
    weight_decay: float = 0.0
    label_smoothing: float = 0.1  # measured: +0.06% on average after the fast recipe's single epoch
    augment: str = "none"  # preset or spec string, see augment.parse_augment
    ema_decay: float = 0.0  # >0: train an exponential moving average of the weights and return it
    seed: int = 0
    holdout: int = 0  # the last N training images are never trained on: held-out data for calibration
    # >0: after the last step, batch-norm statistics are re-estimated on the first N training images, unaugmented.
    # Heavy photometric augmentation leaves statistics of augmented digits, which shift clean ones (measured
    # on held-out digits for `best`: 98.2% -> 99.3% clean, and corrupted ones gain too).
    batchnorm_images: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 mixed precision where the hardware computes bf16 natively

    def __post_init__(self) -> None:
        wrong_types = [
            f"{f.name} must be {TYPE_NAMES[f.type]}, got {getattr(self, f.name)!r}"
            for f in fields(self)
            if not has_type(getattr(self, f.name), f.type)
        ]
        if wrong_types:  # before the range checks, which would fail on a string with a TypeError
            raise ConfigError("; ".join(wrong_types))
        problems = []
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {', '.join(ARCHITECTURES)}")
        if not 0 < self.epochs <= 200:
            problems.append("epochs must be in (0, 200]")
        if not 1 <= self.batch_size <= 8192:
            problems.append("batch size must be in [1, 8192]")
        if not 0 < self.learning_rate <= 10:
            problems.append("learning rate must be in (0, 10]")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
        if not 0 <= self.weight_decay < 1 or not 0 <= self.label_smoothing < 1:
            problems.append("weight decay and label smoothing must be in [0, 1)")
        if not 0 <= self.ema_decay < 1:
            problems.append("ema decay must be in [0, 1)")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}")
        if not 0 <= self.holdout <= 59_000:
            problems.append("holdout must be in [0, 59000]")
        if not 0 <= self.batchnorm_images <= 60_000:
            problems.append("batchnorm_images must be in [0, 60000]")
        if problems:
            raise ConfigError("; ".join(problems))
        as_spec(self.augment)  # raises on a bad spec before any work starts

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


HOLDOUT = 5_000  # every recipe keeps the last 5,000 training digits out (the tutorial too: a deviation)
RECIPES = {
    # Fastest to 99% on a CPU (see docs/benchmarks.md): the default of the CLI and the Train page.
    "fast": TrainConfig(holdout=HOLDOUT),
    # pytorch tutorial: Adam 1e-3, batch 64, 5 epochs, constant rate, fp32; it trains on all 60,000 digits,
    # ours on 55,000, so that its calibration is fit on digits it never saw.
    "tutorial": TrainConfig(
        architecture="seed",
        epochs=5,
        batch_size=64,
        learning_rate=1e-3,
        optimizer="adam",
        schedule="constant",
        label_smoothing=0.0,
        precision="fp32",
        holdout=HOLDOUT,
    ),
    # Robust in about a minute: the deep net, two epochs of `recommended` plus scribbles; the Train page's
    # suggestion for the tutorial experiment's "with augmentation" run.
    "robust": TrainConfig(
        architecture="deep",
        epochs=2,
        batch_size=128,
        learning_rate=4e-3,
        optimizer="adamw",
        schedule="onecycle",
        weight_decay=0.05,
        label_smoothing=0.05,
        augment="recommended,strokes=0.5",
        ema_decay=0.99,
        holdout=HOLDOUT,
        batchnorm_images=5_000,
    ),
    # The shipped `best`: the deep net, tuned augmentation, AdamW one-cycle, weights averaged.
    "best": TrainConfig(
        architecture="deep",
        epochs=12,
        batch_size=128,
        learning_rate=4e-3,
        optimizer="adamw",
        schedule="onecycle",
        weight_decay=0.05,
        label_smoothing=0.05,
        augment="recommended",
        ema_decay=0.999,
        holdout=HOLDOUT,
        batchnorm_images=10_000,
    ),
}


def resolve_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def has_native_bf16(device: torch.device) -> bool:
    """bf16 pays only where the hardware computes it; elsewhere it is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if has_native_bf16(device) else "fp32"
    return name


def autocast(precision: str, device: torch.device):
    """Mixed precision: weights and optimizer stay fp32, convolutions and matmuls run in bf16."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class EpochRecord:
    epoch: float  # fractional when a run stops or ends mid-epoch
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    images_per_second: float
    learning_rate: float


@dataclass(frozen=True)
class ScorePoint:
    """The model scored part-way through training, in eval mode: the test set, and as many training images
    the same way (unaugmented, no dropout, the same weights), so that the two numbers are comparable; the
    running training numbers are not (they mix a whole epoch of changing weights, augmented)."""

    epoch: float
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float


@dataclass
class Progress:
    """What callbacks see; `model` is live, so a callback may evaluate it (in eval mode, then restore)."""

    config: TrainConfig
    model: nn.Module
    epoch: int  # 1-based epoch in progress
    total_epochs: int
    step: int  # optimizer steps so far
    total_steps: int
    steps_per_epoch: int
    images_seen: int
    loss: float  # running mean over the current epoch
    accuracy: float
    images_per_second: float
    elapsed_seconds: float
    learning_rate: float
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def fraction_done(self) -> float:
        return self.step / self.total_steps

    @property
    def eta_seconds(self) -> float:
        return self.elapsed_seconds / max(self.step, 1) * (self.total_steps - self.step)


class TrainingCallback:
    """Override what you need; `on_batch` runs after every optimizer step (a `Cadence` decides how often a
    callback acts on it), `on_epoch` after each evaluation, `on_score` at each of fit's `scores_per_epoch`."""

    def on_batch(self, progress: Progress) -> None: ...

    def on_epoch(self, progress: Progress) -> None: ...

    def on_score(self, progress: Progress, point: ScorePoint) -> None: ...


class Cadence:
    """When a progress callback should act: at the first step, then once per `seconds` of wall time, and at
    the last step. Time-based, so displays update at the same pace whatever the net and batch size."""

    def __init__(self, seconds: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.last: float | None = None

    def due(self, progress: Progress) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.seconds and progress.step < progress.total_steps:
            return False
        self.last = now
        return True


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    history: list[EpochRecord]
    stopped: bool
    seconds: float
    device: str
    precision: str
    final_test: Evaluation | None  # the last epoch's clean test scoring, of the returned model


def ema_update(decay: float):
    """Exponential moving average whose decay warms up as (1 + n) / (10 + n): a plain EMA would keep
    most of the random initial weights for its first thousand steps and score near chance early on."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates_so_far: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # BN's batch counters: nothing to average
            torch._foreach_copy_(averaged, current)
            return
        count = float(updates_so_far)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + count) / (10.0 + count)))

    return update


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu") -> None:
    """Re-estimate every batch norm's running statistics on `images` (uint8 (N, 28, 28), unaugmented) as a
    plain average over chunks of 500; the weights and every other layer stay as they are (eval mode)."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training, momenta = model.training, [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
        norm.train()
    for chunk in images.split(500):
        model(as_model_input(to_float_images(chunk).to(device)))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train(was_training)


def score_marks(epoch_steps: int, scores_per_epoch: int) -> set[int]:
    """The steps of an epoch (1-based) after which it is scored: evenly spaced, the last at its end."""
    return {max(1, round(point * epoch_steps / scores_per_epoch)) for point in range(1, scores_per_epoch + 1)}


def fit(
    config: TrainConfig,
    data: MnistData | None = None,
    callbacks: tuple[TrainingCallback, ...] = (),
    stop: threading.Event | None = None,
    scores_per_epoch: int = 0,
) -> TrainResult:
    """Train from scratch, evaluating on the test set after each epoch. Setting `stop` ends training
    at the next batch; the partly trained model is evaluated and returned with `stopped=True`.
    With `scores_per_epoch`, the test set and as many training images are scored that many times per epoch
    (ScorePoint, to the callbacks' on_score): a chart of a short run gets more than one point. The last
    `config.holdout` training images are left out."""
    data = (data or load_mnist()).without_holdout(config.holdout)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)  # weights init and dropout
    generator = torch.Generator().manual_seed(config.seed)  # shuffling and augmentation
    spec = as_spec(config.augment)
    model = build_model(config.architecture).to(device)
    optimizer = Optimizer(config.optimizer, model.parameters(), config.learning_rate, config.weight_decay)
    # The averaged copy (BN statistics included) is what gets scored and returned.
    average = (
        AveragedModel(model, multi_avg_fn=ema_update(config.ema_decay), use_buffers=True) if config.ema_decay else None
    )
    scored = average.module if average is not None else model
    train_count = len(data.train_labels)
    steps_per_epoch = math.ceil(train_count / config.batch_size)
    total_steps = max(1, round(config.epochs * steps_per_epoch))
    schedule = Schedule(optimizer, total_steps, onecycle=config.schedule == "onecycle")
    total_epochs = math.ceil(total_steps / steps_per_epoch)
    history: list[EpochRecord] = []
    test: Evaluation | None = None
    step, started, stopped = 0, time.perf_counter(), False

    scored_train = (data.train_images[: len(data.test_labels)], data.train_labels[: len(data.test_labels)])

    def score_now(test_now: Evaluation | None = None) -> ScorePoint:
        test_now = test_now or evaluate(scored, data.test_images, data.test_labels, device=device)
        train_now = evaluate(scored, *scored_train, device=device)
        return ScorePoint(
            round(step / steps_per_epoch, 4), train_now.loss, train_now.accuracy, test_now.loss, test_now.accuracy
        )

    def snapshot(epoch: int, loss_sum: float, correct: int, seen: int, epoch_seconds: float) -> Progress:
        return Progress(
            config,
            model,
            epoch,
            total_epochs,
            step,
            total_steps,
            steps_per_epoch,
            images_seen=step * config.batch_size,
            loss=loss_sum / seen,
            accuracy=correct / seen,
            images_per_second=seen / epoch_seconds,
            elapsed_seconds=time.perf_counter() - started,
            learning_rate=optimizer.rate,
            history=history,
        )

    for epoch in range(1, total_epochs + 1):
        model.train()
        epoch_started, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        epoch_steps = min(steps_per_epoch, total_steps - step)
        marks = score_marks(epoch_steps, scores_per_epoch) - {epoch_steps} if scores_per_epoch else set()
        order = torch.randperm(train_count, generator=generator)
        for batch_indices in order.split(config.batch_size):
            if step >= total_steps or (stop is not None and stop.is_set()):
                break
            images = augment_batch(to_float_images(data.train_images[batch_indices]), spec, generator)
            labels = data.train_labels[batch_indices].to(device)
            with autocast(precision, device):
                logits = model(as_model_input(images.to(device)))
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.advance()
            if average is not None:
                average.update_parameters(model)
            step += 1
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            if callbacks:
                progress = snapshot(epoch, loss_sum, correct, seen, time.perf_counter() - epoch_started)
                for callback in callbacks:
                    callback.on_batch(progress)
                if step - (epoch - 1) * steps_per_epoch in marks:  # the epoch's end is scored below
                    point = score_now()
                    for callback in callbacks:
                        callback.on_score(progress, point)
        stopped = stop is not None and stop.is_set()
        if seen == 0:
            break
        train_seconds = time.perf_counter() - epoch_started
        if config.batchnorm_images and (stopped or step >= total_steps):  # the returned model's statistics
            recalibrate_batch_norm(scored, data.train_images[: config.batchnorm_images], device)
        test = evaluate(scored, data.test_images, data.test_labels, device=device)
        history.append(
            EpochRecord(
                epoch=round(epoch - 1 + seen / train_count, 4),
                train_loss=loss_sum / seen,
                train_accuracy=correct / seen,
                test_loss=test.loss,
                test_accuracy=test.accuracy,
                seconds=train_seconds,
                images_per_second=seen / train_seconds,
                learning_rate=optimizer.rate,
            )
        )
        progress = snapshot(epoch, loss_sum, correct, seen, train_seconds)
        for callback in callbacks:
            callback.on_epoch(progress)
        if scores_per_epoch and callbacks:
            point = score_now(test)
            for callback in callbacks:
                callback.on_score(progress, point)
        if stopped:
            break
    scored.eval()
    return TrainResult(scored, config, history, stopped, time.perf_counter() - started, str(device), precision, test)


def with_overrides(config: TrainConfig, **overrides) -> TrainConfig:
    """`config` with the given fields replaced, ignoring overrides that are None."""
    return replace(config, **{key: value for key, value in overrides.items() if value is not None})
