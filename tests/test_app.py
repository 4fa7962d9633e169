"""The Streamlit app through AppTest, on tiny synthetic data and runs (see app_fixtures)."""

from __future__ import annotations

import time
from dataclasses import replace
from unittest import mock

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app_fixtures import BROKEN_RUN, INCOMPLETE_RUN, PROJECT_DIR, TIMEOUT, canvas_drawing, png_bytes, texts
from ocr_core import TrainConfig, data_status
from ocr_core.jobs import Job, JobBoard, JobRequest, ensure_worker, jobs_folder

PAGES = ["app_pages/draw.py", "app_pages/read.py", "app_pages/train.py", "app_pages/evaluate.py", "app_pages/manage.py"]


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT).run()
    if page != PAGES[0]:
        app.switch_page(page).run()
    assert not app.exception, [item.message for item in app.exception]
    return app


TITLES = ["Draw a digit", "Read a number", "Train a model", "Evaluate runs", "Manage runs"]


@pytest.mark.parametrize("page, title", list(zip(PAGES, TITLES, strict=True)))
def test_every_page_renders(app_env, page, title):
    app = open_page(page)
    assert [element.value for element in app.title] == [title]
    assert "`best`" in texts(app.sidebar.markdown)
    assert "MNIST ready" in texts(app.sidebar.markdown)


def test_draw_prompts_on_an_empty_canvas(app_env):
    app = open_page("app_pages/draw.py")
    assert "Draw a digit" in texts(app.info)
    assert not app.metric


def test_draw_predicts_a_drawing_with_every_run(app_env):
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_drawing()):
        app = open_page("app_pages/draw.py")
    prediction = next(metric for metric in app.metric if metric.label == "Prediction")
    assert prediction.value in list("0123456789")
    assert app.get("vega_lite_chart")
    assert any("28×28" in caption for image in app.image for caption in image.captions)
    comparison = app.dataframe[0].value
    assert sorted(comparison["run"]) == sorted(run.name for run in app_env.store.list() if run.ok)
    assert comparison["prediction"].notna().all()


def one_on_paper(dtype=np.uint8, channels: int = 0) -> np.ndarray:
    """A dark '1' on light paper, as a scan would give it."""
    paper = np.full((120, 90), 230, np.uint8)
    paper[20:100, 40:52] = 20
    image = paper.astype(dtype) * (257 if dtype == np.uint16 else 1)
    return np.dstack([image] * 3 + [np.full_like(image, 255)]) if channels == 4 else image


@pytest.mark.parametrize(
    "name, payload, expected",
    [
        ("scan.png", png_bytes(one_on_paper()), None),
        ("rgba.png", png_bytes(one_on_paper(channels=4)), None),
        ("16-bit.png", png_bytes(one_on_paper(np.uint16)), None),
        ("tiny.png", png_bytes(np.zeros((4, 4), np.uint8)), "too small"),
        ("notes.png", b"not an image at all", "not an image"),
        ("junk.txt", b"shopping list", "Cannot use junk.txt: not an image"),  # any file is taken, then explained
    ],
)
def test_draw_reads_uploads_and_explains_bad_ones(app_env, name, payload, expected):
    app = open_page("app_pages/draw.py")
    app.segmented_control(key="draw.source").set_value("Upload").run()
    assert "Upload a photo or scan of one digit" in texts(app.info) and "black square" not in texts(app.info)
    app.file_uploader(key="draw.upload").set_value((name, payload, "image/png")).run()
    assert not app.exception
    if expected is None:
        assert any(metric.label == "Prediction" for metric in app.metric)
    else:
        assert expected in texts(app.error)
        assert not app.metric
        assert not app.info, "no drawing hint beside the reason"


def test_a_run_whose_weights_do_not_load_is_reported_not_fatal(app_env):
    model, metadata = app_env.store.load("best")  # a `fast` net, saved below under another architecture's name
    app_env.store.save("mislabelled", model, replace(metadata, architecture="seed"))
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_drawing()):
        app = open_page("app_pages/draw.py")
    comparison = app.dataframe[0].value.set_index("run")
    assert "do not fit the architecture" in comparison.loc["mislabelled", "problem"]
    assert comparison.drop(index="mislabelled")["prediction"].notna().all()


def test_draw_explains_when_there_are_no_runs(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_CHECKPOINT_DIR", str(tmp_path))
    app = open_page("app_pages/draw.py")
    assert "no usable runs" in texts(app.error)


def board() -> JobBoard:
    return JobBoard(jobs_folder())


def wait_for_training(app: AppTest, seconds: float = 180) -> None:
    """Until the worker has finished every job of the test's queue (real processes: tiny data, but torch's
    import in the job process takes seconds), then a rerun of the page."""
    deadline = time.monotonic() + seconds
    while board().jobs():
        assert time.monotonic() < deadline, f"training did not finish: {board().jobs()}"
        time.sleep(0.2)
    app.run()


def wait_until_training(job_id: str, seconds: float = 120) -> Job:
    """Until the job's process has made its first steps."""
    deadline = time.monotonic() + seconds
    while (job := board().job(job_id)).progress.phase != "training":
        assert job.active, f"the job ended before training: {job.state} {job.error}"
        assert time.monotonic() < deadline, "the job did not start training"
        time.sleep(0.2)
    return job


def click(app: AppTest, label: str) -> None:
    next(button for button in app.button if button.label == label).click().run()


def test_train_a_tiny_run_through_the_page(app_env):
    app = open_page("app_pages/train.py")
    assert app.get("imgs") or app.image, "the augmentation preview is missing"
    app.text_input(key="train.name").set_value("ui-run")
    app.number_input(key="train.epochs").set_value(0.5)
    app.segmented_control(key="train.preset").set_value("seed").run()
    assert app.toggle(key="train.aug.rotate.on").value and app.toggle(key="train.aug.crop.on").value
    click(app, "Start training")
    assert not app.exception
    assert "ui-run" in set(app.dataframe[0].value["run"]), "the queue shows the new job"
    wait_for_training(app)
    assert "Saved run `ui-run`" in texts(app.success)
    saved = app_env.store.info("ui-run")
    assert saved.metadata.augment == "rotate=20,translate=0.2,crop=0.8-1.2,hflip=0.5"
    assert saved.metadata.config.holdout == 51 and saved.metadata.data.train_size == 512  # a tenth of 512
    assert saved.metadata.calibration is None and "is not calibrated" in texts(app.warning), "51 are too few"
    assert 0 < saved.metadata.epochs_completed < 0.6  # whole batches: 256 of the 461 digits trained on
    assert any(link.label.startswith("Compare it") for link in app.get("page_link"))
    click(app, "Draw with it")
    assert "Draw a digit" in texts(app.title)
    assert "`ui-run`" in texts(app.sidebar.markdown)


def start_long_job(name: str = "their-run", owner: str = "someone else", label: str = "Ada", keep=False) -> Job:
    """A job that trains until stopped, queued as another visitor would (stop it with `finish`)."""
    request = JobRequest(name, TrainConfig(epochs=100, batch_size=16).as_dict(), owner, label, 461, keep)
    job = board().submit(request)
    ensure_worker(jobs_folder())
    return job


def finish(job: Job, seconds: float = 120) -> Job:
    """Stop the job (or cancel it if it is still queued) and wait until it has ended."""
    jobs = board()
    if not jobs.cancel(job.id):
        deadline = time.monotonic() + seconds
        while not jobs.request_stop(job.id) and jobs.job(job.id).active:
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.1)
    deadline = time.monotonic() + seconds
    while (ended := jobs.job(job.id)).active:
        assert time.monotonic() < deadline, "the job did not stop"
        time.sleep(0.1)
    return ended


def test_train_shows_a_measured_duration_that_follows_the_settings(app_env):
    def estimate() -> str:
        return next(str(c.value) for c in app.caption if str(c.value).startswith("Estimated duration"))

    def seconds(text: str) -> int:
        minutes, _, rest = text.split("about ")[1].partition(":")
        return int(minutes) * 60 + int(rest[:2])

    app = open_page("app_pages/train.py")
    one = estimate()
    assert "images/s, measured just now" in one
    app.number_input(key="train.epochs").set_value(100.0).run()
    assert seconds(estimate()) > seconds(one), "a hundred epochs take longer than one"


def test_stopping_a_run_can_discard_it(app_env):
    app = open_page("app_pages/train.py")
    app.text_input(key="train.name").set_value("stopped-run")
    app.number_input(key="train.epochs").set_value(100.0)
    app.select_slider(key="train.batch_size").set_value(16)
    app.radio(key="train.if_stopped").set_value("discard")
    click(app, "Start training")
    (job,) = board().jobs()
    wait_until_training(job.id)
    app.run()
    app.button(key=f"train.stop.{job.id}").click().run()
    wait_for_training(app)
    assert board().job(job.id).state == "discarded"
    assert "not saved" in texts(app.info)
    assert not app_env.store.exists("stopped-run")


def test_train_rejects_a_bad_run_name(app_env):
    app = open_page("app_pages/train.py")
    app.text_input(key="train.name").set_value("../x")
    click(app, "Start training")
    assert "invalid run name" in texts(app.error)
    assert not board().jobs()


def test_two_visitors_one_trains_one_queued_who_sees_position_start_and_can_cancel(app_env):
    job = start_long_job()
    try:
        wait_until_training(job.id)
        app = open_page("app_pages/train.py")
        queue = app.dataframe[0].value
        assert list(queue["who"]) == ["Ada"] and queue["status"][0].startswith("training")
        assert "Ada's run `their-run`" in texts(app.markdown)
        assert not any(button.key and button.key.startswith("train.stop") for button in app.button), "not theirs"
        app.text_input(key="train.name").set_value("mine-too")
        click(app, "Queue training")
        assert not app.exception and not app.error
        queue = app.dataframe[0].value
        assert list(queue["run"]) == ["their-run", "mine-too"] and queue["status"][1] == "queued, #1"
        assert "`mine-too` is queued: number 1 in the queue, expected to start" in texts(app.info)
        mine = next(queued for queued in board().jobs() if queued.name == "mine-too")
        assert board().job(job.id).state == "running" and mine.state == "queued", "one training at a time"
        click(app, "Cancel")
        assert board().job(mine.id).state == "cancelled"
        assert "was cancelled before it started" in texts(app.info)
    finally:
        finish(job)
    assert not app_env.store.exists("mine-too")


def test_a_crash_inside_training_is_an_error_on_the_page(app_env):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA, where training on cuda fails")
    app = open_page("app_pages/train.py")
    request = JobRequest("doomed", TrainConfig(device="cuda").as_dict(), app.session_state["visitor"], "me", 461)
    board().submit(request)
    ensure_worker(jobs_folder())
    wait_for_training(app)
    assert "Training `doomed` failed:" in texts(app.error)
    assert not app_env.store.exists("doomed")


def test_evaluate_shows_the_table_the_charts_and_the_skipped_file(app_env):
    app = open_page("app_pages/evaluate.py")
    summary = app.dataframe[0].value
    assert {"clean accuracy", "seed-augmented accuracy"} <= set(summary.columns)
    assert len(app.get("vega_lite_chart")) >= 3  # grouped bars, confusion heatmap, learning curves
    assert f"{BROKEN_RUN}.safetensors" in texts(app.markdown)
    assert f"`{INCOMPLETE_RUN}.safetensors`: {INCOMPLETE_RUN}.safetensors: incomplete run metadata" in texts(
        app.markdown
    ), "a run file without complete metadata is listed as skipped, with the reason"
    assert INCOMPLETE_RUN not in set(summary["run"])
    next(button for button in app.button if "Tutorial experiment" in button.label).click().run()
    assert list(app.dataframe[0].value["run"]) == ["seed", "seed-aug"]


def test_manage_runs_rename_errors_and_delete(app_env, monkeypatch):
    monkeypatch.setenv("OCR_RUN_MANAGEMENT", "full")  # the shipped runs are protected by default
    app = open_page("app_pages/manage.py")
    app.selectbox(key="manage.rename_from").set_value("seed-aug")
    app.text_input(key="manage.rename_to").set_value("../x").run()
    next(button for button in app.button if button.label == "Rename").click().run()
    assert "invalid run name" in texts(app.error)
    app.text_input(key="manage.rename_to").set_value("seed-aug-2").run()
    next(button for button in app.button if button.label == "Rename").click().run()
    assert app_env.store.exists("seed-aug-2") and not app_env.store.exists("seed-aug")
    app.selectbox(key="manage.delete").set_value(BROKEN_RUN)
    next(button for button in app.button if button.label == "Delete…").click().run()
    app.button(key="manage.delete_confirmed").click().run()
    assert not app.exception
    assert not (app_env.store.root / f"{BROKEN_RUN}.safetensors").exists()


@pytest.mark.parametrize("page", ["app_pages/train.py", "app_pages/evaluate.py"])  # Draw and Read work without it
def test_pages_explain_how_to_get_missing_data(app_env, tmp_path, monkeypatch, page):
    monkeypatch.setenv("OCR_DATA_DIR", str(tmp_path))
    with mock.patch("ocr_core.data.DEFAULT_DATA_DIR", tmp_path / "nothing"):  # nor in the project's data/
        assert data_status() is not None
        app = open_page(page)
    assert "needs the MNIST dataset" in texts(app.warning)
    assert any(button.label == "Download MNIST now" for button in app.button)


def test_uploading_a_run_with_incomplete_metadata_is_refused_with_the_reason(app_env):
    payload = (app_env.store.root / f"{INCOMPLETE_RUN}.safetensors").read_bytes()
    app = open_page("app_pages/manage.py")
    app.file_uploader(key="manage.upload").set_value(("older.safetensors", payload, "application/octet-stream"))
    app.run()
    next(button for button in app.button if button.label == "Add run").click().run()
    assert not app.exception
    assert "incomplete run metadata: 'parameters' is missing" in texts(app.error)
    assert not app_env.store.exists("older")
