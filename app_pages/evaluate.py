"""Compare saved runs on clean and augmented test digits and look at their mistakes (runs are managed on the
Manage runs page)."""

from dataclasses import asdict

import pandas as pd
import streamlit as st

from lab_ui import charts, inside, loaders
from lab_ui.compare import selected_runs
from lab_ui.loaders import Scores
from lab_ui.widgets import (
    augment_label,
    enlarged,
    errors_shown,
    csv_download,
    require_dataset,
    show_skipped,
)
from ocr_core import PRESETS, MnistData, RunInfo, parse_augment
from ocr_core.metadata import AUGMENTED_TEST_PRESET
from ocr_core.runs import TUTORIAL_AUGMENTED_RUN, TUTORIAL_RUN

TUTORIAL_RUNS = sorted([TUTORIAL_RUN, TUTORIAL_AUGMENTED_RUN])
AUGMENTED_CHOICES = [name for name in PRESETS if name != "none"]
CUSTOM = "custom…"
DETAILS_TAB = "evaluate.details_tab"
SHOWN_CELL = "evaluate.shown_cell"  # session key: the confusion cell whose mistakes were last opened
PENDING_CELL = "evaluate.pending_cell"  # session key: a newly clicked cell, applied before the tabs
GALLERY_SIZE = 48
CURVES = {
    "test_accuracy": "clean test accuracy",
    "test_loss": "clean test loss",
    "train_accuracy": "training accuracy (running)",
    "train_loss": "training loss (running)",
}


def tutorial_experiment() -> None:
    st.session_state["evaluate.runs"] = TUTORIAL_RUNS
    st.session_state["evaluate.augment"] = AUGMENTED_TEST_PRESET


def augmented_test_choice() -> str:
    return st.selectbox(
        "Augmented test set",
        [*AUGMENTED_CHOICES, CUSTOM],
        key="evaluate.augment",
        persist_state="session",
        help="The test digits transformed by a fixed-seed augmentation: `seed` is the tutorial's.",
    )


def augmented_test_spec(choice: str) -> str | None:
    """Spec of the augmented test set, or None (after saying why) when it is not valid. A custom spec is typed
    on its own row, under the run picker: in the picker's row it left an empty gap beside it."""
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
    csv_download(table, "runs-compared.csv", "evaluate.summary_csv")
    st.altair_chart(charts.accuracy_chart(bars), width="stretch")
    if sorted(results) == TUTORIAL_RUNS and augment == PRESETS[AUGMENTED_TEST_PRESET].to_string():
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
    single = [run.name for run in runs if len(run.metadata.history) == 1]
    if single:  # Train's live chart scored short runs 4 times per epoch; the run file keeps the epoch ends
        has = "it has" if len(single) == 1 else "they have"
        note += (
            f" {', '.join(f'`{name}`' for name in single)} trained for one epoch or less, so {has} "
            "one point: the Train page's live chart scores short runs four times per epoch, but a run keeps the "
            "score at each epoch's end."
        )
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


def confusion_matrix(name: str, results: dict[str, dict[str, Scores]], test_set: str) -> None:
    """One run's confusion matrix (clickable), or its difference from another run's."""
    scores = results[name][test_set]
    others = [other for other in results if other != name]
    toggle_column, against_column = st.columns(2, vertical_alignment="bottom")
    normalised = toggle_column.toggle(
        "Normalise each row",
        key="evaluate.normalised",
        persist_state="session",
        help="Shares of each true digit instead of counts.",
    )
    against = against_column.selectbox(
        "Difference from",
        [None, *others],
        format_func=lambda other: "no other run" if other is None else f"{name} minus {other}",
        key="evaluate.difference_from",
        disabled=not others,
        help="Pick another compared run: cells show how many more (+) or fewer (−) of each answer this run gives.",
    )
    if against is not None:
        st.altair_chart(
            charts.confusion_difference_chart(scores.confusion, results[against][test_set].confusion, (name, against)),
            width="stretch",
        )
        st.caption(
            f"`{name}`'s counts minus `{against}`'s on the same {test_set} test digits: red off the diagonal where "
            f"`{name}` makes more of that mistake, blue where it makes fewer; blue on the diagonal, more right."
        )
    else:
        event = st.altair_chart(
            charts.confusion_chart(scores.confusion, normalised),
            width="stretch",
            on_select="rerun",
            selection_mode=charts.CELL_SELECTION,
            key="evaluate.confusion",
        )
        st.caption("Click a cell off the diagonal to see those mistakes.")
        follow_cell_clicks(event)
    frame = pd.DataFrame(scores.confusion, index=pd.Index(charts.DIGITS, name="true"), columns=charts.DIGITS)
    csv_download(frame.reset_index(), f"{name}-{test_set}-confusion.csv", "evaluate.confusion_csv")


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
        confusion_matrix(name, results, test_set)
    with classes_tab:
        score_format = st.column_config.NumberColumn(format="percent")
        st.dataframe(
            scores.per_class,
            hide_index=True,
            width="stretch",
            column_config={"precision": score_format, "recall": score_format, "f1": score_format},
        )
        csv_download(scores.per_class, f"{name}-{test_set}-per-class.csv", "evaluate.per_class_csv")
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
    st.session_state["evaluate.runs"] = selected_runs(runs, st.session_state)
    runs_column, augment_column, experiment_column = st.columns([3, 2, 2], vertical_alignment="bottom")
    chosen = runs_column.multiselect(
        "Runs", list(by_name), key="evaluate.runs", persist_state="session", placeholder="pick one or more runs"
    )
    with augment_column:
        choice = augmented_test_choice()
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
    augment = augmented_test_spec(choice)
    if augment is None:
        return
    if not chosen:
        st.info("Pick one or more runs to compare.", icon=":material/checklist:")
        return
    results = evaluate_runs([by_name[name] for name in chosen], augment, data)
    if results:
        summary(by_name, results, augment)
        details(by_name, results)


st.title("Evaluate runs")
st.caption("Accuracy on clean and augmented test digits, confusion matrices, mistakes and learning curves.")
all_runs, skipped_files = loaders.list_runs()
if all_runs:
    compare(all_runs, skipped_files)
else:
    st.info("No saved runs yet: train one on the Train page.", icon=":material/model_training:")
