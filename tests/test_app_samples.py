"""My digits (collect, grid, scores, personalise) and the one-step correction on Draw and Read, through
AppTest on tiny synthetic data and runs (see app_fixtures)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app_fixtures import PROJECT_DIR, canvas_drawing
from ocr_core import TrainConfig, load_mnist, train_run
from ocr_core.samples import SampleStore

TIMEOUT = 60
PAGE = "app_pages/my_digits.py"


def open_page(page: str, drawing=None) -> AppTest:
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=drawing):
        app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT).run()
        app.switch_page(page).run()
    assert not app.exception, [item.message for item in app.exception]
    return app


def rerun(app: AppTest, drawing=None) -> AppTest:
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=drawing):
        app.run()
    assert not app.exception, [item.message for item in app.exception]
    return app


def button(app: AppTest, label: str):
    return next(item for item in app.button if item.label == label)


def texts(elements) -> str:
    return " ".join(str(element.value) for element in elements)


def test_collecting_asks_for_each_digit_saves_skips_and_undoes(app_env):
    store = SampleStore()
    app = open_page(PAGE)
    queue = app.session_state["collect.queue"]
    assert sorted(queue) == sorted(list(range(10)) * 3)  # three rounds of 0-9
    assert f"Draw a **{queue[0]}**" in texts(app.markdown)
    assert button(app, "Save").disabled  # nothing drawn yet

    app = rerun(app, canvas_drawing())
    button(app, "Save").click()
    app = rerun(app, canvas_drawing())
    (sample,) = store.samples("me")
    assert sample.label == queue[0] and sample.source == "canvas"
    assert f"Draw a **{queue[1]}**" in texts(app.markdown)

    button(app, "Skip").click()
    app = rerun(app)
    assert f"Draw a **{queue[2]}**" in texts(app.markdown) and store.count("me") == 1

    button(app, "Undo").click()
    app = rerun(app)
    assert store.count("me") == 0 and f"Draw a **{queue[0]}**" in texts(app.markdown)


def add_samples(store: SampleStore, writer: str = "me", per_digit: int = 3) -> None:
    rng = np.random.default_rng(0)
    for digit in range(10):
        for _ in range(per_digit):
            image = np.zeros((28, 28), np.uint8)
            image[4 + 2 * digit : 7 + 2 * digit, 6:20] = 255
            image = np.roll(image, int(rng.integers(-1, 2)), 1)
            store.add(writer, digit, image, image, "canvas")


def test_the_grid_deletes_one_sample_and_the_runs_are_scored_on_them(app_env):
    store = SampleStore()
    add_samples(store)
    app = open_page(PAGE)
    assert "**0** · 3 samples" in texts(app.markdown)
    first = store.samples("me")[0].id
    next(item for item in app.button if item.key == f"delete.{first}").click()
    app = rerun(app)
    assert store.count("me") == 29 and first not in {s.id for s in store.samples("me")}

    scores = next(frame.value for frame in app.dataframe if "your digits" in frame.value.columns)
    assert sorted(scores["run"]) == ["best", "seed", "seed-aug"]  # the tutorial trio, by default
    assert scores["your digits"].between(0, 1).all() and "MNIST test" in scores.columns
    assert app.get("vega_lite_chart")  # the confusion matrix
    assert any(item.label == "Export (zip)" for item in app.get("download_button"))


def test_personalising_in_the_app_saves_a_run_and_shows_before_and_after(app_env):
    # the fixture's runs were trained on in-memory digits; personalising needs the data a run was trained on
    train_run("local", TrainConfig(epochs=1, batch_size=64, holdout=128), app_env.store, load_mnist(download=False))
    store = SampleStore()
    add_samples(store)
    app = open_page(PAGE)
    next(item for item in app.selectbox if item.label == "Run to personalise").set_value("local")
    app = rerun(app)
    assert app.text_input(key="my_digits.new_name.me").value == "local-me"  # suggested for the chosen run
    app.text_input(key="my_digits.new_name.me").set_value("mine")
    button(app, "Personalise").click()
    app = rerun(app)
    assert not app.error, [item.value for item in app.error]
    section = app_env.store.info("mine").metadata.personalisation
    assert section["writer"] == "me" and section["parent"] == "local"
    labels = [metric.label for metric in app.metric]
    assert "Your held-out digits" in labels and "MNIST test digits" in labels


def test_a_wrong_answer_on_draw_is_corrected_in_one_step(app_env):
    app = open_page("app_pages/draw.py", canvas_drawing())
    pills = next(item for item in app.button_group if item.key == "draw.correction")
    predicted = next(metric for metric in app.metric if metric.label == "Prediction").value
    choice = 7 if predicted != "7" else 1
    pills.set_value(choice)
    app = rerun(app, canvas_drawing())
    (sample,) = SampleStore().samples("me")
    assert sample.label == choice and sample.source == "correction"
    assert sample.model_input.max() > 0


def test_a_digit_of_a_reading_is_corrected_on_read(app_env):
    from test_app_read import wide_drawing

    app = open_page("app_pages/read.py", wide_drawing(2))
    next(item for item in app.button_group if item.key == "read.correction.0").set_value(
        next(d for d in range(10) if str(d) != app.metric[0].value[0])
    )
    app = rerun(app, wide_drawing(2))
    (sample,) = SampleStore().samples("me")
    assert sample.source == "correction"


@pytest.mark.parametrize("level", ["off", "nonsense"])
def test_samples_switched_off_hide_collection_and_corrections(app_env, monkeypatch, level):
    monkeypatch.setenv("OCR_SAMPLES", level)
    app = open_page(PAGE)
    assert "no samples are collected" in texts(app.info) and not app.tabs
    app = open_page("app_pages/draw.py", canvas_drawing())
    assert not [item for item in app.button_group if item.key == "draw.correction"]


def test_per_visitor_servers_give_each_visitor_a_private_writer(app_env, monkeypatch):
    monkeypatch.setenv("OCR_SAMPLES", "per-visitor")
    SampleStore().add("someone else", 3, np.zeros((28, 28)), np.zeros((28, 28)), "canvas")
    app = open_page(PAGE)
    writer = app.session_state["samples.writer"]
    assert writer.startswith("visitor-") and writer in texts(app.caption)
    assert "someone else" not in texts(app.markdown) + texts(app.caption)
    assert "private writer" in texts(app.caption)
