"""One training at a time per server process, in a background thread, observable from any session.

Streamlit reruns a page's script on every click, which would kill a loop running inside it; the job
therefore runs in a thread owned by a process-wide manager (Community Cloud serves every visitor from
one process, so this is also what makes visitors take turns)."""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

import streamlit as st

from ocr_core import Cadence, MnistData, Progress, RunInfo, RunStore, TrainConfig, TrainingCallback, train_run

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
    state: str = "running"  # running, saved, discarded or failed
    snapshot: Snapshot = field(default_factory=Snapshot)
    trace: list[dict] = field(default_factory=list)  # rows for the live chart
    history: list[dict] = field(default_factory=list)  # EpochRecord dicts
    run: RunInfo | None = None
    stopped: bool = False
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

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
        self.job.snapshot = Snapshot(progress.epoch, progress.total_epochs, progress.step, progress.total_steps,
                                     progress.loss, progress.accuracy, progress.images_per_second,
                                     progress.eta_seconds)
        self.job.trace.append({"epoch": progress.step / progress.steps_per_epoch, "series": "training (running)",
                               "loss": progress.loss, "accuracy": progress.accuracy})

    def on_epoch(self, progress: Progress) -> None:
        record = progress.history[-1]
        self.job.history.append(asdict(record))
        self.job.trace.append({"epoch": record.epoch, "series": "test (per epoch)",
                               "loss": record.test_loss, "accuracy": record.test_accuracy})


class TrainingBusyError(RuntimeError):
    def __init__(self, job: TrainingJob):
        super().__init__(f"{job.owner_label} is training run {job.name!r}; one training at a time")
        self.job = job


class TrainingManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.job: TrainingJob | None = None  # the running job, or the last one

    def start(self, job: TrainingJob, store: RunStore, data: MnistData) -> None:
        with self._lock:
            if self.job is not None and self.job.running:
                raise TrainingBusyError(self.job)
            self.job = job
        threading.Thread(target=self._train, args=(job, store, data), name=f"train-{job.name}", daemon=True).start()

    @staticmethod
    def _train(job: TrainingJob, store: RunStore, data: MnistData) -> None:
        try:
            run, result = train_run(job.name, job.config, store, data, callbacks=(ProgressRecorder(job),),
                                    stop=job.stop, overwrite=job.overwrite, keep_if_stopped=job.keep_if_stopped)
        except Exception as error:  # the thread has nobody to raise to: every failure must reach the page
            job.error = str(error) or type(error).__name__
            job.state = "failed"
            return
        job.run, job.stopped = run, result.stopped
        job.state = "saved" if run is not None else "discarded"


@st.cache_resource
def training_manager() -> TrainingManager:
    """The process-wide manager (st.cache_resource holds one object for all sessions)."""
    return TrainingManager()
