"""`python -m bench.train_queue [--repeats N] [--screenshots]`: what a training costs the other visitors.

On one `streamlit run app.py` serving copies of the shipped runs, in chromium: a second visitor's Draw answer
time (from the pen lifted to the Prediction shown) with nothing training, then while a first visitor trains the
default `fast` recipe (3 epochs) on all training digits in the worker's job process; the server's peak memory;
the worker's memory before, during and after the job, and the job process's peak. `--screenshots` also writes the Train
page with a running and a queued job at 1400 and 390 pixels wide (docs/screenshots/train-queue*.png)."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path

from bench.app_timing import Skipped, chromium_page, require_app, streamlit_server, wait_until_idle
from bench.measure import PROJECT_DIR, progress
from bench.memory import LIMIT_MB, SHIPPED_RUNS, status_mb

sys.path.insert(0, str(PROJECT_DIR / "tests"))
from browser_session import SEVEN, draw, reset_canvas  # the tests' drawing helpers

SCREENSHOTS = PROJECT_DIR / "docs" / "screenshots"
MINUTE = 60_000
EPOCHS = 3  # of the default `fast` recipe on all training digits: minutes, so it trains through every answer


def answer_seconds(page) -> float:
    """Draw a 7 and time until the Prediction shows; the canvas is cleared first."""
    reset_canvas(page)
    draw(page, SEVEN)
    started = time.perf_counter()
    page.locator('[data-testid="stMetric"]').filter(has_text="Prediction").wait_for(timeout=5 * MINUTE)
    seconds = time.perf_counter() - started
    wait_until_idle(page)
    return seconds


class PeakWatcher(threading.Thread):
    """Samples the running job process's peak memory (VmHWM) until stopped."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.peak_mb, self.done = folder, 0.0, threading.Event()

    def run(self) -> None:
        from ocr_core.jobs import JobBoard

        board = JobBoard(self.folder)
        while not self.done.is_set():
            for job in board.jobs():
                if job.pid:
                    with suppress(Skipped, StopIteration):  # it may end between the query and the read
                        self.peak_mb = max(self.peak_mb, status_mb(job.pid, "VmHWM"))
            time.sleep(0.5)


def measure(repeats: int, screenshots: bool, trainer_away: bool = False) -> dict:
    from ocr_core.jobs import JobBoard, worker_pid

    require_app()
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch, chromium_page() as trainer:
        runs = Path(scratch) / "checkpoints"
        shutil.copytree(SHIPPED_RUNS, runs)
        jobs = runs / ".jobs"
        with streamlit_server({"OCR_CHECKPOINT_DIR": str(runs)}, startup_timeout=600) as server:
            visitor = trainer.context.browser.new_page(viewport={"width": 1400, "height": 1000})
            visitor.goto(server.url)
            visitor.get_by_text("Draw a digit on the black square").wait_for(timeout=5 * MINUTE)
            answer_seconds(visitor)  # the first answer loads the models: not counted
            progress("train_queue: Draw answers, nothing training")
            results["idle"] = [answer_seconds(visitor) for _ in range(repeats)]
            trainer.goto(f"{server.url}/train")
            trainer.get_by_role("button", name="Start training").wait_for(timeout=5 * MINUTE)
            wait_until_idle(trainer)
            trainer.get_by_role("spinbutton", name="Epochs").fill(str(EPOCHS))  # still training after the answers
            trainer.get_by_role("spinbutton", name="Epochs").press("Enter")
            wait_until_idle(trainer)
            trainer.get_by_role("button", name="Start training").click()
            trainer.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").wait_for(
                timeout=5 * MINUTE
            )  # the job process trains
            worker = worker_pid(jobs)
            results["worker_idle_mb"] = status_mb(worker, "VmRSS")  # it runs no training itself
            watcher = PeakWatcher(jobs)
            watcher.start()
            if trainer_away:  # the trainer's browser redraws its charts every second on these same cores
                trainer.goto("about:blank")
            progress("train_queue: Draw answers while the run trains")
            results["training"] = [answer_seconds(visitor) for _ in range(repeats)]
            results["trainer_away"] = trainer_away
            results["still_training"] = any(job.progress.phase == "training" for job in JobBoard(jobs).jobs())
            board = JobBoard(jobs)
            for job in board.jobs():
                board.request_stop(job.id)  # as the trainer's Stop does: saved as stopped early
            deadline = time.monotonic() + 30 * MINUTE / 1000
            while board.jobs():
                if time.monotonic() > deadline:
                    raise RuntimeError("the training did not end")
                time.sleep(0.5)
            watcher.done.set()
            watcher.join()
            time.sleep(2)
            results["job_peak_mb"] = watcher.peak_mb
            results["worker_after_mb"] = status_mb(worker, "VmRSS")
            results["worker_peak_mb"] = status_mb(worker, "VmHWM")
            results["server_peak_mb"] = status_mb(server.process.pid, "VmHWM")
            results["server_after_mb"] = status_mb(server.process.pid, "VmRSS")
            print(report(results), flush=True)
            if screenshots:
                shoot_queue(trainer, visitor, server.url)
    return results


def shoot_queue(trainer, page, url: str) -> None:
    """The Train page of a visitor whose run waits behind a running one, wide and phone-sized."""
    trainer.goto(f"{url}/train")  # a new session: a new visitor, whose page shows the form
    trainer.get_by_role("spinbutton", name="Epochs").wait_for(timeout=5 * MINUTE)
    trainer.get_by_role("spinbutton", name="Epochs").fill("3")
    trainer.get_by_role("spinbutton", name="Epochs").press("Enter")
    wait_until_idle(trainer)
    trainer.get_by_role("button", name="Start training").click()
    stop = trainer.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop")
    stop.wait_for(timeout=5 * MINUTE)
    page.goto(f"{url}/train")
    page.get_by_role("button", name="Queue training").wait_for(timeout=5 * MINUTE)
    page.get_by_role("textbox", name="Your name (optional)").fill("Bo")
    page.get_by_role("textbox", name="Your name (optional)").press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Queue training").click()
    page.get_by_text("is queued: number 1 in the queue").wait_for(timeout=MINUTE)
    page.get_by_text("test images (scored)").first.wait_for(timeout=5 * MINUTE)
    for width, height, name in ((1400, 1500, "train-queue"), (390, 2600, "train-queue-phone")):
        page.set_viewport_size({"width": width, "height": height})
        page.get_by_role("heading", name="Train a model").scroll_into_view_if_needed()  # the queue, at the top
        page.wait_for_timeout(2500)  # charts fade in; the panel redraws every second
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        progress(f"train_queue: wrote {name}.png")
    page.get_by_role("button", name="Cancel").click()
    stop.click()


def report(results: dict) -> str:
    idle, training = statistics.median(results["idle"]), statistics.median(results["training"])
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| Draw answer, nothing training (median of {len(results['idle'])}) | {idle:.2f} s "
        f"({', '.join(f'{value:.2f}' for value in results['idle'])}) |",
        f"| Draw answer while a run trains (median of {len(results['training'])}) | {training:.2f} s "
        f"({', '.join(f'{value:.2f}' for value in results['training'])}): {training / idle - 1:+.0%} |",
        f"| the run still training after the last answer | {'yes' if results['still_training'] else 'no'} |",
        f"| the trainer's page | {'closed while the answers were timed' if results['trainer_away'] else 'open'} |",
        f"| server peak RSS (VmHWM) / after the run | {results['server_peak_mb']:,.0f} MB / "
        f"{results['server_after_mb']:,.0f} MB (ceiling {LIMIT_MB:,} MB) |",
        f"| worker RSS while the job ran / after it / its peak | {results['worker_idle_mb']:,.0f} MB / "
        f"{results['worker_after_mb']:,.0f} MB / {results['worker_peak_mb']:,.0f} MB |",
        f"| job process peak RSS (gone when the job ended) | {results['job_peak_mb']:,.0f} MB |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_queue", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="drawings timed in each condition (default: 5)")
    parser.add_argument("--screenshots", action="store_true", help="also write the queue screenshots")
    parser.add_argument(
        "--trainer-away",
        action="store_true",
        help="close the trainer's page while the answers are timed (its browser shares these cores)",
    )
    args = parser.parse_args(argv)
    try:
        measure(args.repeats, args.screenshots, args.trainer_away)  # prints the figures as soon as they are in
    except Skipped as reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
