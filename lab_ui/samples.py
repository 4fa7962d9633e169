"""The sample store in the app: who the current writer is, what a server lets visitors do with samples, the
one-step correction ("It's a …") that Draw and Read offer, and cached scores of runs on a writer's digits.

`OCR_SAMPLES` (the environment, or a top-level key of .streamlit/secrets.toml, like OCR_RUN_MANAGEMENT):
`shared` (the default: a laptop or a class; visitors choose a writer name and see every writer),
`per-visitor` (a public server: each visitor gets a private writer, kept in the page address, and sees
only their own samples) or `off` (nothing is collected). A mistyped value counts as `off`."""

from __future__ import annotations

import secrets

import numpy as np
import streamlit as st
import torch

from ocr_core.personal import WriterScore, score_images
from ocr_core.samples import SampleStore, SamplesError, validate_writer

from . import loaders
from .run_policy import configured_level, level_of

SETTING = "OCR_SAMPLES"
LEVELS = {
    "shared": "visitors choose a writer name and may see, export and delete every writer's samples",
    "per-visitor": "each visitor collects as a private writer of their own (kept in the page address)",
    "off": "no samples are collected on this server",
}
DEFAULT_LEVEL = "shared"
WRITER = "samples.writer"  # session key of the current writer
DEFAULT_WRITER = "me"
VISITOR_PARAMETER = "visitor"  # the query parameter that keeps a per-visitor writer across reloads


def samples_level() -> str:
    return level_of(SETTING, LEVELS, DEFAULT_LEVEL)


def describe_policy() -> str:
    level, configured = samples_level(), configured_level(SETTING)
    source = (
        f"`{SETTING}={configured}`"
        if configured is not None
        else f"the default; `{SETTING}` can be {', '.join(LEVELS)}"
    )
    return f"On this server {LEVELS[level]} ({source}; see docs/deploy.md)."


def sample_store() -> SampleStore:
    """The configured store (cheap: every call opens its own connection)."""
    return SampleStore()


def visitor_writer() -> str:
    """A private writer name for this visitor: from the page address, or a new random one put there."""
    token = st.query_params.get(VISITOR_PARAMETER, "")
    if not (len(token) == 12 and token.isalnum()):
        token = secrets.token_hex(6)
        st.query_params[VISITOR_PARAMETER] = token
    return f"visitor-{token}"


def current_writer() -> str | None:
    """The writer whose samples the session collects and corrects: None when samples are off."""
    level = samples_level()
    if level == "off":
        return None
    if level == "per-visitor":
        st.session_state[WRITER] = visitor_writer()
    return st.session_state.setdefault(WRITER, DEFAULT_WRITER)


def store_correction(key: str, digit: torch.Tensor, original: np.ndarray, writer: str) -> None:
    """The pills' callback: store the chosen digit as a correction sample, then clear the choice."""
    label = st.session_state.get(key)
    if label is None:
        return
    try:
        sample_store().add(writer, int(label), digit, original, "correction")
    except SamplesError as error:
        st.session_state[f"{key}.error"] = str(error)
    else:
        st.toast(f"Saved as a {label} in {writer}'s digits (My digits page).", icon=":material/check_circle:")
    st.session_state[key] = None


def correction(digit: torch.Tensor, original: np.ndarray, predicted: int | None, key: str) -> None:
    """ "Wrong? It's a …": one click stores the digit, labelled, as a sample of the current writer."""
    writer = current_writer()
    if writer is None:
        return
    st.pills(
        "Wrong? It's a …" if predicted is not None else "It's a …",
        [digit_option for digit_option in range(10) if digit_option != predicted],
        key=key,
        on_change=store_correction,
        args=(key, digit, original, writer),
        help=f"Stores this drawing as a sample of writer `{writer}` (see My digits): runs can be scored on "
        "your digits and personalised to them.",
    )
    problem = st.session_state.pop(f"{key}.error", None)
    if problem:
        st.error(f"Not saved: {problem}", icon=":material/error:")


def writer_name_input() -> str | None:
    """The writer picker of the My digits page (shared servers); per-visitor servers show the private name."""
    writer = current_writer()
    if writer is not None and samples_level() == "per-visitor":
        st.caption(
            f"You collect as **{writer}**, a private writer of your own: bookmark this page's address to come "
            "back to your digits."
        )
    if writer is None or samples_level() == "per-visitor":
        return writer
    entered = st.text_input(
        "Writer",
        key=WRITER,
        max_chars=64,
        persist_state="session",
        help="Whose handwriting this is: samples, scores and personalised runs are kept per writer.",
    )
    try:
        return validate_writer(entered)
    except SamplesError as error:
        st.error(str(error), icon=":material/error:")
        return None


@st.cache_data(max_entries=64, show_spinner=False)
def writer_scores(path: str, modified: float, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> WriterScore:
    """A run on a writer's digits; the digits themselves are part of the key, so a new sample rescores."""
    return score_images(loaders.load_model(path, modified), torch.from_numpy(images), torch.from_numpy(labels), ids)


def reading_correction(image: np.ndarray, digits: list, key: str) -> None:
    """Read's correction: pick a digit of the reading (its 28x28 input and its box cut from the input are
    stored), then "It's a …" as on Draw."""
    if current_writer() is None or not digits:
        return
    place = st.selectbox(
        "Correct a digit",
        range(len(digits)),
        format_func=lambda index: f"digit {index + 1} from the left (read {digits[index].digit})",
        key=f"{key}.place",
    )
    x, y, width, height = digits[place].box
    correction(digits[place].model_input, image[y : y + height, x : x + width], digits[place].digit, f"{key}.{place}")
