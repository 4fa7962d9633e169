"""The Streamlit app through AppTest, on tiny synthetic data and runs (see app_fixtures)."""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
from dataclasses import replace
from unittest import mock

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app_fixtures import BROKEN_RUN, INCOMPLETE_RUN, PROJECT_DIR, canvas_drawing, png_bytes
import lab_ui.training as training_module
from lab_ui.training import TrainingBusyError, TrainingJob, training_manager
from ocr_core import TrainConfig, data_status

PAGES = ["app_pages/draw.py", "app_pages/read.py", "app_pages/train.py", "app_pages/evaluate.py"]
TIMEOUT = 60  # seconds per script run: generous for a loaded 2-core CI machine


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT).run()
    if page != PAGES[0]:
        app.switch_page(page).run()
    assert not app.exception, [item.message for item in app.exception]
    return app


def texts(elements) -> str:
    return " ".join(str(element.value) for element in elements)


@pytest.mark.parametrize(
    "page, title", list(zip(PAGES, ["Draw a digit", "Read a number", "Train a model", "Evaluate runs"], strict=True))
)
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
    ],
)
def test_draw_reads_uploads_and_explains_bad_ones(app_env, name, payload, expected):
    app = open_page("app_pages/draw.py")
    app.segmented_control(key="draw.source").set_value("Upload").run()
    app.file_uploader(key="draw.upload").set_value((name, payload, "image/png")).run()
    assert not app.exception
    if expected is None:
        assert any(metric.label == "Prediction" for metric in app.metric)
    else:
        assert expected in texts(app.error)
        assert not app.metric


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


def wait_for_training(app: AppTest, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while training_manager().job.running:
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.2)
    app.run()


def test_train_a_tiny_run_through_the_page(app_env):
    app = open_page("app_pages/train.py")
    assert app.get("imgs") or app.image, "the augmentation preview is missing"
    app.text_input(key="train.name").set_value("ui-run")
    app.number_input(key="train.epochs").set_value(0.5)
    app.segmented_control(key="train.preset").set_value("seed").run()
    assert app.toggle(key="train.aug.rotate.on").value and app.toggle(key="train.aug.crop.on").value
    next(button for button in app.button if button.label == "Start training").click().run()
    assert not app.exception
    wait_for_training(app)
    assert "Saved run `ui-run`" in texts(app.success)
    saved = app_env.store.info("ui-run")
    assert saved.metadata.augment == "rotate=20,translate=0.2,crop=0.8-1.2,hflip=0.5"
    assert saved.metadata.config.holdout == 51 and saved.metadata.data.train_size == 512  # a tenth of 512
    assert 0 < saved.metadata.epochs_completed < 0.6  # whole batches: 256 of the 461 digits trained on
    assert any(link.label.startswith("Compare it") for link in app.get("page_link"))
    next(button for button in app.button if button.label == "Draw with it").click().run()
    assert "Draw a digit" in texts(app.title)
    assert "`ui-run`" in texts(app.sidebar.markdown)


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
    next(button for button in app.button if button.label == "Start training").click().run()
    app.button(key="train.stop").click().run()
    wait_for_training(app)
    assert training_manager().job.outcome.state == "discarded"
    assert "not saved" in texts(app.info)
    assert not app_env.store.exists("stopped-run")


def test_train_rejects_a_bad_run_name(app_env):
    app = open_page("app_pages/train.py")
    app.text_input(key="train.name").set_value("../x")
    next(button for button in app.button if button.label == "Start training").click().run()
    assert "invalid run name" in texts(app.error)
    assert not training_manager().job or training_manager().job.name != "../x"


def start_long_job(app_env, owner: str = "someone else", label: str = "Ada") -> TrainingJob:
    """A job that trains until stopped, started as another visitor would (stop it with `finish`)."""
    job = TrainingJob(
        "their-run",
        TrainConfig(epochs=100, batch_size=16),
        owner=owner,
        owner_label=label,
        train_images=512,
        keep_if_stopped=False,
    )
    training_manager().start(job, app_env.store, app_env.data)
    return job


def finish(job: TrainingJob, seconds: float = 60) -> None:
    job.stop.set()
    deadline = time.monotonic() + seconds
    while job.running:
        assert time.monotonic() < deadline, "the job did not stop"
        time.sleep(0.1)


def test_a_second_visitor_sees_who_is_training(app_env):
    job = start_long_job(app_env)
    try:
        app = open_page("app_pages/train.py")
        assert "Ada is training `their-run`" in texts(app.info)
        start = next(button for button in app.button if button.label == "Start training")
        assert start.disabled
    finally:
        finish(job)


def fresh_training_module(monkeypatch):
    """lab_ui.training as a code reload makes it: a new module object with its own manager and lock."""
    spec = importlib.util.spec_from_file_location("lab_ui.training_reloaded", PROJECT_DIR / "lab_ui" / "training.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_one_training_per_server_survives_two_sessions_a_cleared_cache_and_a_reload(app_env, monkeypatch):
    first = open_page("app_pages/train.py")
    first.text_input(key="train.name").set_value("long-run")
    first.number_input(key="train.epochs").set_value(100.0)
    first.select_slider(key="train.batch_size").set_value(16)
    next(button for button in first.button if button.label == "Start training").click().run()
    job = training_manager().job
    try:
        assert job.name == "long-run" and job.running
        second = open_page("app_pages/train.py")  # another visitor, in a session of their own
        assert "is training `long-run`" in texts(second.info)
        second.text_input(key="train.name").set_value("mine-too")
        st.cache_resource.clear()  # the app menu's "Clear cache"
        second.run()
        assert next(button for button in second.button if button.label == "Start training").disabled
        another = TrainingJob(
            "mine-too", TrainConfig(), owner="second", owner_label="Bo", train_images=512, keep_if_stopped=False
        )
        with pytest.raises(TrainingBusyError, match="long-run"):
            training_manager().start(another, app_env.store, app_env.data)
        reloaded = fresh_training_module(monkeypatch)
        with pytest.raises(reloaded.TrainingBusyError, match="long-run"):
            reloaded.training_manager().start(another, app_env.store, app_env.data)
        assert sum(thread.name.startswith("train-") for thread in threading.enumerate()) == 1
    finally:
        finish(job)
    assert not app_env.store.exists("mine-too")


def test_a_failed_job_tells_the_page_and_logs_its_traceback(app_env, monkeypatch, caplog):
    def broken_training(*args, **kwargs):
        raise RuntimeError("boom in the training loop")

    monkeypatch.setattr(training_module, "train_run", broken_training)
    job = TrainingJob("doomed", TrainConfig(), owner="me", owner_label="me", train_images=512, keep_if_stopped=True)
    with caplog.at_level(logging.ERROR, logger="lab_ui.training"):
        training_manager().start(job, app_env.store, app_env.data)
        finish(job)
    assert job.outcome == training_module.Outcome("failed", error="boom in the training loop")
    logged = [record for record in caplog.records if "doomed" in record.getMessage()]
    assert logged and logged[0].exc_info[0] is RuntimeError, "the traceback is in the server log"


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
    app = open_page("app_pages/evaluate.py")
    app.session_state["evaluate.tab"] = "Manage runs"
    app.run()
    app.selectbox(key="evaluate.rename_from").set_value("seed-aug")
    app.text_input(key="evaluate.rename_to").set_value("../x").run()
    next(button for button in app.button if button.label == "Rename").click().run()
    assert "invalid run name" in texts(app.error)
    app.text_input(key="evaluate.rename_to").set_value("seed-aug-2").run()
    next(button for button in app.button if button.label == "Rename").click().run()
    assert app_env.store.exists("seed-aug-2") and not app_env.store.exists("seed-aug")
    app.selectbox(key="evaluate.delete").set_value(BROKEN_RUN)
    next(button for button in app.button if button.label == "Delete…").click().run()
    app.button(key="evaluate.delete_confirmed").click().run()
    assert not app.exception
    assert not (app_env.store.root / f"{BROKEN_RUN}.safetensors").exists()


@pytest.mark.parametrize("page", ["app_pages/train.py", "app_pages/evaluate.py"])  # Draw and Read work without it
def test_pages_explain_how_to_get_missing_data(app_env, tmp_path, monkeypatch, page):
    monkeypatch.setenv("OCR_DATA_DIR", str(tmp_path))
    if data_status() is None:
        pytest.skip("MNIST is also in the project's data/ dir, so it cannot be missing")
    app = open_page(page)
    assert "needs the MNIST dataset" in texts(app.warning)
    assert any(button.label == "Download MNIST now" for button in app.button)


def test_uploading_a_run_with_incomplete_metadata_is_refused_with_the_reason(app_env):
    payload = (app_env.store.root / f"{INCOMPLETE_RUN}.safetensors").read_bytes()
    app = open_page("app_pages/evaluate.py")
    app.session_state["evaluate.tab"] = "Manage runs"
    app.run()
    app.file_uploader(key="evaluate.upload").set_value(("older.safetensors", payload, "application/octet-stream"))
    app.run()
    next(button for button in app.button if button.label == "Add run").click().run()
    assert not app.exception
    assert "incomplete run metadata: 'parameters' is missing" in texts(app.error)
    assert not app_env.store.exists("older")
