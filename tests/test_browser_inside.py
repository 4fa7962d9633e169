"""In a real browser: draw a '7', open "Inside the network", and check that the attribution overlay and the
feature maps render as images (decoded, not broken), on the shipped runs when they are there."""

from __future__ import annotations

import io
import os
import time

import numpy as np

import pytest
from PIL import Image
from app_fixtures import PROJECT_DIR, make_app_environment
from conftest import requires_mnist
from browser_session import CHROMIUM, SEVEN, browser_page, draw, prediction, streamlit_server, wait_until_idle

SHIPPED = PROJECT_DIR / "checkpoints"

if not CHROMIUM.exists() and os.environ.get("OCR_REQUIRE_BROWSER") != "1":
    pytest.skip(f"{CHROMIUM} is not installed (CI sets OCR_REQUIRE_BROWSER=1 to fail instead)", allow_module_level=True)


def polled(read, done, timeout: float, pause: float):
    """`read()` every `pause` seconds until `done` says yes to its value or `timeout` seconds have passed; the
    last value (what is drawn in a browser can take a while to finish)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(pause)


def rendered_images(page, caption_text: str, timeout: float = 60) -> list[int]:
    """Natural widths of the images whose caption contains `caption_text` (0: broken, or still not decoded
    after `timeout` seconds: an image that has just appeared may still be loading)."""
    images = page.locator('[data-testid="stImage"]').filter(has_text=caption_text).locator("img")
    images.first.wait_for(timeout=120_000)

    def loaded() -> list[bool]:
        images.last.scroll_into_view_if_needed()  # in case the browser defers images out of view
        return images.evaluate_all("images => images.map(image => image.complete)")

    polled(loaded, all, timeout, pause=0.2)
    return images.evaluate_all("images => images.map(image => image.complete ? image.naturalWidth : 0)")


def open_section(page) -> None:
    page.get_by_text("Inside the network").click()
    wait_until_idle(page)


def test_the_section_shows_attributions_and_feature_maps_for_a_drawing(tmp_path):
    assert CHROMIUM.exists(), f"OCR_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium"
    if (SHIPPED / "best.safetensors").exists():  # a fresh clone's runs; the views shown need no MNIST
        environment = {"OCR_CHECKPOINT_DIR": str(SHIPPED), "OCR_CACHE_DIR": str(tmp_path / "cache")}
    else:
        environment = make_app_environment(tmp_path).variables()
    with streamlit_server(environment) as server, browser_page() as page:
        page.goto(server.url)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
        draw(page, SEVEN)
        answer = prediction(page)
        open_section(page)
        overlays = rendered_images(page, "red for, blue against")
        assert overlays and all(width > 0 for width in overlays)
        assert page.get_by_text(f"reads {answer}").count() >= 1
        page.get_by_role("tab", name="Feature maps").click()
        wait_until_idle(page)
        maps = rendered_images(page, "maps of")
        assert len(maps) >= 2 and all(width > 0 for width in maps)
        assert all(width > 0 for width in rendered_images(page, "filters"))


@requires_mnist
def test_the_map_of_the_test_set_draws_its_axes_and_the_star(tmp_path):
    """An unknown symbol name (Vega has no "star") once broke this chart: no star, no axes, no legend. The
    chart is drawn on a canvas, so the test looks at its pixels: the star is the only black in it."""
    assert CHROMIUM.exists(), f"OCR_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium"
    environment = {"OCR_CHECKPOINT_DIR": str(SHIPPED), "OCR_CACHE_DIR": str(tmp_path / "cache")}
    with streamlit_server(environment) as server, browser_page() as page:
        page.goto(server.url)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
        draw(page, SEVEN)
        prediction(page)
        open_section(page)
        page.get_by_role("tab", name="Map of the test set").click()
        page.get_by_text("The star is this input").wait_for(timeout=180_000)
        wait_until_idle(page)
        chart = page.locator('[data-testid="stVegaLiteChart"]').last
        pixels = polled(  # 2,000 points with their digits as tooltips take a while to draw
            lambda: np.asarray(Image.open(io.BytesIO(chart.screenshot())).convert("RGB")).astype(int),
            lambda pixels: (pixels.std(-1) > 40).sum() > 2000,
            timeout=60,
            pause=0.5,
        )
        assert (pixels.std(-1) > 40).sum() > 2000, "the coloured points are drawn"
        assert (pixels.max(-1) < 50).sum() >= 30, "the black star is drawn"
