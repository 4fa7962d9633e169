"""In a real browser: the Robustness page on the shipped runs draws its heatmap with one visible row per run
(a layered Altair chart once lost its height there and drew every row 0 px tall, which AppTest cannot see)."""

from __future__ import annotations

import os

import pytest
from app_fixtures import PROJECT_DIR
from browser_session import CHROMIUM, browser_page, streamlit_server, wait_until_idle

SHIPPED = PROJECT_DIR / "checkpoints"

if not CHROMIUM.exists() and os.environ.get("OCR_REQUIRE_BROWSER") != "1":
    pytest.skip(f"{CHROMIUM} is not installed (CI sets OCR_REQUIRE_BROWSER=1 to fail instead)", allow_module_level=True)


def test_the_heatmap_draws_a_row_of_cells_per_run(tmp_path):
    assert CHROMIUM.exists(), f"OCR_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium"
    # The shipped runs with their shipped reports: nothing to compute, no MNIST needed.
    environment = {"OCR_CHECKPOINT_DIR": str(SHIPPED), "OCR_CACHE_DIR": str(tmp_path / "cache")}
    with streamlit_server(environment) as server, browser_page() as page:
        page.goto(f"{server.url}/robustness")
        page.get_by_text("Sort corruptions").wait_for(timeout=120_000)
        wait_until_idle(page)
        heatmap = page.locator('[data-testid="stVegaLiteChart"]').first
        cells = heatmap.locator("svg g.mark-rect.role-mark path")
        cells.first.wait_for(timeout=60_000)
        boxes = [cells.nth(index).bounding_box() for index in range(cells.count())]
        assert len(boxes) == 3 * 15, "seed, seed-aug and best x 15 corruptions"
        assert min(box["height"] for box in boxes) >= 20
        assert len({round(box["y"]) for box in boxes}) == 3, "three rows, one above the other"
