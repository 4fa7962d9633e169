"""Accuracy as one transform's strength grows: the "what augmentation buys" curves.

Each sweep applies one augmentation op (the very ops training uses, `augment.AUGMENT_OPS`) to the first
`DIGITS_PER_CLASS` test digits of each class at a series of strengths, seeded, so every run is scored on
identical digits. A sweep point reads as the op's strength does in training ("rotate 30" = rotated by up to
30 degrees either way), except where the op takes a fixed value (zoom, noise, elastic) and the pen sweeps,
which thin or thicken every digit's ink by exactly that many pixels per side. Results are cached per run next
to the robustness reports, keyed by the run's weights and `SWEEP_VERSION`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .augment import (
    AUGMENT_OPS,
    AugmentSpec,
    augment_batch,
    changed_stroke_width,
    to_float_images,
)
from .checkpoints import RunStore
from .data import MnistData, load_mnist
from .errors import UserError
from .evaluation import folded_for_inference, predict_probabilities
from .robustness import (
    ReportProgress,
    first_readable,
    report_cache_dir,
    report_subset,
    run_weights_hash,
    write_result,
)

SWEEP_VERSION = 1
SWEEP_SEED = 4242
DIGITS_PER_CLASS = 100  # 1,000 digits: a curve point's standard error stays under 1.6 points, at half the time


@dataclass(frozen=True)
class Sweep:
    name: str
    label: str  # axis title
    strengths: tuple[float, ...]  # the first is always "no change"
    transform: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]  # float (N, 1, 28, 28) images


def with_op(op: str, value: Callable[[float], object] = lambda strength: strength):
    """A transform applying training's op `op` at strength `value(strength)` (all other ops off)."""

    def transform(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
        if strength == 0 or value(strength) == AUGMENT_OPS[op].off:
            return images
        return augment_batch(images, AugmentSpec(**{op: value(strength)}), generator)

    return transform


def pen(direction: int):
    """Every digit's ink thinned (-1) or thickened (+1) by exactly `strength` pixels per side."""

    def transform(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
        if strength == 0:
            return images
        return changed_stroke_width(images, torch.full((len(images),), float(direction * strength)))

    return transform


SWEEPS: dict[str, Sweep] = {
    sweep.name: sweep
    for sweep in (
        Sweep("rotate", "rotation, up to ± degrees", (0, 15, 30, 45, 60, 75, 90), with_op("rotate")),
        Sweep(
            "translate", "shift, up to ± share of the side", (0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3), with_op("translate")
        ),
        Sweep(
            "zoom",
            "zoom factor (1 = as drawn)",
            (1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.2, 1.4, 1.6, 1.8),
            with_op("scale", lambda zoom: (zoom, zoom)),
        ),
        Sweep("shear", "shear, up to ± degrees", (0, 10, 20, 30, 40, 50, 60), with_op("shear")),
        Sweep("elastic", "elastic distortion, typical pixels", (0, 1, 2, 3, 4, 5, 6), with_op("elastic")),
        Sweep("noise", "gaussian noise, std", (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6), with_op("noise")),
        Sweep("blur", "blur, sigma up to pixels", (0, 0.5, 1, 1.5, 2, 2.5, 3), with_op("blur")),
        Sweep("contrast", "faint ink, fading up to", (0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9), with_op("contrast")),
        Sweep("thinner", "thinner pen, pixels per side", (0, 0.25, 0.5, 0.75, 1, 1.5, 2), pen(-1)),
        Sweep("thicker", "thicker pen, pixels per side", (0, 0.5, 1, 1.5, 2, 2.5, 3), pen(+1)),
    )
}


def swept_images(images: torch.Tensor, sweep: Sweep, strength: float) -> torch.Tensor:
    """uint8 (N, 28, 28) test digits under one sweep point: float (N, 1, 28, 28), the same on every call."""
    generator = torch.Generator().manual_seed(SWEEP_SEED + list(sweep.strengths).index(strength))
    return sweep.transform(to_float_images(images), strength, generator).clamp(0, 1)


@dataclass(frozen=True)
class SweepResult:
    """`accuracy[sweep][i]` at `SWEEPS[sweep].strengths[i]`, as fractions."""

    weights: str
    version: int
    digits: int
    accuracy: dict[str, list[float]]
    seconds: float

    def points(self, sweep: str) -> list[tuple[float, float]]:
        """(strength, accuracy) in increasing strength."""
        return sorted(zip(SWEEPS[sweep].strengths, self.accuracy[sweep], strict=True))

    @classmethod
    def from_json(cls, text: str) -> SweepResult:
        try:
            values = json.loads(text)
            accuracy = {str(name): [float(value) for value in values["accuracy"][name]] for name in SWEEPS}
            if any(len(accuracy[name]) != len(SWEEPS[name].strengths) for name in SWEEPS):
                raise ValueError("strengths differ from today's sweeps")
            result = cls(
                str(values["weights"]),
                int(values["version"]),
                int(values["digits"]),
                accuracy,
                float(values["seconds"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UserError(f"not a sweep result of this version ({error})") from None
        if result.version != SWEEP_VERSION:
            raise UserError(f"sweep version {result.version} is not {SWEEP_VERSION}")
        return result


def compute_sweeps(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    weights: str,
    progress: ReportProgress | None = None,
) -> SweepResult:
    """Score `model` at every point of every sweep; `progress` hears after each point."""
    started = time.perf_counter()
    fast = folded_for_inference(model)
    truth = labels.numpy()
    total = sum(len(sweep.strengths) for sweep in SWEEPS.values())
    done, accuracy = 0, {}
    for sweep in SWEEPS.values():
        accuracy[sweep.name] = []
        for strength in sweep.strengths:
            predicted = predict_probabilities(fast, swept_images(images, sweep, strength)).argmax(1)
            accuracy[sweep.name].append(float((predicted == truth).mean()))
            done += 1
            if progress:
                progress(done, total, f"{sweep.label} {strength:g}")  # words people read
    return SweepResult(weights, SWEEP_VERSION, len(truth), accuracy, round(time.perf_counter() - started, 2))


def sweep_file_name(weights: str) -> str:
    return f"{weights}-sweeps{SWEEP_VERSION}.json"


def cached_sweeps(weights: str, store: RunStore) -> SweepResult | None:
    """Shipped (beside the runs, like their robustness reports) or cached sweeps of these weights, else None."""
    return first_readable(store, sweep_file_name(weights), SweepResult.from_json, lambda r: r.weights == weights)


def write_sweeps(result: SweepResult, folder: Path) -> Path:
    return write_result(folder, sweep_file_name(result.weights), json.dumps(asdict(result), indent=1))


def run_sweeps(
    name: str, store: RunStore | None = None, data: MnistData | None = None, progress: ReportProgress | None = None
) -> SweepResult:
    """A run's sweeps on the robustness report's test digits: cached, else computed and cached."""
    store = store or RunStore()
    info = store.info(name)
    weights = run_weights_hash(info)
    cached = cached_sweeps(weights, store)
    if cached is not None:
        return cached
    model, _ = store.load(name)
    data = data or load_mnist()
    images, labels = report_subset(data.test_images, data.test_labels, DIGITS_PER_CLASS)
    result = compute_sweeps(model, images, labels, weights, progress)
    with suppress(OSError):  # a read-only cache only costs the computation next time
        write_sweeps(result, report_cache_dir())
    return result
