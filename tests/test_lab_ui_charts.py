"""Chart builders of lab_ui.charts, checked on the Vega-Lite specs they produce."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab_ui import charts


def chart_rows(chart) -> list[dict]:
    (rows,) = chart.to_dict()["datasets"].values()
    return rows


def test_confusion_text_is_white_exactly_on_dark_cells():
    confusion = np.array([[60, 40, 0], [1, 99, 0], [0, 0, 100]])  # row 0: 60% right, 40% taken for a 1
    for normalised in (True, False):
        dark = {
            (row["true"], row["predicted"]): row["dark"]
            for row in chart_rows(charts.confusion_chart(confusion, normalised))
        }
        assert dark[(1, 1)] and not dark[(1, 0)]
    normalised = {
        (row["true"], row["predicted"]): row["dark"] for row in chart_rows(charts.confusion_chart(confusion, True))
    }
    assert normalised[(0, 1)]  # 40% is well into the dark half of the square-root ramp: white text


def test_one_point_curves_get_formatted_axes():
    one_point = pd.DataFrame({"epoch": [1.0], "run": ["a"], "test_accuracy": [0.68758311], "test_loss": [1.1635]})
    accuracy = charts.curves_chart(one_point, "test_accuracy", "accuracy").to_dict()["encoding"]
    assert accuracy["y"]["axis"]["format"] == ".1%" and accuracy["x"]["axis"]["format"] == ".2~f"
    loss = charts.curves_chart(one_point, "test_loss", "loss").to_dict()["encoding"]
    assert loss["y"]["axis"]["format"] == ".3~f"
    two_points = pd.concat([one_point, one_point.assign(epoch=2.0, test_loss=0.5)])
    assert "format" not in charts.curves_chart(two_points, "test_loss", "loss").to_dict()["encoding"]["y"]["axis"]


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_a_single_point_curve_is_not_drawn_on_an_axis_zoomed_to_its_decimals(metric):
    frame = pd.DataFrame({"epoch": [0.25, 0.25], "series": ["a", "b"], metric: [0.38848, 0.38854]})
    spec = charts.curves_chart(frame, metric, metric, colour_by="series").to_dict()
    low, high = spec["encoding"]["y"]["scale"]["domain"]
    assert high - low >= (0.02 if metric == "accuracy" else 0.01) and low <= 0.38848 and high >= 0.38854
    spread = pd.DataFrame({"epoch": [1, 2], "series": ["a", "a"], metric: [0.5, 0.9]})
    scale = charts.curves_chart(spread, metric, metric, colour_by="series").to_dict()["encoding"]["y"]["scale"]
    assert "domain" not in scale


def test_the_heatmap_labels_every_corruption_and_writes_light_on_dark_cells():
    frame = pd.DataFrame(
        [{"run": "a", "corruption": f"corruption {index}", "accuracy": index / 15} for index in range(15)]
    )
    spec = charts.robustness_heatmap(frame, list(frame["corruption"]), ["a"]).to_dict()
    cells, text = spec["layer"]
    axis = cells["encoding"]["x"]["axis"]
    assert axis["labelOverlap"] is False and axis["labelLimit"] == 0
    colour = text["encoding"]["color"]
    assert colour["condition"]["value"] == "white" and colour["value"] == "#222"


def test_severity_curves_tick_at_whole_severities():
    frame = pd.DataFrame({"run": ["a"] * 6, "severity": range(6), "accuracy": np.linspace(1, 0.5, 6)})
    axis = charts.accuracy_lines(frame, "severity", "severity").to_dict()["encoding"]["x"]["axis"]
    assert axis["values"] == [0, 1, 2, 3, 4, 5] and axis["format"] == "d"
    sweep = pd.DataFrame({"run": ["a"] * 3, "strength": [0, 0.05, 0.1], "accuracy": [1, 0.9, 0.8]})
    assert "values" not in charts.accuracy_lines(sweep, "strength", "shift").to_dict()["encoding"]["x"]["axis"]


def test_training_curves_keep_one_colour_per_series_and_an_uncut_legend():
    from lab_ui.train_jobs import SERIES_COLOURS
    from ocr_core.jobs import RUNNING_SERIES, TEST_SCORED_SERIES, TRAIN_SCORED_SERIES

    live = pd.DataFrame(
        [
            {"epoch": 0.25, "series": series, "loss": 0.5, "accuracy": 0.9}
            for series in (RUNNING_SERIES, TRAIN_SCORED_SERIES, TEST_SCORED_SERIES)
        ]
    )
    result = live[live["series"] != RUNNING_SERIES]  # the result's chart leaves the running numbers out

    def colour_of(frame: pd.DataFrame) -> dict[str, str]:
        encoding = charts.curves_chart(frame, "loss", "loss", colour_by="series", colours=SERIES_COLOURS).to_dict()
        colour = encoding["encoding"]["color"]
        assert colour["legend"]["labelLimit"] == 0 and colour["legend"]["columns"] == 1, "labels are never cut"
        return dict(zip(colour["scale"]["domain"], colour["scale"]["range"], strict=True))

    assert colour_of(live)[TEST_SCORED_SERIES] == colour_of(result)[TEST_SCORED_SERIES]
    assert colour_of(live)[TRAIN_SCORED_SERIES] == colour_of(result)[TRAIN_SCORED_SERIES]
    assert len(set(SERIES_COLOURS.values())) == 3, "three series, three colours"
