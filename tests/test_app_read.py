"""The Read page through AppTest, on tiny synthetic runs (see app_fixtures): the canvas is replaced by a
drawing of two digits."""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import numpy as np
import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from app_fixtures import PROJECT_DIR, TIMEOUT, png_bytes, texts


def wide_drawing(digits: int = 2) -> np.ndarray:
    """What the wide canvas returns for a written '17…': RGBA uint8, white ink on opaque black."""
    image = Image.new("RGBA", (840, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    for index in range(digits):
        left = 80 + index * 180
        if index % 2:
            pen.line([(left, 60), (left + 110, 60), (left + 40, 230)], fill=(255, 255, 255, 255), width=18)
        else:
            pen.line([(left + 50, 50), (left + 50, 230)], fill=(255, 255, 255, 255), width=18)
    return np.asarray(image)


def open_read_page(canvas_image=None) -> AppTest:
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_image):
        app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT).run()
        app.switch_page("app_pages/read.py").run()
    assert not app.exception, [item.message for item in app.exception]
    return app


def test_read_prompts_on_an_empty_canvas(app_env):
    for empty in (None, np.zeros((280, 840, 4), np.uint8)):
        app = open_read_page(empty)
        assert "Write a number" in texts(app.info)
        assert not app.metric


def test_read_shows_the_reading_boxes_crops_and_steps(app_env):
    app = open_read_page(wide_drawing(2))
    reading = next(metric for metric in app.metric if metric.label == "Reading")
    assert len(reading.value) == 2 and reading.value.isdigit()
    assert app.code[0].value == reading.value  # the copy button's text
    captions = [caption for image in app.image for caption in image.captions]
    assert any("box" in caption for caption in captions)
    assert sum("%" in caption for caption in captions) == 2  # one crop per digit, with its confidence
    assert "Segmentation" in texts(app.markdown) and "Deskew" in texts(app.markdown)


@pytest.mark.parametrize("confidence, note", [(0.999, None), (0.97, "at 97%."), (0.4, "at 40% (below 60%: check it)")])
def test_read_names_the_least_sure_digit_only_when_one_is_less_sure(app_env, confidence, note):
    import ocr_core.reading

    real = ocr_core.reading.read_number

    def read_with(*args, **kwargs):  # the first digit at `confidence`, the others sure
        reading = real(*args, **kwargs)
        digits = [
            replace(digit, confidence=confidence if position == 0 else 0.9999)
            for position, digit in enumerate(reading.digits)
        ]
        return replace(reading, digits=tuple(digits))

    with mock.patch("ocr_core.reading.read_number", side_effect=read_with):
        app = open_read_page(wide_drawing(2))
    captions = texts(app.caption)
    if note is None:
        assert "Least sure" not in captions, "every digit shows as 100%: nothing to point at"
    else:
        assert "Least sure: digit 1 from the left" in captions and note in captions


def test_read_upload_without_digits_says_so(app_env):
    app = open_read_page()
    app.segmented_control(key="read.source").set_value("Upload").run()
    app.file_uploader(key="read.upload").set_value(
        ("blank.png", png_bytes(np.full((200, 600), 230, np.uint8)), "image/png")
    ).run()
    assert not app.exception
    assert "No digits found" in texts(app.warning)
    app.file_uploader(key="read.upload").set_value(("notes.png", b"not an image", "image/png")).run()
    assert "not an image" in texts(app.error)


def test_read_flags_a_digit_that_does_not_look_like_one(app_env):
    """The run's not-a-digit signal on one piece (forced here: the tiny test runs are not calibrated) shows
    as a warning naming the character, a red box and a caption under its crop; the text shows it as ?."""
    from ocr_core import reading

    real = reading.read_number

    def second_is_strange(*args, **kwargs):
        result = real(*args, **kwargs)
        digits = [replace(digit, strangeness=3.0 if index == 1 else 0.2) for index, digit in enumerate(result.digits)]
        return replace(result, digits=tuple(digits))

    with mock.patch.object(reading, "read_number", second_is_strange):
        app = open_read_page(wide_drawing(2))
    assert "Character 2 from the left does not look like a digit" in texts(app.warning)
    text = next(metric for metric in app.metric if metric.label == "Reading").value
    assert len(text) == 2 and text[1] == "?", "a flagged piece shows as ?, never as a digit"
    captions = [caption for image in app.image for caption in image.captions]
    assert sum("not a digit" in caption and caption.startswith("? (closest") for caption in captions) == 1


def test_read_says_when_the_run_cannot_tell_digits_from_other_ink(app_env):
    app = open_read_page(wide_drawing(2))
    assert "not calibrated" in texts(app.caption)
    assert not app.warning


def touching_drawing() -> np.ndarray:
    """A 7 whose bar runs into a 0, white on the canvas's black."""
    image = Image.new("RGBA", (840, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    pen.line([(200, 60), (320, 60), (240, 220)], fill=(255, 255, 255, 255), width=16, joint="curve")
    pen.ellipse([300, 60, 390, 220], outline=(255, 255, 255, 255), width=16)
    return np.asarray(image)


def test_read_shows_a_touching_pair_as_the_pair_reader_saw_it(app_env):
    app = open_read_page(touching_drawing())
    assert next(metric for metric in app.metric if metric.label == "Reading").value == "70"
    assert "Touching digits read whole" in texts(app.markdown)
    captions = [caption for image in app.image for caption in image.captions]
    assert sum(caption.startswith("digits 1-2: 70") for caption in captions) == 1
    assert sum("· pair" in caption for caption in captions) == 2, "both crops say they were read as a pair"


def test_read_without_a_loadable_pair_reader_warns_and_reads_with_cuts(app_env):
    from ocr_core import pairs

    with mock.patch.object(pairs, "load_pair_reader", side_effect=pairs.UserError("cannot load the pair reader")):
        pairs.shipped_pair_reader.cache_clear()
        try:
            app = open_read_page(touching_drawing())
        finally:
            pairs.shipped_pair_reader.cache_clear()
    assert "Touching digits are only cut" in texts(app.warning)
    assert next(metric for metric in app.metric if metric.label == "Reading").value.isdigit()
    assert "Touching digits read whole" not in texts(app.markdown)


def test_read_shows_a_short_list_line_by_line_with_a_csv(app_env):
    """Two lines of writing on the canvas: one reading per line in a table, and the lines as CSV."""
    image = np.zeros((280, 840, 4), np.uint8)
    image[..., 3] = 255
    lines = np.concatenate([wide_drawing(2)[::2], wide_drawing(3)[::2]])  # "17" over "171", half height each
    image[: lines.shape[0]] = lines
    app = open_read_page(image)
    assert next(metric for metric in app.metric if metric.label == "Reading").value == "2 lines"
    table = app.dataframe[0].value
    assert list(table["line"]) == [1, 2] and all(len(text) in (2, 3) for text in table["reading"])
    assert [len(text) for text in table["reading"]] == [2, 3]
    assert any("CSV" in button.label for button in app.get("download_button"))


def test_read_shows_the_slashes_of_a_date_as_characters_of_the_text(app_env):
    """1/7/17 on the canvas: the slashes are told apart by the date's layout, whatever the run reads."""
    image = Image.new("RGBA", (840, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    ink = {"fill": (255, 255, 255, 255), "width": 18}
    for left in (60, 480):
        pen.line([(left, 50), (left, 230)], **ink)
    for left in (230, 560):
        pen.line([(left, 60), (left + 100, 60), (left + 35, 230)], **ink)
    for left in (120, 370):
        pen.line([(left, 230), (left + 75, 50)], **ink)
    app = open_read_page(np.asarray(image))
    reading = next(metric for metric in app.metric if metric.label == "Reading").value
    assert reading.count("/") == 2 and len(reading) == 6, reading
    assert "slash only where two of them make a date" in texts(app.caption)
