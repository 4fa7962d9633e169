"""Train a run: settings with a live preview of the augmented data, then live progress of the job."""

import uuid

import streamlit as st

from lab_ui import charts, loaders, run_policy, train_form
from lab_ui.training import RUNNING_SERIES, TrainingBusyError, TrainingJob, training_manager
from lab_ui.widgets import ACTIVE_RUN, augment_label, enlarged, errors_shown, percent, require_dataset
from ocr_core import (
    ARCHITECTURES,
    PRESETS,
    RECIPES,
    AugmentSpec,
    CheckpointError,
    ConfigError,
    MnistData,
    parse_augment,
    preview_samples,
)
from ocr_core.augment import AUGMENT_OPS, RANGE_OPS
from ocr_core.checkpoints import NAME_RULE
from ocr_core.training import OPTIMIZERS, PRECISIONS, SCHEDULES

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
IDENTITY = AugmentSpec()


def set_augment_controls(spec: AugmentSpec) -> None:
    for op in AUGMENT_OPS.values():
        value = getattr(spec, op.name)
        switched_on = value != getattr(IDENTITY, op.name)
        st.session_state[f"train.aug.{op.name}.on"] = switched_on
        st.session_state[f"train.aug.{op.name}.value"] = value if switched_on else op.typical


def apply_recipe() -> None:
    recipe = RECIPES[st.session_state["train.recipe"]]
    st.session_state.update(train_form.recipe_settings(recipe))
    set_augment_controls(parse_augment(recipe.augment))


def apply_preset() -> None:
    preset = st.session_state["train.preset"]
    if preset is not None:
        set_augment_controls(PRESETS[preset])


def chosen_spec() -> AugmentSpec:
    """The augmentation the toggles and sliders describe."""
    values = {
        op: st.session_state[f"train.aug.{op}.value"] for op in AUGMENT_OPS if st.session_state[f"train.aug.{op}.on"]
    }
    for op in RANGE_OPS:
        if op in values:
            values[op] = tuple(values[op])
    return AugmentSpec(**values)


def propose_run_name() -> None:
    """A free name on the first visit, and a new one when the proposed name has been taken meanwhile (saved,
    or training for another visitor); a name the visitor typed is theirs to keep."""
    state, store = st.session_state, loaders.run_store()
    job = training_manager().job
    taken = [job.name] if job is not None and job.running else []
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
    st.session_state["train.preset"] = next((name for name, preset in PRESETS.items() if preset == spec), None)


def augmentation_controls() -> None:
    for op in AUGMENT_OPS.values():
        toggle_column, slider_column = st.columns([1, 3], vertical_alignment="center")
        switched_on = toggle_column.toggle(op.label, key=f"train.aug.{op.name}.on", persist_state="session")
        slider_column.slider(
            op.label,
            float(op.lowest),
            float(op.highest),
            step=float(op.step),
            key=f"train.aug.{op.name}.value",
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
        help="Shown to other visitors while your run trains: one training runs at a time.",
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
    # Counts, not None for "all": a selectbox shows None as "Choose an option" once its state is restored.
    images_column.selectbox(
        "Training images",
        [total, *(count for count in QUICK_SUBSETS if count < total)],
        key="train.images",
        format_func=lambda count: f"all {total:,}" if count == total else f"first {count:,} (quick demo)",
        **keep,
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
        precision_column, seed_column = st.columns(2)
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
    st.subheader("Augmentation")
    st.segmented_control(
        "Preset",
        list(PRESETS),
        key="train.preset",
        on_change=apply_preset,
        help="`seed` is the tutorial's augmentation; `recommended` suits real handwriting.",
    )
    augmentation_controls()


def start(data: MnistData, spec: AugmentSpec) -> None:
    store = loaders.run_store()
    with errors_shown() as attempt:
        job, training_data = train_form.job_from_settings(
            st.session_state, spec, data, store, visitor=st.session_state["visitor"]
        )
        if job.overwrite and store.exists(job.name) and (reason := run_policy.refusal(job.name)) is not None:
            raise CheckpointError(f"`{job.name}` cannot be replaced: {reason}")
    if attempt.failed:
        return
    try:
        training_manager().start(job, store, training_data)
    except TrainingBusyError as busy:
        st.warning(f"{busy}. Please wait until it has finished.", icon=":material/hourglass:")
        return
    st.session_state[NEW_RUN] = True
    st.rerun()


@st.fragment(run_every=1.0)
def live_progress(job: TrainingJob, mine: bool) -> None:
    """Redraws itself every second; a full rerun shows the result once the job has ended."""
    if not job.running:
        st.rerun()
    st.progress(job.snapshot.fraction_done, text=train_form.progress_text(job.snapshot, job.finishing))
    loss_column, accuracy_column, stop_column = st.columns([2, 2, 3], vertical_alignment="center")
    loss_column.metric("Training loss", f"{job.snapshot.loss:.3f}")
    accuracy_column.metric("Training accuracy", percent(job.snapshot.accuracy))
    if mine and job.stop.is_set() and not job.finishing:
        stop_column.caption("Stopping after the current batch…")
    elif mine and not job.finishing and stop_column.button("Stop", icon=":material/stop_circle:", key="train.stop"):
        job.stop.set()
        st.rerun(scope="fragment")
    training_charts(
        train_form.trace_frame(job.trace),
        SCORED_NOTE + " The running average of the batches mixes a "
        "whole epoch of changing weights on augmented digits, so it lags behind them.",
    )


def training_charts(trace, note: str) -> None:
    """Loss and accuracy side by side, one line per series of the trace."""
    if trace.empty:
        return
    loss_chart, accuracy_chart = st.columns(2)
    loss_chart.altair_chart(charts.curves_chart(trace, "loss", "loss", colour_by="series"), width="stretch")
    accuracy_chart.altair_chart(charts.curves_chart(trace, "accuracy", "accuracy", colour_by="series"), width="stretch")
    st.caption(note)


def show_result(job: TrainingJob) -> None:
    outcome = job.outcome
    if outcome.state == "failed":
        st.error(f"Training `{job.name}` failed: {outcome.error}", icon=":material/error:")
    elif outcome.state == "discarded":
        st.info(f"Training `{job.name}` was stopped and, as you chose, not saved.", icon=":material/delete:")
    else:
        metadata = outcome.run.metadata
        stopped = f" (stopped early, after {metadata.epochs_completed:g} epochs)" if outcome.stopped else ""
        st.success(f"Saved run `{job.name}`{stopped}.", icon=":material/check_circle:")
        columns = st.columns(4)
        columns[0].metric("Clean test accuracy", percent(outcome.run.metric("clean")))
        columns[1].metric("`seed`-augmented test accuracy", percent(outcome.run.metric("seed_augmented")))
        columns[2].metric("Training time", f"{metadata.training_seconds:.0f} s")
        columns[3].metric("Parameters", f"{metadata.parameters:,}")
        trace = train_form.trace_frame(job.trace)
        training_charts(trace[trace["series"] != RUNNING_SERIES], SCORED_NOTE)  # comparable numbers only
        st.page_link(
            "app_pages/evaluate.py", label="Compare it with the other runs on Evaluate", icon=":material/analytics:"
        )
        st.caption(
            f"On Evaluate, pick `{job.name}` next to `seed` or `best`: accuracy on clean and augmented "
            "digits, the confusion matrix, its mistakes and learning curves."
        )
        if st.button("Draw with it", icon=":material/draw:"):
            st.session_state[ACTIVE_RUN] = job.name
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
    )
    st.image(
        [enlarged(sample[0], PREVIEW_SIDE) for sample in samples],
        width=PREVIEW_SIDE,
        caption=[str(int(label)) for label in data.train_labels[sources]],
    )
    st.caption(f"Each digit's label under it. Augmentation: `{spec.to_string()}`")


st.title("Train a model")
st.caption("Pick a recipe, tweak it, watch the augmented digits change, and train: progress and curves update live.")
st.session_state.setdefault("visitor", uuid.uuid4().hex)
job = training_manager().job
mine = job is not None and job.owner == st.session_state["visitor"]
if job is not None and job.running:
    if mine:
        st.subheader(f"Training `{job.name}`")
        st.caption(train_form.describe_job(job, augment_label(job.config.augment)))
        live_progress(job, mine)
        st.stop()
    st.info(
        f"{job.owner_label} is training `{job.name}` ({job.config.architecture} net, {job.config.epochs:g} "
        "epochs). One training runs at a time on this server: watch it here, prepare your settings, and "
        "start yours when it has finished, or come back later.",
        icon=":material/hourglass:",
    )
    st.caption(train_form.describe_job(job, augment_label(job.config.augment)))
    live_progress(job, mine)
elif mine and st.session_state.get("train.seen_job") != job.id:
    show_result(job)
    st.stop()

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
    busy = job is not None and job.running
    with errors_shown():
        st.caption(train_form.duration_text(st.session_state, spec, data), help=train_form.DURATION_NOTE)
    if st.button(
        "Start training",
        type="primary",
        icon=":material/play_arrow:",
        disabled=busy,
        help="Another training is running; wait until it has finished." if busy else None,
    ):
        start(data, spec)
with preview_column:
    preview(data, spec)
