"""Draw or upload a digit and watch the saved models read it."""

import numpy as np
import pandas as pd
import streamlit as st

from lab_ui import canvas, charts, inside, loaders
from lab_ui.samples import correction
from lab_ui.widgets import enlarged, input_source, errors_shown, model_selector, show_skipped
from ocr_core import CheckpointError, ImageError, RunInfo, digit_from_image, load_image
from ocr_core.calibration import CalibrationError
from ocr_core.preprocess import prepare

UNSURE_BELOW = 0.6


def drawn_image() -> np.ndarray | None:
    stroke_width = st.slider("Pen width", 8, 40, 20, key="draw.stroke", persist_state="session")
    image = canvas.draw_canvas(stroke_width, key="draw.canvas")
    st.caption(
        "White ink on black, like MNIST. The buttons above the canvas undo or redo a stroke and clear the "
        "drawing (the bin)."
    )
    return image


def uploaded_image() -> np.ndarray | None:
    upload = st.file_uploader(
        "A photo or scan of one digit (PNG or JPEG, dark on light or light on dark)",
        type=["png", "jpg", "jpeg"],
        key="draw.upload",
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


def show_prediction(run: RunInfo, digit) -> int:
    """Shows the run's reading of `digit` and returns the digit it names."""
    reading = loaders.read(run, digit)
    probabilities, predicted = reading.probabilities, reading.prediction
    prediction_column, confidence_column, input_column = st.columns(3)
    input_column.image(enlarged(digit, 112), caption="What the model sees (28×28)")
    if reading.looks_like_digit is False:
        prediction_column.metric("Prediction", "not a digit", border=True)
        confidence_column.metric("Closest digit", predicted, border=True)
        st.warning(
            "**This does not look like a digit.** Its features are further from every digit `"
            f"{run.name}` knows than those of 99% of held-out MNIST digits, so no digit is named. "
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
            "clean test accuracy": run.metric("clean"),
            "problem": None,
        }
        try:
            reading = loaders.read(run, digit)
        except (CheckpointError, CalibrationError) as error:
            row["problem"] = str(error)
        else:
            row["prediction"] = reading.prediction
            row["confidence"] = reading.confidence
            row["looks like a digit"] = {True: "yes", False: "no", None: "not calibrated"}[reading.looks_like_digit]
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
        if prepared is None or prepared.digit is None:
            st.info(
                "Draw a digit on the black square, or upload a photo of one: the prediction appears here "
                "as soon as there is some ink.",
                icon=":material/gesture:",
            )
        elif not prepared.readable:  # degenerate ink: no model is asked
            st.warning(f"**This does not look like a digit:** {prepared.problem}.", icon=":material/help:")
            st.image(enlarged(prepared.digit, 112), caption="What a model would see (28×28)")
        else:
            digit = prepared.digit
            with errors_shown(f"Run `{active.name}` cannot be loaded: "):
                correction(digit, image, show_prediction(active, digit), "draw.correction")

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
