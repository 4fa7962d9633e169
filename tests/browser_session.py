"""Drive the app in Debian's chromium with Playwright: start `streamlit run app.py` on a free port, open
pages, draw on the canvas. Used by test_browser.py and docs/screenshots/make.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.app_timing import CHROMIUM, streamlit_server, wait_until_idle
from bench.app_timing import chromium_page as browser_page  # one way to launch Debian's chromium

PROJECT_DIR = Path(__file__).resolve().parent.parent
__all__ = [
    "CHROMIUM",
    "PROJECT_DIR",
    "SEVEN",
    "TOUCHING_2026",
    "TWENTY_TWENTY_SIX",
    "browser_page",
    "draw",
    "metric_value",
    "prediction",
    "reset_canvas",
    "streamlit_server",
    "wait_until_idle",
]
# A '7' in canvas pixels (280x280), in one stroke: the canvas reports each finished stroke, and a
# prediction of half a digit must not be mistaken for the answer.
SEVEN = [[(70, 60), (200, 60), (110, 235)]]


def ellipse(left: int, top: int, right: int, bottom: int, points: int = 24) -> list[tuple[int, int]]:
    """A closed stroke around an ellipse, starting at its top."""
    angles = np.linspace(0, 2 * np.pi, points + 1) - np.pi / 2
    return [
        (
            round((left + right) / 2 + (right - left) / 2 * np.cos(angle)),
            round((top + bottom) / 2 + (bottom - top) / 2 * np.sin(angle)),
        )
        for angle in angles
    ]


def shifted(stroke: list[tuple[int, int]], dx: int) -> list[tuple[int, int]]:
    return [(x + dx, y) for x, y in stroke]


# "2026" on the Read page's 840x280 canvas, one digit per 180 pixels.
TWO = [(80, 80), (120, 45), (170, 50), (190, 90), (170, 140), (80, 230), (200, 230)]
TWENTY_TWENTY_SIX = [
    shifted(TWO, -30),
    shifted(ellipse(90, 50, 190, 230), 150),
    shifted(TWO, 330),
    shifted([(170, 40), (100, 120), (90, 190)], 510),
    shifted(ellipse(85, 140, 185, 235), 510),
]

# The same with the 0 pushed into the 2's base: a touching pair.
TOUCHING_2026 = [TWENTY_TWENTY_SIX[0], shifted(TWENTY_TWENTY_SIX[1], -85), *TWENTY_TWENTY_SIX[2:]]


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


def metric_value(page, label: str, timeout: float = 60) -> str:
    """The value of the metric with this label, once it shows and the script run has finished."""
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    metric.wait_for(timeout=timeout * 1000)
    wait_until_idle(page, timeout)
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def prediction(page, timeout: float = 60) -> str:
    """The value of the Prediction metric, once it shows."""
    return metric_value(page, "Prediction", timeout)


def reset_canvas(page) -> None:
    """Clear the drawing with the canvas toolbar's reset button and wait for the empty-canvas prompt."""
    page.get_by_role("button", name="Reset canvas & history").click()
    wait_until_idle(page)
    page.get_by_text("Draw a digit on the black square").wait_for(timeout=30_000)
