"""Your handwriting: collect your own digits, see how every run reads them, and personalise a run to them."""

import random

import numpy as np
import pandas as pd
import streamlit as st

from lab_ui import canvas, charts, loaders
from lab_ui import samples as my
from lab_ui.widgets import enlarged, errors_shown, flash, percent, require_dataset, show_flash
from ocr_core.personal import DEFAULT_LAYERS, LAYERS, WHY_DEFAULT, personalise
from ocr_core.preprocess import prepare
from ocr_core.samples import SampleStore

QUEUE, POSITION, SAVED = "collect.queue", "collect.position", "collect.saved"  # session keys
TUTORIAL_RUNS = ("seed", "seed-aug", "best")
SHOWN_RUNS = "my_digits.runs"
PARENT, NEW_NAME = "my_digits.parent", "my_digits.new_name"
GRID_COLUMNS = 10


def new_queue(rounds: int) -> None:
    """Every digit `rounds` times, each round in its own shuffled order."""
    queue = []
    for _ in range(rounds):
        digits = list(range(10))
        random.shuffle(digits)
        queue += digits
    st.session_state[QUEUE], st.session_state[POSITION], st.session_state[SAVED] = queue, 0, []


def progress_line(store: SampleStore, writer: str) -> str:
    counts = {summary.writer: summary.per_digit for summary in store.writers()}.get(writer, (0,) * 10)
    return " · ".join(f"**{digit}** {count}" for digit, count in enumerate(counts))


def collect(store: SampleStore, writer: str) -> None:
    rounds = st.number_input("Rounds (each digit once per round)", 1, 10, 3, key="collect.rounds")
    if QUEUE not in st.session_state or st.button("Start again", icon=":material/restart_alt:"):
        new_queue(int(rounds))
    queue, position, saved = st.session_state[QUEUE], st.session_state[POSITION], st.session_state[SAVED]
    st.progress(position / len(queue), text=f"{position} of {len(queue)} asked · {len(saved)} saved")
    st.markdown(f"Samples per digit: {progress_line(store, writer)}")
    if position >= len(queue):
        st.success(
            f"Done: {len(saved)} digits saved for **{writer}**. See how the runs read them in *How runs read "
            "them*, or start again for more.",
            icon=":material/celebration:",
        )
        return
    wanted = queue[position]
    st.markdown(f"## Draw a **{wanted}**")
    image = canvas.draw_canvas(20, key=f"collect.canvas.{position}")
    prepared = None if image is None else prepare(image)
    usable = prepared is not None and prepared.digit is not None and prepared.readable
    if prepared is not None and prepared.digit is not None and not prepared.readable:
        st.warning(f"Not usable: {prepared.problem}.", icon=":material/help:")
    save_column, skip_column, undo_column = st.columns(3)
    if save_column.button("Save", type="primary", disabled=not usable, icon=":material/save:", width="stretch"):
        with errors_shown("Not saved: ") as attempt:
            saved.append((position, store.add(writer, wanted, prepared.digit, image, "canvas")))
        if not attempt.failed:
            st.session_state[POSITION] = position + 1
            st.rerun()
    if skip_column.button("Skip", icon=":material/skip_next:", width="stretch"):
        st.session_state[POSITION] = position + 1
        st.rerun()
    if undo_column.button("Undo", icon=":material/undo:", disabled=not saved, width="stretch"):
        asked_at, sample_id = saved.pop()
        store.delete(sample_id)
        st.session_state[POSITION] = asked_at
        st.rerun()


def sample_grid(store: SampleStore, writer: str) -> None:
    samples = store.samples(writer)
    if not samples:
        st.info("No samples yet: draw some in *Collect*, or import a zip below.", icon=":material/gesture:")
    for digit in range(10):
        of_digit = [sample for sample in samples if sample.label == digit]
        if not of_digit:
            continue
        st.markdown(f"**{digit}** · {len(of_digit)} sample{'s' if len(of_digit) > 1 else ''}")
        for start in range(0, len(of_digit), GRID_COLUMNS):
            columns = st.columns(GRID_COLUMNS)
            for column, sample in zip(columns, of_digit[start : start + GRID_COLUMNS], strict=False):
                column.image(enlarged(sample.model_input, 56), caption=sample.source)
                if column.button("", key=f"delete.{sample.id}", icon=":material/delete:", help="Delete this sample"):
                    store.delete(sample.id)
                    st.rerun()
    st.divider()
    export_column, import_column, delete_column = st.columns(3)
    with export_column:
        if samples:
            st.download_button(
                "Export (zip)",
                store.export_zip(writer),
                file_name=f"{''.join(c if c.isalnum() else '-' for c in writer)}-digits.zip",
                mime="application/zip",
                icon=":material/download:",
                help="PNGs in one folder per digit and labels.csv: any tool reads them.",
            )
    with import_column:
        upload = st.file_uploader("Import a zip", type=["zip"], key="samples.import")
        if upload is not None and st.button("Import", icon=":material/upload:"):
            with errors_shown(f"Cannot import {upload.name}: ") as attempt:
                result = store.import_zip(upload.getvalue(), writer)
            if not attempt.failed:
                flash(
                    f"Imported {result.added} samples" + (f" ({len(result.skipped)} skipped)" if result.skipped else "")
                )
                st.rerun()
    with delete_column:
        if samples:
            sure = st.checkbox(f"Yes, delete all {len(samples)} samples of {writer}")
            if st.button("Delete all", icon=":material/delete_forever:", disabled=not sure):
                flash(f"Deleted {store.delete_writer(writer)} samples of {writer}")
                st.rerun()


def choose_tutorial_runs(names: list[str]) -> None:
    st.session_state[SHOWN_RUNS] = [name for name in TUTORIAL_RUNS if name in names]


def how_runs_read(store: SampleStore, writer: str, runs) -> None:
    images, labels, ids = store.digits(writer)
    if not len(ids):
        st.info("Collect some digits first.", icon=":material/gesture:")
        return
    names = [run.name for run in runs]
    st.session_state.setdefault(SHOWN_RUNS, [n for n in TUTORIAL_RUNS if n in names] or names[:3])
    st.session_state[SHOWN_RUNS] = [name for name in st.session_state[SHOWN_RUNS] if name in names]
    picker, button = st.columns([3, 1], vertical_alignment="bottom")
    picker.multiselect("Runs", names, key=SHOWN_RUNS)
    button.button(
        "seed vs seed-aug vs best",
        on_click=choose_tutorial_runs,
        args=(names,),
        help="The tutorial's experiment on your digits: does augmentation help with your handwriting?",
        disabled=not all(name in names for name in TUTORIAL_RUNS),
        width="stretch",
    )
    chosen = [run for run in runs if run.name in st.session_state[SHOWN_RUNS]]
    if not chosen:
        return
    scored = {
        run.name: my.writer_scores(str(run.path), run.modified, images.numpy(), labels.numpy(), ids) for run in chosen
    }
    table = pd.DataFrame(
        [
            {
                "run": name,
                "your digits": result.accuracy,
                "errors": len(result.evaluation.misclassified),
                "MNIST test": run.metric("clean"),
                **{str(digit): value for digit, value in enumerate(result.per_digit())},
            }
            for (name, result), run in zip(scored.items(), chosen, strict=True)
        ]
    )
    percent_column = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"your digits": percent_column, "MNIST test": percent_column}
        | {str(d): st.column_config.NumberColumn(format="percent", help=f"your {d}s read right") for d in range(10)},
    )
    st.caption(f"On {len(ids)} digits by {writer}; columns 0-9: accuracy per digit.")
    focus = st.selectbox("Confusion and mistakes of", list(scored), key="my_digits.focus")
    result = scored[focus]
    matrix_column, mistakes_column = st.columns([3, 2])
    matrix_column.altair_chart(charts.confusion_chart(result.evaluation.confusion, False), width="stretch")
    with mistakes_column:
        mistakes = result.mistakes()
        st.markdown(f"**{len(mistakes)} misread**" if mistakes else "**No mistakes**")
        for start in range(0, len(mistakes), 4):
            for column, mistake in zip(st.columns(4), mistakes[start : start + 4], strict=False):
                index = int(np.flatnonzero(ids == mistake["sample"])[0])
                column.image(
                    enlarged(images[index].numpy(), 56),
                    caption=f"{mistake['label']} → {mistake['predicted']} ({mistake['confidence']:.0%})",
                )


def before_after(store: SampleStore, run) -> None:
    section = run.metadata.personalisation
    before, after = section["before"], section["after"]
    st.markdown(
        f"**`{run.name}`**: `{section['parent']}` fine-tuned ({section['layers']}) on {section['samples_trained']} "
        f"of {section['writer']}'s digits in {section['seconds']:.0f} s; measured on {section['samples_held_out']} "
        "held-out ones it never trained on."
    )
    for column, (label, key, places) in zip(
        st.columns(2),
        [("Your held-out digits", "own_accuracy", 1), ("MNIST test digits", "mnist_accuracy", 2)],
        strict=True,
    ):
        change = (after[key] - before[key]) * 100
        column.metric(
            label, percent(after[key]), f"{change:+.{places}f} points (was {percent(before[key])})", border=True
        )
    changed = section["changed"]
    if not changed:
        st.caption("No held-out digit changed its answer.")
        return
    st.markdown("**The held-out digits that changed**")
    by_id = {sample.id: sample for sample in store.samples(section["writer"])}
    for start in range(0, len(changed), 6):
        for column, change in zip(st.columns(6), changed[start : start + 6], strict=False):
            right = "✓" if change["after"] == change["label"] else "✗"
            sample = by_id.get(change["sample"])
            caption = f"{change['label']}: {change['before']} → {change['after']} {right}"
            if sample is None:
                column.caption(f"{caption} (deleted)")
            else:
                column.image(enlarged(sample.model_input, 56), caption=caption)


def suggested_name(parent: str, writer: str) -> str:
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in writer)[:40].strip("-") or "writer"
    return f"{parent}-{slug}"


def personalise_tab(store: SampleStore, writer: str, runs) -> None:
    names = [run.name for run in runs]
    count = store.count(writer)
    st.caption(
        f"Fine-tunes a run on {writer}'s {count} digits, holding a third of each digit out to measure on and "
        "replaying MNIST training digits so MNIST is not forgotten; then calibrates it again on held-out MNIST "
        "digits and saves it as a new run."
    )
    parent_column, name_column, layers_column = st.columns(3)
    name_key = f"{NEW_NAME}.{writer}"  # one suggestion per writer, so switching writers suggests a fresh name
    parent = parent_column.selectbox(
        "Run to personalise",
        names,
        index=names.index("best") if "best" in names else 0,
        key=PARENT,
        on_change=lambda: st.session_state.update({name_key: suggested_name(st.session_state[PARENT], writer)}),
    )
    st.session_state.setdefault(name_key, suggested_name(parent, writer))
    new_name = name_column.text_input("New run's name", key=name_key)
    layers = layers_column.radio(
        "Train", LAYERS, index=LAYERS.index(DEFAULT_LAYERS), horizontal=True, help=f"Default: {WHY_DEFAULT}."
    )
    if st.button("Personalise", type="primary", icon=":material/auto_fix_high:", disabled=count < 2):
        data = require_dataset("Personalising")
        if data is not None:
            bar = st.progress(0.0, text="starting")
            with errors_shown("Not personalised: ") as attempt:
                result = personalise(
                    parent,
                    writer,
                    new_name,
                    loaders.run_store(),
                    store,
                    data,
                    layers=layers,
                    progress=lambda fraction, message: bar.progress(min(fraction, 1.0), text=message),
                )
            if not attempt.failed:
                st.session_state["my_digits.personalised"] = result.info.name
                flash(f"Saved run {result.info.name}")
                st.rerun()
    mine = [run for run in runs if run.metadata.personalisation and run.metadata.personalisation["writer"] == writer]
    if mine:
        st.subheader("Before and after")
        shown = st.session_state.get("my_digits.personalised")
        names_mine = [run.name for run in mine]
        chosen = st.selectbox(
            "Personalised run", names_mine, index=names_mine.index(shown) if shown in names_mine else len(mine) - 1
        )
        before_after(store, mine[names_mine.index(chosen)])


st.title("My digits")
st.caption(
    "Teach the lab your handwriting: draw each digit a few times, see how every run reads *your* digits "
    "(does augmentation help you?), and personalise a run to them without forgetting MNIST."
)
show_flash()
writer = my.writer_name_input()
if writer is None:
    if my.samples_level() == "off":
        st.info(my.describe_policy(), icon=":material/block:")
    st.stop()
store = my.sample_store()
runs, skipped = loaders.list_runs()
with errors_shown("The sample store cannot be used: ") as failure:
    store.count()
if failure.failed:
    st.stop()
collect_tab, samples_tab, scores_tab, personal_tab = st.tabs(
    ["Collect", "Your samples", "How runs read them", "Personalise"]
)
with collect_tab:
    collect(store, writer)
with samples_tab:
    sample_grid(store, writer)
with scores_tab:
    how_runs_read(store, writer, runs)
with personal_tab:
    personalise_tab(store, writer, runs)
st.caption(my.describe_policy())
