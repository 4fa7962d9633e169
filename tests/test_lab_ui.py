"""The app's helpers that are not widgets: the Train form's config, names and progress text, and the
progress recorder's cadence, tested without running a page."""

import pytest

from conftest import tiny_mnist
import threading

from lab_ui import train_form, train_jobs
from ocr_core import PRESETS, RECIPES, CheckpointError, ConfigError, TrainConfig, TrainingCallback, fit
from ocr_core.jobs import RUNNING_SERIES, Job, JobBoard, JobProgress, JobRecorder, JobRequest


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
