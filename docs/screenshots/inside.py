"""Screenshots of the Draw page's "Inside the network" section for one drawn '7': `seed` and `best` side by
side, and the feature maps.

    OCR_DATA_DIR=/path/to/data python docs/screenshots/inside.py

Uses the shipped runs; needs Debian's chromium at /usr/bin/chromium and the Python playwright package."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent.parent / "tests")]

from browser_session import PROJECT_DIR, SEVEN, browser_page, draw, prediction, streamlit_server, wait_until_idle  # noqa: E402


def shoot_section(page, tab: str, name: str) -> None:
    page.get_by_role("tab", name=tab).click()
    wait_until_idle(page)
    page.wait_for_timeout(1500)  # images and charts fade in
    page.mouse.move(0, 0)  # no hover tooltips in the picture
    section = page.locator('[data-testid="stExpander"]').filter(has_text="Inside the network")
    section.screenshot(path=str(HERE / f"{name}.png"))
    print(f"wrote {HERE / name}.png")


def main() -> None:
    environment = {"OCR_CHECKPOINT_DIR": str(PROJECT_DIR / "checkpoints")}
    with streamlit_server(environment, startup_timeout=600) as server, browser_page() as page:
        page.set_default_timeout(300_000)  # a busy machine can take minutes to load the models
        page.set_viewport_size({"width": 1400, "height": 1800})
        page.goto(server.url)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=900_000)
        draw(page, SEVEN)
        prediction(page)
        page.get_by_text("Inside the network").click()
        wait_until_idle(page)
        shoot_section(page, "Two runs side by side", "inside-seed-vs-best")
        shoot_section(page, "Feature maps", "inside-feature-maps")
        shoot_section(page, "Map of the test set", "inside-map")


if __name__ == "__main__":
    main()
