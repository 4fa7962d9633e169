"""`python -m bench.phases [TRAIN OPTIONS]`: where the seconds of `python -m ocr_core train` go.

Runs the CLI's own `main` in this fresh process, under cProfile, into a temporary run store, and prints one
JSON object: wall and CPU seconds of the imports (from interpreter start), then of each phase, read from the
profile's cumulative times of the functions that do them (so nothing is re-implemented here): loading MNIST,
the training steps, batch-norm re-estimation, scoring the clean and the `seed`-augmented test sets,
calibration and saving. The profile adds a few percent; `bench.run` times the plain command beside it.
"""

from __future__ import annotations

import time

STARTED_WALL, STARTED_CPU = time.perf_counter(), time.process_time()

import cProfile  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from ocr_core import cli  # noqa: E402

IMPORT_WALL, IMPORT_CPU = time.perf_counter() - STARTED_WALL, time.process_time() - STARTED_CPU

# phase -> (file suffix, function name) whose cumulative time it is
PHASES = {
    "load MNIST": ("ocr_core/data.py", "load_mnist"),
    "training (fit, with its last clean scoring)": ("ocr_core/training.py", "fit"),
    "batch-norm re-estimation": ("ocr_core/training.py", "recalibrate_batch_norm"),
    "scoring (clean and seed-augmented test sets)": ("ocr_core/evaluation.py", "evaluate"),
    "calibration": ("ocr_core/calibration.py", "fit_calibration"),
    "saving": ("ocr_core/checkpoints.py", "save"),
}


def cumulative(stats: pstats.Stats, suffix: str, function: str) -> float:
    return sum(entry[3] for (path, _, name), entry in stats.stats.items() if path.endswith(suffix) and name == function)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as checkpoints:
        os.environ["OCR_CHECKPOINT_DIR"] = checkpoints
        profile = cProfile.Profile(time.process_time)
        wall = time.perf_counter()
        code = profile.runcall(cli.main, ["train", "--name", "phases", *argv])
        wall = time.perf_counter() - wall
    if code:
        return code
    stats = pstats.Stats(profile)
    figures = {name: round(cumulative(stats, *where), 3) for name, where in PHASES.items()}
    print(
        json.dumps(
            {
                "imports": {"wall": round(IMPORT_WALL, 3), "cpu": round(IMPORT_CPU, 3)},
                "train command after imports": {"wall": round(wall, 3), "cpu": round(stats.total_tt, 3)},
                "phases, CPU seconds": figures,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
