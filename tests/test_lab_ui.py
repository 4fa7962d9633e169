"""The app's helpers that are not widgets: the Train form's config, names and progress text, and the
progress recorder's cadence, tested without running a page."""

import pandas as pd
import pytest

from conftest import tiny_mnist
import threading

from lab_ui import train_form, train_jobs
from ocr_core import PRESETS, RECIPES, CheckpointError, ConfigError, TrainConfig, TrainingCallback, fit
from ocr_core.jobs import RUNNING_SERIES, Job, JobBoard, JobProgress, JobRecorder, JobRequest
from ocr_core.training import HOLDOUT


def form_state(**changes):
    state = {
        **train_form.recipe_settings(RECIPES["tutorial"]),
        "train.name": " mine ",
        "train.overwrite": False,
        "train.images": 256,
        "train.owner_label": "",
        "train.if_stopped": "discard",
    }
    return {**state, **changes}


def test_a_recipe_fills_the_form_and_the_form_gives_back_the_recipe():
    state = form_state()
    assert state["train.epochs"] == 5.0 and isinstance(state["train.epochs"], float)
    config = train_form.config_from_settings(state, PRESETS["none"])
    assert config == RECIPES["tutorial"]
    with pytest.raises(ConfigError, match="learning rate"):
        train_form.config_from_settings({**state, "train.learning_rate": -1.0}, PRESETS["none"])


def test_the_form_keeps_the_best_recipes_outlier_exposure():
    from ocr_core.augment import parse_augment

    best = RECIPES["best"]
    state = {**form_state(), **train_form.recipe_settings(best)}
    assert state["train.outliers"] == best.outliers > 0
    config = train_form.config_from_settings(state, parse_augment(best.augment))
    assert config.outliers == best.outliers, "a run trained from the form learns non-digits as the recipe does"
    with pytest.raises(ConfigError, match="outliers"):
        train_form.config_from_settings({**state, "train.outliers": 2.0}, PRESETS["none"])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_the_augmentation_controls_show_a_spec_and_give_it_back(preset):
    settings = train_form.augment_settings(PRESETS[preset])
    assert train_form.spec_from_settings(settings) == PRESETS[preset]
    assert train_form.matching_preset(train_form.spec_from_settings(settings)) == preset
    off = [key for key, value in settings.items() if key.endswith(".on") and not value]
    assert all(settings[key.removesuffix(".on") + ".value"] is not None for key in off), (
        "a switched-off op keeps a strength"
    )


def test_range_sliders_give_lists_and_the_spec_gets_tuples():
    settings = train_form.augment_settings(PRESETS["none"])
    settings.update({"train.aug.scale.on": True, "train.aug.scale.value": [0.8, 1.1], "train.aug.rotate.on": True})
    spec = train_form.spec_from_settings(settings)
    assert spec.scale == (0.8, 1.1) and spec.rotate == settings["train.aug.rotate.value"]
    assert train_form.matching_preset(spec) is None
    with pytest.raises(ConfigError):
        train_form.spec_from_settings({**settings, "train.aug.rotate.value": 999.0})


@pytest.mark.parametrize("images", [60_000, 1_000])
def test_every_run_trained_in_the_app_keeps_the_recipes_held_out_digits(store, images):
    """Calibrated by default: on MNIST the form's run holds out the recipe's 5,000 digits (right after the
    chosen images), which train_run calibrates on."""
    data = tiny_mnist(train=60_000, test=16)
    for recipe in RECIPES.values():
        state = {**form_state(**{"train.images": images}), **train_form.recipe_settings(recipe)}
        job = train_form.job_from_settings(state, PRESETS["none"], data, store, visitor="v")
        assert job.config["holdout"] == HOLDOUT
        assert job.train_images == min(images, 60_000 - HOLDOUT), "the held-out digits come right after these"


def test_the_job_uses_the_checked_name_and_the_chosen_share_of_the_data(store):
    data = tiny_mnist()
    job = train_form.job_from_settings(form_state(), PRESETS["seed"], data, store, visitor="v1")
    assert (job.name, job.owner, job.owner_label, job.keep_if_stopped) == ("mine", "v1", "Another visitor", False)
    assert job.config["augment"] == PRESETS["seed"].to_string() and job.config["holdout"] == 51  # a tenth of 512
    assert job.train_images == 256, "the job process takes the held-out digits right after these"
    every = train_form.job_from_settings(form_state(**{"train.images": 512}), PRESETS["seed"], data, store, "v1")
    assert every.train_images == 512 - 51, "'all' is every digit but the held-out ones"
    assert train_form.free_run_name(store) == "my-run"


@pytest.mark.parametrize("name, message", [("../x", "invalid run name"), ("", "invalid run name")])
def test_bad_names_are_refused(store, name, message):
    with pytest.raises(CheckpointError, match=message):
        train_form.checked_run_name(name, store, overwrite=False)


def test_a_taken_name_needs_replace(store):
    from conftest import sample_metadata
    from ocr_core import build_model

    store.save("my-run", build_model("fast"), sample_metadata())
    with pytest.raises(CheckpointError, match=r"exists already.*Replace"):
        train_form.checked_run_name("my-run", store, overwrite=False)
    assert train_form.checked_run_name("my-run", store, overwrite=True) == "my-run"
    assert train_form.free_run_name(store) == "my-run-2"


def test_a_name_that_cannot_be_replaced_does_not_offer_replace(store):
    from conftest import sample_metadata
    from ocr_core import build_model

    store.save("best", build_model("fast"), sample_metadata())
    for overwrite in (False, True):
        with pytest.raises(CheckpointError, match="cannot be replaced") as refused:
            train_form.checked_run_name("best", store, overwrite, refusal=lambda name: "a shipped run")
        assert "Replace" not in str(refused.value)


EPOCH_TEXTS = [(0.2496, "0.25 epochs"), (1.0, "1 epoch"), (1.004, "1 epoch"), (5, "5 epochs"), (0.5, "0.5 epochs")]


@pytest.mark.parametrize("epochs, text", EPOCH_TEXTS)
def test_epochs_read_as_people_write_them(epochs, text):
    assert train_form.epochs_text(epochs) == text


def test_the_spec_under_the_preview_gives_each_ops_label_and_name():
    text = train_form.spec_text(PRESETS["seed"])
    assert text == "Rotate `rotate=20` · Shift `translate=0.2` · Crop `crop=0.8-1.2` · Mirror `hflip=0.5`"
    assert train_form.spec_text(PRESETS["none"]) == "`none`"


def running_job(**progress) -> Job:
    request = JobRequest("mine", TrainConfig().as_dict(), "v", "V", 512)
    return Job("id", request, "running", submitted=0.0, started=0.0, progress=JobProgress(**progress))


def test_progress_text_says_each_step_and_waits_for_an_eta():
    assert train_jobs.progress_text(running_job()).startswith("Starting the training process")
    running = {
        "phase": "training",
        "epoch": 2,
        "total_epochs": 5,
        "step": 1200,
        "total_steps": 4690,
        "images_per_second": 2345.6,
    }
    assert train_jobs.progress_text(running_job(**running, eta_seconds=125.2)) == (
        "Epoch 2/5 · step 1,200/4,690 · 2,346 images/s · ETA 2:05"
    )
    assert train_jobs.progress_text(running_job(**running)).endswith("ETA estimating…")
    finishing = running_job(**{**running, "phase": "finishing"}, finishing_label="scoring the augmented test set")
    assert train_jobs.finishing_text(finishing) == "Scoring the augmented test set…"
    assert train_jobs.finishing_text(running_job(**running)).startswith("Then: scoring")


class Clock(TrainingCallback):
    """Advances a fake clock by `step_seconds` per optimizer step and `score_seconds` per scoring, as a net of
    that speed would (it runs before the recorder, so the recorder sees the time pass)."""

    def __init__(self, step_seconds, score_seconds=0.0):
        self.now, self.step_seconds, self.score_seconds = 0.0, step_seconds, score_seconds

    def on_batch(self, progress):
        self.now += self.step_seconds

    def on_score(self, progress, point):
        self.now += self.score_seconds


def recorded_job(tmp_path) -> tuple[JobBoard, str]:
    board = JobBoard(tmp_path / "jobs")
    job = board.submit(JobRequest("cadence", TrainConfig().as_dict(), "v", "V", 512))
    assert board.claim(job.id) is not None
    return board, job.id


# 16 steps: a fast net (0.16 s in all) shows the first and the last; a slow one (4.8 s) steps 1, 5, 9, 13, 16
@pytest.mark.parametrize("step_seconds, expected_reports", [(0.01, 2), (0.3, 5)])
def test_the_recorder_updates_about_once_a_second_whatever_the_step_time(tmp_path, step_seconds, expected_reports):
    board, job_id = recorded_job(tmp_path)
    clock = Clock(step_seconds)
    recorder = JobRecorder(board, job_id, threading.Event(), clock=lambda: clock.now)
    fit(TrainConfig(epochs=1, batch_size=32), tiny_mnist(), (clock, recorder))  # 16 steps
    running = [row for row in board.points(job_id) if row["series"] == RUNNING_SERIES]
    assert running[0]["epoch"] == pytest.approx(1 / 16), "the first step is shown at once"
    assert running[-1]["epoch"] == 1.0 and board.job(job_id).progress.step == 16, "and the last"
    assert len(running) == expected_reports


def test_the_heatmap_sorts_corruptions_by_the_choice_and_runs_by_their_mean():
    from lab_ui.robustness_view import HARDEST_FIRST, SUITE_ORDER, heatmap_orders
    from ocr_core.corruptions import CORRUPTIONS

    labels = [corruption.label for corruption in CORRUPTIONS.values()]
    # run "a" is worst on the last corruption, "b" on the first; "b" is the more robust on average
    accuracy = {
        "a": {label: 0.9 - 0.5 * (position == len(labels) - 1) for position, label in enumerate(labels)},
        "b": {label: 0.95 - 0.3 * (position == 0) - 0.002 * position for position, label in enumerate(labels)},
    }
    frame = pd.DataFrame(
        [
            {"run": run, "corruption": label, "accuracy": value}
            for run, row in accuracy.items()
            for label, value in row.items()
        ]
    )
    order, runs = heatmap_orders(frame, SUITE_ORDER)
    assert order == labels and runs == ["b", "a"]
    assert heatmap_orders(frame, "a")[0][0] == labels[-1]
    assert heatmap_orders(frame, "b")[0] == [labels[0], *reversed(labels[1:])]
    means = {label: (accuracy["a"][label] + accuracy["b"][label]) / 2 for label in labels}
    hardest = heatmap_orders(frame, HARDEST_FIRST)[0]
    assert [means[label] for label in hardest] == sorted(means.values()) and hardest[0] == labels[-1]


def test_evaluate_preselects_the_newest_runs_and_adds_new_ones_on_the_next_visit():
    from types import SimpleNamespace

    from lab_ui.compare import CHOSEN_RUNS, selected_runs

    runs = [SimpleNamespace(name=name, modified=float(age)) for age, name in enumerate("abcdef")]
    state = {"active_run": "a"}
    assert selected_runs(runs, state) == ["a", "f", "e", "d"], "the chosen model, then the newest"
    state[CHOSEN_RUNS] = ["a"]  # the visitor narrowed it down
    assert selected_runs(runs, state) == ["a"]
    assert selected_runs([*runs, SimpleNamespace(name="new", modified=9.0)], state) == ["a", "new"]
    assert selected_runs(runs[:3], {}) == ["a", "b", "c"], "few runs: all of them"


def test_the_eta_holds_steady_through_scoring_pauses_and_stop_is_read_from_the_board(tmp_path):
    board, job_id = recorded_job(tmp_path)
    clock = Clock(step_seconds=0.5, score_seconds=5.0)  # each scoring pauses the steps for ten steps' time
    finishes = []

    class Watch(TrainingCallback):
        def on_batch(self, progress):
            if recorder.progress.eta_seconds is not None:
                finishes.append(clock.now + recorder.progress.eta_seconds)

    stop = threading.Event()
    recorder = JobRecorder(board, job_id, stop, scored_images=0, clock=lambda: clock.now)
    fit(TrainConfig(epochs=1, batch_size=32), tiny_mnist(), (clock, recorder, Watch()), scores_per_epoch=4)
    assert len(finishes) >= 8
    after_first_scoring = finishes[3:]
    assert max(after_first_scoring) - min(after_first_scoring) < 0.05 * min(after_first_scoring), finishes
    assert not stop.is_set()
    board.request_stop(job_id)
    recorder.flush()
    assert stop.is_set(), "a Stop on the board reaches the training within a report"
