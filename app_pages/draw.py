"""Draw or upload a digit and watch the saved models read it."""

import contextlib

import numpy as np
import pandas as pd
import streamlit as st

from lab_ui import canvas, charts, inside, loaders
from lab_ui.samples import correction
from lab_ui.widgets import enlarged, input_source, errors_shown, model_selector, show_skipped
from ocr_core import CheckpointError, ImageError, RunInfo, digit_from_image, load_image
from ocr_core.calibration import FALSE_ALARM_TARGET, CalibrationError
from ocr_core.metadata import CLEAN_TEST
from ocr_core.preprocess import UPLOAD_FORMATS_TEXT, prepare
from ocr_core.reading import UNSURE_BELOW


def drawn_image() -> np.ndarray | None:
    stroke_width = st.slider("Pen width", 8, 40, 20, key="draw.stroke", persist_state="session")
    image = canvas.draw_canvas(stroke_width, key="draw.canvas")
    st.caption("White ink on black, like MNIST. Above the canvas: undo and redo a stroke; the bin clears the drawing.")
    return image


def uploaded_image() -> np.ndarray | None:
    # Any file is taken and checked here: a type filter refuses others in the browser with no reason given.
    upload = st.file_uploader(
        f"A photo or scan of one digit ({UPLOAD_FORMATS_TEXT}; dark on light or light on dark)", key="draw.upload"
    )
    if upload is None:
        return None
    try:
        image = load_image(upload.getvalue())
    except ImageError as error:
        st.error(f"Cannot use {upload.name}: {error}", icon=":material/broken_image:")
        return None
    with st.container(border=True):  # the frame shows where a white image is on the white page
        st.image(image, caption=upload.name, width=canvas.CANVAS_SIDE, clamp=True)
    return image


def others_flagging(runs: list[RunInfo], run: RunInfo, digit) -> list[str]:
    """The other calibrated runs that find `digit` unlike every digit they know."""
    flagging = []
    for other in runs:
        if other.name != run.name:
            with contextlib.suppress(CheckpointError, CalibrationError):  # the table reports those
                if loaders.read(other, digit).looks_like_digit is False:
                    flagging.append(other.name)
    return flagging


def show_prediction(runs: list[RunInfo], run: RunInfo, digit) -> int:
    """Shows the run's reading of `digit` and returns the digit it names."""
    reading = loaders.read(run, digit)
    probabilities, predicted = reading.probabilities, reading.prediction
    prediction_column, confidence_column, input_column = st.columns([3, 2, 2])  # room for "not a digit"
    input_column.image(enlarged(digit, 112), caption="What the model sees (28×28)")
    if reading.looks_like_digit is False:
        prediction_column.metric("Prediction", "not a digit", border=True)
        confidence_column.metric("Closest digit", predicted, border=True)
        st.warning(
            f"**This does not look like a digit.** Its features are further from every digit `{run.name}` "
            f"knows than those of {1 - FALSE_ALARM_TARGET:.0%} of held-out MNIST digits (written as plainly or as "
            "variously as it was trained on), so no digit is named. "
            "Draw one digit from 0 to 9, large and centred.",
            icon=":material/help:",
        )
    else:
        prediction_column.metric("Prediction", predicted, border=True)
        confidence_column.metric(
            "Confidence",
            f"{reading.confidence:.1%}",
            border=True,
            help="Calibrated on held-out digits: of the digits read with 90% confidence, about 90% are right."
            if reading.calibrated
            else "The raw softmax of an uncalibrated run: often too sure.",
        )
        if reading.confidence < UNSURE_BELOW:
            st.caption(f"Not sure: {probabilities.argsort()[-2]} is the runner-up. Try a bolder or more centred digit.")
        if reading.calibrated and (flagging := others_flagging(runs, run, digit)):
            st.caption(
                f"{', '.join(f'`{name}`' for name in flagging)} find{'s' if len(flagging) == 1 else ''} this "
                f"unlike every digit {'it knows' if len(flagging) == 1 else 'they know'}; `{run.name}` cannot "
                "tell: a run's not-a-digit check is only as sharp as its features, and a short or small run's "
                "are blurrier (see the table below).",
            )
    if not reading.calibrated:
        st.caption(
            f"`{run.name}` is not calibrated: its confidence is the raw softmax and it cannot tell a "
            "non-digit from a digit (train it with held-out digits, or run "
            f"`python -m ocr_core calibrate {run.name}` if it has some)."
        )
    st.altair_chart(charts.probability_chart(probabilities), width="stretch")
    st.caption(
        "The 28×28 input follows MNIST's recipe: crop to the ink, fit into 20×20 keeping the aspect "
        "ratio, then centre by centre of mass."
    )
    return predicted


def comparison_table(runs: list[RunInfo], digit, active: str) -> pd.DataFrame:
    rows = []
    for run in runs:
        row = {
            "run": run.name,
            "in use": run.name == active,
            "prediction": None,
            "confidence": None,
            "architecture": run.metadata.architecture,
            "clean test accuracy": run.metric(CLEAN_TEST),
            "problem": None,
        }
        try:
            reading = loaders.read(run, digit)
        except (CheckpointError, CalibrationError) as error:
            row["problem"] = str(error)
        else:
            row["prediction"] = reading.prediction
            row["confidence"] = reading.confidence
            row["looks like a digit"] = {True: "yes", False: "no", None: "cannot tell (not calibrated)"}[
                reading.looks_like_digit
            ]
        rows.append(row)
    table = pd.DataFrame(rows)
    return table if table["problem"].notna().any() else table.drop(columns="problem")


st.title("Draw a digit")
st.caption("Sketch a digit from 0 to 9 and a convolutional network trained on MNIST reads it as you draw.")

runs, skipped, active = model_selector()

input_column, result_column = st.columns([2, 3], gap="large")
with input_column:
    source = input_source("draw.source")
    image = drawn_image() if source == "Draw" else uploaded_image()

digit = None
with result_column:
    try:  # an empty canvas only means nothing is drawn yet; an upload without ink is a mistake to explain
        prepared = None if image is None else prepare(image) if source == "Draw" else digit_from_image(image)
    except ImageError as error:
        st.error(str(error), icon=":material/broken_image:")
    else:
        if source == "Upload" and st.session_state.get("draw.upload") is not None and image is None:
            pass  # the upload was refused, with its reason, beside it
        elif prepared is None or prepared.digit is None:
            st.info(
                "Draw a digit on the black square: the prediction appears here as soon as there is some ink."
                if source == "Draw"
                else "Upload a photo or scan of one digit: the prediction appears here.",
                icon=":material/gesture:" if source == "Draw" else ":material/upload:",
            )
        elif not prepared.readable:  # degenerate ink: no model is asked
            st.warning(f"**This does not look like a digit:** {prepared.problem}.", icon=":material/help:")
            st.image(enlarged(prepared.digit, 112), caption="What a model would see (28×28)")
        else:
            digit = prepared.digit
            with errors_shown(f"Run `{active.name}` cannot be loaded: "):
                correction(digit, image, show_prediction(runs, active, digit), "draw.correction")

if digit is not None:
    st.subheader("What every saved run says")
    st.dataframe(
        comparison_table(runs, digit, active.name),
        hide_index=True,
        width="stretch",
        column_config={
            "in use": st.column_config.CheckboxColumn(help="the model chosen above"),
            "confidence": st.column_config.ProgressColumn(min_value=0, max_value=1, format="percent"),
            "clean test accuracy": st.column_config.NumberColumn(format="percent"),
            "looks like a digit": st.column_config.TextColumn(
                help="Calibrated runs tell digits from other drawings; uncalibrated ones cannot."
            ),
        },
    )
inside.inside_the_network(runs, active, digit)
show_skipped(skipped)
