"""Drive the app in Debian's chromium with Playwright: start `streamlit run app.py` on a free port, open
pages, draw on the canvas. Used by test_browser.py and docs/screenshots/make.py."""
from __future__ import annotations

from pathlib import Path

from bench.app_timing import CHROMIUM, streamlit_server, wait_until_idle
from bench.app_timing import chromium_page as browser_page  # one way to launch Debian's chromium

PROJECT_DIR = Path(__file__).resolve().parent.parent
__all__ = ["CHROMIUM", "PROJECT_DIR", "SEVEN", "browser_page", "draw", "prediction", "streamlit_server",
           "wait_until_idle"]
# A '7' in canvas pixels (280x280), in one stroke: the canvas reports each finished stroke, and a
# prediction of half a digit must not be mistaken for the answer.
SEVEN = [[(70, 60), (200, 60), (110, 235)]]


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
