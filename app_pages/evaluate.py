"""Compare saved runs on clean and augmented test digits, look at their mistakes, and manage the runs."""

from dataclasses import asdict
from pathlib import Path

import pandas as pd
import streamlit as st

from lab_ui import charts, inside, loaders, run_policy
from lab_ui.loaders import Scores
from lab_ui.widgets import (
    ACTIVE_RUN,
    augment_label,
    enlarged,
    errors_shown,
    flash,
    require_dataset,
    show_flash,
    show_skipped,
)
from ocr_core.export import INPUT_CONTRACT, INSTALL_HINT, export_available
from ocr_core import PRESETS, CheckpointError, MnistData, RunInfo, UserError, parse_augment

TUTORIAL_RUNS = ["seed", "seed-aug"]
AUGMENTED_CHOICES = [name for name in PRESETS if name != "none"]
CUSTOM = "custom…"
DELETING = "evaluate.deleting"  # session key: the run the delete dialog asks about
DETAILS_TAB = "evaluate.details_tab"
SHOWN_CELL = "evaluate.shown_cell"  # session key: the confusion cell whose mistakes were last opened
PENDING_CELL = "evaluate.pending_cell"  # session key: a newly clicked cell, applied before the tabs
RENAME_PROBLEM = "evaluate.rename_problem"  # session key: why the last rename was refused
GALLERY_SIZE = 48
DEFAULT_SELECTION = 4  # runs picked on the first visit when there are this many or fewer
CURVES = {
    "test_accuracy": "clean test accuracy",
    "test_loss": "clean test loss",
    "train_accuracy": "training accuracy (running)",
    "train_loss": "training loss (running)",
}


def tutorial_experiment() -> None:
    st.session_state["evaluate.runs"] = TUTORIAL_RUNS
    st.session_state["evaluate.augment"] = "seed"


def augmented_test_spec() -> str | None:
    """Spec of the augmented test set, or None (after saying why) when it is not valid."""
    choice = st.selectbox(
        "Augmented test set",
        [*AUGMENTED_CHOICES, CUSTOM],
        key="evaluate.augment",
        persist_state="session",
        help="The test digits transformed by a fixed-seed augmentation: `seed` is the tutorial's.",
    )
    if choice != CUSTOM:
        return PRESETS[choice].to_string()
    text = st.text_input(
        "Augmentation spec", key="evaluate.custom_augment", persist_state="session", placeholder="rotate=30,noise=0.2"
    )
    spec = None
    with errors_shown():
        spec = parse_augment(text)
    if spec is None:
        return None
    if spec.is_identity:  # an empty spec means `none`: a second clean column would only confuse
        st.info("Type the augmentation to test with, for example `rotate=30,noise=0.2`.", icon=":material/edit:")
        return None
    return spec.to_string()


def evaluate_runs(runs: list[RunInfo], augment: str, data: MnistData) -> dict[str, dict[str, Scores]]:
    """{run: {"clean": Scores, "augmented": Scores}}, with a progress bar while anything is computed."""
    bar = st.progress(0.0)
    results = {}
    for done, run in enumerate(runs):
        bar.progress(done / len(runs), text=f"Evaluating `{run.name}` on the clean and the augmented test set…")
        with errors_shown(f"Run `{run.name}` cannot be loaded: "):
            results[run.name] = {
                test_set: loaders.scores(run, spec, data)
                for test_set, spec in (("clean", "none"), ("augmented", augment))
            }
    bar.empty()
    return results


def summary(runs: dict[str, RunInfo], results: dict[str, dict[str, Scores]], augment: str) -> None:
    augmented = f"{augment_label(augment)}-augmented accuracy"
    table = pd.DataFrame(
        [
            {
                "run": name,
                "architecture": runs[name].metadata.architecture,
                "trained with": augment_label(runs[name].metadata.augment),
                "epochs": runs[name].metadata.epochs_completed,
                "clean accuracy": sets["clean"].accuracy,
                augmented: sets["augmented"].accuracy,
                "parameters": runs[name].metadata.parameters,
                "training images": runs[name].metadata.trained_images,
                "training time (s)": round(runs[name].metadata.training_seconds),
            }
            for name, sets in results.items()
        ]
    )
    accuracy_format = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "clean accuracy": accuracy_format,
            augmented: accuracy_format,
            "parameters": st.column_config.NumberColumn(format="localized"),
            "training images": st.column_config.NumberColumn(
                format="localized",
                help="Digits trained on, held-out ones not counted. A quick demo run trains on part of MNIST.",
            ),
        },
    )
    bars = table.melt(
        id_vars="run", value_vars=["clean accuracy", augmented], var_name="test set", value_name="accuracy"
    )
    bars["test set"] = bars["test set"].str.removesuffix(" accuracy")
    st.altair_chart(charts.accuracy_chart(bars), width="stretch")
    if sorted(results) == TUTORIAL_RUNS and augment == PRESETS["seed"].to_string():
        plain, augmented_run = (results[name] for name in TUTORIAL_RUNS)
        st.info(
            f"**The tutorial's experiment.** Training with its augmentation changes accuracy on clean digits "
            f"by {points(augmented_run['clean'].accuracy - plain['clean'].accuracy)} and on augmented digits by "
            f"{points(augmented_run['augmented'].accuracy - plain['augmented'].accuracy)}: the same CNN, "
            "made robust to rotated, shifted, cropped and mirrored digits.",
            icon=":material/science:",
        )


def points(change: float) -> str:
    return f"{change * 100:+.1f} points"


def mistakes_gallery(scores: Scores) -> pd.DataFrame:
    """The gallery; returns the mistakes it shows."""
    true_column, predicted_column = st.columns(2)
    true_digits = true_column.multiselect(
        "True digit", charts.DIGITS, key="evaluate.true_filter", persist_state="session", placeholder="any"
    )
    predicted_digits = predicted_column.multiselect(
        "Predicted digit", charts.DIGITS, persist_state="session", key="evaluate.predicted_filter", placeholder="any"
    )
    mistakes = scores.mistakes
    if true_digits:
        mistakes = mistakes[mistakes["true"].isin(true_digits)]
    if predicted_digits:
        mistakes = mistakes[mistakes["predicted"].isin(predicted_digits)]
    shown = mistakes.head(GALLERY_SIZE)
    matching = f"{len(mistakes)} of {len(scores.mistakes)}" if true_digits or predicted_digits else len(mistakes)
    st.caption(f"{matching} mistakes; the {len(shown)} most confident shown, as the model saw them.")
    if not shown.empty:
        st.image(
            [enlarged(scores.mistake_images[index], 84) for index in shown.index],
            caption=[f"true {row.true} → {row.predicted} ({row.confidence:.0%})" for row in shown.itertuples()],
            width=84,
        )
    return shown


def learning_curves(runs: list[RunInfo], test_set: str) -> None:
    metric = st.segmented_control(
        "Curve",
        list(CURVES),
        format_func=CURVES.get,
        default="test_accuracy",
        required=True,
        key="evaluate.curve",
        persist_state="session",
    )
    frame = pd.DataFrame([{"run": run.name, **asdict(record)} for run in runs for record in run.metadata.history])
    if frame.empty:
        st.info("These runs have no recorded history.")
        return
    st.altair_chart(charts.curves_chart(frame, metric, CURVES[metric]), width="stretch")
    # Training records its curves on the clean test set only (the augmented set here is chosen afterwards).
    note = " The augmented test set chosen above is not part of them." if test_set == "augmented" else ""
    st.caption(f"Recorded during training, once per epoch, on the clean test set.{note}")


def show_chosen_cell_mistakes() -> None:
    """Before the tabs are drawn: a confusion cell clicked on the last run filters the gallery and opens it."""
    cell = st.session_state.pop(PENDING_CELL, None)
    if cell is not None:
        st.session_state["evaluate.true_filter"], st.session_state["evaluate.predicted_filter"] = [cell[0]], [cell[1]]
        st.session_state[DETAILS_TAB] = "Mistakes"


def follow_cell_clicks(event) -> None:
    """A newly clicked off-diagonal cell shows its mistakes (after a rerun, since the tabs are drawn already)."""
    points = event["selection"].get(charts.CELL_SELECTION) or []
    cell = (int(points[0]["true"]), int(points[0]["predicted"])) if points else None
    if cell == st.session_state.get(SHOWN_CELL):
        return
    st.session_state[SHOWN_CELL] = cell  # a click on the same cell again clears the selection, then repeats it
    if cell is not None and cell[0] != cell[1]:
        st.session_state[PENDING_CELL] = cell
        st.rerun()


def details(runs: dict[str, RunInfo], results: dict[str, dict[str, Scores]]) -> None:
    st.subheader("A closer look")
    run_column, set_column = st.columns(2)
    name = run_column.selectbox("Run", list(results), key="evaluate.inspect")
    test_set = set_column.segmented_control(
        "Test set",
        ["clean", "augmented"],
        default="clean",
        required=True,
        key="evaluate.test_set",
        persist_state="session",
    )
    scores = results[name][test_set]
    show_chosen_cell_mistakes()
    confusion_tab, classes_tab, mistakes_tab, curves_tab = st.tabs(
        ["Confusion matrix", "Per class", "Mistakes", "Learning curves"], key=DETAILS_TAB, on_change="rerun"
    )
    with confusion_tab:
        normalised = st.toggle(
            "Normalise each row",
            key="evaluate.normalised",
            persist_state="session",
            help="Shares of each true digit instead of counts.",
        )
        event = st.altair_chart(
            charts.confusion_chart(scores.confusion, normalised),
            width="stretch",
            on_select="rerun",
            selection_mode=charts.CELL_SELECTION,
            key="evaluate.confusion",
        )
        st.caption("Click a cell off the diagonal to see those mistakes.")
        follow_cell_clicks(event)
    with classes_tab:
        score_format = st.column_config.NumberColumn(format="percent")
        st.dataframe(
            scores.per_class,
            hide_index=True,
            width="stretch",
            column_config={"precision": score_format, "recall": score_format, "f1": score_format},
        )
    with mistakes_tab:
        shown = mistakes_gallery(scores)
        inside.explain_mistake(list(runs.values()), runs[name], shown, scores.mistake_images)
    with curves_tab:
        learning_curves([runs[name] for name in results], test_set)


def compare(runs: list[RunInfo], skipped: list[RunInfo]) -> None:
    show_skipped(skipped)
    data = require_dataset("Evaluation")
    if data is None:
        return
    by_name = {run.name: run for run in runs}
    if "evaluate.runs" not in st.session_state:
        st.session_state["evaluate.runs"] = (
            list(by_name) if len(by_name) <= DEFAULT_SELECTION else [st.session_state[ACTIVE_RUN]]
        )
    st.session_state["evaluate.runs"] = [name for name in st.session_state["evaluate.runs"] if name in by_name]
    runs_column, augment_column, experiment_column = st.columns([3, 2, 2], vertical_alignment="bottom")
    chosen = runs_column.multiselect(
        "Runs", list(by_name), key="evaluate.runs", persist_state="session", placeholder="pick one or more runs"
    )
    with augment_column:
        augment = augmented_test_spec()
    has_tutorial_runs = all(name in by_name for name in TUTORIAL_RUNS)
    experiment_column.button(
        "Tutorial experiment",
        on_click=tutorial_experiment,
        icon=":material/science:",
        disabled=not has_tutorial_runs,
        help="The tutorial's question: does training with augmentation make the same CNN "
        "more robust? Both runs on clean and `seed`-augmented test digits."
        if has_tutorial_runs
        else "Needs the shipped runs `seed` and `seed-aug`.",
    )
    if augment is None:
        return
    if not chosen:
        st.info("Pick one or more runs to compare.", icon=":material/checklist:")
        return
    results = evaluate_runs([by_name[name] for name in chosen], augment, data)
    if results:
        summary(by_name, results, augment)
        details(by_name, results)


def stop_deleting() -> None:
    st.session_state.pop(DELETING, None)


@st.dialog("Delete a run", on_dismiss=stop_deleting)
def confirm_delete(name: str) -> None:
    st.write(f"Delete `{name}` for good? Its checkpoint file is removed from the server.")
    delete_column, cancel_column = st.columns(2)
    if delete_column.button("Delete", type="primary", icon=":material/delete:", key="evaluate.delete_confirmed"):
        with errors_shown() as attempt:
            refuse_if_protected(name)
            loaders.run_store().delete(name)
        if attempt.failed:
            return
        stop_deleting()
        flash(f"Deleted `{name}`.")
        st.rerun()
    if cancel_column.button("Cancel", key="evaluate.delete_cancelled"):
        stop_deleting()
        st.rerun()


def refuse_if_protected(*names: str) -> None:
    """Checked again at the moment of the change: the choices on screen may be older than the policy."""
    for name in names:
        if (reason := run_policy.refusal(name)) is not None:
            raise CheckpointError(reason)


def rename_selected() -> None:
    """Rename's on_click: it runs before the page, so it may reset the form's widgets to the renamed run."""
    state = st.session_state
    old, new = state["evaluate.rename_from"], state["evaluate.rename_to"].strip()
    try:
        refuse_if_protected(old, new)
        loaders.run_store().rename(old, new)
    except UserError as error:
        state[RENAME_PROBLEM] = str(error)
        return
    state["evaluate.rename_from"], state["evaluate.rename_to"] = new, ""
    if state.get(ACTIVE_RUN) == old:
        state[ACTIVE_RUN] = new
    state["evaluate.runs"] = [new if name == old else name for name in state.get("evaluate.runs", [])]
    flash(f"Renamed `{old}` to `{new}`.")


def rename_run(names: list[str]) -> None:
    old = st.selectbox("Run", names, key="evaluate.rename_from")
    new = st.text_input("New name", key="evaluate.rename_to", max_chars=64).strip()
    st.button("Rename", icon=":material/edit:", disabled=not (old and new), on_click=rename_selected)
    if (problem := st.session_state.pop(RENAME_PROBLEM, None)) is not None:
        st.error(problem, icon=":material/error:")


def import_run() -> None:
    upload = st.file_uploader("A run file saved by this lab", type=["safetensors"], key="evaluate.upload")
    name = st.text_input(
        "Name", key="evaluate.upload_name", max_chars=64, placeholder="default: the file's name"
    ).strip()
    if st.button("Add run", icon=":material/upload:", disabled=upload is None):
        name = name or Path(upload.name).stem
        with errors_shown() as attempt:
            refuse_if_protected(name)
            loaders.run_store().import_bytes(name, upload.getvalue(), file_name=upload.name)
        if attempt.failed:
            return
        flash(f"Added run `{name}`.")
        st.rerun()


def download_run(names: list[str]) -> None:
    wanted = st.selectbox("Run", names, key="evaluate.download")
    if wanted is not None:
        path = loaders.run_store().path(wanted)
        st.download_button(
            "Download checkpoint",
            data=path.read_bytes,
            file_name=path.name,
            mime="application/octet-stream",
            icon=":material/download:",
            on_click="ignore",
        )
        st.caption("One `.safetensors` file: weights plus metadata, no pickle.")
        if export_available():
            st.download_button(
                "Download as ONNX",
                data=lambda: loaders.onnx_file(wanted),
                file_name=f"{wanted}.onnx",
                mime="application/octet-stream",
                icon=":material/deployed_code:",
                on_click="ignore",
            )
            st.caption(f"For any ONNX runtime: {INPUT_CONTRACT}. The file's metadata says so too.")
        else:
            st.caption(f"ONNX export is off on this server: {INSTALL_HINT}, then restart the app.")


def manage(runs: list[RunInfo], skipped: list[RunInfo]) -> None:
    table = pd.DataFrame(
        [
            {
                "run": run.name,
                "status": "ok" if run.ok else f"skipped: {run.problem}",
                "architecture": run.metadata.architecture if run.ok else None,
                "clean accuracy": run.metric("clean"),
                "seed-augmented accuracy": run.metric("seed_augmented"),
                "size": run.size,
                "modified": pd.Timestamp(run.modified, unit="s"),
            }
            for run in runs + skipped
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "clean accuracy": st.column_config.NumberColumn(format="percent"),
            "seed-augmented accuracy": st.column_config.NumberColumn(format="percent"),
            "size": st.column_config.NumberColumn(format="bytes"),
            "modified": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
    st.caption(run_policy.describe_policy())
    names = [run.name for run in runs]
    if run_policy.management_level() == "off":
        with st.container(border=True):
            st.markdown("**Download**")
            download_run(names)
        return
    changeable = [name for name in names if run_policy.refusal(name) is None]
    rename_box, delete_box, download_box, upload_box = st.columns(4)
    with rename_box.container(border=True):
        st.markdown("**Rename**")
        rename_run(changeable)
    with delete_box.container(border=True):
        st.markdown("**Delete**")
        doomed = st.selectbox("Run or skipped file", changeable + [run.name for run in skipped], key="evaluate.delete")
        if st.button("Delete…", icon=":material/delete:", disabled=doomed is None):
            st.session_state[DELETING] = doomed
        if DELETING in st.session_state:  # the dialog stays open across reruns until answered or dismissed
            confirm_delete(st.session_state[DELETING])
    with download_box.container(border=True):
        st.markdown("**Download**")
        download_run(names)
    with upload_box.container(border=True):
        st.markdown("**Upload**")
        import_run()


st.title("Evaluate runs")
st.caption("Accuracy on clean and augmented test digits, confusion matrices, mistakes and learning curves.")
show_flash()
all_runs, skipped_files = loaders.list_runs()
compare_tab, manage_tab = st.tabs(["Compare runs", "Manage runs"], key="evaluate.tab", on_change="rerun")
with compare_tab:
    if compare_tab.open:
        if all_runs:
            compare(all_runs, skipped_files)
        else:
            st.info("No saved runs yet: train one on the Train page.", icon=":material/model_training:")
with manage_tab:
    if manage_tab.open:
        manage(all_runs, skipped_files)
