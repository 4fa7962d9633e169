"""The Robustness page through AppTest, on the tiny synthetic runs (see app_fixtures)."""

from __future__ import annotations

import json
from unittest import mock

from app_fixtures import texts
from test_app import open_page

from ocr_core.corruptions import CORRUPTIONS

MEAN = "mean"


def test_robustness_page_computes_reports_once_then_shows_them_from_the_cache(app_env):
    app = open_page("app_pages/robustness.py")
    assert app.title[0].value == "Robustness"
    summary = app.dataframe[0].value
    assert list(summary["run"]) == ["seed", "seed-aug", "best"]  # the tutorial experiment, by default
    assert summary["clean"].between(0, 1).all() and summary["mCE (vs seed)"].iloc[0] == 1.0
    charts = app.get("vega_lite_chart")
    assert len(charts) == 2  # the heatmap and the severity curves (the first tab)
    with mock.patch("ocr_core.robustness.compute_report", side_effect=AssertionError("computed twice")):
        again = open_page("app_pages/robustness.py")
    assert again.dataframe[0].value.equals(summary)


def heatmap_columns(app) -> list[str]:
    """The corruption labels in the order the heatmap's x axis sorts them."""
    spec = json.loads(app.get("vega_lite_chart")[0].proto.spec)
    return next(layer["encoding"]["x"]["sort"] for layer in spec["layer"] if "x" in layer.get("encoding", {}))


def test_heatmap_sorts_and_severity_switches(app_env):
    app = open_page("app_pages/robustness.py")
    assert heatmap_columns(app) == [corruption.label for corruption in CORRUPTIONS.values()]
    app.segmented_control(key="robustness.sort").set_value("seed").run()
    seed = app.dataframe[0].value.set_index("run").loc["seed"]
    assert heatmap_columns(app)[0] == seed["worst corruption"], "a run's sort puts its worst corruption first"
    app.segmented_control(key="robustness.severity").set_value(MEAN).run()
    app.segmented_control(key="robustness.sort").set_value("hardest first").run()
    assert not app.exception
    assert sorted(heatmap_columns(app)) == sorted(corruption.label for corruption in CORRUPTIONS.values())


def test_sweeps_tab_draws_accuracy_against_strength_and_strip_colours_answers(app_env):
    app = open_page("app_pages/robustness.py")
    app.session_state["robustness.tab"] = "Accuracy vs strength"
    app.run()
    assert not app.exception
    assert any("1,000 test digits" in caption.value for caption in app.caption)
    app.session_state["robustness.tab"] = "What each corruption looks like"
    app.run()
    assert not app.exception
    answers = texts(app.markdown)
    assert ":green[" in answers or ":red[" in answers
    assert "severity 5" in answers


def test_without_runs_the_page_says_what_to_do(app_env):
    for run in app_env.store.list():
        run.path.unlink()
    app = open_page("app_pages/robustness.py")
    assert "No saved runs" in texts(app.info)
