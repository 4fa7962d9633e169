"""What the Train page's form means, away from its widgets: the settings it holds (session-state keys
`train.<field>`), the config and job they make, the name checks, and the text of the live progress."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

import pandas as pd

from ocr_core import (
    RECIPES,
    AugmentSpec,
    CheckpointError,
    MnistData,
    RunStore,
    TrainConfig,
    parse_augment,
    validate_run_name,
)

from ocr_core.duration import estimate_duration

from .training import Snapshot, TrainingJob, scores_per_epoch

# The TrainConfig fields the form edits (augment comes from the augmentation controls; device stays auto).
CONFIG_FIELDS = (
    "architecture",
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "schedule",
    "weight_decay",
    "label_smoothing",
    "ema_decay",
    "precision",
    "seed",
    "holdout",
)
DEFAULT_OWNER = "Another visitor"


def setting_key(field: str) -> str:
    return f"train.{field}"


def recipe_settings(recipe: TrainConfig) -> dict[str, Any]:
    """Session-state values that show `recipe` in the form, typed as the widgets expect them."""
    defaults = TrainConfig()
    return {setting_key(name): type(getattr(defaults, name))(getattr(recipe, name)) for name in CONFIG_FIELDS}


def config_from_settings(state: Mapping[str, Any], spec: AugmentSpec) -> TrainConfig:
    """The config the form describes; ConfigError says what is wrong with it."""
    return TrainConfig(**{name: state[setting_key(name)] for name in CONFIG_FIELDS}, augment=spec.to_string())


def free_run_name(store: RunStore, taken: Collection[str] = (), stem: str = "my-run") -> str:
    """The first of my-run, my-run-2, … that is neither saved nor `taken` (the name of a run in training)."""
    return next(
        name
        for number in range(1, 10_000)
        if not store.exists(name := stem if number == 1 else f"{stem}-{number}") and name not in taken
    )


def checked_run_name(text: str, store: RunStore, overwrite: bool) -> str:
    """The run name typed in the form, if it is valid and free (or to be replaced); else CheckpointError."""
    name = validate_run_name(text.strip())
    if store.exists(name) and not overwrite:
        raise CheckpointError(f"A run named `{name}` exists already: choose another name, or tick *Replace*.")
    return name


def job_from_settings(
    state: Mapping[str, Any], spec: AugmentSpec, data: MnistData, store: RunStore, visitor: str
) -> tuple[TrainingJob, MnistData]:
    """The job the form asks for and the training data it uses; a UserError says what to fix first."""
    name = checked_run_name(state[setting_key("name")], store, state[setting_key("overwrite")])
    total = len(data.train_labels)
    # a data set smaller than ten holdouts (the tests' synthetic digits) keeps its last tenth out instead
    config = config_from_settings(state, spec)
    config = replace(config, holdout=min(config.holdout, total // 10))
    count = state[setting_key("images")] or total
    job = TrainingJob(
        name,
        config,
        owner=visitor,
        owner_label=state[setting_key("owner_label")].strip() or DEFAULT_OWNER,
        train_images=count,
        overwrite=state[setting_key("overwrite")],
        keep_if_stopped=state[setting_key("if_stopped")] == "keep",
    )
    # the recipe's held-out digits are the ones right after the chosen images (the last ones for "all")
    return job, data.subset(train=min(count + config.holdout, total))


DURATION_NOTE = (
    "Measured here, not guessed: a few training steps with these settings (net, batch size, augmentation, "
    "precision) on random digits, and the net's scoring speed. It counts the optimizer steps, the scoring "
    "during training, the final scoring of the clean and augmented test sets, batch-norm re-estimation and "
    "calibration."
)


def duration_text(state: Mapping[str, Any], spec: AugmentSpec, data: MnistData) -> str:
    """The form's run timed before it starts, from training and scoring speeds measured here (cached per
    net, batch size and augmentation); a ConfigError if the settings are not valid."""
    total = len(data.train_labels)
    config = config_from_settings(state, spec)
    config = replace(config, holdout=min(config.holdout, total // 10))
    count = min(state[setting_key("images")] or total, total - config.holdout)
    estimate = estimate_duration(config, count, len(data.test_labels), scores_per_epoch(config))
    return (
        f"Estimated duration on this server: about {clock(estimate.total_seconds)} "
        f"(training {clock(estimate.training_seconds)} at "
        f"{estimate.speed.training_images_per_second:,.0f} images/s, measured just now with these settings; "
        f"scoring and calibration {clock(estimate.scoring_seconds)}). Other work on the server slows it down."
    )


def trace_frame(trace: list[dict]) -> pd.DataFrame:
    """The live chart's rows (epoch, series, loss, accuracy) as a frame, empty before the first report."""
    return pd.DataFrame(list(trace), columns=["epoch", "series", "loss", "accuracy"])


def clock(seconds: float | None) -> str:
    return "–" if seconds is None else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def progress_text(snapshot: Snapshot, finishing: bool) -> str:
    if finishing:
        return "Scoring on the clean and the augmented test set, then saving…"
    if snapshot.step == 0:
        return "Starting…"
    return (
        f"Epoch {snapshot.epoch}/{snapshot.total_epochs} · step {snapshot.step:,}/{snapshot.total_steps:,} · "
        f"{snapshot.images_per_second:,.0f} images/s · ETA {clock(snapshot.eta_seconds)}"
    )


def canonical(config: TrainConfig) -> TrainConfig:
    """`config` with its augmentation as a spec string, so a recipe's preset name equals the form's spec."""
    return replace(config, augment=parse_augment(config.augment).to_string())


def describe_job(job: TrainingJob, augment_label: str) -> str:
    """The recipe and settings of a job, in one line for the page that shows it training."""
    config = job.config
    recipe = next(
        (f"recipe `{name}`" for name, recipe in RECIPES.items() if canonical(recipe) == canonical(config)),
        "custom settings",
    )
    extras = [
        f"{label} {value:g}"
        for label, value in (
            ("weight decay", config.weight_decay),
            ("label smoothing", config.label_smoothing),
            ("EMA decay", config.ema_decay),
        )
        if value
    ]
    return " · ".join(
        [
            recipe,
            f"`{config.architecture}` net",
            f"{config.epochs:g} epochs on {job.train_images:,} images",
            f"batch {config.batch_size}",
            f"{config.optimizer} at {config.learning_rate:g} ({config.schedule})",
            *extras,
            f"augmentation `{augment_label}`",
            f"precision {config.precision}",
            f"seed {config.seed}",
        ]
    )
