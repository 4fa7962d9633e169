"""A run on one person's handwriting: score any run on a writer's samples, and personalise a run (fine-tune
it on them) without forgetting MNIST.

Personalising, in order:
1. Split the writer's samples per digit: `held_out_count(n)` of each digit's n samples are kept out to
   measure on (the newest ones: a person's later digits are the ones the run will meet), the rest train.
2. Fine-tune the chosen layers (`LAYERS`: the classifier `head`, the last conv `block` onward, or `all`)
   with batch norm statistics and dropout frozen (eval mode: a few dozen samples would move the
   statistics every MNIST digit depends on). Each step mixes `OWN_BATCH` of the writer's training samples,
   jittered as a hand varies (`OWN_AUGMENT`: a few dozen digits are memorised otherwise), with `REPLAY_BATCH`
   MNIST training digits the parent trained on, so MNIST is not forgotten; on those the target is the
   parent's own answer (its probabilities: "learning without forgetting", Li & Hoiem 2016), which keeps
   its behaviour on MNIST closer than the bare labels would. Three samples of a digit are few for a hand
   far from MNIST's (digits half as wide, a strong lean), so each step also takes `STYLED_BATCH` of
   `STYLED_COUNT` MNIST digits redrawn in the writer's shape (`writer_style`: their width and lean against
   MNIST's for the same digits, from the ink's second moments; `restyled` draws them so and prepares them
   as a drawing), with MNIST's labels: many more digits of that geometry than the writer gave. At the end
   the weights move `PARENT_SHARE` of the way back to the parent's (weight-space ensembling, "WiSE-FT",
   Wortsman et al. 2022): on the synthetic writers it kept the errors removed and halved what MNIST lost.
3. Score the result on the held-out own digits and on the MNIST test set, beside the parent's figures;
   calibrate it again on the parent's held-out MNIST digits (so "not a digit" keeps working), and save it
   as a new run (atomic, never over an existing name) whose metadata's `personalisation` section records
   the parent, the writer, the samples used and the before/after figures.

`DEFAULT_LAYERS`, the learning rate, the replay weight, the jitter and the styled digits were chosen by
measurement on synthetic writers built from MNIST's held-out training digits, with what MNIST loses
measured on other held-out digits, never the test set (bench/personalise.py; figures in docs/benchmarks.md):
`WHY_DEFAULT` says why."""

from __future__ import annotations

import copy
import time
from contextlib import suppress
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import augment_batch, parse_augment, to_float_images
from .calibration import CalibrationError
from .checkpoints import RunInfo, RunStore, name_taken, validate_run_name
from .data import MnistData, load_mnist
from .errors import UserError
from .evaluation import Evaluation, evaluate
from .metadata import PERSONALISATION_LAYERS
from .models import as_model_input
from .preprocess import mnist_input
from .runs import calibration_for, holdout_digits, now, score, scores, versions
from .samples import SampleStore, validate_writer

LAYERS = PERSONALISATION_LAYERS  # head, block, all
DEFAULT_LAYERS = "all"
WHY_DEFAULT = (
    "everything, batch-norm statistics frozen: on synthetic writers (bench/personalise.py, measured on MNIST's "
    "held-out digits, not the test set) it removed the most held-out errors (89% and 73%, against 89% and 58% "
    "for the last block and 89% and 38% for the head) and lost the least MNIST (at most 0.04 points, against "
    "0.08 and 0.16)"
)
STEPS = 120
OWN_BATCH = 32
REPLAY_BATCH = 96
LEARNING_RATE = 5e-4
REPLAY_WEIGHT = 5.0  # the replayed digits' weight in the loss, against 1 for the writer's (1 lost 0.2 points of MNIST)
# small label-preserving jitter of the writer's (and the styled) digits: a hand varies by this much
OWN_AUGMENT = "rotate=10,translate=0.08,scale=0.85-1.1,crop=0.85-1,shear=8,elastic=1,thickness=0.5"
STYLED_COUNT = 400  # MNIST digits redrawn in the writer's slant and width (`writer_style`); 0 turns it off
STYLED_BATCH = 32
STYLED_WEIGHT = 1.0
PARENT_SHARE = 0.2  # the fine-tuned weights end this much of the way back to the parent's (WiSE-FT)
STYLE_REFERENCES = 2000  # replayed digits whose shapes stand for MNIST's when the writer's style is estimated
WIDTH_RANGE, SLANT_RANGE = (0.3, 2.0), (-1.0, 1.0)  # the styles `writer_style` can find
HELD_OUT_SHARE = 1 / 3
SEED = 0

Progress = Callable[[float, str], None]  # (fraction done, what is happening)


class PersonalisationError(UserError):
    """Too few samples, or a run that cannot be personalised; the message says what to do."""


@dataclass(frozen=True)
class WriterScore:
    """One run on one writer's samples."""

    evaluation: Evaluation
    sample_ids: np.ndarray

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy

    def per_digit(self) -> list[float | None]:
        """Accuracy per true digit (None where the writer has no sample of it)."""
        confusion = self.evaluation.confusion
        totals = confusion.sum(1)
        return [None if totals[d] == 0 else float(confusion[d, d] / totals[d]) for d in range(10)]

    def mistakes(self) -> list[dict]:
        """The misread samples, most confident first: sample id, true digit, answer, confidence."""
        evaluation = self.evaluation
        return [
            {
                "sample": int(self.sample_ids[index]),
                "label": int(evaluation.labels[index]),
                "predicted": int(evaluation.predictions[index]),
                "confidence": round(float(evaluation.confidences[index]), 6),
            }
            for index in evaluation.misclassified
        ]

    def summary(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "count": len(self.sample_ids),
            "errors": len(self.evaluation.misclassified),
            "per_digit": self.per_digit(),
            "confusion": self.evaluation.confusion.tolist(),
            "mistakes": self.mistakes(),
        }


def score_images(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, ids: np.ndarray) -> WriterScore:
    return WriterScore(evaluate(model, images, labels), ids)


def score_writer(model: nn.Module, writer: str, samples: SampleStore | None = None) -> WriterScore:
    """A run on every sample of a writer; PersonalisationError when the writer has none."""
    images, labels, ids = (samples or SampleStore()).digits(validate_writer(writer))
    if not len(ids):
        raise PersonalisationError(f"writer {writer!r} has no samples yet: add some first")
    return score_images(model, images, labels, ids)


def held_out_count(samples_of_digit: int) -> int:
    """How many of a digit's samples are kept out to measure on: a third, at least one once there are two."""
    if samples_of_digit < 2:
        return 0
    return max(1, round(samples_of_digit * HELD_OUT_SHARE))


def split_samples(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training positions, held-out positions): per digit, the newest `held_out_count` samples are held
    out (positions are in the store's order, oldest first)."""
    train, held_out = [], []
    for digit in range(10):
        positions = np.flatnonzero(labels == digit)
        keep = held_out_count(len(positions))
        train += positions[: len(positions) - keep].tolist()
        held_out += positions[len(positions) - keep :].tolist()
    return np.array(sorted(train), np.int64), np.array(sorted(held_out), np.int64)


def trainable_parameters(model: nn.Sequential, layers: str) -> list[nn.Parameter]:
    """The parameters `layers` names: the last module (the classifier), everything from the last conv on,
    or all; the others are frozen."""
    if layers not in LAYERS:
        raise PersonalisationError(f"layers must be one of {', '.join(LAYERS)}, got {layers!r}")
    modules = list(model)
    last_conv = max(index for index, module in enumerate(modules) if isinstance(module, nn.Conv2d))
    start = {"head": len(modules) - 1, "block": last_conv, "all": 0}[layers]
    chosen = [parameter for module in modules[start:] for parameter in module.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in chosen:
        parameter.requires_grad_(True)
    return chosen


@dataclass(frozen=True)
class WriterStyle:
    """How a writer's digits differ from MNIST's in shape: `width` times as wide (ink spread across the
    slant, against its height) and `slant` more lean (x shifts by `slant` per unit of height, the top to the
    right when positive)."""

    width: float = 1.0
    slant: float = 0.0


def ink_shape(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lean, width against height) of each image's ink (N, H, W), from its second moments: the lean is the
    shear that makes the ink upright, the width is the spread across after removing it."""
    images = images.astype(np.float64)
    rows, columns = np.mgrid[: images.shape[1], : images.shape[2]]
    mass = images.sum((1, 2)) + 1e-9
    mean_row = (images * rows).sum((1, 2)) / mass
    mean_column = (images * columns).sum((1, 2)) / mass
    dy, dx = rows - mean_row[:, None, None], columns - mean_column[:, None, None]
    row_spread = (images * dy * dy).sum((1, 2)) / mass + 1e-9
    column_spread = (images * dx * dx).sum((1, 2)) / mass
    covariance = (images * dx * dy).sum((1, 2)) / mass
    lean = -covariance / row_spread  # rows grow downwards: a top to the right is a negative covariance
    width = np.sqrt(np.maximum(column_spread - covariance**2 / row_spread, 1e-9) / row_spread)
    return lean, width


def writer_style(
    own_images: np.ndarray, own_labels: np.ndarray, references: np.ndarray, reference_labels: np.ndarray
) -> WriterStyle:
    """The writer's `WriterStyle` against MNIST's `references`: per digit, the writer's mean width against
    theirs for the same digit and the lean left over once that width is applied to theirs; the median over
    digits (a few samples of one digit say little alone)."""
    own_lean, own_width = ink_shape(own_images)
    lean, width = ink_shape(references)
    widths, leans = [], []
    for digit in np.unique(own_labels):
        mine, theirs = own_labels == digit, reference_labels == digit
        if theirs.any():
            widths.append(np.log(own_width[mine].mean() / width[theirs].mean()))
            leans.append((own_lean[mine].mean(), lean[theirs].mean()))
    if not widths:
        return WriterStyle()
    factor = float(np.clip(np.exp(np.median(widths)), *WIDTH_RANGE))
    return WriterStyle(factor, float(np.clip(np.median([m - factor * t for m, t in leans]), *SLANT_RANGE)))


def restyled(images: np.ndarray, style: WriterStyle) -> torch.Tensor:
    """uint8 MNIST digits (N, 28, 28) redrawn in `style` about their centre of mass and prepared as the Draw
    page prepares a drawing (its ink mask, MNIST's box and centring): uint8 (N, 28, 28)."""
    scale, side = 2, 28 * 4  # drawn at twice the size on a canvas with room for the slant
    out = np.zeros((len(images), 28, 28), np.uint8)
    for index, digit in enumerate(images):
        big = cv2.resize(digit.astype(np.float32) / 255, (28 * scale, 28 * scale), interpolation=cv2.INTER_LINEAR)
        canvas = np.zeros((side, side), np.float32)
        offset = (side - 28 * scale) // 2
        canvas[offset : offset + 28 * scale, offset : offset + 28 * scale] = big
        mass = canvas.sum() + 1e-9
        row = float((canvas.sum(1) * np.arange(side)).sum() / mass)
        column = float((canvas.sum(0) * np.arange(side)).sum() / mass)
        # x' = column + width * (x - column) - slant * (y - row)
        matrix = np.float32([[style.width, -style.slant, column * (1 - style.width) + style.slant * row], [0, 1, 0]])
        mask = cv2.warpAffine(canvas, matrix, (side, side), flags=cv2.INTER_LINEAR) > 0.3
        if mask.any():
            out[index] = (mnist_input(mask).numpy() * 255).round().astype(np.uint8)
    return torch.from_numpy(out)


def styled_digits(
    own_images: torch.Tensor,
    own_labels: torch.Tensor,
    replay_images: torch.Tensor,
    replay_labels: torch.Tensor,
    seed: int = SEED,
) -> tuple[WriterStyle, torch.Tensor, torch.Tensor]:
    """The writer's style (estimated against `STYLE_REFERENCES` replayed digits) and `STYLED_COUNT` other
    replayed digits redrawn in it, with their labels: many more digits in the writer's geometry than the
    writer gave, each labelled by MNIST."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(replay_labels), generator=generator)
    # the styled digits are the last of the order: the references' own only when there are too few to share
    references, chosen = order[:STYLE_REFERENCES], order[len(order) - min(STYLED_COUNT, len(order)) :]
    style = writer_style(
        own_images.numpy(), own_labels.numpy(), replay_images[references].numpy(), replay_labels[references].numpy()
    )
    return style, restyled(replay_images[chosen].numpy(), style), replay_labels[chosen]


def fine_tune(
    model: nn.Sequential,
    own_images: torch.Tensor,
    own_labels: torch.Tensor,
    replay_images: torch.Tensor,
    layers: str = DEFAULT_LAYERS,
    steps: int = STEPS,
    seed: int = SEED,
    progress: Progress | None = None,
    styled: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> nn.Sequential:
    """Fine-tune `model` in place on uint8 own digits mixed with replayed uint8 MNIST digits, whose targets are
    the model's own answers before fine-tuning, and with `styled` (uint8 digits, labels: `styled_digits`)
    if given (see the module's docstring); returns it in eval mode with every parameter trainable again."""
    generator = torch.Generator().manual_seed(seed)
    augment = parse_augment(OWN_AUGMENT)
    parent = copy.deepcopy(model).eval()
    parameters = trainable_parameters(model, layers)
    optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.eval()  # batch-norm statistics and dropout stay as the parent had them
    for step in range(steps):
        own = torch.randint(len(own_labels), (OWN_BATCH,), generator=generator)
        replay = torch.randint(len(replay_images), (REPLAY_BATCH,), generator=generator)
        own_batch = augment_batch(to_float_images(own_images[own]), augment, generator)
        replay_batch = as_model_input(to_float_images(replay_images[replay]))
        with torch.no_grad():
            remembered = F.softmax(parent(replay_batch), 1)
        batches = [as_model_input(own_batch), replay_batch]
        if styled is not None:
            chosen = torch.randint(len(styled[1]), (STYLED_BATCH,), generator=generator)
            batches.append(as_model_input(augment_batch(to_float_images(styled[0][chosen]), augment, generator)))
        logits = model(torch.cat(batches))
        end = OWN_BATCH + REPLAY_BATCH
        loss = F.cross_entropy(logits[:OWN_BATCH], own_labels[own]) + REPLAY_WEIGHT * F.cross_entropy(
            logits[OWN_BATCH:end], remembered
        )
        if styled is not None:
            loss = loss + STYLED_WEIGHT * F.cross_entropy(logits[end:], styled[1][chosen])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress and (step % 10 == 0 or step == steps - 1):
            progress((step + 1) / steps, f"fine-tuning {layers}: step {step + 1}/{steps}")
    with torch.no_grad():  # back towards the parent: most of what was learned stays, less of MNIST is lost
        for tuned, before in zip(model.parameters(), parent.parameters(), strict=True):
            tuned.lerp_(before, PARENT_SHARE)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model.eval()


@dataclass(frozen=True)
class Personalised:
    """The outcome: the new run, and the parent and child on the writer's held-out digits and on MNIST."""

    info: RunInfo
    before: WriterScore
    after: WriterScore
    mnist_before: float
    mnist_after: float
    changed: list[dict]  # held-out samples whose answer changed: sample, label, before, after

    def summary(self) -> dict:
        section = self.info.metadata.personalisation
        return {
            "name": self.info.name,
            "parent": section["parent"],
            "writer": section["writer"],
            "layers": section["layers"],
            "samples_trained": section["samples_trained"],
            "samples_held_out": section["samples_held_out"],
            "seconds": section["seconds"],
            "before": section["before"],
            "after": section["after"],
            "changed": self.changed,
        }


def changed_answers(before: WriterScore, after: WriterScore) -> list[dict]:
    old, new = before.evaluation.predictions, after.evaluation.predictions
    return [
        {
            "sample": int(before.sample_ids[index]),
            "label": int(before.evaluation.labels[index]),
            "before": int(old[index]),
            "after": int(new[index]),
        }
        for index in np.flatnonzero(old != new)
    ]


def figures(held_out: WriterScore, mnist: float) -> dict:
    return {"own_accuracy": held_out.accuracy, "own_count": len(held_out.sample_ids), "mnist_accuracy": mnist}


def personalise(
    parent: str,
    writer: str,
    name: str,
    store: RunStore | None = None,
    samples: SampleStore | None = None,
    data: MnistData | None = None,
    layers: str = DEFAULT_LAYERS,
    steps: int = STEPS,
    progress: Progress | None = None,
) -> Personalised:
    """Fine-tune run `parent` on `writer`'s samples and save it as run `name` (see the module's docstring).
    The parent's file is only read."""
    started = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    store = store or RunStore()
    writer = validate_writer(writer)
    validate_run_name(name)
    if store.exists(name):
        raise name_taken(name)
    model, metadata = store.load(parent)
    if not isinstance(model, nn.Sequential):
        raise PersonalisationError(f"{parent!r} is not a layered network this lab can fine-tune")
    images, labels, ids = (samples or SampleStore()).digits(writer)
    train, held_out = split_samples(labels.numpy())
    if not len(held_out) or not len(train):
        raise PersonalisationError(
            f"writer {writer!r} has {len(ids)} samples: personalising needs at least two of some digit "
            "(one to learn from, one to check on)"
        )
    data = data or load_mnist()
    holdout_digits(metadata, data)  # CheckpointError now, not after training, if the run knew other data
    report(0.0, "scoring the parent")
    parent_data = data.subset(train=metadata.data.train_size)
    replay = parent_data.without_holdout(metadata.config.holdout)  # never the digits calibration uses
    before = score_images(model, images[held_out], labels[held_out], ids[held_out])
    mnist_before = evaluate(model, data.test_images, data.test_labels).accuracy
    report(0.1, "fine-tuning")
    style, *styled = styled_digits(images[train], labels[train], replay.train_images, replay.train_labels)
    fine_tune(
        model,
        images[train],
        labels[train],
        replay.train_images,
        layers,
        steps,
        progress=lambda fraction, message: report(0.1 + 0.7 * fraction, message),
        styled=tuple(styled) if STYLED_COUNT else None,
    )
    report(0.8, "scoring the personalised run")
    after = score_images(model, images[held_out], labels[held_out], ids[held_out])
    child_scores = score(model, data)
    mnist_after = child_scores["clean"].accuracy
    changed = changed_answers(before, after)
    section = {
        "parent": parent,
        "writer": writer,
        "layers": layers,
        "why": WHY_DEFAULT if layers == DEFAULT_LAYERS else f"{layers}: asked for",
        "samples_trained": len(train),
        "samples_held_out": len(held_out),
        "sample_ids": [int(i) for i in ids[train]],
        "held_out_ids": [int(i) for i in ids[held_out]],
        "replayed_images": len(replay.train_labels),
        "steps": steps,
        "style": {"width": round(style.width, 3), "slant": round(style.slant, 3)},
        "before": figures(before, mnist_before),
        "after": figures(after, mnist_after),
        "changed": changed,
        "created": now(),
    }
    child = replace(metadata, **scores(child_scores), created=now(), versions=versions(), calibration=None)
    report(0.9, "calibrating on held-out MNIST digits")
    with suppress(CalibrationError):  # a parent without held-out digits stays "not calibrated", as it was
        child = replace(child, calibration=calibration_for(model, child, data).to_dict())
    section["seconds"] = round(time.perf_counter() - started, 2)
    info = store.save(name, model, replace(child, personalisation=section))
    report(1.0, "saved")
    return Personalised(info, before, after, mnist_before, mnist_after, changed)
