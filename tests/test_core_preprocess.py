import io

import numpy as np
import pytest
from PIL import Image

from ocr_core.preprocess import ImageError, load_image, main_digit, prepare_digit, widened_if_condensed


def canvas_with_stroke(polarity="white-on-black", size=280):
    """A '1'-like vertical stroke, as the drawing canvas returns it (RGBA uint8)."""
    ink, paper = (255, 0) if polarity == "white-on-black" else (0, 255)
    canvas = np.full((size, size, 4), paper, np.uint8)
    canvas[..., 3] = 255
    canvas[60:220, 120:140, :3] = ink
    return canvas


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def ink_centre(digit):
    rows, columns = np.indices(digit.shape)
    mass = digit.sum()
    return float((rows * digit).sum() / mass), float((columns * digit).sum() / mass)


def test_empty_canvas_gives_no_digit():
    assert prepare_digit(np.zeros((280, 280, 4), np.uint8)) is None
    assert prepare_digit(np.full((280, 280, 4), 255, np.uint8)) is None  # all white


def test_drawing_follows_the_mnist_recipe():
    digit = prepare_digit(canvas_with_stroke()).numpy()
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.min() >= 0 and digit.max() <= 1
    rows = np.flatnonzero(digit.max(1) > 0.05)
    assert rows[-1] - rows[0] + 1 in (20, 21, 22), "longer side fit into 20 px (plus antialias fringe)"
    row_centre, column_centre = ink_centre(digit)
    assert abs(row_centre - 13.5) <= 0.6 and abs(column_centre - 13.5) <= 0.6


def test_polarity_does_not_matter():
    light = prepare_digit(canvas_with_stroke("white-on-black")).numpy()
    dark = prepare_digit(canvas_with_stroke("black-on-white")).numpy()
    assert np.abs(light - dark).max() < 1e-5


def test_transparent_background_is_read_through_alpha():
    canvas = np.zeros((280, 280, 4), np.uint8)  # the canvas default: transparent
    canvas[60:220, 120:140] = (0, 0, 0, 255)  # black ink
    digit = prepare_digit(canvas)
    assert digit is not None and abs(ink_centre(digit.numpy())[1] - 13.5) <= 0.6


def test_photo_like_input_with_uneven_paper_is_cleaned():
    rng = np.random.default_rng(0)
    paper = (200 + 30 * np.linspace(0, 1, 300)[None, :] + rng.normal(0, 4, (300, 300))).clip(0, 255)
    paper[80:230, 140:160] = 40  # dark pen stroke
    digit = prepare_digit(paper.astype(np.uint8)).numpy()
    assert (digit[:3] == 0).all() and (digit[:, :3] == 0).all(), "paper texture is not ink"
    assert digit.max() == pytest.approx(1.0, abs=0.05)


def test_a_stroke_cut_by_removed_grid_lines_stays_one_digit():
    """A fine stroke cut every 26 pixels (where it ran along removed grid lines) into pieces 6 pixels apart,
    more than a quarter of a piece's size: the pieces are one digit; a mark far away is not."""
    mask = np.zeros((200, 200), bool)
    for top in range(30, 160, 26):
        mask[top : top + 20, 98:102] = True
    mask[20:26, 170:176] = True  # a stray mark
    digit = main_digit(mask)
    assert digit[30:160, 98:102].sum() == mask[30:160, 98:102].sum(), "every piece of the stroke is kept"
    assert not digit[20:26, 170:176].any(), "the stray mark is dropped"


def test_sixteen_bit_upload(tmp_path):
    array = np.full((64, 48), 60000, np.uint16)
    array[10:54, 20:28] = 2000
    payload = png_bytes(array)
    assert Image.open(io.BytesIO(payload)).mode.startswith("I;16")
    image = load_image(payload)
    assert image.shape == (64, 48) and image.max() <= 1
    assert prepare_digit(image) is not None


def test_rgba_png_and_jpeg_uploads():
    rgba = canvas_with_stroke("black-on-white")
    rgba[..., 3] = 255
    assert prepare_digit(load_image(png_bytes(rgba))) is not None
    buffer = io.BytesIO()
    Image.fromarray(canvas_with_stroke()[..., :3]).save(buffer, format="JPEG")
    assert prepare_digit(load_image(buffer.getvalue())) is not None


def test_large_upload_is_shrunk_before_processing():
    big = np.zeros((3000, 2000), np.uint8)
    big[500:2500, 900:1100] = 255
    image = load_image(png_bytes(big))
    assert max(image.shape) <= 512
    assert prepare_digit(image) is not None


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"hello, I am a text file", "not an image"),
        (png_bytes(np.zeros((4, 4), np.uint8)), "too small"),
        (png_bytes(np.zeros((100, 100), np.uint8))[:60], "damaged"),
        (b"", "not an image"),
    ],
)
def test_bad_uploads_are_clear_errors(payload, message):
    with pytest.raises(ImageError, match=message):
        load_image(payload)


def test_huge_dimensions_are_refused_without_decoding():
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buffer, format="PNG")  # 48 MP, tiny file
    with pytest.raises(ImageError, match="too large"):
        load_image(buffer.getvalue())


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.png")


def test_a_condensed_digit_is_widened_only_for_a_loop_not_a_pocket():
    zero = np.zeros((200, 40), bool)
    zero[:, 6:34] = True
    zero[20:180, 16:24] = False  # a 0 a seventh as wide as it is tall: its loop spans most of its height
    assert widened_if_condensed(zero).shape == (200, 140)  # 28 columns of ink widened to 0.7 of the height
    # A marker 1 the clean-up left with a pocket of paper inside (held-out tight crops): 60 pixels, more than
    # the stroke's width squared, but a twentieth of the digit's height; widened, it read 8.
    one = np.zeros((200, 40), bool)
    one[:, 14:26] = True
    one[40:50, 17:23] = False
    assert (widened_if_condensed(one) == one).all()


def test_a_colour_upload_keeps_its_colour_and_a_grey_one_stays_grey():
    # the clean-up tells a red margin line from pencil by colour, so the upload must not lose it
    picture = np.full((40, 60, 3), 230, np.uint8)
    picture[:, 30:33] = (215, 80, 90)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG")
    image = load_image(buffer.getvalue())
    assert image.shape == (40, 60, 3)
    assert image[20, 31, 0] - image[20, 31, 1] > 0.3, "the line is still red"
    assert load_image(png_bytes(picture[..., 1])).shape == (40, 60)
