"""Two visitors in a real browser on one `streamlit run app.py`: one trains, the other queues a training and
draws meanwhile, and Draw still answers; the first one's Stop lets the queued run train and be saved."""

from __future__ import annotations

import os

import pytest

from app_fixtures import make_app_environment
from browser_session import CHROMIUM, SEVEN, browser_page, draw, prediction, streamlit_server, wait_until_idle

if not CHROMIUM.exists() and os.environ.get("OCR_REQUIRE_BROWSER") != "1":
    pytest.skip(f"{CHROMIUM} is not installed (CI sets OCR_REQUIRE_BROWSER=1 to fail instead)", allow_module_level=True)

MINUTES = 60_000  # Playwright counts milliseconds; a loaded 2-core machine needs minutes for a process start


def open_train_page(page, url: str) -> None:
    page.goto(f"{url}/train")
    page.get_by_role("heading", name="Train a model").wait_for(timeout=2 * MINUTES)
    wait_until_idle(page)


def choose(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_until_idle(page)


def set_field(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    wait_until_idle(page)


def test_one_visitor_trains_another_queues_and_draws_at_once(tmp_path):
    assert CHROMIUM.exists(), f"OCR_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium"
    environment = make_app_environment(tmp_path / "app")
    with streamlit_server(environment.variables()) as server, browser_page() as ada:
        bo = ada.context.browser.new_page(viewport=ada.viewport_size)  # a session of its own: another visitor
        open_train_page(ada, server.url)
        set_field(ada, "Run name", "ada-run")
        set_field(ada, "Your name (optional)", "Ada")
        # `best`'s deep net and augmentation: 200 epochs of the tiny data take minutes. The `fast` recipe's took
        # about 15 s, and on a loaded machine the run had ended before the other visitor was done, with no Stop.
        choose(ada, "Recipe", "best")
        set_field(ada, "Epochs", "200")  # long enough to be stopped by hand
        ada.get_by_role("button", name="Start training").click()
        ada.get_by_text("Your run ada-run").wait_for(timeout=2 * MINUTES)
        ada.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").wait_for(
            timeout=3 * MINUTES
        )  # the job process has started

        open_train_page(bo, server.url)
        bo.get_by_text("Ada's run ada-run").wait_for(timeout=MINUTES)
        set_field(bo, "Run name", "bo-run")
        set_field(bo, "Epochs", "0.25")
        bo.get_by_role("button", name="Queue training").click()
        bo.get_by_text("bo-run is queued: number 1 in the queue").wait_for(timeout=MINUTES)

        bo.get_by_role("link", name="Draw").click()
        bo.get_by_text("Draw a digit on the black square").wait_for(timeout=MINUTES)
        draw(bo, SEVEN)
        assert prediction(bo) in list("0123456789"), "Draw answers while a run trains and another waits"

        ada.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
        ada.get_by_text("Saved run ada-run (stopped early").wait_for(timeout=3 * MINUTES)
        bo.get_by_role("link", name="Train").click()
        bo.get_by_text("Saved run bo-run").wait_for(timeout=4 * MINUTES)
    assert environment.store.exists("ada-run") and environment.store.exists("bo-run")
