"""One training at a time per server process, in a background thread, observable from any session.

Streamlit reruns a page's script on every click, which would kill a loop running inside it; the job
therefore runs in a thread started by a process-wide manager (Community Cloud serves every visitor from
one process, so this is also what makes visitors take turns). The guarantee lives in the process, not in
a Streamlit cache: a live training thread is the record that a job runs."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

from ocr_core import (
    Cadence,
    MnistData,
    Progress,
    RunInfo,
    RunStore,
    ScorePoint,
    TrainConfig,
    TrainingCallback,
    UserError,
    train_run,
)

logger = logging.getLogger(__name__)
SHORT_RUN_EPOCHS, SHORT_RUN_SCORES = 2, 4  # runs of up to 2 epochs are scored 4 times per epoch
# The live chart's series: running numbers of the batches, and the model scored in eval mode (ScorePoint).
RUNNING_SERIES = "training batches (running average)"
TRAIN_SCORED_SERIES = "training images (scored)"
TEST_SCORED_SERIES = "test images (scored)"
PROGRESS_SECONDS = 1.0  # the page redraws once a second: fresher numbers than that would never be seen


@dataclass(frozen=True)
class Snapshot:
    """The latest numbers of a running job (immutable, so readers never see half an update)."""

    epoch: int = 0
    total_epochs: int = 0
    step: int = 0
    total_steps: int = 1
    loss: float = 0.0
    accuracy: float = 0.0
    images_per_second: float = 0.0
    eta_seconds: float | None = None

    @property
    def fraction_done(self) -> float:
        return min(1.0, self.step / self.total_steps)


@dataclass(frozen=True)
class Outcome:
    """How a job ended, published in one assignment: readers see all of it or none of it."""

    state: str  # saved, discarded or failed
    run: RunInfo | None = None  # the saved run
    stopped: bool = False  # stopped early by its owner
    error: str | None = None  # why it failed, for the page; the traceback goes to the server log


@dataclass
class TrainingJob:
    name: str
    config: TrainConfig
    owner: str  # the session that started it: only it may stop the job
    owner_label: str  # what other visitors see
    train_images: int
    keep_if_stopped: bool
    overwrite: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.time)
    stop: threading.Event = field(default_factory=threading.Event)
    snapshot: Snapshot = field(default_factory=Snapshot)
    trace: list[dict] = field(default_factory=list)  # rows for the live chart
    history: list[dict] = field(default_factory=list)  # EpochRecord dicts
    outcome: Outcome | None = None  # None while running

    @property
    def running(self) -> bool:
        return self.outcome is None

    @property
    def finishing(self) -> bool:
        """Training is over (done or stopped) but the run is still being scored and saved."""
        return self.running and (self.stop.is_set() or self.snapshot.step >= self.snapshot.total_steps)


class ProgressRecorder(TrainingCallback):
    """Copies what the trainer reports into the job; runs in the training thread."""

    def __init__(self, job: TrainingJob, cadence: Cadence | None = None):
        self.job = job
        self.cadence = cadence or Cadence(PROGRESS_SECONDS)

    def on_batch(self, progress: Progress) -> None:
        if not self.cadence.due(progress):
            return
        self.job.snapshot = Snapshot(
            progress.epoch,
            progress.total_epochs,
            progress.step,
            progress.total_steps,
            progress.loss,
            progress.accuracy,
            progress.images_per_second,
            progress.eta_seconds,
        )
        self.job.trace.append(
            {
                "epoch": progress.step / progress.steps_per_epoch,
                "series": RUNNING_SERIES,
                "loss": progress.loss,
                "accuracy": progress.accuracy,
            }
        )

    def on_epoch(self, progress: Progress) -> None:
        self.job.history.append(asdict(progress.history[-1]))

    def on_score(self, progress: Progress, point: ScorePoint) -> None:
        self.job.trace += [
            {
                "epoch": point.epoch,
                "series": TRAIN_SCORED_SERIES,
                "loss": point.train_loss,
                "accuracy": point.train_accuracy,
            },
            {
                "epoch": point.epoch,
                "series": TEST_SCORED_SERIES,
                "loss": point.test_loss,
                "accuracy": point.test_accuracy,
            },
        ]


def scores_per_epoch(config: TrainConfig) -> int:
    """Short runs are scored a few times per epoch, so their charts have more than one point (scoring the small
    test set costs little next to an epoch of training); longer runs once per epoch."""
    return SHORT_RUN_SCORES if config.epochs <= SHORT_RUN_EPOCHS else 1


class TrainingBusyError(RuntimeError):
    def __init__(self, job: TrainingJob):
        super().__init__(f"{job.owner_label} is training run {job.name!r}; one training at a time")
        self.job = job


def train_in_background(job: TrainingJob, store: RunStore, data: MnistData) -> None:
    """The training thread's body: every way it can end becomes the job's outcome."""
    try:
        run, result = train_run(
            job.name,
            job.config,
            store,
            data,
            callbacks=(ProgressRecorder(job),),
            stop=job.stop,
            overwrite=job.overwrite,
            keep_if_stopped=job.keep_if_stopped,
            scores_per_epoch=scores_per_epoch(job.config),
        )
    except Exception as error:  # the thread has nobody to raise to: every failure must reach the page
        if isinstance(error, UserError):
            logger.warning("training run %r failed: %s", job.name, error)
        else:  # a bug: its traceback goes to the server log, the page shows the message
            logger.exception("training run %r failed", job.name)
        job.outcome = Outcome("failed", error=str(error) or type(error).__name__)
        return
    job.outcome = Outcome("saved" if run is not None else "discarded", run=run, stopped=result.stopped)


def live_training_job() -> TrainingJob | None:
    """The job of the training thread alive in this process, if any. The threads themselves are the
    record: they outlive Streamlit's caches (the menu's "Clear cache") and a reload of this module."""
    for thread in threading.enumerate():
        job = getattr(thread, TRAINING_JOB_ATTRIBUTE, None)
        if job is not None and thread.is_alive():
            return job
    return None


class TrainingManager:
    """Starts jobs, one at a time per process, and remembers the last one for its owner's result."""

    def __init__(self) -> None:
        self.last: TrainingJob | None = None

    @property
    def job(self) -> TrainingJob | None:
        """The running job, or else the last one this manager started."""
        return live_training_job() or self.last

    def start(self, job: TrainingJob, store: RunStore, data: MnistData) -> None:
        with START_LOCK:  # the check and the start are one step, so two sessions cannot both pass the check
            running = live_training_job()
            if running is not None:
                raise TrainingBusyError(running)
            thread = threading.Thread(
                target=train_in_background, args=(job, store, data), name=f"train-{job.name}", daemon=True
            )
            setattr(thread, TRAINING_JOB_ATTRIBUTE, job)
            thread.start()
            self.last = job


# Process-wide, outside st.cache_resource: clearing Streamlit's caches must not make a second manager
# that would let a second training start while the first one runs.
TRAINING_JOB_ATTRIBUTE = "ocr_lab_training_job"
START_LOCK = threading.Lock()
MANAGER = TrainingManager()


def training_manager() -> TrainingManager:
    return MANAGER
