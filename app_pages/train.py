"""Train a run: settings with a live preview of the augmented data, then live progress of the job."""

import uuid

import streamlit as st

from lab_ui import charts, loaders, run_policy, train_form, train_jobs
from lab_ui.train_jobs import SERIES_COLOURS
from lab_ui.widgets import ACTIVE_RUN, augment_label, enlarged, errors_shown, percent, require_dataset
from ocr_core import (
    ARCHITECTURES,
    PRESETS,
    RECIPES,
    AugmentSpec,
    ConfigError,
    MnistData,
    parse_augment,
    preview_samples,
)
from ocr_core.augment import AUGMENT_OPS
from ocr_core.checkpoints import NAME_RULE
from ocr_core.metadata import AUGMENTED_TEST, CLEAN_TEST
from ocr_core.jobs import RUNNING_SERIES, Job, JobBoard
from ocr_core.training import OPTIMIZERS, OUTLIER_SHARES, PRECISIONS, SCHEDULES

BATCH_SIZES = (16, 32, 64, 128, 256, 512, 1024)
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 2e-3, 4e-3, 1e-2, 2e-2, 5e-2, 0.1)
QUICK_SUBSETS = (1_000, 5_000, 10_000, 30_000)
SCORED_NOTE = (
    "Scored points: the test images and as many training images, scored the same way (the model in "
    "evaluation mode, no augmentation), a few times per epoch in short runs."
)
PROPOSED_NAME = "train.proposed_name"  # session key: the run name the page proposed
NEW_RUN = "train.new_run"  # session key: set when a run starts, so the next form starts from the defaults
PREVIEW_ROWS, PREVIEW_COLUMNS, PREVIEW_SIDE = 4, 5, 72  # the augmentation preview: five 72-pixel digits fill a row


def apply_recipe() -> None:
    recipe = RECIPES[st.session_state["train.recipe"]]
    st.session_state.update(train_form.recipe_settings(recipe))
    st.session_state.update(train_form.augment_settings(parse_augment(recipe.augment)))


def apply_preset() -> None:
    preset = st.session_state["train.preset"]
    if preset is not None:
        st.session_state.update(train_form.augment_settings(PRESETS[preset]))


def chosen_spec() -> AugmentSpec:
    """The augmentation the toggles and sliders describe; ConfigError if it is not valid."""
    return train_form.spec_from_settings(st.session_state)


def propose_run_name() -> None:
    """A free name on the first visit, and a new one when the proposed name has been taken meanwhile (saved,
    or training for another visitor); a name the visitor typed is theirs to keep."""
    state, store = st.session_state, loaders.run_store()
    taken = [job.name for job in train_jobs.board().jobs()]  # queued or training
    name = state.get("train.name")
    if name is None or (name == state.get(PROPOSED_NAME) and (store.exists(name) or name in taken)):
        state["train.name"] = state[PROPOSED_NAME] = train_form.free_run_name(store, taken)


def prepare_settings() -> None:
    """Defaults on the first visit; afterwards the preset buttons follow what the toggles describe."""
    if "train.recipe" not in st.session_state:
        st.session_state["train.recipe"] = "fast"
        apply_recipe()
    propose_run_name()
    if st.session_state.pop(NEW_RUN, False):  # a choice made for one run must not carry over to the next
        st.session_state["train.if_stopped"] = "keep"
    st.session_state.setdefault("train.preview_seed", 0)
    try:
        spec = chosen_spec()
    except ConfigError:
        spec = None
    st.session_state["train.preset"] = train_form.matching_preset(spec)


def augmentation_controls() -> None:
    for op in AUGMENT_OPS.values():
        # wide enough for both names ("Grey paper `brightness`") at 1400 px
        toggle_column, slider_column = st.columns([1, 1], vertical_alignment="center")
        switched_on = toggle_column.toggle(
            f"{op.label} `{op.name}`",  # the name the spec below, the CLI and Evaluate's custom set use
            key=train_form.augment_key(op.name, "on"),
            persist_state="session",
        )
        slider_column.slider(
            op.label,
            float(op.lowest),
            float(op.highest),
            step=float(op.step),
            key=train_form.augment_key(op.name, "value"),
            help=op.meaning,
            disabled=not switched_on,
            label_visibility="collapsed",
            persist_state="session",
        )


def settings(data: MnistData) -> None:
    keep = {"persist_state": "session"}
    name_column, owner_column = st.columns(2)
    name_column.text_input(
        "Run name", key="train.name", max_chars=64, **keep, help=f"It becomes the checkpoint's file name: {NAME_RULE}."
    )
    owner_column.text_input(
        "Your name (optional)",
        key="train.owner_label",
        max_chars=40,
        **keep,
        help="Shown to other visitors in the queue while your run waits and trains.",
    )
    recipe_column, architecture_column = st.columns(2)
    recipe_column.selectbox(
        "Recipe",
        list(RECIPES),
        key="train.recipe",
        on_change=apply_recipe,
        **keep,
        help="Fills in every setting: `fast` reaches about 99.2% in one epoch, `tutorial` is "
        "the PyTorch tutorial's recipe, `robust` is the tutorial experiment's *with augmentation* run done "
        "well (robust to corruptions in about a minute), `best` trained the shipped `best` run.",
    )
    architecture = architecture_column.selectbox("Architecture", list(ARCHITECTURES), key="train.architecture", **keep)
    st.caption(ARCHITECTURES[architecture].description)
    epochs_column, images_column, batch_column = st.columns(3)
    epochs_column.number_input(
        "Epochs",
        min_value=0.01,
        max_value=200.0,
        step=0.25,
        format="%.2f",
        key="train.epochs",
        **keep,
        help="Fractions train on part of an epoch.",
    )
    total = len(data.train_labels)
    held_out = train_form.held_out_count(st.session_state, total)
    # Counts, not None for "all": a selectbox shows None as "Choose an option" once its state is restored.
    images_column.selectbox(
        "Training images",
        [total, *(count for count in QUICK_SUBSETS if count < total)],
        key="train.images",
        format_func=lambda count: f"all {total - held_out:,}" if count == total else f"first {count:,} (quick demo)",
        **keep,
        help=f"MNIST's {total:,} training digits less the {held_out:,} every recipe holds out: the run never trains "
        "on those, so its confidence and its not-a-digit check are calibrated on digits it never saw. A quick "
        "demo trains on the first N and holds out the ones after them.",
    )
    batch_column.select_slider("Batch size", BATCH_SIZES, key="train.batch_size", **keep)
    rate_column, optimizer_column, schedule_column = st.columns(3)
    rate_column.select_slider(
        "Learning rate",
        LEARNING_RATES,
        key="train.learning_rate",
        format_func="{:g}".format,
        **keep,
        help="The peak rate under the one-cycle schedule.",
    )
    optimizer_column.selectbox("Optimizer", OPTIMIZERS, key="train.optimizer", **keep)
    schedule_column.selectbox("Schedule", SCHEDULES, key="train.schedule", **keep)
    with st.expander("Regularisation, precision and seed"):
        decay_column, smoothing_column, average_column = st.columns(3)
        decay_column.number_input("Weight decay", 0.0, 0.99, step=0.01, key="train.weight_decay", **keep)
        smoothing_column.number_input("Label smoothing", 0.0, 0.99, step=0.01, key="train.label_smoothing", **keep)
        average_column.number_input(
            "Weight averaging (EMA decay)",
            0.0,
            0.9999,
            step=0.001,
            format="%.4f",
            key="train.ema_decay",
            **keep,
            help="0 turns it off; 0.999 scores and saves an average of the last ~1,000 "
            "steps' weights, which smooths out the last steps' noise.",
        )
        precision_column, seed_column, outliers_column = st.columns(3)
        precision_column.selectbox(
            "Precision",
            PRECISIONS,
            key="train.precision",
            **keep,
            help="`auto` trains in bf16 mixed precision where the processor computes "
            "bf16 natively (about twice as fast), in fp32 elsewhere.",
        )
        seed_column.number_input(
            "Seed", 0, 2**31 - 1, step=1, key="train.seed", **keep, help="Same seed, same settings: the same run."
        )
        outliers_column.number_input(
            "Non-digits per digit (outlier exposure)",
            *OUTLIER_SHARES,
            step=0.05,
            key="train.outliers",
            **keep,
            help="Drawings of letters and shapes join each batch (this many per digit) and the net learns to be "
            "unsure of them, so its not-a-digit check flags letters "
            f"(`best`: {RECIPES['best'].outliers:g}). 0 turns it off.",
        )
    st.subheader("Augmentation")
    st.segmented_control(
        "Preset",
        list(PRESETS),
        key="train.preset",
        on_change=apply_preset,
        help="`seed` is the tutorial's augmentation; `recommended` suits real handwriting.",
    )
    augmentation_controls()


def start(board: JobBoard, data: MnistData, spec: AugmentSpec) -> None:
    store = loaders.run_store()
    with errors_shown() as attempt:
        request = train_form.job_from_settings(
            st.session_state, spec, data, store, visitor=st.session_state["visitor"], refusal=run_policy.refusal
        )
        train_jobs.submit(board, request)
    if attempt.failed:
        return
    st.session_state[NEW_RUN] = True
    st.rerun()


@st.fragment(run_every=1.0)
def queue_panel(visitor: str, watched: frozenset[str]) -> None:
    """The queue and the running jobs, redrawn every second from the board the workers write; a full rerun
    shows the result once one of this visitor's jobs has ended."""
    board = train_jobs.board()
    jobs = board.jobs()
    if watched - {job.id for job in jobs}:
        st.rerun()
    if not jobs:
        return
    estimates = board.estimates()
    st.subheader("Trainings on this server")
    st.dataframe(train_jobs.queue_frame(jobs, estimates, visitor), hide_index=True, width="stretch")
    for job in jobs:
        if job.request.owner == visitor and job.state == "queued":
            position, seconds = estimates[job.id]
            text_column, cancel_column = st.columns([4, 1], vertical_alignment="center")
            text_column.info(
                f"`{job.name}` is queued: number {position} in the queue, expected to start "
                f"{train_jobs.in_about(seconds)}.",
                icon=":material/hourglass:",
            )
            if cancel_column.button("Cancel", key=f"train.cancel.{job.id}", icon=":material/cancel:"):
                board.cancel(job.id, owner=visitor)
                st.rerun()
    for job in jobs:
        if job.state == "running":
            live_progress(board, job, mine=job.request.owner == visitor)


def live_progress(board: JobBoard, job: Job, mine: bool) -> None:
    who = "Your run" if mine else f"{job.request.owner_label}'s run"
    st.markdown(
        f"**{who} `{job.name}`** · {train_form.describe_job(job, augment_label(job.request.config['augment']))}"
    )
    st.progress(job.progress.fraction_done, text=train_jobs.progress_text(job))
    st.progress(job.progress.finishing_fraction, text=train_jobs.finishing_text(job))
    loss_column, accuracy_column, stop_column = st.columns([2, 2, 3], vertical_alignment="center")
    loss_column.metric("Training loss", f"{job.progress.loss:.3f}")
    accuracy_column.metric("Training accuracy", percent(job.progress.accuracy))
    if (
        mine
        and not job.finishing
        and stop_column.button("Stop", icon=":material/stop_circle:", key=f"train.stop.{job.id}")
    ):
        board.request_stop(job.id, owner=job.request.owner)
        st.rerun(scope="fragment")
    digits = "" if parse_augment(job.request.config["augment"]).is_identity else " on augmented digits"
    training_charts(
        train_jobs.trace_frame(board.points(job.id)),
        f"{SCORED_NOTE} The running average of the batches mixes a whole epoch of changing weights{digits}, so "
        "it lags behind them.",
    )


def training_charts(trace, note: str) -> None:
    """Loss and accuracy side by side, one line per series of the trace, each series in its own colour."""
    if trace.empty:
        return
    loss_chart, accuracy_chart = st.columns(2)
    for column, metric in ((loss_chart, "loss"), (accuracy_chart, "accuracy")):
        column.altair_chart(
            charts.curves_chart(trace, metric, metric, colour_by="series", colours=SERIES_COLOURS), width="stretch"
        )
    st.caption(note)


def show_result(board: JobBoard, job: Job) -> None:
    if job.state == "failed":
        st.error(f"Training `{job.name}` failed: {job.error}", icon=":material/error:")
    elif job.state == "interrupted":
        st.warning(f"Training `{job.name}` was interrupted: {job.error}.", icon=":material/warning:")
        if st.button("Queue it again", icon=":material/replay:"):
            train_jobs.submit(board, job.request)
            st.session_state["train.seen_job"] = job.id
            st.rerun()
    elif job.state == "cancelled":
        st.info(f"Training `{job.name}` was cancelled before it started.", icon=":material/cancel:")
    elif job.state == "discarded":
        st.info(f"Training `{job.name}` was stopped and, as you chose, not saved.", icon=":material/delete:")
    else:
        run = loaders.run_store().info(job.run)
        metadata = run.metadata
        stopped = f" (stopped early, after {train_form.epochs_text(metadata.epochs_completed)})" if job.stopped else ""
        st.success(f"Saved run `{job.run}`{stopped}.", icon=":material/check_circle:")
        columns = st.columns(4)
        columns[0].metric("Clean test accuracy", percent(run.metric(CLEAN_TEST)))
        columns[1].metric("`seed`-augmented test accuracy", percent(run.metric(AUGMENTED_TEST)))
        columns[2].metric("Training time", f"{metadata.training_seconds:.0f} s")
        columns[3].metric("Parameters", f"{metadata.parameters:,}")
        if metadata.calibration is not None:
            st.caption(
                f"Calibrated on its {metadata.calibration['held_out']:,} held-out digits: its confidence is "
                "calibrated, and it says when a drawing does not look like a digit."
            )
        else:
            st.warning(
                f"`{job.run}` is not calibrated (it had fewer than 100 held-out digits): its confidence is the "
                "raw softmax and it cannot tell a non-digit from a digit.",
                icon=":material/warning:",
            )
        trace = train_jobs.trace_frame(board.points(job.id))
        training_charts(trace[trace["series"] != RUNNING_SERIES], SCORED_NOTE)  # comparable numbers only
        st.page_link(
            "app_pages/evaluate.py", label="Compare it with the other runs on Evaluate", icon=":material/analytics:"
        )
        st.caption(
            f"On Evaluate, pick `{job.run}` next to `seed` or `best`: accuracy on clean and augmented "
            "digits, the confusion matrix, its mistakes and learning curves."
        )
        if st.button("Draw with it", icon=":material/draw:"):
            st.session_state[ACTIVE_RUN] = job.run
            st.switch_page("app_pages/draw.py")
    if st.button("Train another run", type="primary", icon=":material/restart_alt:"):
        st.session_state["train.seen_job"] = job.id
        st.session_state.pop("train.name", None)  # propose_run_name proposes a free one
        st.rerun()


def preview(data: MnistData, spec: AugmentSpec) -> None:
    st.subheader("What the network will see")
    variants = st.toggle(
        "One digit, many variants",
        key="train.preview_variants",
        persist_state="session",
        help="Each row shows one digit augmented several times: the spread of the chosen ops.",
    )
    if st.button("New samples", icon=":material/shuffle:"):
        st.session_state["train.preview_seed"] += 1
    samples, sources = preview_samples(
        data.train_images,
        spec,
        seed=st.session_state["train.preview_seed"],
        rows=PREVIEW_ROWS,
        columns=PREVIEW_COLUMNS,
        variants_of_first=variants,
        labels=data.train_labels,
    )
    st.image(
        [enlarged(sample[0], PREVIEW_SIDE) for sample in samples],
        width=PREVIEW_SIDE,
        caption=[str(int(label)) for label in data.train_labels[sources]],
    )
    st.caption(f"Each digit's label under it. Augmentation: {train_form.spec_text(spec)}")


st.title("Train a model")
st.caption(
    "Pick a recipe, tweak it, watch the augmented digits change, and train: trainings queue up and run in a "
    "worker process, with live progress and curves."
)
st.session_state.setdefault("visitor", uuid.uuid4().hex)
visitor = st.session_state["visitor"]
with errors_shown("The training queue cannot be used") as opened:
    board = train_jobs.board()
if opened.failed:
    st.stop()
latest = board.latest_of(visitor)
if latest is not None and not latest.active and st.session_state.get("train.seen_job") != latest.id:
    show_result(board, latest)
    st.stop()
queue_panel(visitor, frozenset(job.id for job in board.jobs() if job.request.owner == visitor))

data = require_dataset("Training")
if data is None:
    st.stop()
prepare_settings()
settings_column, preview_column = st.columns([5, 4], gap="large")
with settings_column:
    settings(data)
    try:
        spec = chosen_spec()
    except ConfigError as error:
        st.error(str(error), icon=":material/error:")
        st.stop()
    stopped_column, overwrite_column = st.columns(2)
    stopped_column.radio(
        "If you press Stop",
        ["keep", "discard"],
        key="train.if_stopped",
        persist_state="session",
        format_func={"keep": "save what was trained", "discard": "discard the run"}.get,
    )
    if run_policy.management_level() == "off":  # replacing a run is managing runs
        st.session_state["train.overwrite"] = False
    else:
        overwrite_column.checkbox("Replace a run with the same name", key="train.overwrite", persist_state="session")
    busy = bool(board.jobs())
    with errors_shown():
        st.caption(train_form.duration_text(st.session_state, spec, data), help=train_form.DURATION_NOTE)
    if st.button(
        "Queue training" if busy else "Start training",
        type="primary",
        icon=":material/play_arrow:",
        help="Other trainings are queued or running: yours starts after them." if busy else None,
    ):
        start(board, data, spec)
with preview_column:
    preview(data, spec)
