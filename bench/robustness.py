"""Seconds for a full robustness report (15 corruptions x 5 severities on the 2,000 report digits) per run,
with the corrupted digits built from scratch (cold) and read from the cache (warm), and each run's summary.

    python -m bench.robustness [NAME ...]     (default: the shipped seed, seed-aug and best)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from ocr_core.checkpoints import DEFAULT_CHECKPOINT_DIR, RunStore
from ocr_core.data import load_mnist
from ocr_core.robustness import BASELINE_RUN, compute_report, report_subset, run_weights_hash, summary
from ocr_core.runs import SHIPPED_RUNS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.robustness", description=__doc__)
    parser.add_argument("names", nargs="*", default=list(SHIPPED_RUNS))
    args = parser.parse_args(argv)
    store = RunStore(DEFAULT_CHECKPOINT_DIR)
    data = load_mnist(download=False)
    images, labels = report_subset(data.test_images, data.test_labels)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    reports = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["OCR_CACHE_DIR"] = cache  # a cold suite cache for the first run, warm for the others
        for name in dict.fromkeys([*args.names, BASELINE_RUN]):
            model, metadata = store.load(name)
            weights = run_weights_hash(store.info(name))
            started, cpu = time.perf_counter(), time.process_time()
            reports[name] = compute_report(model, images, labels, weights)
            cold, cold_cpu = time.perf_counter() - started, time.process_time() - cpu
            started, cpu = time.perf_counter(), time.process_time()
            compute_report(model, images, labels, weights)
            # CPU seconds too: on a shared machine the wall time says more about the neighbours than the code
            print(
                f"{name:<10} {metadata.architecture:<8} first report {cold:6.1f} s ({cold_cpu:6.1f} CPU s), "
                f"again with the suite cached {time.perf_counter() - started:6.1f} s "
                f"({time.process_time() - cpu:6.1f} CPU s)"
            )
    for name in args.names:
        figures = summary(reports[name], reports[BASELINE_RUN])
        print(
            f"{name:<10} clean {figures['clean']:.4f}  mean (severity 3) {figures['mean']:.4f}  "
            f"mCE {figures['mce']:.3f}  worst {figures['worst']} {figures['worst_accuracy']:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
