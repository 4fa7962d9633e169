"""End to end in a real browser: `streamlit run app.py`, draw a '7' with the mouse, read the Prediction,
clear the canvas, then open Evaluate."""
from __future__ import annotations

import os

import pytest

from app_fixtures import make_app_environment
from browser_session import (CHROMIUM, PROJECT_DIR, SEVEN, browser_page, draw, prediction, streamlit_server,
                             wait_until_idle)

SHIPPED_BEST = PROJECT_DIR / "checkpoints" / "best.safetensors"

if not CHROMIUM.exists() and os.environ.get("OCR_REQUIRE_BROWSER") != "1":
    pytest.skip(f"{CHROMIUM} is not installed (CI sets OCR_REQUIRE_BROWSER=1 to fail instead)",
                allow_module_level=True)


def test_drawing_a_digit_in_the_browser_shows_the_prediction(tmp_path):
    assert CHROMIUM.exists(), f"OCR_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium"
    environment = make_app_environment(tmp_path).variables()
    if SHIPPED_BEST.exists():  # the real model reads a drawn 7; the tiny test runs only promise some digit
        environment["OCR_CHECKPOINT_DIR"] = str(SHIPPED_BEST.parent)
    with streamlit_server(environment) as url, browser_page() as page:
        page.goto(url)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
        draw(page, SEVEN)
        shown = prediction(page)
        assert shown in list("0123456789")
        if SHIPPED_BEST.exists():
            assert shown == "7"
        page.get_by_role("button", name="Reset canvas & history").click()
        wait_until_idle(page)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=30_000)
        assert page.locator('[data-testid="stMetric"]').count() == 0
        page.get_by_role("link", name="Evaluate").click()
        page.get_by_text("A closer look").wait_for(timeout=60_000)
        wait_until_idle(page)
        charts = page.locator('[data-testid="stVegaLiteChart"]')
        charts.nth(1).wait_for(timeout=60_000)  # accuracy bars, confusion matrix: drawn after the text
        assert charts.count() >= 2
