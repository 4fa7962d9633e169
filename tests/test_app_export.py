"""Evaluate -> Manage runs offers a run as ONNX, or says how to enable the export where it is not installed."""

from __future__ import annotations

import ocr_core.export
from app_fixtures import texts
from test_app_polish import manage_page


def download_labels(app) -> list[str]:
    return [element.proto.label for element in app.get("download_button")]


def test_manage_runs_offers_the_onnx_download_beside_the_checkpoint(app_env, monkeypatch):
    app = manage_page(app_env, monkeypatch).run()
    assert not app.exception
    assert download_labels(app) == ["Download checkpoint", "Download as ONNX"]
    assert "white ink on black" in texts(app.caption)


def test_without_the_export_packages_the_page_says_how_to_enable_it(app_env, monkeypatch):
    monkeypatch.setattr(ocr_core.export, "export_available", lambda: False)
    app = manage_page(app_env, monkeypatch).run()
    assert not app.exception
    assert download_labels(app) == ["Download checkpoint"]
    assert "pip install -r requirements-export.txt" in texts(app.caption)
