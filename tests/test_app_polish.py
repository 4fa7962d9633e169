"""App behaviour from the walkthrough of issue 12 (form state, messages, charts, shared-server safety), through
AppTest on tiny synthetic data and runs (see app_fixtures)."""
from __future__ import annotations

import tomllib
from unittest import mock

import numpy as np
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

from app_fixtures import PROJECT_DIR, app_env, canvas_drawing, png_bytes  # noqa: F401 (fixture)

TIMEOUT = 60


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT).run()
    if page != "app_pages/draw.py":
        app.switch_page(page).run()
    assert not app.exception, [item.message for item in app.exception]
    return app


def texts(elements) -> str:
    return " ".join(str(element.value) for element in elements)


def button(app: AppTest, label: str):
    return next(widget for widget in app.button if widget.label == label)


def test_server_config_sends_no_statistics_and_hides_developer_options():
    settings = tomllib.loads((PROJECT_DIR / ".streamlit" / "config.toml").read_text())
    options = streamlit_config.get_config_options()
    assert all(f"{section}.{name}" in options for section, values in settings.items() for name in values)
    assert settings["browser"]["gatherUsageStats"] is False
    assert settings["client"]["toolbarMode"] == "viewer"


def test_draw_says_no_ink_for_a_blank_upload(app_env):
    app = open_page("app_pages/draw.py")
    app.segmented_control(key="draw.source").set_value("Upload").run()
    app.file_uploader(key="draw.upload").set_value(("white.png", png_bytes(np.full((60, 60), 255, np.uint8)),
                                                    "image/png")).run()
    assert "no ink found" in texts(app.error)
    assert not app.info and not app.metric


def test_draw_clear_button_starts_an_empty_canvas(app_env):
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_drawing()) as draw_canvas:
        app = open_page("app_pages/draw.py")
        first_key = draw_canvas.call_args.kwargs["key"]
        button(app, "Clear").click().run()
        assert draw_canvas.call_args.kwargs["key"] != first_key
    assert "toolbar" in texts(app.caption)
