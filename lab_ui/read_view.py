"""Pictures of a number's reading for the Read page: boxes and labels drawn on the input."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ocr_core.cleanup import greyscale
from ocr_core.reading import Reading

SURE, UNSURE, NOT_A_DIGIT, MARK = (27, 158, 119), (217, 95, 2), (200, 30, 45), (150, 150, 150)
SEPARATOR = (40, 110, 200)  # a separator of the text (reading.SEPARATORS)


def annotated(image: np.ndarray, reading: Reading) -> Image.Image:
    """The input in grey with each digit's box and reading (orange when unsure, red with a question mark when
    the ink does not look like a digit), the separators (blue, labelled) and the ignored marks (grey)."""
    grey = (greyscale(image) * 255).round().astype(np.uint8)
    picture = Image.fromarray(grey).convert("RGB")
    pen = ImageDraw.Draw(picture)
    line = max(2, round(max(picture.size) / 300))
    font_size = max(12, round(min(picture.size) / 10))
    for digit in reading.digits:
        x, y, width, height = digit.box
        strange = digit.looks_like_digit is False
        colour = NOT_A_DIGIT if strange else UNSURE if digit.unsure else SURE
        pen.rectangle([x, y, x + width - 1, y + height - 1], outline=colour, width=line)
        label = digit.character
        pen.text((x + line, max(0, y - font_size - line)), label, fill=colour, font_size=font_size)
    for mark in reading.marks:
        x, y, width, height = mark.box
        colour = SEPARATOR if mark.character else MARK
        pen.rectangle([x, y, x + width - 1, y + height - 1], outline=colour, width=max(1, line // 2))
        if mark.character:
            pen.text((x + line, max(0, y - font_size - line)), mark.character, fill=colour, font_size=font_size)
    return picture
