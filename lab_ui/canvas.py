"""The drawing canvas behind one function, so tests can substitute a drawing with unittest.mock
(`streamlit_drawable_canvas` can only be imported inside a running Streamlit app)."""
from __future__ import annotations

import numpy as np

CANVAS_SIDE = 280  # ten screen pixels per MNIST pixel


def draw_canvas(stroke_width: int, key: str, width: int = CANVAS_SIDE, height: int = CANVAS_SIDE) -> np.ndarray | None:
    """RGBA (H, W, 4) uint8 of the drawing, white ink on black; None before anything is drawn."""
    from streamlit_drawable_canvas import st_canvas

    result = st_canvas(
        stroke_width=stroke_width, stroke_color="#FFFFFF", background_color="#000000",
        width=width, height=height, drawing_mode="freedraw", return_image_data=True, key=key,
    )
    return result.image_data
