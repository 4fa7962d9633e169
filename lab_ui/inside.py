""" "Inside the network": feature maps, filters, attributions, similar training digits and the test-set map for
one 28x28 input, for one run or two side by side. The Draw page and Evaluate's mistakes call it.

Nothing is computed while the section is closed, and only the open tab is computed; every result is cached
per run and input, so a rerun with an unchanged drawing costs nothing, and the section runs as a fragment:
changing a method or a class reruns the section, not the page with the canvas."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
import torch
from PIL import Image

from ocr_core import MnistData, RunInfo, RunStore, explain, feature_space
from ocr_core.calibration import CalibrationError
from ocr_core.checkpoints import CheckpointError, run_weights_hash
from ocr_core.runs import BEST_RUN, TUTORIAL_RUN

from . import loaders
from .widgets import enlarged, require_dataset

OWN_ANSWER = "its answer"
TABS = ["Why this answer?", "Feature maps", "Similar training digits", "Map of the test set", "Two runs side by side"]
SIMILAR_COUNT = 8
MAP_SAMPLE = 2000  # test digits drawn on the map: enough to see the clusters, light enough to send each rerun
PICTURE_SIDE = 196
PAIR_DEFAULTS = (TUTORIAL_RUN, BEST_RUN)


# ---- cached computations --------------------------------------------------------------------------------------


@st.cache_resource(max_entries=8, show_spinner=False)
def explainer(path: str, modified: float) -> explain.PixelInput:
    return explain.explainable(loaders.load_model(path, modified))


@st.cache_data(max_entries=64, show_spinner=False)
def layer_activations(path: str, modified: float, digit: np.ndarray) -> list[explain.LayerActivation]:
    return explain.activations(loaders.load_model(path, modified), digit)


@st.cache_data(max_entries=128, show_spinner=False)
def attribution(path: str, modified: float, digit: np.ndarray, target: int, method: str) -> np.ndarray:
    return explain.attribute(explainer(path, modified), digit, target, method)


@st.cache_data(max_entries=64, show_spinner=False)
def probabilities(path: str, modified: float, digit: np.ndarray) -> np.ndarray:
    """The run's probabilities, temperature-scaled when it is calibrated: the very numbers the Draw page's
    headline and table show, so one drawing has one confidence."""
    try:
        calibration = loaders.load_calibration(path, modified)
    except CalibrationError:  # the page reports a damaged calibration where it reads the drawing
        calibration = None
    temperature = calibration.temperature if calibration is not None else 1.0
    return (torch.from_numpy(explain.logits(explainer(path, modified), digit)) / temperature).softmax(0).numpy()


FEATURE_SPACE_BUILDS = {"index": feature_space.training_index, "map": feature_space.map_of_test_set}
BUILDING = {
    "index": "Indexing the 60,000 training digits in this run's feature space",
    "map": "Mapping the 10,000 test digits in this run's feature space",
}


@st.cache_resource(max_entries=8, show_spinner=False)
def feature_space_view(kind: str, path: str, modified: float, data_fingerprint: str, _data: MnistData, _built=None):
    """The run's "index" or "map": `_built` when the caller has just built it under a progress bar, else read
    from the disk cache (or built). `data_fingerprint` stands in the key for `_data`, which Streamlit does not
    hash. No progress bar in here: Streamlit replays a cached function's elements, which must not live outside."""
    if _built is not None:
        return _built
    return FEATURE_SPACE_BUILDS[kind](loaders.load_model(path, modified), weights_of(path), _data)


def weights_of(path: str) -> str:
    """The run's weights hash: the disk caches' key, kept when the run is renamed, rescored or calibrated."""
    return run_weights_hash(RunStore(Path(path).parent).info(Path(path).stem))


def built_view(kind: str, run: RunInfo, data: MnistData):
    """The run's training-digit index or test-set map; a build (once per run's weights, 10-70 s) shows a
    progress bar."""
    path, built = str(run.path), None
    if not feature_space.is_cached(kind, weights_of(path), data):
        bar = st.progress(0.0, text=f"{BUILDING[kind]} (once per run)…")

        def update(fraction: float) -> None:
            then = ", then fitting the projection" if fraction >= 1 else ""
            bar.progress(fraction, text=f"{BUILDING[kind]} (once per run): {fraction:.0%}{then}…")

        built = FEATURE_SPACE_BUILDS[kind](loaders.load_model(path, run.modified), weights_of(path), data, update)
        bar.empty()
    return feature_space_view(kind, path, run.modified, data.fingerprint, data, _built=built)


def data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@st.cache_data(max_entries=4, show_spinner=False)
def map_frame(path: str, modified: float, data_fingerprint: str, _data: MnistData) -> pd.DataFrame:
    """A fixed random sample of the map, with each digit's picture for the tooltip."""
    built = feature_space_view("map", path, modified, data_fingerprint, _data)
    chosen = np.sort(
        np.random.default_rng(0).choice(len(built.labels), min(MAP_SAMPLE, len(built.labels)), replace=False)
    )
    return pd.DataFrame(
        {
            "x": built.points[chosen, 0],
            "y": built.points[chosen, 1],
            "label": built.labels[chosen],
            "predicted": built.predictions[chosen],
            "image": [data_url(_data.test_images[i].numpy()) for i in chosen],
        }
    )


# ---- pictures -------------------------------------------------------------------------------------------------


def picture(image: np.ndarray, side: int = PICTURE_SIDE) -> Image.Image:
    """A greyscale [0, 1] map or an RGB uint8 overlay, scaled up with visible pixels."""
    if image.ndim == 2:
        return enlarged(image, side)
    return Image.fromarray(image).resize((side, side), Image.Resampling.NEAREST)


def as_array(digit: torch.Tensor | np.ndarray) -> np.ndarray:
    """The input as float32 (28, 28) in [0, 1]: hashable for the caches."""
    return explain.as_batch(digit)[0, 0].numpy()


# ---- the section ----------------------------------------------------------------------------------------------


def class_question(target: int, answer: int) -> str:
    return f"Why {target}?" if target == answer else f"Why not {target}?"


def choices(key: str) -> tuple[str, str | int]:
    """The method and the class to explain, in the two tabs that explain (one shared setting for both)."""
    method_column, class_column = st.columns([3, 2])
    method = method_column.segmented_control(
        "Attribution method",
        list(explain.METHODS),
        format_func=lambda name: explain.METHODS[name].label,
        default="integrated_gradients",
        required=True,
        key=f"{key}.method",
        persist_state="session",
    )
    target = class_column.selectbox(
        "Class to explain",
        [OWN_ANSWER, *range(10)],
        key=f"{key}.target",
        persist_state="session",
        help="'its answer' asks why the run answered what it did; a digit asks what "
        "in the input speaks for and against that digit.",
    )
    st.caption(f"**{explain.METHODS[method].label}** shows {explain.METHODS[method].explains}.")
    return method, target


def why(run: RunInfo, digit: np.ndarray, method: str, target: str | int, side: int = PICTURE_SIDE) -> None:
    """Prediction and the attribution overlay of one run."""
    path, modified = str(run.path), run.modified
    scores = probabilities(path, modified, digit)
    answer = int(scores.argmax())
    explained = answer if target == OWN_ANSWER else int(target)
    st.markdown(
        f"**`{run.name}`** reads **{answer}** ({scores[answer]:.1%}) · "
        f"{class_question(explained, answer)} (p = {scores[explained]:.1%})"
    )
    try:
        values = attribution(path, modified, digit, explained, method)
    except explain.NotApplicableError as reason:
        st.info(f"{explain.METHODS[method].label} is not available for `{run.name}`: {reason}.")
        return
    st.image(
        picture(explain.overlay(digit, values), side),
        caption=f"{explain.METHODS[method].label} for {explained}: red for, blue against",
    )


def feature_maps(run: RunInfo, digit: np.ndarray) -> None:
    layers = layer_activations(str(run.path), run.modified, digit)
    st.caption(
        "Each layer's output, one small map per channel, brightest where the channel responds most "
        "(one scale per layer, so a silent channel stays dark). The last picture is what the classifier "
        "reads: the numbers its final layer weighs to score the ten digits."
    )
    columns = st.columns(3)
    for position, layer in enumerate(layers):
        columns[position % 3].image(picture(explain.tile(layer.values), 300), caption=layer.description)
    try:
        filters = explain.first_layer_filters(loaders.load_model(str(run.path), run.modified))
    except explain.NotApplicableError as reason:
        st.info(str(reason))
        return
    st.image(
        picture(explain.tile_filters(filters), 300),
        caption=f"The first conv layer's {len(filters)} filters on the input's pixels "
        "(white: weighs ink positively, black: negatively)",
    )


def similar(run: RunInfo, digit: np.ndarray) -> None:
    data = require_dataset("Finding similar training digits and mapping the test set")
    if data is None:
        return
    index = built_view("index", run, data)
    model = loaders.load_model(str(run.path), run.modified)
    neighbours = feature_space.similar_digits(model, index, data, digit, SIMILAR_COUNT)
    st.caption(
        f"The {SIMILAR_COUNT} training digits closest to this input in what `{run.name}`'s classifier reads "
        f"(its {index.projection.axes.shape[1]} leading feature directions, "
        f"{index.projection.kept_variance:.0%} of the variance): what the run thinks it resembles."
    )
    st.image(
        [enlarged(neighbour.image, 96) for neighbour in neighbours],
        caption=[f"label {neighbour.label} · distance {neighbour.distance:.2f}" for neighbour in neighbours],
        width=96,
    )
    labels = pd.Series([neighbour.label for neighbour in neighbours]).value_counts()
    st.caption("Labels among them: " + ", ".join(f"{count}× {label}" for label, count in labels.items()))


def digit_map(run: RunInfo, digit: np.ndarray) -> None:
    data = require_dataset("Finding similar training digits and mapping the test set")
    if data is None:
        return
    built = built_view("map", run, data)
    frame = map_frame(str(run.path), run.modified, data.fingerprint, data)
    placed = feature_space.place_on_map(loaders.load_model(str(run.path), run.modified), built, digit)
    st.altair_chart(map_chart(frame, placed), width="stretch")
    st.caption(
        f"{len(frame):,} test digits on the two directions along which `{run.name}`'s features vary most "
        "(PCA), coloured by their label; hover a point to see the digit. The star is this input: nearby "
        "digits are ones the run finds alike."
    )


# A five-pointed star as an SVG path in Vega's unit square: Vega has no built-in "star" symbol, and the unknown
# shape name broke the whole chart in the browser (no star, axes or legend).
STAR = (
    "M0,-1L0.2245,-0.309L0.9511,-0.309L0.3633,0.118L0.5878,0.809L0,0.382L-0.5878,0.809L-0.3633,0.118"
    "L-0.9511,-0.309L-0.2245,-0.309Z"
)


def map_chart(frame: pd.DataFrame, placed: np.ndarray) -> alt.LayerChart:
    points = (
        alt.Chart(frame)
        .mark_circle(size=18, opacity=0.55)
        .encode(
            x=alt.X("x:Q", title="first principal direction", axis=alt.Axis(labels=False, ticks=False)),
            y=alt.Y("y:Q", title="second principal direction", axis=alt.Axis(labels=False, ticks=False)),
            color=alt.Color("label:N", title="label", scale=alt.Scale(scheme="category10")),
            tooltip=[alt.Tooltip("image:N", title="image"), "label:N", alt.Tooltip("predicted:N", title="read as")],
        )
    )
    star = pd.DataFrame({"x": [float(placed[0])], "y": [float(placed[1])], "what": ["this input"]})
    here = (
        alt.Chart(star)
        .mark_point(shape=STAR, size=500, filled=True, opacity=1, color="black", stroke="white", strokeWidth=1.5)
        .encode(x="x:Q", y="y:Q", tooltip=["what:N"])
    )
    return (points + here).properties(height=420)


def pair(runs: list[RunInfo], digit: np.ndarray, method: str, target: str | int, key: str) -> None:
    names = [run.name for run in runs]
    if len(names) < 2:
        st.info("Side by side needs two saved runs; train another on the Train page.")
        return
    defaults = [names.index(name) if name in names else position for position, name in enumerate(PAIR_DEFAULTS)]
    columns = st.columns(2)
    for column, default, side in zip(columns, defaults, ("left", "right"), strict=True):
        with column:
            name = st.selectbox(f"Run ({side})", names, index=default, key=f"{key}.pair.{side}")
            try:
                why(runs[names.index(name)], digit, method, target, side=260)
            except CheckpointError as error:
                st.error(f"Run `{name}` cannot be loaded: {error}", icon=":material/error:")


@st.fragment
def explanation(runs: list[RunInfo], run: RunInfo, digit: torch.Tensor | np.ndarray, key: str) -> None:
    """Tabs explaining one input for `run` (and any two of `runs`); only the open tab is computed."""
    digit = as_array(digit)
    tabs = st.tabs(TABS, key=f"{key}.tab", on_change="rerun")
    views = [
        lambda: why(run, digit, *choices(key)),
        lambda: feature_maps(run, digit),
        lambda: similar(run, digit),
        lambda: digit_map(run, digit),
        lambda: pair(runs, digit, *choices(key), key),
    ]
    for tab, view in zip(tabs, views, strict=True):
        with tab:
            if tab.open:
                try:
                    view()
                except CheckpointError as error:
                    st.error(f"Run `{run.name}` cannot be loaded: {error}", icon=":material/error:")


def inside_the_network(runs: list[RunInfo], run: RunInfo, digit: torch.Tensor | None) -> None:
    """The Draw page's section for the current drawing (nothing is computed while it is closed)."""
    section = st.expander("Inside the network", icon=":material/neurology:", key="inside.open", on_change="rerun")
    with section:
        if not section.open:
            return
        if digit is None:
            st.info(
                "Draw a digit to see what each layer of the network sees and why it answers.", icon=":material/gesture:"
            )
            return
        explanation(runs, run, digit, key="inside")


def explain_mistake(runs: list[RunInfo], run: RunInfo, shown: pd.DataFrame, images: np.ndarray) -> None:
    """Under Evaluate's mistakes gallery: pick one of the shown mistakes and see the same explanation."""
    if shown.empty:
        return
    labels = {
        index: f"true {row.true} → read as {row.predicted} ({row.confidence:.0%})"
        for index, row in zip(shown.index, shown.itertuples(), strict=True)
    }
    picked = st.selectbox(
        "Explain a mistake",
        [None, *labels],
        format_func=lambda index: "pick one…" if index is None else labels[index],
        key="evaluate.explain_mistake",
        help="See inside the network for one of the misclassified digits above.",
    )
    if picked is None:
        return
    row = shown.loc[picked]
    true, predicted = int(row.true), int(row.predicted)  # a row of mixed columns comes back as floats
    st.markdown(
        f"**Test digit labelled {true}, read as {predicted}.** Set the class to {true} to see "
        f"what argued against the right answer."
    )
    explanation(runs, run, images[picked], key="mistake")
