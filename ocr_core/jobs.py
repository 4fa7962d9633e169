"""Training jobs: a persistent queue that worker processes serve, and the job records that pages poll.

Design (issue 20):
- The queue is huey's, on SQLite (`queue.sqlite` in the jobs folder): a well-kept task queue with an embedded
  default; it switches to Redis (`RedisHuey`) when workers run on several machines. rq needs a Redis server and
  dramatiq a broker (Redis or RabbitMQ): one more service for a teacher to run, where huey needs a file.
- The record of every job (who, what, state, progress, outcome) is `JobBoard`, a small SQLite table beside the
  queue (`jobs.sqlite`): huey carries the job's id, the board everything a page shows. A job moves
  queued -> running -> saved | discarded | failed | interrupted, or queued -> cancelled.
- One worker process (`serve`) runs huey's consumer with `workers` threads (`OCR_TRAINING_WORKERS`, default 1:
  trainings side by side). It imports no torch (about 20 MB instead of 700): each job runs in a child process
  (`run`), niced and with one core left to the web server, that trains, scores and saves, then exits, so the
  job's memory is returned to the system when it ends and a crash of the training cannot take down anything
  else. The web server starts the worker when none holds its lock (`ensure_worker`); the worker ends when the
  server that started it is gone.
- Progress flows child -> board about once a second (`JobRecorder`: the numbers, the curves' points, the
  finishing step's progress); a Stop is a flag on the board that the child reads at the same pace.
- Nothing is lost: queued jobs live in huey's file and survive restarts. A job whose process dies (a killed
  worker, a server restart, a kill of the training itself) is marked "interrupted" and its partial training is
  discarded: the weights were in the dead process, and run files are written atomically, so no half-written
  run can exist. The visitor can queue it again. A crash inside training is a "failed" job with its message.

This module is loaded two ways: as `ocr_core.jobs` (the app, the CLI, the job child) and by file path in the
worker process (`serve`), which must not import the `ocr_core` package (its `__init__` imports torch); so its
top level imports only the standard library and huey, and torch-side code is imported inside functions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__:  # imported as ocr_core.jobs
    from .errors import UserError
else:  # loaded by path in the worker process, which stays free of torch
    UserError = Exception

BOARD_FORMAT, BOARD_VERSION = "ocr-lab-jobs", 1
BOARD_FILE, QUEUE_FILE, LOCK_FILE, LOG_FOLDER = "jobs.sqlite", "queue.sqlite", "worker.lock", "logs"
QUEUE_NAME, TASK_NAME = "ocr-lab-training", "train_job"
ACTIVE = ("queued", "running")
FINISHED = ("saved", "discarded", "failed", "cancelled", "interrupted")
PROGRESS_SECONDS = 1.0  # the child writes progress and reads Stop this often; pages poll at the same pace
POLL_SECONDS = 0.5  # the worker's longest wait before it notices a new job (huey's idle back-off, capped)
WORKERS_VARIABLE = "OCR_TRAINING_WORKERS"
DEFAULT_WORKERS = 1
JOB_NICENESS = 10  # a training yields the CPU to the web server: a drawing is answered first
SHORT_RUN_EPOCHS, SHORT_RUN_SCORES = 2, 4  # runs of up to 2 epochs are scored 4 times per epoch
# Rough images per second (training plus scoring) of each architecture on 2 shared cores, for the estimated start
# of a queued job until the board has measured a finished job of that architecture.
DEFAULT_IMAGES_PER_SECOND = {"fast": 3000.0, "seed": 700.0, "accurate": 700.0, "deep": 400.0}
FINISHING_SECONDS = 20.0  # scoring two test sets, calibrating and saving, in a rough estimate
INTERRUPTED = (
    "its process ended before it finished (a server restart or a killed worker); the partial run was discarded"
)
# The live chart's series: running numbers of the batches, and the model scored in eval mode (ScorePoint).
RUNNING_SERIES = "training batches (running average)"
TRAIN_SCORED_SERIES = "training images (scored)"
TEST_SCORED_SERIES = "test images (scored)"


class JobsError(UserError):
    """A job request that cannot be honoured, or a jobs folder that cannot be used; the message says why."""


def jobs_folder() -> Path:
    """Where the queue and the board live: `OCR_JOBS_DIR`, by default `.jobs/` in the run folder (they belong
    with the runs they make; `RunStore` lists only `*.safetensors`)."""
    from .checkpoints import checkpoint_dir

    configured = os.environ.get("OCR_JOBS_DIR")
    return Path(configured).expanduser() if configured else checkpoint_dir() / ".jobs"


def worker_count() -> int:
    """How many trainings run side by side (`OCR_TRAINING_WORKERS`, default 1; at least 1)."""
    text = os.environ.get(WORKERS_VARIABLE, "").strip()
    return max(1, int(text)) if text.isdigit() else DEFAULT_WORKERS


def scores_per_epoch(epochs: float) -> int:
    """Short runs are scored a few times per epoch, so their charts have more than one point (scoring the small
    test set costs little next to an epoch of training); longer runs once per epoch."""
    return SHORT_RUN_SCORES if epochs <= SHORT_RUN_EPOCHS else 1


@dataclass(frozen=True)
class JobRequest:
    """What a visitor (or the CLI) asks for; `config` is a TrainConfig's `as_dict()`."""

    name: str
    config: dict[str, Any]
    owner: str  # the session that queued it: only it may cancel or stop it
    owner_label: str  # what other visitors see
    train_images: int
    keep_if_stopped: bool = True
    overwrite: bool = False


@dataclass(frozen=True)
class JobProgress:
    """The latest numbers of a running job, as its child last wrote them."""

    phase: str = "starting"  # starting, training, finishing
    epoch: int = 0
    total_epochs: int = 0
    step: int = 0
    total_steps: int = 1
    loss: float = 0.0
    accuracy: float = 0.0
    images_per_second: float = 0.0
    eta_seconds: float | None = None
    finishing_fraction: float = 0.0  # the finishing step's own progress (scoring, calibrating, saving)
    finishing_label: str = ""
    updated: float = 0.0

    @property
    def fraction_done(self) -> float:
        return min(1.0, self.step / max(self.total_steps, 1))


@dataclass(frozen=True)
class Job:
    id: str
    request: JobRequest
    state: str
    submitted: float
    started: float | None = None
    finished: float | None = None
    stop_requested: bool = False
    progress: JobProgress = field(default_factory=JobProgress)
    run: str | None = None  # the saved run's name
    stopped: bool = False  # stopped early by its owner
    error: str | None = None  # why it failed or was interrupted
    pid: int | None = None  # the job process, while it runs

    @property
    def name(self) -> str:
        return self.request.name

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def finishing(self) -> bool:
        return self.state == "running" and (self.progress.phase == "finishing" or self.stop_requested)


SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists jobs (
    seq integer primary key autoincrement, id text unique not null, name text not null, owner text not null,
    request text not null, state text not null, submitted real not null, started real, finished real,
    pid integer, stop_requested integer not null default 0, progress text, outcome text);
create table if not exists points (
    job_id text not null, series text not null, epoch real not null, loss real not null, accuracy real not null);
create index if not exists points_by_job on points (job_id);
"""


def open_queue(folder: Path):
    """(huey on SQLite in `folder`, its training task), registered under one name in every process: huey names a
    task after its function's module, which is `__main__` in the worker."""
    from huey import SqliteHuey

    def train_job(job_id: str) -> None:
        execute(folder, job_id)

    train_job.__module__ = "ocr_core.jobs"
    queue = SqliteHuey(QUEUE_NAME, filename=str(folder / QUEUE_FILE), results=False, utc=True)
    return queue, queue.task(name=TASK_NAME)(train_job)


CHECKED_BOARDS: set[Path] = set()


class JobBoard:
    """The jobs of one folder: submit, cancel, stop, and what pages show. Safe from many threads and processes
    (a connection per call, SQLite's locking; WAL, so readers never wait for the writer)."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder).resolve()  # the worker and job processes run elsewhere
        self.path = self.folder / BOARD_FILE
        self._queue = self._task = None
        if self.path in CHECKED_BOARDS:
            return  # pages open the board every second: create and check it once per process
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self.db() as db:
                db.executescript(SCHEMA)
                db.execute(
                    "insert or ignore into meta values ('format', ?), ('version', ?)", (BOARD_FORMAT, BOARD_VERSION)
                )
                meta = dict(db.execute("select key, value from meta"))
        except (sqlite3.DatabaseError, OSError) as error:
            raise JobsError(f"the jobs folder {self.folder} cannot be used ({error})") from None
        if meta.get("format") != BOARD_FORMAT or str(meta.get("version")) != str(BOARD_VERSION):
            raise JobsError(f"{self.path} is not a jobs board of this lab (format {meta.get('format')!r})")
        CHECKED_BOARDS.add(self.path)

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("pragma journal_mode=wal")
            db.execute("pragma busy_timeout=30000")
            yield db

    @property
    def queue(self):
        if self._queue is None:
            self._queue, self._task = open_queue(self.folder)
        return self._queue

    # -- what visitors do --------------------------------------------------------------------------------------
    def submit(self, request: JobRequest) -> Job:
        """Queue a job; JobsError if an active job has the same run name."""
        job_id = uuid.uuid4().hex
        with self.db() as db:
            db.execute("begin immediate")  # the check and the insert are one step for every process
            clash = db.execute(
                "select owner from jobs where name = ? and state in ('queued', 'running')", (request.name,)
            ).fetchone()
            if clash is not None:
                db.execute("rollback")
                raise JobsError(f"a run named {request.name!r} is queued or training already; choose another name")
            db.execute(
                "insert into jobs (id, name, owner, request, state, submitted) values (?, ?, ?, ?, 'queued', ?)",
                (job_id, request.name, request.owner, json.dumps(asdict(request)), time.time()),
            )
            db.execute("commit")
        self.enqueue(job_id)
        return self.job(job_id)

    def enqueue(self, job_id: str) -> None:
        self.queue.enqueue(self._task.s(job_id, id=job_id))

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Cancel a queued job (only its owner's, when `owner` is given); False if it is no longer queued."""
        with self.db() as db:
            changed = db.execute(
                "update jobs set state = 'cancelled', finished = ? where id = ? and state = 'queued'"
                + (" and owner = ?" if owner is not None else ""),
                (time.time(), job_id, *([owner] if owner is not None else [])),
            ).rowcount
        if changed:
            self.queue.revoke_by_id(job_id)  # the worker skips it; the board's state says so even if it did not
        return bool(changed)

    def request_stop(self, job_id: str, owner: str | None = None) -> bool:
        with self.db() as db:
            return bool(
                db.execute(
                    "update jobs set stop_requested = 1 where id = ? and state = 'running'"
                    + (" and owner = ?" if owner is not None else ""),
                    (job_id, *([owner] if owner is not None else [])),
                ).rowcount
            )

    # -- what pages read ---------------------------------------------------------------------------------------
    def jobs(self, include_finished_since: float | None = None) -> list[Job]:
        """Active jobs in queue order, then (optionally) jobs finished since the given time."""
        query = JOB_QUERY
        if include_finished_since is None:
            rows = self._rows(query + " where state in ('queued', 'running') order by seq")
        else:
            rows = self._rows(
                query + " where state in ('queued', 'running') or finished >= ? order by seq", (include_finished_since,)
            )
        return [job_from_row(row) for row in rows]

    def job(self, job_id: str) -> Job | None:
        rows = self._rows(JOB_QUERY + " where id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    def latest_of(self, owner: str) -> Job | None:
        rows = self._rows("select id from jobs where owner = ? order by seq desc limit 1", (owner,))
        return self.job(rows[0][0]) if rows else None

    def points(self, job_id: str) -> list[dict]:
        rows = self._rows("select epoch, series, loss, accuracy from points where job_id = ? order by rowid", (job_id,))
        return [
            {"epoch": epoch, "series": series, "loss": loss, "accuracy": accuracy}
            for epoch, series, loss, accuracy in rows
        ]

    def _rows(self, query: str, parameters: tuple = ()) -> list[tuple]:
        with self.db() as db:
            return db.execute(query, parameters).fetchall()

    def estimates(self, workers: int | None = None) -> dict[str, tuple[int, float]]:
        """For each queued job: (position in the queue from 1, seconds until it is expected to start), given the
        running jobs' ETAs and each queued job's expected duration, on `workers` side-by-side trainings."""
        workers = workers or worker_count()
        active = self.jobs()
        rates = self.measured_rates()
        free_at = sorted(remaining_seconds(job, rates) for job in active if job.state == "running")
        free_at = (free_at + [0.0] * workers)[:workers] if len(free_at) < workers else free_at[:workers]
        result = {}
        for position, job in enumerate((job for job in active if job.state == "queued"), 1):
            free_at.sort()
            start = free_at[0]
            result[job.id] = (position, start)
            free_at[0] = start + expected_seconds(job.request, rates)
        return result

    def measured_rates(self) -> dict[str, float]:
        """Images per second of the last finished job of each architecture (training plus finishing)."""
        rates = {}
        rows = self._rows(
            "select request, started, finished from jobs where state = 'saved' and started is not null order by seq"
        )
        for request_text, started, finished in rows:
            request = request_from_json(request_text)
            if finished > started:
                images = request.config.get("epochs", 1) * request.train_images
                rates[request.config.get("architecture", "fast")] = images / (finished - started)
        return rates

    # -- what workers and job processes do ---------------------------------------------------------------------
    def claim(self, job_id: str) -> JobRequest | None:
        """queued -> running for the worker that dequeued it; None if it was cancelled meanwhile."""
        with self.db() as db:
            changed = db.execute(
                "update jobs set state = 'running', started = ? where id = ? and state = 'queued'",
                (time.time(), job_id),
            ).rowcount
            row = db.execute("select request from jobs where id = ?", (job_id,)).fetchone()
        return request_from_json(row[0]) if changed and row else None

    def set_pid(self, job_id: str, pid: int) -> None:
        with self.db() as db:
            db.execute("update jobs set pid = ? where id = ?", (pid, job_id))

    def report(self, job_id: str, progress: JobProgress, points: list[dict]) -> bool:
        """Write the latest progress and new chart points; True when the owner asked to stop."""
        with self.db() as db:
            db.execute("begin immediate")
            db.execute("update jobs set progress = ? where id = ?", (json.dumps(asdict(progress)), job_id))
            db.executemany(
                "insert into points values (?, ?, ?, ?, ?)",
                [(job_id, p["series"], p["epoch"], p["loss"], p["accuracy"]) for p in points],
            )
            stop = db.execute("select stop_requested from jobs where id = ?", (job_id,)).fetchone()
            db.execute("commit")
        return bool(stop and stop[0])

    def finish(
        self, job_id: str, state: str, run: str | None = None, stopped: bool = False, error: str | None = None
    ) -> bool:
        """running -> a finished state, once: a later writer (a child outliving its worker) does not overwrite it."""
        outcome = json.dumps({"run": run, "stopped": stopped, "error": error})
        with self.db() as db:
            return bool(
                db.execute(
                    "update jobs set state = ?, finished = ?, outcome = ? where id = ? and state = 'running'",
                    (state, time.time(), outcome, job_id),
                ).rowcount
            )

    def recover(self) -> list[str]:
        """After a restart, by the one worker that holds the lock: running jobs (their processes are gone) become
        "interrupted"; queued jobs that a dead worker took off the queue but never started are queued again.
        Returns the ids queued again."""
        for job in self.jobs():
            if job.state == "running":
                self.finish(job.id, "interrupted", error=INTERRUPTED)
        pending = {task.id for task in self.queue.pending()}
        lost = [job.id for job in self.jobs() if job.state == "queued" and job.id not in pending]
        for job_id in lost:
            self.enqueue(job_id)
        return lost


def request_from_json(text: str) -> JobRequest:
    values = json.loads(text)
    return JobRequest(**{key: values[key] for key in JobRequest.__dataclass_fields__ if key in values})


JOB_QUERY = "select id, request, state, submitted, started, finished, stop_requested, progress, outcome, pid from jobs"


def job_from_row(row: tuple) -> Job:
    job_id, request, state, submitted, started, finished, stop_requested, progress, outcome, pid = row
    outcome_values = json.loads(outcome) if outcome else {}
    progress_values = json.loads(progress) if progress else {}
    return Job(
        job_id,
        request_from_json(request),
        state,
        submitted,
        started,
        finished,
        bool(stop_requested),
        JobProgress(
            **{key: value for key, value in progress_values.items() if key in JobProgress.__dataclass_fields__}
        ),
        outcome_values.get("run"),
        bool(outcome_values.get("stopped")),
        outcome_values.get("error"),
        pid,
    )


def expected_seconds(request: JobRequest, rates: dict[str, float]) -> float:
    architecture = request.config.get("architecture", "fast")
    rate = rates.get(architecture) or DEFAULT_IMAGES_PER_SECOND.get(architecture, 1000.0)
    return request.config.get("epochs", 1) * request.train_images / rate + FINISHING_SECONDS


def remaining_seconds(job: Job, rates: dict[str, float]) -> float:
    if job.progress.eta_seconds is not None:
        return job.progress.eta_seconds
    elapsed = time.time() - (job.started or time.time())
    return max(0.0, expected_seconds(job.request, rates) - elapsed)


# -- the worker process ----------------------------------------------------------------------------------------
def try_lock(folder: Path):
    """The worker's lock file, locked; None if another process holds it. Released when the process dies."""
    import fcntl

    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115  (held open for the worker's lifetime)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))  # for people and benchmarks looking for the worker; the lock is the proof
    handle.flush()
    return handle


def worker_pid(folder: Path | str) -> int | None:
    """The running worker's process id, or None when no worker holds the lock."""
    if not worker_running(folder):
        return None
    text = (Path(folder) / LOCK_FILE).read_text().strip()
    return int(text) if text.isdigit() else None


def worker_running(folder: Path | str) -> bool:
    handle = try_lock(Path(folder))
    if handle is None:
        return True
    handle.close()  # closing releases the lock
    return False


def ensure_worker(folder: Path | str, workers: int | None = None) -> bool:
    """Start the worker process unless one is running; True if one was started. It ends with this process."""
    folder = JobBoard(folder).folder  # creates the folder and the board, and checks it
    if worker_running(folder):
        return False
    log = open(folder / "worker.log", "ab")  # noqa: SIM115  (handed to the child)
    with log:
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')",
                str(Path(__file__).resolve()),
                "serve",
                str(folder),
                "--workers",
                str(workers or worker_count()),
                "--parent",
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a Ctrl-C meant for the server reaches the worker through its parent watch
        )
    return True


def stop_worker(folder: Path | str, timeout: float = 30.0) -> bool:
    """Stop the folder's worker (as a server's end does: its running job is marked interrupted, queued jobs stay
    queued); True once no worker holds the lock."""
    pid = worker_pid(folder)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while worker_running(folder):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


RUNNING_CHILDREN: dict[str, subprocess.Popen] = {}


def execute(folder: Path, job_id: str) -> None:
    """The huey task, in a worker thread: claim the job, train it in a child process, record how it ended."""
    board = JobBoard(folder)
    if board.claim(job_id) is None:
        return  # cancelled while queued
    logs = folder / LOG_FOLDER
    logs.mkdir(exist_ok=True)
    project = Path(__file__).resolve().parent.parent
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])),
    }
    with open(logs / f"{job_id}.log", "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "ocr_core.jobs", "run", str(folder), job_id],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=environment,
            cwd=project,
        )
        board.set_pid(job_id, child.pid)
        RUNNING_CHILDREN[job_id] = child
        code = child.wait()
        RUNNING_CHILDREN.pop(job_id, None)
    if code < 0:
        board.finish(
            job_id,
            "interrupted",
            error=f"the training process was killed ({signal.Signals(-code).name}); {INTERRUPTED.split('; ')[1]}",
        )
    elif code != 0:
        board.finish(
            job_id, "failed", error=last_line(logs / f"{job_id}.log") or f"the training process exited with code {code}"
        )


def last_line(path: Path) -> str | None:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1].strip()[:500] if lines else None


def serve(folder: Path, workers: int, parent: int | None = None) -> int:
    """The worker process: hold the lock, recover, then run huey's consumer until stopped or orphaned."""
    lock = try_lock(folder)
    if lock is None:
        return 0  # another worker serves this folder
    board = JobBoard(folder)
    board.recover()
    consumer = board.queue.create_consumer(
        workers=workers, worker_type="thread", periodic=False, initial_delay=0.1, backoff=1.15, max_delay=POLL_SECONDS
    )
    if parent is not None:
        threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    try:
        consumer.run()
    finally:
        for child in list(RUNNING_CHILDREN.values()):
            child.terminate()  # its job is marked interrupted by the next worker's recover, or just below
        for job in board.jobs():
            if job.state == "running" and job.id in RUNNING_CHILDREN:
                board.finish(job.id, "interrupted", error=INTERRUPTED)
        lock.close()
    return 0


def watch_parent(parent: int) -> None:
    """End the worker (SIGTERM: huey's consumer stops at once) when the server that started it has gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


# -- the job process -------------------------------------------------------------------------------------------
class JobInterrupted(Exception):
    """The worker that started this job is gone: end without saving."""


def training_threads() -> int:
    """Leave one core to the web server (at least one thread for training)."""
    return max(1, (os.cpu_count() or 2) - 1)


def run_job(folder: Path, job_id: str) -> int:
    """The child process: train, score and save the job's run, reporting to the board; exit code 0 when the
    outcome is recorded (saved, discarded, failed or interrupted)."""
    board = JobBoard(folder)
    job = board.job(job_id)
    if job is None or job.state != "running":
        print(f"job {job_id} is not running in {board.folder}", file=sys.stderr)
        return 2
    if hasattr(os, "nice"):
        os.nice(JOB_NICENESS)
    import torch

    from .data import load_mnist
    from .errors import UserError as CoreUserError
    from .runs import train_run
    from .training import TrainConfig

    torch.set_num_threads(training_threads())

    def interrupt(signal_number, frame):  # the worker is stopping: end here, so a save in progress cleans up
        raise JobInterrupted()

    signal.signal(signal.SIGTERM, interrupt)
    request = job.request
    stop = threading.Event()
    recorder = JobRecorder(board, job_id, stop, parent=os.getppid())  # scored images: set once the data is read
    try:
        config = TrainConfig.from_dict(request.config)
        data = load_mnist()
        data = data.subset(train=min(request.train_images + config.holdout, len(data.train_labels)))
        recorder.scored_images = 2 * len(data.test_labels)
        run, result = train_run(
            request.name,
            config,
            data=data,
            callbacks=(recorder,),
            stop=stop,
            overwrite=request.overwrite,
            keep_if_stopped=request.keep_if_stopped,
            scores_per_epoch=scores_per_epoch(config.epochs),
        )
    except JobInterrupted:
        board.finish(job_id, "interrupted", error=INTERRUPTED)
        return 0
    except CoreUserError as error:
        board.finish(job_id, "failed", error=str(error))
        return 0
    except Exception as error:  # a bug: the traceback goes to the job's log, the page shows the message
        import traceback

        traceback.print_exc()
        board.finish(job_id, "failed", error=f"{type(error).__name__}: {error}")
        return 0
    recorder.flush()
    board.finish(
        job_id, "saved" if run is not None else "discarded", run=run.name if run else None, stopped=result.stopped
    )
    return 0


class JobRecorder:  # a TrainingCallback by its methods: this module's top level imports no torch
    """A training callback that writes progress to the board about once a second, reads Stop, and notices when
    the worker is gone. Its ETA counts training time only, plus the scorings still to come at their measured
    length, so it does not jump when a scoring pauses the steps."""

    def __init__(
        self,
        board: JobBoard,
        job_id: str,
        stop: threading.Event,
        scored_images: int = 20_000,
        parent: int | None = None,
        clock=time.monotonic,
    ):
        """`scored_images`: how many images one scoring reads (the test set and as many training images), for
        the ETA until the first scoring has been timed; `parent`: the worker's pid (gone: stop, unsaved)."""
        self.board, self.job_id, self.stop, self.parent, self.clock = board, job_id, stop, parent, clock
        self.scored_images, self.batch_size = scored_images, 1
        self.last_report: float | None = None
        self.pending: list[dict] = []
        self.progress = JobProgress()
        self.step_clock: float | None = None
        self.train_seconds, self.timed_steps = 0.0, 0
        self.score_seconds, self.scores = 0.0, 0
        self.steps_per_score: float | None = None

    def on_batch(self, progress) -> None:
        now = self.clock()
        if self.step_clock is not None:
            self.train_seconds += now - self.step_clock
            self.timed_steps += 1
        self.step_clock = now
        if self.steps_per_score is None:
            self.steps_per_score = progress.steps_per_epoch / scores_per_epoch(progress.config.epochs)
            self.batch_size = progress.config.batch_size
        self.progress = JobProgress(
            "training",
            progress.epoch,
            progress.total_epochs,
            progress.step,
            progress.total_steps,
            progress.loss,
            progress.accuracy,
            progress.images_per_second,
            self.eta(progress.step, progress.total_steps),
        )
        if self.due(now) or progress.step >= progress.total_steps:
            self.pending.append(
                {
                    "epoch": progress.step / progress.steps_per_epoch,
                    "series": RUNNING_SERIES,
                    "loss": progress.loss,
                    "accuracy": progress.accuracy,
                }
            )
            self.flush(now)

    def eta(self, step: int, total_steps: int) -> float | None:
        if self.timed_steps < 3 or self.train_seconds < 2.0:
            return None  # too early: the first steps are not typical
        step_seconds = self.train_seconds / self.timed_steps
        if self.scores:
            score_seconds = self.score_seconds / self.scores
        else:  # not timed yet: a forward pass of an image costs about a third of a training step's share
            score_seconds = self.scored_images * step_seconds / self.batch_size / 3
        remaining = total_steps - step
        # the scorings still to come: one at each mark not yet passed (this step's included), the last at the end
        scorings = math.floor(remaining / self.steps_per_score + 1e-9) + 1 if self.steps_per_score else 1
        return remaining * step_seconds + scorings * score_seconds + 2 * score_seconds  # + finishing

    def on_epoch(self, progress) -> None: ...

    def on_score(self, progress, point) -> None:
        now = self.clock()
        if self.step_clock is not None:  # the time since the last step was spent scoring
            self.score_seconds += now - self.step_clock
            self.scores += 1
            self.step_clock = now
        self.pending += [
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
        self.flush(now)

    def on_finishing(self, fraction: float, label: str) -> None:
        self.progress = JobProgress(
            **{
                **asdict(self.progress),
                "phase": "finishing",
                "finishing_fraction": fraction,
                "finishing_label": label,
                "eta_seconds": None,
            }
        )
        self.flush()

    def due(self, now: float) -> bool:
        return self.last_report is None or now - self.last_report >= PROGRESS_SECONDS

    def flush(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.last_report = now
        progress = JobProgress(**{**asdict(self.progress), "updated": time.time()})
        if self.board.report(self.job_id, progress, self.pending):
            self.stop.set()
        self.pending = []
        if self.parent is not None and os.getppid() != self.parent and self.progress.phase == "training":
            raise JobInterrupted()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocr_core.jobs", description="the training queue's processes")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="the worker: serve the queue of a jobs folder")
    serve_parser.add_argument("folder", type=Path)
    serve_parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    serve_parser.add_argument("--parent", type=int, help="end when this process (the web server) has gone")
    run_parser = commands.add_parser("run", help="train one job (started by the worker)")
    run_parser.add_argument("folder", type=Path)
    run_parser.add_argument("job_id")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.folder, max(1, args.workers), args.parent)
    return run_job(args.folder, args.job_id)


if __name__ == "__main__":
    sys.exit(main())
