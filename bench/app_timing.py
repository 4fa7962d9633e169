"""How the Streamlit app feels: cold start of `streamlit run app.py`, and a Draw page rerun with a drawing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from unittest import mock

from bench.measure import PROJECT_DIR, Latency, canvas_drawing, latency

APP = PROJECT_DIR / "app.py"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright's own browser download is not used
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DRAW_PAGE_TITLE = "Draw a digit"


class Skipped(Exception):
    """A figure that cannot be taken here; the message says why."""


@dataclass(frozen=True)
class ColdStart:
    healthy_seconds: float  # the server answers /_stcore/health
    served_seconds: float  # the Draw page's HTML is fetched
    rendered_seconds: float | None  # a browser shows the Draw page with its canvas; None without a browser
    browser_note: str | None  # why there is no rendered figure


@dataclass(frozen=True)
class Rerun:
    first_run_seconds: float  # the session's first run: imports done, models loaded into the cache
    rerun: Latency
    predicted: bool  # the page showed a prediction (needs at least one saved run)


def require_app() -> None:
    if not APP.is_file():
        raise Skipped(f"{APP.name} does not exist yet")


def unused_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


def answers(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read()
    except OSError:
        return None


@contextmanager
def chromium_page() -> Iterator:
    """A headless chromium page, or Skipped when chromium or playwright is missing."""
    if not CHROMIUM.exists():
        raise Skipped(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise Skipped("playwright is not installed") from None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def server_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]


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


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen


@contextmanager
def streamlit_server(environment: dict[str, str], startup_timeout: float = 90) -> Iterator[Server]:
    """`streamlit run app.py` with the given variables (OCR_* say) added to ours; yields its URL and process."""
    port = unused_port()
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "streamlit.log"
        with open(log, "w") as output:
            process = subprocess.Popen(
                server_command(port),
                cwd=PROJECT_DIR,
                env={**os.environ, **environment},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, process, log, startup_timeout)
            yield Server(url, process)
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


def cold_start(use_browser: bool = True, timeout: float = 120) -> ColdStart:
    """Seconds from launching `streamlit run app.py` until it is healthy, serves the page and (with a
    browser, started beforehand so its own start-up is not counted) renders the Draw page."""
    require_app()
    with ExitStack() as stack:
        page, browser_note = None, "not asked for"
        if use_browser:
            try:
                page = stack.enter_context(chromium_page())
                browser_note = None
            except Skipped as reason:
                browser_note = str(reason)
        log = stack.enter_context(tempfile.TemporaryFile())
        port = unused_port()
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        server = subprocess.Popen(server_command(port), cwd=PROJECT_DIR, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(stop, server)
        while answers(f"{url}/_stcore/health") != b"ok":
            if server.poll() is not None or time.perf_counter() - started > timeout:
                log.seek(0)
                raise RuntimeError(f"streamlit did not become healthy:\n{log.read().decode()[-2000:]}")
            time.sleep(0.05)
        healthy = time.perf_counter() - started
        if answers(url) is None:
            raise RuntimeError(f"streamlit is healthy but does not serve {url}")
        served = time.perf_counter() - started
        rendered = None
        if page is not None:
            page.goto(url)
            page.get_by_role("heading", name=DRAW_PAGE_TITLE).wait_for(timeout=timeout * 1000)
            page.locator("canvas").first.wait_for(timeout=timeout * 1000)  # the drawing canvas component
            rendered = time.perf_counter() - started
        return ColdStart(healthy, served, rendered, browser_note)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def draw_page_reruns(repeats: int) -> Rerun:
    """The Draw page in Streamlit's AppTest with a drawing on the canvas: the first run, then reruns,
    each of which prepares the digit and asks every saved run for its probabilities."""
    require_app()
    from streamlit.testing.v1 import AppTest

    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_drawing()):
        app = AppTest.from_file(str(APP), default_timeout=120)
        started = time.perf_counter()
        app.run()
        first = time.perf_counter() - started
        if app.exception:
            raise RuntimeError(f"the Draw page failed: {app.exception[0].message}")
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            app.run()
            timings.append(time.perf_counter() - started)
    return Rerun(first, latency(timings), any(metric.label == "Prediction" for metric in app.metric))
