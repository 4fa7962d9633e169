"""Write or upload a whole number and watch the OCR pipeline read it, step by step."""

import csv
import io

import numpy as np
import streamlit as st
from torch import nn

from lab_ui import canvas, loaders
from lab_ui.read_view import annotated
from lab_ui.samples import reading_correction
from lab_ui.widgets import enlarged, input_source, model_selector, show_skipped
from ocr_core import CheckpointError, ImageError, UserError, load_image
from ocr_core.calibration import Calibration, CalibrationError
from ocr_core.checkpoints import RunInfo
from ocr_core.pairs import shipped_pair_reader
from ocr_core.preprocess import UPLOAD_EXTENSIONS, UPLOAD_FORMATS_TEXT
from ocr_core.reading import READ_SIDE, SEPARATORS, UNSURE_BELOW, Reading, read_number

CANVAS_WIDTH, CANVAS_HEIGHT = 840, 280
STEP_NOTES = {
    "greyscale": "**1. Greyscale.** Colour carries no digit: one brightness per pixel (the colour is kept aside "
    "for step 4).",
    "illumination normalised": "**2. Illumination.** Each pixel against the paper around it (a wide median), so "
    "gradients and shadows vanish; polarity is settled here (dark ink or light ink).",
    "binarised": "**3. Binarisation.** Otsu's threshold with hysteresis: ink or paper.",
    "lines and specks removed": "**4. Clean-up.** Printed ruling and grid lines (red) and specks are removed; "
    "where a stroke crosses a line it is kept. In a colour photo, a line in another colour than the writing (a "
    "red margin, a blue grid beside pencil) is printed however dark it is.",
    "deskewed": "**5. Deskew.** The line's rotation and the writing's slant are measured and undone.",
    "segmented": "**6. Segmentation.** Connected pieces become digits (one colour each); pieces of one digit are "
    "joined, touching digits are cut where the model reads the pieces best, or read whole as a pair by the "
    "pair reader when it reads them better.",
}


def drawn_image() -> np.ndarray | None:
    stroke_width = st.slider("Pen width", 6, 40, 18, key="read.stroke", persist_state="session")
    image = canvas.draw_canvas(stroke_width, key="read.canvas", width=CANVAS_WIDTH, height=CANVAS_HEIGHT)
    st.caption("Write a number from left to right. The canvas toolbar undoes strokes or clears the drawing.")
    return image


def uploaded_image() -> np.ndarray | None:
    upload = st.file_uploader(
        f"A photo or scan of a handwritten number ({UPLOAD_FORMATS_TEXT})", type=UPLOAD_EXTENSIONS, key="read.upload"
    )
    if upload is None:
        return None
    try:
        return load_image(upload.getvalue(), max_side=READ_SIDE)
    except ImageError as error:
        st.error(f"Cannot use {upload.name}: {error}", icon=":material/broken_image:")
        return None


def run_calibration(run: RunInfo) -> Calibration | None:
    """The run's calibration (calibrated confidences, the not-a-digit flag); a damaged one is reported and
    the number read without it."""
    try:
        return loaders.load_calibration(str(run.path), run.modified)
    except CalibrationError as error:
        st.warning(f"Run `{run.name}`: {error}. Reading without calibration.", icon=":material/warning:")
        return None


def pair_reader() -> nn.Module | None:
    """The shipped pair reader (touching digits read whole); when its file is missing or damaged, numbers are
    read with cuts alone and the page says so."""
    try:
        return shipped_pair_reader()
    except UserError as error:
        st.warning(f"{error}. Touching digits are only cut, not read as pairs.", icon=":material/warning:")
        return None


def least_sure_note(reading: Reading) -> str:
    """Which digit to check: the least confident one, unless it is flagged or every digit shows as 100%."""
    weakest = reading.digits[reading.weakest]
    shown = f"{weakest.confidence:.0%}"
    note = f"Least sure: digit {reading.weakest + 1} from the left, a {weakest.digit} at {shown}"
    if weakest.confidence < UNSURE_BELOW:
        return f"{note} (below {UNSURE_BELOW:.0%}: check it)."
    return "" if shown == "100%" or len(reading.digits) == 1 else f"{note}."


def show_lines(reading: Reading) -> None:
    """Several lines of writing (a short list): one reading per line, in order, and a CSV of them."""
    st.metric("Reading", f"{len(reading.lines)} lines", border=True)
    table = [{"line": index + 1, "reading": text} for index, text in enumerate(reading.lines)]
    st.dataframe(table, hide_index=True, width="stretch")
    rows = io.StringIO()
    writer = csv.DictWriter(rows, fieldnames=["line", "reading"])
    writer.writeheader()
    writer.writerows(table)
    st.download_button(
        "Download the lines as CSV",
        rows.getvalue(),
        file_name="reading.csv",
        mime="text/csv",
        icon=":material/download:",
    )


def show_result(image: np.ndarray, reading: Reading) -> None:
    if len(reading.lines) > 1:
        show_lines(reading)
    else:
        show_text(reading)
    show_boxes(image, reading)


def show_text(reading: Reading) -> None:
    text_column, copy_column = st.columns([1, 2], vertical_alignment="bottom")
    text_column.metric("Reading", reading.text, border=True)
    with copy_column:
        st.code(reading.text, language=None)
        st.caption(f"Copy the text with the button on the right. {least_sure_note(reading)}")


def show_boxes(image: np.ndarray, reading: Reading) -> None:
    if reading.not_digits:
        places = ", ".join(str(index + 1) for index in reading.not_digits)
        st.warning(
            f"**Character {places} from the left does not look like a digit** to this run (its features are "
            "far from every digit it was calibrated on, or it is one shape rather than two touching digits): the "
            "text shows it as `?`, never as a digit (red box; the crop's caption gives the closest digit).",
            icon=":material/help:",
        )
    elif all(digit.looks_like_digit is None and not digit.pair for digit in reading.digits):
        st.caption("This run is not calibrated: it cannot tell whether a piece of ink is a digit at all.")
    if any(mark.character for mark in reading.marks):
        st.caption(
            f"Separators ({' '.join(SEPARATORS)}) are characters of the text (blue boxes); a slanted stroke is a "
            "slash only where two of them make a date (12/05/2026), elsewhere it is a 1."
        )
    if any(not mark.character for mark in reading.marks):
        kinds = [mark.kind for mark in reading.marks if not mark.character]
        st.caption(
            "Ignored as not digits: "
            + ", ".join(f"{kinds.count(kind)} {kind}{'s' * (kinds.count(kind) > 1)}" for kind in dict.fromkeys(kinds))
            + " (grey boxes)."
        )
    st.image(
        annotated(image, reading),
        caption="Each digit's box on the input (orange: unsure; red: does not look like a digit)",
        width="stretch",
    )
    st.markdown(
        "**What the model sees**, digit by digit (28×28, MNIST's recipe: crop, fit into 20×20, centre "
        "by centre of mass)"
    )
    columns = st.columns(max(len(reading.digits), 6))[: len(reading.digits)]
    for column, digit in zip(columns, reading.digits, strict=True):
        column.image(
            enlarged(digit.model_input, 84),
            caption=(f"? (closest {digit.digit})" if digit.looks_like_digit is False else f"{digit.digit}")
            + f" · {digit.confidence:.0%}"
            + (" · pair" if digit.pair else " · cut" if digit.split else "")
            + (" · not a digit" if digit.looks_like_digit is False else ""),
        )
    pairs = [(index, digit) for index, digit in enumerate(reading.digits) if digit.pair][::2]
    if pairs:
        st.markdown(
            "**Touching digits read whole** by the pair reader (a second network trained on pairs of touching "
            "MNIST digits, 32×64): where digits share strokes, any cut gives one of them a piece of the other. "
            "The crops above are the cut the chosen run reads most like the pair; the digits are the pair reader's."
        )
        columns = st.columns(max(len(pairs), 3))[: len(pairs)]
        for column, (index, digit) in zip(columns, pairs, strict=True):
            second = reading.digits[index + 1]
            column.image(
                enlarged(digit.pair_input, 168),
                caption=f"digits {index + 1}-{index + 2}: {digit.digit}{second.digit} · "
                f"{digit.confidence:.0%} · {second.confidence:.0%}",
            )


def show_pipeline(reading: Reading) -> None:
    st.subheader("How the OCR pipeline read it")
    st.caption(
        "OCR in the classic way: clean the image up, straighten it, cut it into glyphs, recognise each "
        "glyph, then assemble the text."
    )
    steps = reading.steps()
    for name, note in STEP_NOTES.items():
        picture_column, note_column = st.columns([3, 2], vertical_alignment="center")
        picture_column.image(steps[name], clamp=True, width="stretch")
        if name == "deskewed":
            note += f" Here: turned {reading.rotation:+.1f}°, slant {reading.slant:+.2f} removed."
        note_column.markdown(note)
    st.markdown(
        f"**7. Recognition and text.** Each digit's 28×28 input goes through the model; the string is "
        f"the digits from left to right: **{reading.text}**."
    )


st.title("Read a number")
st.caption(
    "Write a whole number (a year, a phone number, a price) or upload a photo of one: the lab cleans the "
    "image up, cuts it into digits and reads each with the chosen network."
)

runs, skipped, active = model_selector()

source = input_source("read.source")
image = drawn_image() if source == "Draw" else uploaded_image()

reading = None
if image is not None:
    try:
        reading = read_number(image, loaders.reader_model(active), run_calibration(active), pair_reader())
    except ImageError as error:
        st.error(str(error), icon=":material/broken_image:")
    except CheckpointError as error:
        st.error(f"Run `{active.name}` cannot be loaded: {error}", icon=":material/error:")

if reading is None or (source == "Draw" and reading.cleanup.empty):
    st.info(
        "Write a number on the black canvas, or upload a photo of one: the reading appears here as soon as "
        "there is some ink.",
        icon=":material/gesture:",
    )
elif reading.problem:
    st.warning(f"Nothing read: {reading.problem}.", icon=":material/blur_on:")
    show_pipeline(reading)
elif not reading.digits:
    st.warning(
        "No digits found in this image: the clean-up left no ink that looks like writing (see the steps below).",
        icon=":material/search_off:",
    )
    show_pipeline(reading)
else:
    show_result(image, reading)
    reading_correction(image, reading.digits, "read.correction")
    show_pipeline(reading)
show_skipped(skipped)
