"""Smoke tests of the benchmark (bench/) on tiny synthetic data: the code paths run, the figures are sane.
No timing assertions: the speed targets are checked by reading `python -m bench`'s printed table."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench import app_timing, run, tutorial
from bench.measure import drawing_latency, latency
from conftest import tiny_mnist, write_idx_dataset
from ocr_core.models import normalize

# Enough images for the fast recipe's one-cycle schedule to have a few steps in each phase.
SMALL_TRAIN_COUNT = 2048


def test_tutorial_pipeline_reads_our_files_through_torchvision_from_the_cache(tiny_data_dir, tiny_data, tmp_path):
    root = tutorial.torchvision_root()
    assert root.is_relative_to(tmp_path / "cache")  # OCR_CACHE_DIR: the data dir stays untouched
    images, labels = next(iter(tutorial.tutorial_loader(augmented=False, train_count=64)))
    assert images.shape == (64, 1, 28, 28) and labels.shape == (64,)
    dataset = tutorial.tutorial_loader(augmented=False).dataset
    first_image, first_label = dataset[0]
    assert torch.allclose(first_image, normalize(tiny_data.train_images[:1])[0], atol=1e-6)
    assert first_label == int(tiny_data.train_labels[0])
    augmented, _ = next(iter(tutorial.tutorial_loader(augmented=True)))
    assert augmented.shape == (64, 1, 28, 28) and not torch.allclose(augmented, images)


def test_tutorial_time_to_accuracy_stops_at_the_first_score_that_reaches_the_target(tiny_data_dir, tiny_data):
    reached = tutorial.time_to_accuracy(tiny_data, target=0.0, max_epochs=1)
    assert reached.seconds is not None and reached.epochs == 0.25  # 8 batches, scored every 2
    missed = tutorial.time_to_accuracy(tiny_data, target=1.01, max_epochs=0.5)
    assert missed.seconds is None and missed.epochs == 0.5 and 0 <= missed.accuracy <= 1


def test_quick_run_prints_every_figure(tmp_path, monkeypatch, store, capsys):
    write_idx_dataset(tmp_path / "data", tiny_mnist(train=SMALL_TRAIN_COUNT))
    monkeypatch.setenv("OCR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(run, "QUICK", replace(run.QUICK, throughput_batches=4, augment_batches=2, latency_repeats=3))
    assert run.main(["--quick", "--skip-app"]) == 0
    printed = capsys.readouterr().out
    assert "| measurement | tutorial pipeline | ours |" in printed
    for figure in (
        "training images/s",
        "augmentation share",
        "time to 99.0%",
        "whole process: the tutorial's script",
        "start-up floor",
        "`python -m bench.phases`: CPU seconds",
        "--recipe robust",
        "--recipe best",
        "python -m ocr_core train",
        "`evaluate`",
        "drawing → probabilities",
    ):
        assert figure in printed
    assert not list(store.root.glob("*"))  # the train command saved into a temporary store


def test_latency_reports_the_median_and_the_95th_percentile_in_milliseconds():
    timing = latency([0.001] * 19 + [0.1])  # one slow call in twenty
    assert timing.p50_ms == pytest.approx(1.0)
    assert timing.p95_ms == pytest.approx(1 + 0.05 * 99)  # 95% of the way from the 19th value to the 20th
    assert latency([0.003, 0.001, 0.002]).p50_ms == pytest.approx(2.0), "the median, not the middle of the list"


def test_drawing_latency_measures_each_repeat():
    timing = drawing_latency("fast", repeats=5)
    assert 0 < timing.p50_ms <= timing.p95_ms


def test_draw_page_rerun_shows_a_prediction(app_env):
    rerun = app_timing.draw_page_reruns(repeats=2)
    assert rerun.predicted and rerun.first_run_seconds > 0 and rerun.rerun.p50_ms > 0


def test_missing_pieces_are_skipped_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(app_timing, "APP", tmp_path / "app.py")
    with pytest.raises(app_timing.Skipped, match=r"app\.py"):
        app_timing.cold_start()
    monkeypatch.setattr(app_timing, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(app_timing.Skipped, match="chromium"), app_timing.chromium_page():
        pass


def test_memory_is_read_from_the_kernels_figures_in_megabytes():
    import os

    from bench.memory import Phase, status_mb, table

    if not os.path.exists("/proc/self/status"):
        pytest.skip("memory is measured on Linux")
    current, peak = status_mb(os.getpid(), "VmRSS"), status_mb(os.getpid(), "VmHWM")
    assert 50 < current <= peak < 64 * 1024, "a Python process with torch loaded holds tens to thousands of MB"
    assert "| first Draw page | 1.5 s | 420 MB | 512 MB |" in table([Phase("first Draw page", 1.5, 420.0, 512.0)])
    with pytest.raises(app_timing.Skipped, match="Linux"):
        status_mb(2**22 + 12345, "VmRSS")  # above the kernel's largest pid: no such process


def test_reading_bench_measures_only_the_sets_asked_for():
    from bench.reading import SETS, parse_args

    assert parse_args([]).sets == set(SETS)
    args = parse_args(["--sets", "kinds, numbers", "--kind-count", "400"])
    assert args.sets == {"kinds", "numbers"} and args.kind_count == 400
    for wrong in (["--sets", "kinds,letters"], ["--kind-count", "0"], ["--number-count", "-5"]):
        with pytest.raises(SystemExit):
            parse_args(wrong)
