"""What the Train page's form means, away from its widgets: the settings it holds (session-state keys
`train.<field>`, and `train.aug.<op>.on` / `.value` for each augmentation op's toggle and slider), the config,
augmentation and job they make, the name checks, and the text of the live progress."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from ocr_core import (
    PRESETS,
    RECIPES,
    AugmentSpec,
    CheckpointError,
    MnistData,
    RunStore,
    TrainConfig,
    parse_augment,
    validate_run_name,
)
from ocr_core.augment import AUGMENT_OPS, RANGE_OPS

from ocr_core.jobs import Job, JobRequest
from ocr_core.duration import estimate_duration
from ocr_core.jobs import scores_per_epoch

from .train_jobs import clock, epochs_text

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
    "outliers",
)
DEFAULT_OWNER = "Another visitor"


def setting_key(field: str) -> str:
    return f"train.{field}"


def recipe_settings(recipe: TrainConfig) -> dict[str, Any]:
    """Session-state values that show `recipe` in the form, typed as the widgets expect them."""
    defaults = TrainConfig()
    return {setting_key(name): type(getattr(defaults, name))(getattr(recipe, name)) for name in CONFIG_FIELDS}


def augment_key(op: str, part: str) -> str:
    """The session key of an augmentation op's toggle ("on") or strength slider ("value")."""
    return f"train.aug.{op}.{part}"


def augment_settings(spec: AugmentSpec) -> dict[str, Any]:
    """Session-state values that show `spec` in the toggles and sliders: an op that is off keeps its slider at
    the op's typical strength, ready for the toggle."""
    identity, settings = AugmentSpec(), {}
    for op in AUGMENT_OPS.values():
        value = getattr(spec, op.name)
        switched_on = value != getattr(identity, op.name)
        settings[augment_key(op.name, "on")] = switched_on
        settings[augment_key(op.name, "value")] = value if switched_on else op.typical
    return settings


def spec_from_settings(state: Mapping[str, Any]) -> AugmentSpec:
    """The augmentation the toggles and sliders describe (range sliders give lists; the spec wants tuples);
    ConfigError if it is not valid."""
    values = {op: state[augment_key(op, "value")] for op in AUGMENT_OPS if state[augment_key(op, "on")]}
    for op in RANGE_OPS:
        if op in values:
            values[op] = tuple(values[op])
    return AugmentSpec(**values)


def spec_text(spec: AugmentSpec) -> str:
    """The spec op by op, each with its toggle's label ("Grey paper `brightness=0.5`"), so a long spec wraps
    between ops rather than mid-word; `none` when no op is on."""
    if spec.is_identity:
        return "`none`"
    return " · ".join(f"{AUGMENT_OPS[part.partition('=')[0]].label} `{part}`" for part in spec.to_string().split(","))


def matching_preset(spec: AugmentSpec | None) -> str | None:
    """The preset that `spec` is exactly, for the preset buttons, else None."""
    return next((name for name, preset in PRESETS.items() if preset == spec), None)


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


def checked_run_name(
    text: str, store: RunStore, overwrite: bool, refusal: Callable[[str], str | None] = lambda name: None
) -> str:
    """The run name typed in the form, if it is valid and free (or to be replaced); else CheckpointError.
    `refusal(name)` says why a run may not be replaced here (run_policy.refusal), so the message does not
    offer *Replace* where replacing is refused."""
    name = validate_run_name(text.strip())
    if store.exists(name):
        reason = refusal(name)
        if reason is not None:
            raise CheckpointError(
                f"A run named `{name}` exists already and cannot be replaced ({reason}): choose another name."
            )
        if not overwrite:
            raise CheckpointError(f"A run named `{name}` exists already: choose another name, or tick *Replace*.")
    return name


def job_from_settings(
    state: Mapping[str, Any],
    spec: AugmentSpec,
    data: MnistData,
    store: RunStore,
    visitor: str,
    refusal: Callable[[str], str | None] = lambda name: None,
) -> JobRequest:
    """The job the form asks for; a UserError says what to fix first. The job's process loads the digits and
    trains on the first `train_images`, its held-out digits right after them (the last ones for "all")."""
    name = checked_run_name(state[setting_key("name")], store, state[setting_key("overwrite")], refusal)
    total = len(data.train_labels)
    # a data set smaller than ten holdouts (the tests' synthetic digits) keeps its last tenth out instead
    config = config_from_settings(state, spec)
    config = replace(config, holdout=held_out_count(state, total))
    count = min(state[setting_key("images")] or total, total - config.holdout)
    return JobRequest(
        name,
        config.as_dict(),
        owner=visitor,
        owner_label=state[setting_key("owner_label")].strip() or DEFAULT_OWNER,
        train_images=count,
        overwrite=state[setting_key("overwrite")],
        keep_if_stopped=state[setting_key("if_stopped")] == "keep",
    )


def held_out_count(state: Mapping[str, Any], total: int) -> int:
    """The training digits the form's run holds out: the recipe's, or a tenth of a smaller data set."""
    return min(state[setting_key("holdout")], total // 10)


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
    estimate = estimate_duration(config, count, len(data.test_labels), scores_per_epoch(config.epochs))
    return (
        f"Estimated duration on this server: about {clock(estimate.total_seconds)} "
        f"(training {clock(estimate.training_seconds)} at "
        f"{estimate.speed.training_images_per_second:,.0f} images/s, measured just now with these settings; "
        f"scoring and calibration {clock(estimate.scoring_seconds)}). Other work on the server slows it down."
    )


def canonical(config: TrainConfig) -> TrainConfig:
    """`config` with its augmentation as a spec string, so a recipe's preset name equals the form's spec."""
    return replace(config, augment=parse_augment(config.augment).to_string())


def describe_job(job: Job, augment_label: str) -> str:
    """The recipe and settings of a job, in one line for the page that shows it training."""
    config = TrainConfig.from_dict(job.request.config)
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
            f"{epochs_text(config.epochs)} on {job.request.train_images:,} images",
            f"batch {config.batch_size}",
            f"{config.optimizer} at {config.learning_rate:g} ({config.schedule})",
            *extras,
            f"augmentation `{augment_label}`",
            f"precision {config.precision}",
            f"seed {config.seed}",
        ]
    )
