"""The drawing canvas behind one function, so tests can substitute a drawing with unittest.mock
(`streamlit_drawable_canvas` can only be imported inside a running Streamlit app)."""

from __future__ import annotations

import functools
from importlib.resources import files

import numpy as np

CANVAS_SIDE = 280  # ten screen pixels per MNIST pixel
CANVAS_COMPONENT = "streamlit-drawable-canvas.streamlit_drawable_canvas"  # the name the package registers
# streamlit-drawable-canvas 0.13 hides its toolbar (upload, undo, redo, edit, clear) at opacity 0 but still
# clickable over the canvas's top-right corner (top: -1rem, 141x46 px: canvas x >= 139, y < 30) and slides it
# up only 0.1 s after the pointer enters. A stroke begun there within that time pressed an invisible button
# instead of drawing (the lost drawing of issue 8; tests/test_browser.py keeps it fixed). Here the toolbar
# sits in a margin above the canvas, always visible (touch screens have no hover to reveal it), and never
# covers a canvas pixel. Only undo, redo and the bin are shown: "Edit" (a pencil icon, yet not the pen) selects
# and moves strokes, which a visitor took for the pen, dragged the digit half off the canvas and drew nothing
# more; the up arrow only sends the drawing again, which every stroke already does.
TOOLBAR_ABOVE_THE_CANVAS = """
.dc-root { margin-top: 2.75rem; }
.dc-toolbar, .dc-root:hover > .dc-toolbar, .dc-toolbar:hover, .dc-toolbar:focus-within,
.dc-toolbar[data-pinned=true] { top: auto; bottom: 100%; padding-bottom: 0.25rem; opacity: 1; transition: none; }
.dc-toolbar button[aria-label="Edit"], .dc-toolbar button[aria-label="Update the app with this drawing"],
.dc-toolbar-contextual { display: none !important; }
"""
# The canvas is drawn at a fixed size in pixels (840x280 on Read), wider than a phone (390 px: 57% of it was out
# of reach, and the page cannot scroll sideways while a finger draws). Shown at most as wide as the column, its
# proportions kept: the bottom drawing canvas, no longer stacked out of the flow, gives the box its height from
# its own width and height; the others cover it. Fabric maps a pointer through the canvas's on-screen size, so
# a stroke lands where the finger is, and the drawing handed back keeps the canvas's full size.
CANVAS_FITS_THE_SCREEN = """
.dc-container { max-width: 100%; height: auto !important; }
.dc-container > .canvas-container { max-width: 100%; height: auto !important; }
.dc-canvas.lower-canvas { position: relative !important; display: block; max-width: 100%; height: auto !important; }
.dc-canvas.upper-canvas, .dc-background-canvas { width: 100% !important; height: 100% !important; }
"""


@functools.cache
def canvas_stylesheet() -> str:
    """The package's own stylesheet followed by the fixes above."""
    build = files("streamlit_drawable_canvas") / "frontend" / "build"
    own = next(item for item in build.iterdir() if item.name.endswith(".css")).read_text()
    return own + TOOLBAR_ABOVE_THE_CANVAS + CANVAS_FITS_THE_SCREEN


def register_canvas_with_toolbar_above() -> None:
    """Register the canvas component again with the package's files and the stylesheet above (Streamlit uses
    the last registration of a name). Idempotent: an identical definition is stored silently."""
    import streamlit as st

    st.components.v2.component(
        CANVAS_COMPONENT,
        js="index-*.js",
        css=canvas_stylesheet(),
        html='<div class="canvas-root"></div>',
        isolate_styles=True,
    )


def draw_canvas(stroke_width: int, key: str, width: int = CANVAS_SIDE, height: int = CANVAS_SIDE) -> np.ndarray | None:
    """RGBA (H, W, 4) uint8 of the drawing, white ink on black; None before anything is drawn."""
    from streamlit_drawable_canvas import st_canvas

    register_canvas_with_toolbar_above()
    result = st_canvas(
        stroke_width=stroke_width,
        stroke_color="#FFFFFF",
        background_color="#000000",
        width=width,
        height=height,
        drawing_mode="freedraw",
        return_image_data=True,
        key=key,
    )
    return result.image_data
