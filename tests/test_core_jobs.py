"""The training queue with real processes: a worker (huey's consumer) and a job process per training, on tiny
synthetic data. A server restart and killed processes leave queued jobs queued, a running one "interrupted",
and no run file, whole or partial, for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocr_core.jobs import (
    INTERRUPTED,
    Job,
    JobBoard,
    JobRequest,
    ensure_worker,
    stop_worker,
    worker_pid,
    worker_running,
)
from ocr_core.training import TrainConfig

LONG = TrainConfig(epochs=100, batch_size=16, holdout=51).as_dict()  # trains until stopped or killed
SHORT = TrainConfig(epochs=0.25, batch_size=64, holdout=51).as_dict()
PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture
def board(tmp_path, tiny_data_dir, store):
    jobs = JobBoard(tmp_path / "jobs")
    yield jobs
    stop_worker(jobs.folder)


def request(name: str, config: dict = SHORT, owner: str = "v") -> JobRequest:
    return JobRequest(name, config, owner, owner.upper(), 461)


def wait_for(board: JobBoard, job: Job, condition, what: str, seconds: float = 120) -> Job:
    deadline = time.monotonic() + seconds
    while not condition(current := board.job(job.id)):
        assert time.monotonic() < deadline, f"{what}: {current}"
        time.sleep(0.2)
    return current


def training(job: Job) -> bool:
    assert job.state in ("queued", "running"), f"the job ended: {job.state} {job.error}"
    return job.progress.phase == "training" and job.progress.step > 0


def ended(job: Job) -> bool:
    return not job.active


def no_partial_files(store) -> bool:
    return not [path for path in store.root.glob("*") if path.is_file() and path.name.startswith(".")]


def test_a_queue_of_two_trains_in_order_with_progress_and_a_cancelled_job_never_runs(board, store):
    first = board.submit(request("first"))
    cancelled = board.submit(request("cancelled"))
    second = board.submit(request("second"))
    assert {job_id: position for job_id, (position, _) in board.estimates().items()} == {
        first.id: 1,
        cancelled.id: 2,
        second.id: 3,
    }
    with pytest.raises(Exception, match="queued or training already"):
        board.submit(request("first"))
    assert board.cancel(cancelled.id, owner="someone else") is False, "only its owner cancels it"
    assert board.cancel(cancelled.id, owner="v") is True
    assert ensure_worker(board.folder) is True
    deadline = time.monotonic() + 90  # a loaded machine can take long to start a process
    while not worker_running(board.folder):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ensure_worker(board.folder) is False, "one worker per jobs folder"
    done = wait_for(board, second, ended, "the queue did not drain", seconds=240)
    first_done = board.job(first.id)
    assert (first_done.state, done.state) == ("saved", "saved"), (first_done.error, done.error)
    assert first_done.finished <= done.started, "one training at a time, in queue order"
    assert board.job(cancelled.id).state == "cancelled" and board.job(cancelled.id).started is None
    assert store.exists("first") and store.exists("second") and not store.exists("cancelled")
    assert first_done.progress.finishing_fraction == 1.0 and first_done.progress.finishing_label == "saving the run"
    series = {point["series"] for point in board.points(first.id)}
    assert series == {"training batches (running average)", "training images (scored)", "test images (scored)"}
    assert board.measured_rates()["fast"] > 0, "finished jobs feed the start estimates"


def test_a_server_restart_leaves_the_queued_job_queued_and_the_running_one_interrupted(board, store):
    running = board.submit(request("long", LONG))
    queued = board.submit(request("after"))
    starts_worker = f"from ocr_core.jobs import ensure_worker; ensure_worker({str(board.folder)!r}); input()"
    server = subprocess.Popen(  # a stand-in for `streamlit run app.py`: it starts the worker, then stays up
        [sys.executable, "-c", starts_worker],
        stdin=subprocess.PIPE,
        cwd=PROJECT_DIR,
    )
    try:
        wait_for(board, running, training, "the job did not start training")
    finally:
        server.kill()  # the server goes away at once, as on a crash or a container restart
        server.wait()
    interrupted = wait_for(board, running, ended, "the worker did not notice its server had gone", seconds=60)
    assert interrupted.state == "interrupted" and interrupted.error == INTERRUPTED
    assert board.job(queued.id).state == "queued", "the queued job waits for the next server"
    deadline = time.monotonic() + 30
    while worker_running(board.folder):
        assert time.monotonic() < deadline, "the worker outlived its server"
        time.sleep(0.1)
    assert not store.exists("long") and no_partial_files(store)
    ensure_worker(board.folder)  # the restarted server
    after = wait_for(board, queued, ended, "the queued job did not run after the restart", seconds=180)
    assert after.state == "saved" and store.exists("after")


def test_killed_worker_and_killed_training_are_interrupted_and_the_queue_goes_on(board, store):
    first = board.submit(request("first", LONG))
    second = board.submit(request("second", LONG))
    ensure_worker(board.folder)
    wait_for(board, first, training, "the first job did not start training")
    os.kill(worker_pid(board.folder), signal.SIGKILL)  # the worker dies without a word
    interrupted = wait_for(board, first, ended, "the orphaned training did not stop", seconds=60)
    assert interrupted.state == "interrupted"
    assert board.job(second.id).state == "queued"
    ensure_worker(board.folder)  # the next page view starts a new worker, which takes the queue up
    running = wait_for(board, second, training, "the second job did not start after the worker was killed")
    os.kill(running.pid, signal.SIGKILL)  # now the training process itself dies
    killed = wait_for(board, second, ended, "the worker did not notice its training had died", seconds=60)
    assert killed.state == "interrupted" and "SIGKILL" in killed.error
    assert not store.exists("first") and not store.exists("second") and no_partial_files(store)
    assert worker_running(board.folder), "the worker survives a job that dies"


def test_the_cli_can_submit_to_the_queue_or_refuse_with_exit_code_2(
    tiny_data_dir, store, tmp_path, monkeypatch, capsys
):
    from ocr_core.cli import main

    monkeypatch.setenv("OCR_JOBS_DIR", str(tmp_path / "cli-jobs"))
    submit = [
        "train",
        "--name",
        "queued-here",
        "--submit",
        "--train-limit",
        "100",
        "--epochs",
        "0.5",
        "--holdout",
        "50",
    ]
    assert main(submit) == 0
    printed = capsys.readouterr().out
    assert "queued queued-here" in printed and "number 1 in the queue" in printed and "no worker is running" in printed
    (job,) = JobBoard(tmp_path / "cli-jobs").jobs()
    assert (job.state, job.request.train_images, job.request.config["epochs"]) == ("queued", 100, 0.5)
    assert main([*submit[:3], "--submit", "--holdout", "50"]) == 2, "the name is queued already"
    assert "queued or training already" in capsys.readouterr().err
    assert main(["train", "--name", "../bad", "--submit"]) == 2
    assert not worker_running(tmp_path / "cli-jobs"), "submitting starts no worker: the app's serves the queue"
