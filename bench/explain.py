"""The "Inside the network" figures: explanation latency for one drawing on the `deep` net, the feature index
and the test-set map (build and lookup), and the app's peak memory with the section open.

Timings use an untrained `deep` net: the cost of a forward or backward pass does not depend on the weights.
`python -m bench.explain --app-memory` is the child process the memory figure runs in."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from unittest import mock

from bench.measure import PROJECT_DIR, Latency, canvas_drawing, latency
from ocr_core import build_model, explain, feature_space
from ocr_core.data import MnistData
from ocr_core.preprocess import prepare_digit

ARCHITECTURE = "deep"
INSIDE_TABS = [
    "Why this answer?",
    "Feature maps",
    "Similar training digits",
    "Map of the test set",
    "Two runs side by side",
]


def timed(action: Callable[[], object], repeats: int) -> Latency:
    action()  # warm-up: kernels, Captum's import
    timings = []
    for _ in range(max(2, repeats)):  # percentiles need two timings
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return latency(timings)


def explanation_latencies(repeats: int) -> dict[str, Latency]:
    """What the section computes for a new drawing: activations + Grad-CAM + saliency together, and
    Integrated Gradients and occlusion on their own, each for the drawing's own answer."""
    model = build_model(ARCHITECTURE).eval()
    digit = prepare_digit(canvas_drawing())
    explainer = explain.explainable(model)

    def first_view() -> None:
        explain.activations(model, digit)
        explain.attribute(explainer, digit, 4, "grad_cam")
        explain.attribute(explainer, digit, 4, "saliency")

    return {
        "first": timed(first_view, repeats),
        "integrated_gradients": timed(
            lambda: explain.attribute(explainer, digit, 4, "integrated_gradients"), max(3, repeats // 5)
        ),
        "occlusion": timed(lambda: explain.attribute(explainer, digit, 4, "occlusion"), max(3, repeats // 5)),
    }


def feature_space_figures(data: MnistData, repeats: int) -> dict[str, float | Latency]:
    """Build times of the index (training set) and the map (test set), and the lookups once they exist."""
    model = build_model(ARCHITECTURE).eval()
    digit = prepare_digit(canvas_drawing())
    started = time.perf_counter()
    index = feature_space.build_index(model, data.train_images)
    index_seconds = time.perf_counter() - started
    started = time.perf_counter()
    test_map = feature_space.build_map(model, data.test_images, data.test_labels)
    map_seconds = time.perf_counter() - started
    return {
        "index_seconds": index_seconds,
        "map_seconds": map_seconds,
        "kept_variance": index.projection.kept_variance,
        "lookup": timed(lambda: feature_space.similar_digits(model, index, data, digit, 8), repeats),
        "place": timed(lambda: feature_space.place_on_map(model, test_map, digit), repeats),
    }


def app_peak_memory() -> dict:
    """In a fresh process: the Draw page (AppTest) with a drawing and the section open, every tab in turn,
    on the configured runs and data, with cold explanation caches. Peak RSS in MB."""
    from streamlit.testing.v1 import AppTest

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    app = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=900)
    with mock.patch("lab_ui.canvas.draw_canvas", return_value=canvas_drawing()):
        app.run()
        closed = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        app.session_state["inside.open"] = True
        for tab in INSIDE_TABS:
            app.session_state["inside.tab"] = tab
            app.run()
            if app.exception:
                raise RuntimeError(f"the section failed on {tab!r}: {app.exception[0].message}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"imports_mb": before, "closed_mb": closed, "open_mb": peak}


def measure_app_memory() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        result = subprocess.run(
            [sys.executable, "-m", "bench.explain", "--app-memory"],
            cwd=PROJECT_DIR,
            env={**os.environ, "OCR_CACHE_DIR": cache},
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the app memory probe failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__" and sys.argv[1:] == ["--app-memory"]:
    print(json.dumps(app_peak_memory()))
