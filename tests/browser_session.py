"""Drive the app in Debian's chromium with Playwright: start `streamlit run app.py` on a free port, open
pages, draw on the canvas. Used by test_browser.py and docs/screenshots/make.py."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

from bench.app_timing import CHROMIUM, unused_port
from bench.app_timing import chromium_page as browser_page  # one way to launch Debian's chromium

PROJECT_DIR = Path(__file__).resolve().parent.parent
__all__ = ["CHROMIUM", "PROJECT_DIR", "SEVEN", "browser_page", "draw", "prediction", "streamlit_server",
           "wait_until_idle"]
# A '7' in canvas pixels (280x280), in one stroke: the canvas reports each finished stroke, and a
# prediction of half a digit must not be mistaken for the answer.
SEVEN = [[(70, 60), (200, 60), (110, 235)]]


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout:.0f} s:\n{log.read_text()}")


@contextmanager
def streamlit_server(environment: dict[str, str], startup_timeout: float = 90) -> Iterator[str]:
    """`streamlit run app.py` with the given OCR_* variables; yields the app's URL."""
    port = unused_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "streamlit.log"
        with open(log, "w") as output:
            process = subprocess.Popen(command, cwd=PROJECT_DIR, env={**os.environ, **environment},
                                       stdout=output, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, process, log, startup_timeout)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until_idle(page, timeout: float = 120) -> None:
    """Until the script run the last interaction started has finished."""
    page.wait_for_timeout(300)  # let the run that the interaction triggers begin
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout * 1000)


def draw(page, strokes: list[list[tuple[int, int]]]) -> None:
    """Mouse strokes on the drawing canvas, in canvas pixels (the component's top canvas takes the events)."""
    canvas = page.locator("canvas").last
    canvas.wait_for()
    box = canvas.bounding_box()
    for stroke in strokes:
        (x, y), *rest = stroke
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=12)
        page.mouse.up()


def prediction(page, timeout: float = 60) -> str:
    """The value of the Prediction metric, once it shows."""
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Prediction")
    metric.wait_for(timeout=timeout * 1000)
    wait_until_idle(page, timeout)
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def reset_canvas(page) -> None:
    """Clear the drawing with the canvas toolbar's reset button and wait for the empty-canvas prompt."""
    page.get_by_role("button", name="Reset canvas & history").click()
    wait_until_idle(page)
    page.get_by_text("Draw a digit on the black square").wait_for(timeout=30_000)
