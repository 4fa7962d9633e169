"""Panels and widgets that more than one page, or the sidebar, shows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch
from PIL import Image

from ocr_core import (
    PRESETS,
    DataUnavailableError,
    MnistData,
    RunInfo,
    UserError,
    data_status,
    load_mnist,
    parse_augment,
)

from ocr_core.metadata import AUGMENTED_TEST, CLEAN_TEST
from ocr_core.runs import BEST_RUN

from . import loaders
from ocr_core.jobs import JobsError

from . import train_jobs

ACTIVE_RUN = "active_run"  # session key of the model the Draw page uses, shown in the sidebar
PREFERRED_RUN = BEST_RUN
FLASH = "flash"


def choose_active_run(runs: list[RunInfo]) -> RunInfo | None:
    """The session's model: its last choice while that run exists, else `best`, else the first run."""
    names = [run.name for run in runs]
    if st.session_state.get(ACTIVE_RUN) not in names:
        st.session_state[ACTIVE_RUN] = PREFERRED_RUN if PREFERRED_RUN in names else next(iter(names), None)
    return next((run for run in runs if run.name == st.session_state[ACTIVE_RUN]), None)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def augment_label(spec: str) -> str:
    """A preset's name for a spec string that is exactly that preset, else the spec itself."""
    parsed = parse_augment(spec)
    return next((name for name, preset in PRESETS.items() if preset == parsed), spec)


def describe_run(run: RunInfo) -> str:
    parts = [
        f"{run.metadata.architecture} net",
        f"{percent(run.metric(CLEAN_TEST))} on clean test digits",
        f"{percent(run.metric(AUGMENTED_TEST))} on `seed`-augmented ones",
    ]
    if run.metadata.stopped_early:
        parts.append("stopped early")
    return " · ".join(parts)


def sidebar_status() -> None:
    runs, skipped = loaders.list_runs()
    active = choose_active_run(runs)
    with st.sidebar:
        if active is None:
            st.warning("No saved runs yet: train one on the Train page.", icon=":material/model_training:")
        else:
            st.markdown(f"**Model** `{active.name}`")
            st.caption(describe_run(active))
        if skipped:
            st.caption(f"{len(skipped)} checkpoint file(s) skipped as unreadable: see Manage runs.")
        if data_status() is None:
            st.markdown("**Data** MNIST ready")
        else:
            st.markdown("**Data** MNIST not downloaded")
            st.caption("Draw works without it; Train and Evaluate offer the download.")
        try:
            trainings = train_jobs.board().jobs()  # the board also starts the worker for jobs left queued
        except JobsError as error:
            st.caption(f"The training queue cannot be used: {error}")
            return
        running = [job.name for job in trainings if job.state == "running"]
        if trainings:
            waiting = f"{len(trainings) - len(running)} queued"
            names = f"`{'`, `'.join(running)}`, " if running else ""
            st.markdown(f"**Training** {names}{waiting}: see the Train page")


def require_dataset(purpose: str) -> MnistData | None:
    """MNIST, or None after explaining how to get it (with a button that tries the download)."""
    try:
        with st.spinner("Loading MNIST…"):
            return loaders.dataset()
    except DataUnavailableError as error:
        problem = str(error)
    st.warning(
        f"{purpose} needs the MNIST dataset (about 11 MB), which is not on this server yet. Drawing works without it.",
        icon=":material/database:",
    )
    st.caption(problem)
    if st.button("Download MNIST now", type="primary", icon=":material/download:"):
        with st.spinner("Downloading MNIST…"):
            try:
                load_mnist(download=True)
            except DataUnavailableError as error:
                st.error(f"The download did not work: {error}")
                return None
        st.rerun()
    return None


def model_selector() -> tuple[list[RunInfo], list[RunInfo], RunInfo]:
    """The pages' model picker: (usable runs, skipped files, the session's chosen run); stops the page with
    a message when no run is usable."""
    runs, skipped = loaders.list_runs()
    if not runs:
        st.error(
            f"There are no usable runs in `{loaders.run_store().root}`. Train one on the Train page.",
            icon=":material/error:",
        )
        show_skipped(skipped)
        st.stop()
    names = [run.name for run in runs]
    selector_column, description_column = st.columns([1, 3], vertical_alignment="bottom")
    selector_column.selectbox(
        "Model",
        names,
        key=ACTIVE_RUN,
        persist_state="session",
        help="Any saved run; `best` is the most accurate shipped model.",
    )
    active = runs[names.index(st.session_state[ACTIVE_RUN])]
    description_column.caption(describe_run(active))
    return runs, skipped, active


def input_source(key: str) -> str:
    """ "Draw" or "Upload": the switch Draw and Read both show between their canvas and a file upload."""
    return st.segmented_control(
        "Input",
        ["Draw", "Upload"],
        default="Draw",
        required=True,
        key=key,
        persist_state="session",
        label_visibility="collapsed",
    )


def show_skipped(skipped: list[RunInfo]) -> None:
    if skipped:
        with st.expander(f"{len(skipped)} checkpoint file(s) skipped", icon=":material/warning:"):
            for run in skipped:
                st.markdown(f"- `{run.path.name}`: {run.problem}")


def flash(message: str) -> None:
    """A success message for the next run of the script (after an st.rerun)."""
    st.session_state[FLASH] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message, icon=":material/check_circle:")


@dataclass
class Attempt:
    failed: bool = False


@contextmanager
def errors_shown(context: str = "") -> Iterator[Attempt]:
    """Show a UserError raised in the block as an error message, after `context`, instead of a crash;
    `attempt.failed` then tells the caller to stop. Any other exception is a bug and propagates."""
    attempt = Attempt()
    try:
        yield attempt
    except UserError as error:
        attempt.failed = True
        st.error(f"{context}{error}", icon=":material/error:")


def enlarged(image: torch.Tensor | np.ndarray, side: int) -> Image.Image:
    """A small greyscale image (float in [0, 1] or uint8) scaled up with visible pixels."""
    array = image.numpy() if isinstance(image, torch.Tensor) else image
    if array.dtype != np.uint8:
        array = (array.clip(0, 1) * 255).round().astype(np.uint8)
    height, width = array.shape
    return Image.fromarray(array).resize((side, round(side * height / width)), Image.Resampling.NEAREST)


def csv_download(frame: pd.DataFrame, file_name: str, key: str) -> None:
    """A button under a table that downloads it as CSV."""
    st.download_button(
        "Download CSV",
        frame.to_csv(index=False),
        file_name=file_name,
        mime="text/csv",
        icon=":material/download:",
        key=key,
        on_click="ignore",
    )
