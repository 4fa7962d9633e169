"""The "Inside the network" section through AppTest: on the Draw page for a drawing, without MNIST, and from
Evaluate's mistakes gallery (tiny synthetic runs and data, see app_fixtures)."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import numpy as np

import pytest
from app_fixtures import PROJECT_DIR, TIMEOUT, app_env, canvas_drawing, texts  # noqa: F401 (fixture)
from streamlit.testing.v1 import AppTest

from lab_ui import inside

pytestmark = pytest.mark.usefixtures("app_env")


def draw_page(session: dict | None = None) -> AppTest:
    app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT)
    for key, value in (session or {}).items():
        app.session_state[key] = value
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_drawing()):
        app.run()
    assert not app.exception, [item.message for item in app.exception]
    return app


def captions(app: AppTest) -> list[str]:
    return [caption for image in app.image for caption in image.captions]


def test_the_closed_section_computes_nothing():
    with mock.patch.object(inside.explain, "attribute", side_effect=AssertionError("computed while closed")):
        app = draw_page()
    assert any(metric.label == "Prediction" for metric in app.metric)


def test_why_tab_shows_the_attribution_for_the_chosen_method_and_class():
    app = draw_page({"inside.open": True, "inside.method": "occlusion", "inside.target": 1})
    assert "Why not 1?" in texts(app.markdown) or "Why 1?" in texts(app.markdown)
    assert any(caption == "Occlusion for 1: red for, blue against" for caption in captions(app))


def test_inside_the_network_shows_the_headline_confidence_of_a_calibrated_run():
    """One drawing, one confidence: the explanation reads the temperature-scaled probabilities too."""
    calibration = SimpleNamespace(
        temperature=3.0, detector=SimpleNamespace(scores=lambda features: np.zeros(len(features)), threshold=1.0)
    )
    with mock.patch("lab_ui.loaders.load_calibration", return_value=calibration):
        app = draw_page({"inside.open": True, "inside.tab": "Why this answer?"})
    shown = {metric.label: metric.value for metric in app.metric}
    assert f"reads **{shown['Prediction']}** ({shown['Confidence']})" in texts(app.markdown)


def test_the_method_and_class_controls_sit_only_in_the_tabs_that_explain():
    app = draw_page({"inside.open": True, "inside.tab": "Feature maps"})
    assert not [widget for widget in app.selectbox if widget.key == "inside.target"]
    assert not [widget for widget in app.get("segmented_control") if widget.key == "inside.method"]
    app = draw_page({"inside.open": True, "inside.tab": "Why this answer?", "inside.method": "occlusion"})
    assert app.selectbox(key="inside.target").value == "its answer"
    app.session_state["inside.tab"] = "Two runs side by side"
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_drawing()):
        app.run()
    assert app.segmented_control(key="inside.method").value == "occlusion", "one setting for both tabs"


def test_feature_maps_tab_tiles_every_layer_and_the_filters():
    app = draw_page({"inside.open": True, "inside.tab": "Feature maps"})
    shown = captions(app)
    assert any(caption.startswith("space-to-depth 1") for caption in shown)  # the tiny runs are `fast` nets
    assert any(caption.startswith("classifier input") for caption in shown)
    assert any("first conv layer's 32 filters" in caption for caption in shown)


def test_similar_digits_and_the_map_use_the_training_and_test_sets():
    app = draw_page({"inside.open": True, "inside.tab": "Similar training digits"})
    labels = [caption for caption in captions(app) if caption.startswith("label ")]
    assert len(labels) == inside.SIMILAR_COUNT
    app.session_state["inside.tab"] = "Map of the test set"
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_drawing()):
        app.run()
    assert not app.exception
    spec = app.get("vega_lite_chart")[-1].proto.spec
    assert inside.STAR in spec and "data:image/png;base64" in str(app.get("vega_lite_chart")[-1].proto)


def test_building_the_index_shows_a_progress_bar_and_a_cached_one_does_not():
    with mock.patch.object(inside.st, "progress", wraps=inside.st.progress) as progress:
        draw_page({"inside.open": True, "inside.tab": "Similar training digits"})
        texts_shown = [call.kwargs.get("text", "") for call in progress.call_args_list]
        assert any("Indexing the 60,000 training digits" in text for text in texts_shown), texts_shown
        progress.reset_mock()
        app = draw_page({"inside.open": True, "inside.tab": "Similar training digits"})  # on disk now
        assert not [call for call in progress.call_args_list if "Indexing" in call.kwargs.get("text", "")]
    assert len([caption for caption in captions(app) if caption.startswith("label ")]) == inside.SIMILAR_COUNT


def test_two_runs_side_by_side_default_to_seed_and_best():
    app = draw_page({"inside.open": True, "inside.tab": "Two runs side by side", "inside.method": "grad_cam"})
    assert app.selectbox(key="inside.pair.left").value == "seed"
    assert app.selectbox(key="inside.pair.right").value == "best"
    markdown = texts(app.markdown)
    assert "**`seed`** reads" in markdown and "**`best`** reads" in markdown
    assert sum("Grad-CAM for" in caption for caption in captions(app)) == 2


def test_without_mnist_drawing_works_and_similar_digits_say_mnist_is_needed(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_DATA_DIR", str(tmp_path / "nothing"))
    with mock.patch("ocr_core.data.DEFAULT_DATA_DIR", tmp_path / "nothing"):
        app = draw_page({"inside.open": True, "inside.tab": "Similar training digits"})
        assert any(metric.label == "Prediction" for metric in app.metric)
        assert "needs the MNIST dataset" in texts(app.warning)


def test_a_mistake_from_evaluate_is_explained():
    app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT).run()
    app.switch_page("app_pages/evaluate.py").run()
    assert not app.exception, [item.message for item in app.exception]
    picker = app.selectbox(key="evaluate.explain_mistake")
    assert picker.options[0] == "pick one…" and len(picker.options) > 1
    picker.select_index(1).run()
    assert not app.exception, [item.message for item in app.exception]
    assert "Test digit labelled" in texts(app.markdown)
    assert any("red for, blue against" in caption for caption in captions(app))
