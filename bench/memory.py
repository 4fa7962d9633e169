"""`python -m bench.memory [--quick]`: the Streamlit server's memory (RSS) as a visitor uses the app in
chromium: the first Draw page, Evaluate comparing the three shipped runs, then a training on the Train page.

The kernel keeps each process's peak RSS (VmHWM in /proc/PID/status), so a short peak between two samples
is not missed. Streamlit Community Cloud gives an app between 0.7 and 2.7 GB (docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.app_timing import Skipped, chromium_page, require_app, streamlit_server, wait_until_idle
from bench.measure import PROJECT_DIR, progress

SHIPPED_RUNS = PROJECT_DIR / "checkpoints"
LIMIT_MB = 1500  # this project's ceiling: well inside the smallest Community Cloud allowance
QUICK_TRAINING_IMAGES = "first 5,000 (quick demo)"  # the Train page's option; the full run trains on 60,000


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float  # how long the step took in the browser
    rss_mb: float  # the server's resident memory when the step had finished
    peak_mb: float  # the server's peak resident memory since it started


def status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM), in MB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as error:
        raise Skipped(f"no /proc/{pid}/status here ({error.strerror}): memory is measured on Linux") from None
    kilobytes = next(line.split()[1] for line in lines if line.startswith(f"{field}:"))
    return int(kilobytes) / 1024


def server_memory(quick: bool = False, timeout: float = 1800) -> list[Phase]:
    """The server's memory after each step a visitor takes; the app serves copies of the shipped runs."""
    require_app()
    phases = []
    with tempfile.TemporaryDirectory() as scratch, chromium_page() as page:
        runs = Path(scratch) / "checkpoints"
        shutil.copytree(SHIPPED_RUNS, runs)  # the training below saves a run: not into checkpoints/
        with streamlit_server({"OCR_CHECKPOINT_DIR": str(runs)}, startup_timeout=timeout) as server:
            pid = server.process.pid
            page.set_default_timeout(timeout * 1000)  # a loaded machine can take minutes per step

            def record(name: str, started: float) -> None:
                progress(f"memory: {name}: done")
                phases.append(
                    Phase(name, time.perf_counter() - started, status_mb(pid, "VmRSS"), status_mb(pid, "VmHWM"))
                )

            record("server started, no visitor yet", time.perf_counter())
            started = time.perf_counter()
            page.goto(server.url)
            page.get_by_text("Draw a digit on the black square").wait_for(timeout=timeout * 1000)
            page.locator("canvas").last.wait_for(timeout=timeout * 1000)
            wait_until_idle(page, timeout)
            record("first Draw page", started)
            started = time.perf_counter()
            page.get_by_role("link", name="Evaluate").click()
            page.get_by_text("A closer look").wait_for(timeout=timeout * 1000)
            page.locator('[data-testid="stVegaLiteChart"]').nth(1).wait_for(timeout=timeout * 1000)
            wait_until_idle(page, timeout)
            record("Evaluate: best, seed and seed-aug on the clean and the seed-augmented test sets", started)
            page.get_by_role("link", name="Train").click()
            page.get_by_role("button", name="Start training").wait_for(timeout=timeout * 1000)
            wait_until_idle(page, timeout)
            if quick:
                page.get_by_label("Training images").click()
                page.get_by_role("option", name=QUICK_TRAINING_IMAGES).click()
                wait_until_idle(page, timeout)
            started = time.perf_counter()
            progress("memory: training on the Train page")
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Saved run").wait_for(timeout=timeout * 1000)
            wait_until_idle(page, timeout)
            images = "5,000 images" if quick else "all 60,000 images"
            record(f"Train: the default `fast` recipe, 1 epoch on {images}, scored and saved", started)
    return phases


def table(phases: list[Phase]) -> str:
    lines = [
        "| step (in this order, one server) | took | server RSS after it | server peak RSS so far |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {phase.name} | {phase.seconds:.1f} s | {phase.rss_mb:,.0f} MB | {phase.peak_mb:,.0f} MB |"
        for phase in phases
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="train on 5,000 images instead of 60,000")
    args = parser.parse_args(argv)
    try:
        phases = server_memory(quick=args.quick)
    except Skipped as reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 2
    print(table(phases))
    peak = max(phase.peak_mb for phase in phases)
    print(f"\npeak {peak:,.0f} MB: {'within' if peak <= LIMIT_MB else '**over**'} the {LIMIT_MB:,} MB ceiling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
