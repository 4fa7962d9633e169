"""The Train page's side of the training queue (`ocr_core.jobs`): this server's board, with its worker started
when none runs, and how a job reads on the page (progress, queue, estimated start)."""

from __future__ import annotations

import time

import pandas as pd

from ocr_core import TrainConfig
from ocr_core.jobs import (
    RUNNING_SERIES,
    TEST_SCORED_SERIES,
    TRAIN_SCORED_SERIES,
    Job,
    JobBoard,
    JobRequest,
    ensure_worker,
    jobs_folder,
)

# One colour, one meaning, on the live chart and the result's: grey for the batches' running numbers (they lag),
# blue for training images scored, orange for test images scored.
SERIES_COLOURS = {RUNNING_SERIES: "#9aa5b1", TRAIN_SCORED_SERIES: "#1f77b4", TEST_SCORED_SERIES: "#ff7f0e"}
STATE_WORDS = {"queued": "queued", "running": "training"}


def board() -> JobBoard:
    """This server's jobs; when some are queued or running, the worker process is started if none runs (after
    a restart, say), so `streamlit run app.py` is all it takes. Cheap enough for every page run: an SQLite
    query, and a try of the worker's lock when there are jobs."""
    jobs = JobBoard(jobs_folder())
    if jobs.jobs():
        ensure_worker(jobs.folder)
    return jobs


def submit(jobs: JobBoard, request: JobRequest) -> Job:
    """Queue the job and make sure a worker serves the queue."""
    job = jobs.submit(request)
    ensure_worker(jobs.folder)
    return job


def config_of(job: Job) -> TrainConfig:
    return TrainConfig.from_dict(job.request.config)


def epochs_text(epochs: float) -> str:
    """ "1 epoch", "5 epochs", "0.25 epochs": two decimals at most (a stopped run's 0.2496 reads 0.25)."""
    shown = f"{epochs:.2f}".rstrip("0").rstrip(".")
    return f"{shown} epoch" if shown == "1" else f"{shown} epochs"


def clock(seconds: float | None) -> str:
    return "–" if seconds is None else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def in_about(seconds: float) -> str:
    """A start estimate in words: rough on purpose."""
    if seconds < 30:
        return "next"
    if seconds < 90:
        return "in about a minute"
    if seconds < 3600:
        return f"in about {round(seconds / 60)} min"
    return f"in about {seconds / 3600:.1f} h"


def progress_text(job: Job) -> str:
    """The training bar's text."""
    progress = job.progress
    if job.stop_requested and progress.phase == "training":
        return "Stopping after the current batch…"
    if progress.phase == "starting":
        return "Starting the training process (loading PyTorch and the digits)…"
    if progress.phase == "finishing":
        return f"Trained {progress.step:,}/{progress.total_steps:,} steps"
    eta = "estimating…" if progress.eta_seconds is None else clock(progress.eta_seconds)
    return (
        f"Epoch {progress.epoch}/{progress.total_epochs} · step {progress.step:,}/{progress.total_steps:,} · "
        f"{progress.images_per_second:,.0f} images/s · ETA {eta}"
    )


def finishing_text(job: Job) -> str:
    """The second bar's text: scoring, calibrating and saving, after the last step."""
    if job.progress.phase != "finishing":
        return "Then: scoring on the clean and the augmented test set, calibrating, saving"
    return f"{job.progress.finishing_label[:1].upper()}{job.progress.finishing_label[1:]}…"


def queue_frame(jobs: list[Job], estimates: dict[str, tuple[int, float]], visitor: str) -> pd.DataFrame:
    """One row per active job, in queue order, for the queue table."""
    rows = []
    for job in jobs:
        config = config_of(job)
        if job.state == "running":
            status = (
                f"training, {job.progress.fraction_done:.0%}"
                if job.progress.phase == "training"
                else ("finishing" if job.progress.phase == "finishing" else "starting")
            )
            start = f"started {clock(time.time() - (job.started or time.time()))} ago"
        else:
            position, seconds = estimates.get(job.id, (0, 0.0))
            status, start = f"queued, #{position}", in_about(seconds)
        rows.append(
            {
                "run": job.name,
                "who": "you" if job.request.owner == visitor else job.request.owner_label,
                "settings": f"{config.architecture}, {epochs_text(config.epochs)}, {job.request.train_images:,} images",
                "status": status,
                "start": start,
            }
        )
    return pd.DataFrame(rows, columns=["run", "who", "settings", "status", "start"])


def trace_frame(points: list[dict]) -> pd.DataFrame:
    """The chart's rows (epoch, series, loss, accuracy) as a frame, empty before the first report."""
    return pd.DataFrame(list(points), columns=["epoch", "series", "loss", "accuracy"])
