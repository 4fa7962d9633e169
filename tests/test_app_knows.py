"""Draw says when an input does not look like a digit (degenerate ink, or flagged by a calibrated run)."""

from __future__ import annotations

from unittest import mock

import numpy as np

from bench.sketches import sketches
from ocr_core.calibration import Reading
from app_fixtures import texts
from test_app import open_page


def drawn(name: str) -> np.ndarray:
    return next(sketch.image for sketch in sketches("degenerate", 1, seed=0) if sketch.name == name)


def test_a_dot_is_flagged_before_any_model_is_asked(app_env):
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=drawn("dot")), mock.patch("lab_ui.loaders.read") as read:
        app = open_page("app_pages/draw.py")
    assert "does not look like a digit" in texts(app.warning) and "dot" in texts(app.warning)
    assert not any(metric.label == "Prediction" for metric in app.metric)
    read.assert_not_called()


def test_a_flagged_input_gets_no_digit_and_an_uncalibrated_run_says_so(app_env):
    flagged = Reading(np.eye(10)[4] * 0.6 + 0.04, calibrated=True, digit_score=500.0, threshold=100.0)
    drawing = next(iter(sketches("letter", 1, seed=0))).image  # an "A"
    with (
        mock.patch("lab_ui.canvas.draw_canvas", return_value=drawing),
        mock.patch("lab_ui.loaders.read", return_value=flagged),
    ):
        app = open_page("app_pages/draw.py")
    prediction = next(metric for metric in app.metric if metric.label == "Prediction")
    assert prediction.value == "not a digit"
    assert "does not look like a digit" in texts(app.warning)
    assert list(app.dataframe[0].value["looks like a digit"].unique()) == ["no"]
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=drawing):
        app = open_page("app_pages/draw.py")  # the tiny runs were trained without held-out digits
    assert "not calibrated" in texts(app.caption)
    assert set(app.dataframe[0].value["looks like a digit"]) == {"cannot tell (not calibrated)"}


def test_when_another_run_flags_the_drawing_the_page_says_the_chosen_run_cannot_tell(app_env):
    digit = Reading(np.eye(10)[7] * 0.9 + 0.01, calibrated=True, digit_score=50.0, threshold=100.0)
    flagged = Reading(np.eye(10)[7] * 0.9 + 0.01, calibrated=True, digit_score=500.0, threshold=100.0)
    drawing = next(iter(sketches("letter", 1, seed=0))).image
    with (
        mock.patch("lab_ui.canvas.draw_canvas", return_value=drawing),
        mock.patch("lab_ui.loaders.read", side_effect=lambda run, _: flagged if run.name == "seed" else digit),
    ):
        app = open_page("app_pages/draw.py")  # the chosen run is `best`, which calls it a 7
    assert next(metric.value for metric in app.metric if metric.label == "Prediction") == "7"
    assert "`seed` finds this unlike every digit it knows; `best` cannot tell" in texts(app.caption)
