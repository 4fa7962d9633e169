"""App behaviour from the walkthrough of issue 12 (form state, messages, charts, shared-server safety), through
AppTest on tiny synthetic data and runs (see app_fixtures)."""

from __future__ import annotations

import json
import tomllib

import numpy as np
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

from app_fixtures import PROJECT_DIR, TIMEOUT, png_bytes, texts
from test_app import board, finish, open_page, start_long_job, wait_for_training, wait_until_training


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
    app.file_uploader(key="draw.upload").set_value(
        ("white.png", png_bytes(np.full((60, 60), 255, np.uint8)), "image/png")
    ).run()
    assert "no ink found" in texts(app.error)
    assert not app.info and not app.metric


def test_draw_says_where_undo_and_clear_are(app_env):
    app = open_page("app_pages/draw.py")
    assert "Above the canvas: undo and redo a stroke; the bin clears the drawing" in texts(app.caption)


def manage_page(app_env, monkeypatch, level: str | None = None) -> AppTest:
    if level is None:
        monkeypatch.delenv("OCR_RUN_MANAGEMENT", raising=False)
    else:
        monkeypatch.setenv("OCR_RUN_MANAGEMENT", level)
    return open_page("app_pages/manage.py")


def add_run(app_env, name: str) -> None:
    model, metadata = app_env.store.load("best")
    app_env.store.save(name, model, metadata, overwrite=True)


def test_rename_keeps_the_renamed_run_selected_and_clears_the_field(app_env, monkeypatch):
    add_run(app_env, "mine")
    app = manage_page(app_env, monkeypatch)
    app.selectbox(key="manage.rename_from").set_value("mine")
    app.text_input(key="manage.rename_to").set_value("mine-renamed").run()
    button(app, "Rename").click().run()
    assert not app.exception and not app.error
    assert app_env.store.exists("mine-renamed") and not app_env.store.exists("mine")
    assert app.selectbox(key="manage.rename_from").value == "mine-renamed"
    assert app.text_input(key="manage.rename_to").value == ""
    assert "Renamed `mine` to `mine-renamed`" in texts(app.success)
    app_env.store.delete("mine-renamed")


def test_shipped_runs_are_protected_by_default(app_env, monkeypatch):
    app = manage_page(app_env, monkeypatch)
    shipped = {"best", "seed", "seed-aug"}
    assert not shipped & set(app.selectbox(key="manage.rename_from").options)
    assert not shipped & set(app.selectbox(key="manage.delete").options)
    assert "seed" in app.selectbox(key="manage.download").options
    assert "except the shipped ones" in texts(app.caption)
    payload = app_env.store.path("best").read_bytes()
    app.text_input(key="manage.upload_name").set_value("seed-aug")
    app.file_uploader(key="manage.upload").set_value(("copy.safetensors", payload, "application/octet-stream"))
    app.run()
    button(app, "Add run").click().run()
    assert "shipped runs" in texts(app.error)


def test_run_management_can_be_switched_off_by_environment_or_secrets(app_env, monkeypatch):
    app = manage_page(app_env, monkeypatch, "off")
    labels = {widget.label for widget in app.button}
    assert not {"Rename", "Delete…", "Add run"} & labels
    assert "seed" in app.selectbox(key="manage.download").options
    assert "OCR_RUN_MANAGEMENT=off" in texts(app.caption)
    monkeypatch.delenv("OCR_RUN_MANAGEMENT")
    app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT)
    app.secrets["OCR_RUN_MANAGEMENT"] = "nonsense"  # a typo must not open a public server up
    app.run().switch_page("app_pages/manage.py").run()
    assert "Rename" not in {widget.label for widget in app.button}
    assert "so run management is off" in texts(app.caption)


def test_full_run_management_allows_shipped_runs(app_env, monkeypatch):
    app = manage_page(app_env, monkeypatch, "full")
    assert {"best", "seed", "seed-aug"} <= set(app.selectbox(key="manage.rename_from").options)


def test_a_broken_upload_is_named_as_uploaded(app_env, monkeypatch):
    app = manage_page(app_env, monkeypatch)
    app.file_uploader(key="manage.upload").set_value(("bogus.safetensors", b"junk", "application/octet-stream"))
    app.run()
    button(app, "Add run").click().run()
    assert "bogus.safetensors is not a readable safetensors file" in texts(app.error)
    assert ".tmp" not in texts(app.error)


def test_evaluate_asks_for_a_custom_spec_instead_of_scoring_none(app_env):
    app = open_page("app_pages/evaluate.py")
    app.selectbox(key="evaluate.augment").set_value("custom…").run()
    assert "Type the augmentation" in texts(app.info)
    assert not any("none-augmented" in column for frame in app.dataframe for column in frame.value.columns)
    app.text_input(key="evaluate.custom_augment").set_value("rotate=30").run()
    assert any("rotate=30-augmented accuracy" in frame.value.columns for frame in app.dataframe)


def test_clicking_a_confusion_cell_opens_its_mistakes(app_env):
    app = open_page("app_pages/evaluate.py")
    scores_shown = app.session_state["evaluate.inspect"]
    assert scores_shown
    app.session_state["evaluate.confusion"] = {"selection": {"cell": [{"true": 3, "predicted": 5}]}}
    app.run()
    assert not app.exception
    assert app.multiselect(key="evaluate.true_filter").value == [3]
    assert app.multiselect(key="evaluate.predicted_filter").value == [5]
    assert app.session_state["evaluate.details_tab"] == "Mistakes"
    app.multiselect(key="evaluate.predicted_filter").set_value([]).run()  # the filter stays the user's to change
    assert app.multiselect(key="evaluate.predicted_filter").value == []


def test_train_preview_labels_every_digit(app_env):
    app = open_page("app_pages/train.py")
    (preview,) = [image for image in app.image if len(image.captions) > 1]
    assert len(preview.captions) == 20 and set(preview.captions) <= set("0123456789")
    labels = [str(int(label)) for label in app_env.data.train_labels[:20]]
    assert list(preview.captions) == labels


def start_training(app: AppTest) -> None:
    button(app, "Start training").click().run()
    assert not app.exception and not app.error, texts(app.error)


def test_train_form_shows_what_the_next_run_uses(app_env):
    app = open_page("app_pages/train.py")
    total = len(app_env.data.train_labels)
    assert app.selectbox(key="train.images").value == total  # not None, which shows as "Choose an option"
    assert app.radio(key="train.if_stopped").value == "keep"
    app.number_input(key="train.epochs").set_value(0.25)
    app.radio(key="train.if_stopped").set_value("discard")
    start_training(app)
    assert "recipe" in texts(app.caption) or "custom settings" in texts(app.caption)
    wait_for_training(app)
    button(app, "Train another run").click().run()
    assert app.selectbox(key="train.images").value == total
    assert app.radio(key="train.if_stopped").value == "keep"  # a later long run is not thrown away by accident
    assert app.text_input(key="train.name").value == "my-run-2"  # the first run saved `my-run`


def test_train_proposes_a_name_no_run_has(app_env, monkeypatch):
    job = start_long_job("my-run")
    try:
        wait_until_training(job.id)
        app = open_page("app_pages/train.py")
        assert app.text_input(key="train.name").value == "my-run-2"  # `my-run` is queued or training for Ada
        assert "custom settings" in texts(app.markdown) and "100 epochs on 461 images" in texts(app.markdown)
    finally:
        finish(job)
    add_run(app_env, "my-run-2")  # saved by someone else while this visitor's form proposes it
    app.run()
    assert app.text_input(key="train.name").value == "my-run"
    app.text_input(key="train.name").set_value("mine").run()
    add_run(app_env, "mine")
    app.run()
    assert app.text_input(key="train.name").value == "mine"  # typed by the visitor: theirs to keep


def test_train_cannot_replace_a_shipped_run(app_env, monkeypatch):
    monkeypatch.delenv("OCR_RUN_MANAGEMENT", raising=False)
    app = open_page("app_pages/train.py")
    app.text_input(key="train.name").set_value("best")
    app.checkbox(key="train.overwrite").check().run()
    button(app, "Start training").click().run()
    assert "`best` exists already and cannot be replaced" in texts(app.error)
    monkeypatch.setenv("OCR_RUN_MANAGEMENT", "off")
    app.run()
    assert not any(box.key == "train.overwrite" for box in app.checkbox)


def test_evaluate_summary_and_curves_say_what_they_measure(app_env):
    app = open_page("app_pages/evaluate.py")
    summary = app.dataframe[0].value
    assert (summary["training images"] == len(app_env.data.train_labels)).all()
    assert (summary["training time (s)"] == summary["training time (s)"].round()).all()
    assert "once per epoch, on the clean test set" in texts(app.caption)
    app.segmented_control(key="evaluate.test_set").set_value("augmented").run()
    assert "The augmented test set chosen above is not part of them" in texts(app.caption)


def test_a_short_run_result_charts_scored_loss_and_accuracy(app_env):
    app = open_page("app_pages/train.py")
    app.number_input(key="train.epochs").set_value(1.0)
    start_training(app)
    wait_for_training(app)
    titles = {json.loads(chart.proto.spec)["encoding"]["y"]["title"] for chart in app.get("vega_lite_chart")}
    assert titles == {"loss", "accuracy"}
    (job,) = board().jobs(include_finished_since=0)
    scored = [row for row in board().points(job.id) if row["series"] == "test images (scored)"]
    assert [row["epoch"] for row in scored] == [0.25, 0.5, 0.75, 1.0]
    assert "Scored points" in texts(app.caption)


def test_train_says_what_it_trains_on_and_names_each_op_twice(app_env):
    app = open_page("app_pages/train.py")
    images = app.selectbox(key="train.images")
    assert images.options[0] == "all 461", "512 tiny training digits, 51 held out"
    assert "held out" in images.help or "holds out" in images.help
    assert app.toggle(key="train.aug.brightness.on").label == "Grey paper `brightness`"
    app.segmented_control(key="train.preset").set_value("seed").run()
    assert "Rotate `rotate=20` · Shift `translate=0.2`" in texts(app.caption)


def test_a_taken_name_offers_only_what_this_server_allows(app_env, monkeypatch):
    monkeypatch.delenv("OCR_RUN_MANAGEMENT", raising=False)  # protected: the shipped runs cannot be replaced
    app = open_page("app_pages/train.py")
    app.text_input(key="train.name").set_value("best").run()
    button(app, "Start training").click().run()
    assert "cannot be replaced" in texts(app.error) and "Replace" not in texts(app.error)
    app = manage_page(app_env, monkeypatch)
    payload = app_env.store.path("seed").read_bytes()
    add_run(app_env, "mine")
    app.text_input(key="manage.upload_name").set_value("mine")
    app.file_uploader(key="manage.upload").set_value(("copy.safetensors", payload, "application/octet-stream"))
    app.run()
    button(app, "Add run").click().run()
    assert "exists already: type another name" in texts(app.error) and "overwrite" not in texts(app.error)


def test_evaluate_offers_a_difference_of_two_confusion_matrices_and_csv_of_each_table(app_env):
    app = open_page("app_pages/evaluate.py")
    labels = [widget.label for widget in app.get("download_button")]
    assert labels.count("Download CSV") >= 3, "summary, confusion matrix, per-class table"
    first = app.session_state["evaluate.inspect"]
    other = next(name for name in app.dataframe[0].value["run"] if name != first)
    app.selectbox(key="evaluate.difference_from").set_value(other).run()
    assert not app.exception
    assert f"`{first}`'s counts minus `{other}`'s" in texts(app.caption)


def test_an_explained_mistake_names_whole_digits(app_env):
    app = open_page("app_pages/evaluate.py")
    app.selectbox(key="evaluate.explain_mistake").select_index(1).run()
    heading = next(text for text in (element.value for element in app.markdown) if "Test digit labelled" in text)
    assert ".0" not in heading
