"""Altair chart builders: pages hand over numbers, these decide how they look."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

DIGITS = list(range(10))
ACCURACY_AXIS = alt.Axis(format="%")
CELL_SELECTION = "cell"  # the confusion chart's selection parameter
DARK_FROM = 0.6  # from this point of the blues ramp on, white text contrasts better than dark text


def probability_chart(probabilities: np.ndarray) -> alt.Chart:
    """Ten bars, the predicted digit highlighted."""
    frame = pd.DataFrame({"digit": DIGITS, "probability": probabilities.astype(float)})
    frame["predicted"] = frame["digit"] == int(probabilities.argmax())
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("digit:O", title="digit", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=ACCURACY_AXIS, title="probability"),
            color=alt.condition("datum.predicted", alt.value("#ff4b4b"), alt.value("#8c9bb5")),
            tooltip=["digit", alt.Tooltip("probability:Q", format=".2%")],
        )
    )
    labels = bars.mark_text(dy=-6, fontSize=11).encode(
        text=alt.Text("probability:Q", format=".0%"), color=alt.value("#888")
    )
    return (bars + labels.transform_filter("datum.probability >= 0.01")).properties(height=220)


def accuracy_chart(frame: pd.DataFrame) -> alt.Chart:
    """Grouped bars from columns run, test set, accuracy (runs and test sets in the frame's order)."""
    runs, test_sets = list(dict.fromkeys(frame["run"])), list(dict.fromkeys(frame["test set"]))
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            # labelLimit 0: whole run names ("walk-aug", not "walk-au")
            x=alt.X("run:N", title=None, sort=runs, axis=alt.Axis(labelAngle=0, labelLimit=0)),
            xOffset=alt.XOffset("test set:N", sort=test_sets),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=ACCURACY_AXIS),
            color=alt.Color("test set:N", sort=test_sets, legend=alt.Legend(orient="bottom")),
            tooltip=["run", "test set", alt.Tooltip("accuracy:Q", format=".2%")],
        )
    )
    labels = bars.mark_text(dy=-6, fontSize=11).encode(
        text=alt.Text("accuracy:Q", format=".1%"), color=alt.value("#888")
    )
    return (bars + labels).properties(height=300)


def confusion_chart(confusion: np.ndarray, normalised: bool) -> alt.Chart:
    """Heatmap of counts[true, predicted] with the numbers written in; rows sum to 1 when normalised.
    Clicking a cell selects its (true, predicted) pair: the parameter CELL_SELECTION of st.altair_chart."""
    totals = confusion.sum(1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    true, predicted = np.indices(confusion.shape)
    frame = pd.DataFrame(
        {"true": true.ravel(), "predicted": predicted.ravel(), "count": confusion.ravel(), "share": shares.ravel()}
    )
    value, text_format = ("share", ".0%") if normalised else ("count", "d")
    frame["label"] = frame[value].map(lambda number: format(number, text_format) if number else "")
    if normalised:  # a handful of mistakes is not "0%"
        frame.loc[(frame["share"] > 0) & (frame["share"] < 0.005), "label"] = "<1%"
    # A log scale keeps the few mistakes visible next to ~1000 correct answers per digit.
    scale_type, spread = ("sqrt", np.sqrt) if normalised else ("symlog", np.log1p)  # log1p: Vega's symlog
    top = max(float(frame[value].max()), 1e-9)
    depth = spread(frame[value].astype(float)) / spread(top)  # where each cell sits on the colour ramp, 0 to 1
    frame["dark"] = depth >= DARK_FROM
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:O", title="predicted digit", axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("true:O", title="true digit"),
    )
    colour_scale = alt.Scale(scheme="blues", type=scale_type, domain=[0, top])
    cells = (
        base.mark_rect(cursor="pointer")
        .encode(
            color=alt.condition(
                "datum.count == 0", alt.value("#f7f9fc"), alt.Color(f"{value}:Q", scale=colour_scale, legend=None)
            ),
            tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", format=".2%", title="share of row")],
        )
        .add_params(alt.selection_point(name=CELL_SELECTION, fields=["true", "predicted"]))
    )
    text = base.mark_text(fontSize=11).encode(
        text="label:N", color=alt.condition("datum.dark", alt.value("white"), alt.value("#333"))
    )
    return (cells + text).properties(height=380)


def confusion_difference_chart(first: np.ndarray, second: np.ndarray, names: tuple[str, str]) -> alt.Chart:
    """Heatmap of `first - second` counts[true, predicted]: off the diagonal, red where the first run makes
    more of that mistake, blue where it makes fewer (on the diagonal, more right answers are blue)."""
    difference = first.astype(int) - second.astype(int)
    true, predicted = np.indices(difference.shape)
    frame = pd.DataFrame({"true": true.ravel(), "predicted": predicted.ravel(), "difference": difference.ravel()})
    frame["worse"] = np.where(frame["true"] == frame["predicted"], -frame["difference"], frame["difference"])
    frame["label"] = frame["difference"].map(lambda number: f"{number:+d}" if number else "")
    reach = max(int(frame["worse"].abs().max()), 1)
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:O", title="predicted digit", axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("true:O", title="true digit"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "worse:Q",
            scale=alt.Scale(scheme="redblue", reverse=True, domain=[-reach, reach], type="symlog"),
            legend=None,
        ),
        tooltip=[
            "true",
            "predicted",
            alt.Tooltip("difference:Q", title=f"{names[0]} minus {names[1]}"),
        ],
    )
    text = base.mark_text(fontSize=11).encode(text="label:N", color=alt.value("#222"))
    return (cells + text).properties(height=380)


def curves_chart(
    frame: pd.DataFrame, metric: str, title: str, colour_by: str = "run", colours: dict[str, str] | None = None
) -> alt.Chart:
    """Lines of `metric` against column `epoch`, one colour per value of `colour_by`
    (the runs on Evaluate; training and test numbers of the live run on Train). `colours` fixes each value's
    colour, so a series keeps its colour on every chart whichever series are present; the legend lists the
    values one per line, uncut."""
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=axis_for(frame["epoch"], ".2~f")),
            y=alt.Y(
                f"{metric}:Q",
                title=title,
                scale=alt.Scale(zero=False, **spread_domain(frame[metric], "accuracy" in metric)),
                axis=axis_for(frame[metric], ".1%" if "accuracy" in metric else ".3~f"),
            ),
            color=alt.Color(
                f"{colour_by}:N",
                legend=alt.Legend(orient="bottom", title=None, columns=1, labelLimit=0),
                scale=alt.Scale(domain=list(colours), range=list(colours.values())) if colours else alt.Undefined,
            ),
            tooltip=[colour_by, alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip(f"{metric}:Q", format=".4f")],
        )
        .properties(height=280)
    )


def spread_domain(values: pd.Series, accuracy: bool) -> dict:
    """A y domain at least 2 points of accuracy (or a tenth of the loss) wide when the values are closer than
    that: one point, or a few nearly equal ones, would otherwise sit on an axis zoomed to "0.38848-0.38854"."""
    low, high = float(values.min()), float(values.max())
    span = 0.02 if accuracy else max(0.1 * abs(high), 0.01)
    if high - low >= span:
        return {}
    low = (low + high - span) / 2
    low = min(max(low, 0.0), 1.0 - span) if accuracy else max(low, 0.0)
    return {"domain": [low, low + span]}


def axis_for(values: pd.Series, single_value_format: str) -> alt.Axis:
    """Vega sizes tick labels to the spacing between ticks; around a single value there is no spacing and it
    prints six decimals (`1.163500`, `68.758311%`), so one value gets a fixed format."""
    percent = single_value_format.endswith("%")
    if values.nunique() > 1:
        return ACCURACY_AXIS if percent else alt.Axis()
    return alt.Axis(format=single_value_format)


HEATMAP_DARK_BELOW, HEATMAP_DARK_ABOVE = 0.62, 0.95  # accuracies whose red-yellow-green cells are dark


def robustness_heatmap(frame: pd.DataFrame, corruptions: list[str], runs: list[str]) -> alt.Chart:
    """Runs (rows) x corruptions (columns) from columns run, corruption, accuracy, in the given orders:
    red to green over 50-100% (lower clamps to red), the accuracy written in each cell."""
    base = alt.Chart(frame).encode(
        # every label shown (Vega drops overlapping ones: 8 of 15 were left), whole
        x=alt.X(
            "corruption:N",
            sort=corruptions,
            title=None,
            axis=alt.Axis(labelAngle=-45, orient="top", labelOverlap=False, labelLimit=0),
        ),
        y=alt.Y("run:N", sort=runs, title=None),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "accuracy:Q",
            scale=alt.Scale(scheme="redyellowgreen", domain=[0.5, 1], clamp=True),
            legend=alt.Legend(format="%", title="accuracy", orient="bottom"),
        ),
        tooltip=["run", "corruption", alt.Tooltip("accuracy:Q", format=".1%")],
    )
    # white on the dark ends of the ramp (deep red below ~60%, deep green above ~95%), dark in between
    dark_cell = (alt.datum.accuracy < HEATMAP_DARK_BELOW) | (alt.datum.accuracy > HEATMAP_DARK_ABOVE)
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("accuracy:Q", format=".0%"), color=alt.condition(dark_cell, alt.value("white"), alt.value("#222"))
    )
    # A step, not a height: the app's chart container drops a layered chart's height for discrete rows,
    # which left every row 0 px tall in the browser.
    return (cells + text).properties(height=alt.Step(42))


def accuracy_lines(frame: pd.DataFrame, x: str, x_title: str, x_format: str | None = None) -> alt.Chart:
    """Accuracy against `x`, one line per run (columns run, `x`, accuracy): severity curves and sweeps. An
    axis of whole numbers (severities) gets a tick at each, not at 0.2, 0.4…"""
    options = {"format": x_format} if x_format else {}
    if bool((frame[x] == frame[x].round()).all()):
        options = {"values": sorted(frame[x].unique().tolist()), "format": x_format or "d"}
    axis = alt.Axis(**options)
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:Q", title=x_title, axis=axis),
            y=alt.Y("accuracy:Q", title="accuracy", axis=ACCURACY_AXIS, scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "run:N", sort=list(dict.fromkeys(frame["run"])), legend=alt.Legend(orient="bottom", title=None)
            ),
            tooltip=["run", alt.Tooltip(f"{x}:Q", title=x_title), alt.Tooltip("accuracy:Q", format=".1%")],
        )
        .properties(height=300)
    )
