"""`python -m bench.train_queue [--repeats N] [--screenshots]`: what a training costs the other visitors.

On one `streamlit run app.py` serving copies of the shipped runs, in chromium: a second visitor's Draw answer
time (from the pen lifted to the Prediction shown) with nothing training, then while a first visitor trains the
default `fast` recipe on all training digits in the worker's job process; the server's peak memory; the worker's
memory before, during and after the job, and the job process's peak. `--screenshots` also writes the Train
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


def measure(repeats: int, screenshots: bool) -> dict:
    from ocr_core.jobs import worker_pid

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
            trainer.get_by_role("button", name="Start training").click()
            trainer.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").wait_for(
                timeout=5 * MINUTE
            )  # the job process trains
            worker = worker_pid(jobs)
            results["worker_idle_mb"] = status_mb(worker, "VmRSS")  # it runs no training itself
            watcher = PeakWatcher(jobs)
            watcher.start()
            progress("train_queue: Draw answers while the run trains")
            results["training"] = [answer_seconds(visitor) for _ in range(repeats)]
            results["still_training"] = (
                trainer.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").is_visible()
            )
            if screenshots:
                shoot_queue(visitor, server.url)
            trainer.get_by_text("Saved run").wait_for(timeout=30 * MINUTE)
            watcher.done.set()
            watcher.join()
            time.sleep(2)
            results["job_peak_mb"] = watcher.peak_mb
            results["worker_after_mb"] = status_mb(worker, "VmRSS")
            results["worker_peak_mb"] = status_mb(worker, "VmHWM")
            results["server_peak_mb"] = status_mb(server.process.pid, "VmHWM")
            results["server_after_mb"] = status_mb(server.process.pid, "VmRSS")
    return results


def shoot_queue(page, url: str) -> None:
    """The Train page of a visitor whose run waits behind the running one, wide and phone-sized."""
    page.goto(f"{url}/train")
    page.get_by_role("textbox", name="Run name").wait_for(timeout=5 * MINUTE)
    page.get_by_role("textbox", name="Your name (optional)").fill("Bo")
    page.get_by_role("textbox", name="Your name (optional)").press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Queue training").click()
    page.get_by_text("is queued: number 1 in the queue").wait_for(timeout=MINUTE)
    for width, height, name in ((1400, 1400, "train-queue"), (390, 2400, "train-queue-phone")):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(2500)  # charts fade in; the panel redraws every second
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        progress(f"train_queue: wrote {name}.png")
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.get_by_role("button", name="Cancel").click()
    wait_until_idle(page)
    page.goto(url)
    page.get_by_text("Draw a digit on the black square").wait_for(timeout=5 * MINUTE)


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
    args = parser.parse_args(argv)
    try:
        results = measure(args.repeats, args.screenshots)
    except Skipped as reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 2
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
