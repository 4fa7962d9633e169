"""How runs hold up when digits look less like MNIST: corruptions, severities, transform strengths."""

import streamlit as st

from lab_ui import charts, loaders
from lab_ui import robustness_view
from lab_ui.widgets import enlarged, show_skipped
from ocr_core import DataUnavailableError
from ocr_core.corruptions import CORRUPTIONS, DEFAULT_SEVERITY, SEVERITIES
from ocr_core.robustness import BASELINE_RUN, DIGITS_PER_CLASS
from ocr_core.runs import BEST_RUN, TUTORIAL_AUGMENTED_RUN, TUTORIAL_RUN
from ocr_core.sweeps import SWEEPS

# the tutorial CNN without and with augmentation, and the lab's best
EXPERIMENT = [TUTORIAL_RUN, TUTORIAL_AUGMENTED_RUN, BEST_RUN]
MEAN = "mean"  # of severities 1-5; short, so the control is not cut to "mean ("
ALL_CORRUPTIONS = "mean over corruptions"


def what_augmentation_buys() -> None:
    st.session_state["robustness.runs"] = [name for name in EXPERIMENT if name in by_name]


def heatmap(found, severity: int | None) -> None:
    frame = robustness_view.heatmap_frame(found, severity)
    run_names = list(found)
    sort = st.segmented_control(
        "Sort corruptions",
        [robustness_view.SUITE_ORDER, robustness_view.HARDEST_FIRST, *run_names],
        default=robustness_view.SUITE_ORDER,
        required=True,
        key="robustness.sort",
        persist_state="session",
        help="Hardest first: by the mean over the chosen runs; a run: that run's worst first.",
    )
    order, runs_by_mean = robustness_view.heatmap_orders(frame, sort)
    st.altair_chart(charts.robustness_heatmap(frame, order, runs_by_mean), width="stretch")


def severity_curves(found) -> None:
    choice = st.selectbox(
        "Corruption",
        [ALL_CORRUPTIONS, *CORRUPTIONS],
        key="robustness.curve_corruption",
        format_func=lambda name: CORRUPTIONS[name].label if name in CORRUPTIONS else name,
        persist_state="session",
    )
    corruption = None if choice == ALL_CORRUPTIONS else choice
    frame = robustness_view.severity_frame(found, corruption)
    st.altair_chart(charts.accuracy_lines(frame, "severity", "severity (0 = clean digits)"), width="stretch")
    if corruption:
        st.caption(
            f"{CORRUPTIONS[corruption].label}: severity 1-5 sets the {CORRUPTIONS[corruption].meaning} to "
            f"{', '.join(str(CORRUPTIONS[corruption].setting(s)) for s in SEVERITIES)}."
        )


def strength_sweeps(chosen, data) -> None:
    name = st.selectbox(
        "Transform",
        list(SWEEPS),
        format_func=lambda key: SWEEPS[key].label,
        key="robustness.sweep",
        persist_state="session",
    )
    found, missing = robustness_view.sweeps(chosen, data)
    if missing:
        st.info(
            f"No sweeps saved for {', '.join(f'`{run}`' for run in missing)}; computing them needs MNIST.",
            icon=":material/database:",
        )
    if found:
        frame = robustness_view.sweep_frame(found, name)
        st.altair_chart(charts.accuracy_lines(frame, "strength", SWEEPS[name].label), width="stretch")
        st.caption(
            "Each point: the same 1,000 test digits (100 per class) under the training augmentation op at "
            "that strength, seeded; the pen sweeps thin or thicken every stroke by exactly that much."
        )


def digit_strip(chosen, data) -> None:
    corruption = st.selectbox(
        "Corruption",
        list(CORRUPTIONS),
        format_func=lambda key: CORRUPTIONS[key].label,
        key="robustness.strip_corruption",
        persist_state="session",
    )
    _, clean, labels = robustness_view.strip_digits(data.fingerprint, data)
    corrupted = robustness_view.corrupted_strip(corruption, data.fingerprint, data)
    rows = [("clean", clean), *((f"severity {s}", corrupted[s - 1]) for s in SEVERITIES)]
    predictions = {run.name: robustness_view.strip_predictions(run, corrupted) for run in chosen}
    clean_predictions = {run.name: robustness_view.strip_predictions(run, clean) for run in chosen}
    st.caption(
        "The first test digit of each class in the report's digits, clean and at each severity. "
        f"Under each digit, each run's answer in the order {' · '.join(f'`{run.name}`' for run in chosen)}: "
        ":green[green] right, :red[red] wrong."
    )
    for row_index, (title, images) in enumerate(rows):
        label_column, *cells = st.columns([1.2] + [1] * len(labels))
        label_column.markdown(f"**{title}**")
        for position, cell in enumerate(cells):
            cell.image(enlarged(images[position], 56))
            answers = [
                clean_predictions[run.name][position]
                if row_index == 0
                else predictions[run.name][row_index - 1, position]
                for run in chosen
            ]
            cell.markdown(
                " ".join(f":{'green' if answer == labels[position] else 'red'}[**{answer}**]" for answer in answers)
            )


st.title("Robustness")
st.caption(
    "What augmentation buys: accuracy on test digits under 15 MNIST-C-style corruptions at 5 "
    "severities, and as one transform grows stronger. Reports are computed once per run and cached."
)
all_runs, skipped = loaders.list_runs()
show_skipped(skipped)
by_name = {run.name: run for run in all_runs}
if not by_name:
    st.info("No saved runs yet: train one on the Train page.", icon=":material/model_training:")
    st.stop()
try:
    data = loaders.dataset()
except DataUnavailableError:
    data = None
    st.caption(
        "MNIST is not on this server: shipped and cached reports are shown; others need the dataset "
        "(Evaluate offers the download)."
    )

if "robustness.runs" not in st.session_state:
    st.session_state["robustness.runs"] = [name for name in EXPERIMENT if name in by_name] or list(by_name)[:3]
st.session_state["robustness.runs"] = [name for name in st.session_state["robustness.runs"] if name in by_name]
runs_column, severity_column, experiment_column = st.columns([5, 4, 3], vertical_alignment="bottom")  # "mean" uncut
chosen_names = runs_column.multiselect(
    "Runs", list(by_name), key="robustness.runs", persist_state="session", placeholder="pick one or more runs"
)
severity_choice = severity_column.segmented_control(
    "Severity",
    [*map(str, SEVERITIES), MEAN],
    default=str(DEFAULT_SEVERITY),
    required=True,
    key="robustness.severity",
    persist_state="session",
    help="3 is MNIST-C's default strength; mean: the mean over severities 1-5.",
)
experiment_column.button(
    "What augmentation buys",
    on_click=what_augmentation_buys,
    icon=":material/science:",
    disabled=not all(name in by_name for name in EXPERIMENT),
    help="The tutorial CNN without (`seed`) and with (`seed-aug`) augmentation, and `best`.",
)
if not chosen_names:
    st.info("Pick one or more runs.", icon=":material/checklist:")
    st.stop()
chosen = [by_name[name] for name in chosen_names]
severity = None if severity_choice == MEAN else int(severity_choice)

found, missing = robustness_view.reports(chosen, data)
if missing:
    st.info(
        f"No robustness report saved for {', '.join(f'`{name}`' for name in missing)}; computing one needs MNIST.",
        icon=":material/database:",
    )
if found:
    base = robustness_view.baseline(by_name, found, data)
    st.dataframe(
        robustness_view.summary_table(found, base, severity),
        hide_index=True,
        width="stretch",
        column_config={
            **{
                column: st.column_config.NumberColumn(format="percent")
                for column in ("mean over corruptions", "worst accuracy")
            },
            "clean": st.column_config.NumberColumn(
                format="percent",
                help=f"On the report's own {10 * DIGITS_PER_CLASS:,} test digits (the first {DIGITS_PER_CLASS} of "
                "each class, harder than the average), uncorrupted: the baseline of each row.",
            ),
            robustness_view.MCE_COLUMN: st.column_config.NumberColumn(
                format="%.2f",
                help=f"Errors summed over severities 1-5 relative to `{BASELINE_RUN}`'s, averaged over corruptions: "
                "below 1 is more robust than the tutorial CNN.",
            ),
        },
    )
    heatmap(found, severity)
    severity_tab, strength_tab, strip_tab = st.tabs(
        ["Accuracy vs severity", "Accuracy vs strength", "What each corruption looks like"],
        key="robustness.tab",
        on_change="rerun",
    )
    with severity_tab:
        if severity_tab.open:
            severity_curves(found)
    with strength_tab:
        if strength_tab.open:
            strength_sweeps(chosen, data)
    with strip_tab:
        if strip_tab.open:
            if data is None:
                st.info("The corrupted digits need MNIST.", icon=":material/database:")
            else:
                digit_strip(chosen, data)
