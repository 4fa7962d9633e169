"""`python -m bench [--quick] [--skip-app] [--no-browser]`: the tutorial's pipeline and ours, measured side
by side in one run on this machine, printed as a Markdown table (progress goes to stderr)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import platform
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
import torchvision

from bench import app_timing, memory, tutorial
from bench import explain as explain_bench
from bench.measure import (
    PROJECT_DIR,
    SEED_MODEL_RECIPE,
    TargetRun,
    augmentation_seconds_per_batch,
    drawing_latency,
    evaluation_seconds,
    fit_to_accuracy,
    progress,
    startup_seconds,
    train_command,
    training_throughput,
)
from ocr_core import ARCHITECTURES, RECIPES, explain, feature_space, load_mnist
from ocr_core.data import DataUnavailableError, MnistData
from ocr_core.training import resolve_device, resolve_precision

TARGET_ACCURACY = 0.99
AUGMENT = "seed"  # our preset of the tutorial's four PIL transforms


@dataclass(frozen=True)
class Settings:
    train_count: int | None  # None: all 60,000
    test_count: int | None  # None: all 10,000
    throughput_batches: int  # of 64 images, per pipeline and augmentation
    augment_batches: int
    tutorial_max_epochs: float
    train_command_seeds: tuple[int, ...]  # the first runs as the plain default command
    latency_repeats: int
    rerun_repeats: int
    startup_repeats: int


FULL = Settings(
    None,
    None,
    throughput_batches=300,
    augment_batches=100,
    tutorial_max_epochs=5,
    train_command_seeds=(0, 1, 2),
    latency_repeats=200,
    rerun_repeats=10,
    startup_repeats=3,
)
# A smoke run for CI: every code path, on small slices, with figures that mean little.
QUICK = Settings(
    4096,
    1000,
    throughput_batches=20,
    augment_batches=10,
    tutorial_max_epochs=0.5,
    train_command_seeds=(0,),
    latency_repeats=20,
    rerun_repeats=2,
    startup_repeats=1,
)


@dataclass(frozen=True)
class Row:
    measurement: str
    tutorial: str = ""
    ours: str = ""
    ratio: str = ""
    target: str = ""
    met: str = ""


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def reached(run: TargetRun) -> str:
    if run.seconds is None:
        return f"not reached ({run.accuracy:.2%} after {run.epochs:.2f} epochs)"
    return f"{run.seconds:.1f} s ({run.accuracy:.2%} at {run.epochs:.2f} epochs)"


def throughput_rows(data: MnistData, settings: Settings) -> list[Row]:
    batch = SEED_MODEL_RECIPE.batch_size
    epochs = settings.throughput_batches * batch / len(data.train_labels)
    rows = []
    for augment in ("none", AUGMENT):
        augmented = augment != "none"
        progress(f"training throughput, seed model, augment={augment}: tutorial pipeline")
        theirs = tutorial.throughput(augmented, settings.throughput_batches, train_count=settings.train_count)
        config = replace(SEED_MODEL_RECIPE, epochs=epochs, augment=augment)
        label = "with the tutorial's augmentation" if augmented else "no augmentation"
        # fp32 isolates what the input pipeline and layout gain; the default adds bf16 where it is native.
        for precision in dict.fromkeys(("fp32", resolve_precision("auto", resolve_device()))):
            progress(f"training throughput, seed model, augment={augment}: ours, {precision}")
            ours = training_throughput(data, replace(config, precision=precision))
            rows.append(
                Row(
                    f"training images/s, `seed` model, batch {batch}, {label}, ours in {precision}",
                    f"{theirs:,.0f}",
                    f"{ours:,.0f}",
                    f"{ours / theirs:.2f}x",
                    "≥ 1.5x" if augmented else "",
                    verdict(ours / theirs >= 1.5) if augmented else "",
                )
            )
        if augmented:
            step_seconds = batch / ours
            share = augmentation_seconds_per_batch(data, augment, batch, settings.augment_batches) / step_seconds
            rows.append(
                Row(
                    f"augmentation share of our step time (`seed` model, batch {batch})",
                    "",
                    f"{share:.1%}",
                    "",
                    "≤ 10%",
                    verdict(share <= 0.10),
                )
            )
    return rows


def time_to_target_rows(data: MnistData, settings: Settings) -> list[Row]:
    progress(f"the tutorial's whole script to {TARGET_ACCURACY:.1%}, scored once an epoch")
    script = tutorial.whole_script(
        TARGET_ACCURACY, math.ceil(settings.tutorial_max_epochs), settings.train_count, settings.test_count
    )
    progress(f"tutorial recipe to {TARGET_ACCURACY:.1%} (up to {settings.tutorial_max_epochs:g} epochs)")
    theirs = tutorial.time_to_accuracy(
        data, TARGET_ACCURACY, settings.tutorial_max_epochs, train_count=settings.train_count
    )
    progress("fast recipe, in process")
    fast = replace(RECIPES["fast"], holdout=0)  # on every image, as the tutorial pipeline trains
    ours = fit_to_accuracy(data, fast, TARGET_ACCURACY)
    rows = [
        Row(
            f"time to {TARGET_ACCURACY:.1%}, whole process: the tutorial's script (`python -m bench.tutorial_script`: "
            "torchvision dataset, DataLoader, its CNN and Adam, the test set scored once an epoch)",
            reached(script),
        ),
        Row(
            f"time to {TARGET_ACCURACY:.1%} test accuracy, training only (tutorial: scored 4x an epoch)",
            reached(theirs),
            f"{reached(ours)}: `fast` recipe ({fast.architecture} net, batch {fast.batch_size}, "
            f"{fast.optimizer} {fast.schedule} {fast.learning_rate:g}, {fast.epochs:g} epochs)",
            ratio(theirs, ours),
        ),
    ]
    progress("start-up: python importing the CLI, then torch._dynamo")
    cli, optimizer = (
        startup_seconds(imports, settings.startup_repeats)
        for imports in ("ocr_core.cli", "ocr_core.cli, torch._dynamo")
    )
    rows.append(
        Row(
            "start-up floor: a fresh Python importing the CLI (torch included); with `torch._dynamo`, which "
            "torch.optim and torchvision import and `train` no longer does",
            "",
            f"{cli:.1f} s; {optimizer:.1f} s",
        )
    )
    limits = limit_options(settings)
    for index, seed in enumerate(settings.train_command_seeds):
        options = limits + ([] if index == 0 else ["--seed", str(seed)])
        progress(f"python -m ocr_core train --name bench {' '.join(options)}")
        run = train_command(options)
        good = (
            run.accuracy >= TARGET_ACCURACY
            and script.seconds is not None
            and run.seconds * TRAIN_SPEED_UP <= script.seconds
        )
        rows.append(
            Row(
                f"`python -m ocr_core train --name bench {' '.join(options)}`".replace(" `", "`"),
                reached(script),
                f"{run.seconds:.1f} s whole process ({run.cpu_seconds:.1f} CPU s), {run.accuracy:.2%}",
                ratio(script, run),
                f"≥ {TRAIN_SPEED_UP}x, ≥ {TARGET_ACCURACY:.1%}",
                verdict(good),
            )
        )
    progress("where the seconds of the default train go (bench.phases)")
    rows.append(Row("`python -m bench.phases`: CPU seconds of the default `train`", "", phase_figures(limits)))
    return rows


TRAIN_SPEED_UP = 20  # issue 19: the default `train`, whole process, against the tutorial's whole script


def limit_options(settings: Settings) -> list[str]:
    """CLI options that train on the settings' slices (a slice trains on all of itself, holding none out)."""
    if settings.train_count is None:
        return []
    return ["--train-limit", str(settings.train_count), "--test-limit", str(settings.test_count), "--holdout", "0"]


def phase_figures(options: list[str]) -> str:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.phases", *options], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    if finished.returncode != 0:
        raise RuntimeError(f"bench.phases failed:\n{finished.stderr[-2000:]}")
    figures = json.loads(finished.stdout.splitlines()[-1])
    parts = [f"imports {figures['imports']['cpu']:.2f}"]
    parts += [f"{name} {seconds:.2f}" for name, seconds in figures["phases, CPU seconds"].items()]
    after = figures["train command after imports"]
    return "; ".join(parts) + f" (after the imports: {after['cpu']:.2f} CPU s, {after['wall']:.2f} s wall)"


@dataclass(frozen=True)
class RecipeTarget:
    recipe: str
    seconds: float  # whole process
    clean: float
    corruption_mean: float
    worst: float | None = None  # the least any one corruption may read


RECIPE_TARGETS = (
    RecipeTarget("robust", 60, 0.994, 0.96),
    RecipeTarget("best", 360, 0.997, 0.985, 0.93),
)


def recipe_rows(settings: Settings) -> list[Row]:
    """Issue 19's recipes as users run them, with their corruption reports (severity 3, 2,000 test digits);
    a smoke run trains a sliver of an epoch on a slice and skips the report."""
    rows = []
    for target in RECIPE_TARGETS:
        quick = settings.train_count is not None
        sliver = [*limit_options(settings), "--epochs", "0.05"] if quick else []
        options = ["--recipe", target.recipe, *sliver]
        progress(f"python -m ocr_core train --name bench {' '.join(options)}, then its robustness report")
        run = train_command(options, report=not quick)
        goals = f"≤ {target.seconds:g} s, ≥ {target.clean:.1%} clean, corruption mean ≥ {target.corruption_mean:.1%}"
        goals += f", none < {target.worst:.0%}" if target.worst else ""
        figures = f"{run.seconds:.1f} s whole process ({run.cpu_seconds:.1f} CPU s), {run.accuracy:.2%} clean"
        good = run.seconds <= target.seconds and run.accuracy >= target.clean
        if run.robustness is not None:
            mean, worst, worst_accuracy = (run.robustness[k] for k in ("mean", "worst", "worst_accuracy"))
            figures += f", corruption mean {mean:.1%}, worst {worst} {worst_accuracy:.1%}"
            good = good and mean >= target.corruption_mean and (not target.worst or worst_accuracy >= target.worst)
        rows.append(
            Row(
                f"`python -m ocr_core train --name bench {' '.join(options)}`",
                "",
                figures,
                "",
                goals,
                verdict(good) if run.robustness is not None else "n/a (smoke run)",
            )
        )
    return rows


def ratio(theirs: TargetRun, ours: TargetRun) -> str:
    if theirs.seconds is None or ours.seconds is None:
        return "n/a"
    return f"{theirs.seconds / ours.seconds:.1f}x"


def inference_rows(data: MnistData, settings: Settings) -> list[Row]:
    rows = []
    for architecture in ARCHITECTURES:
        progress(f"evaluation and drawing latency, {architecture} net")
        seconds = evaluation_seconds(data, architecture)
        count = len(data.test_labels)
        rows.append(
            Row(
                f"`evaluate` {count:,} test images, `{architecture}` net",
                "",
                f"{seconds:.2f} s ({count / seconds:,.0f} img/s)",
                "",
                "≤ 2 s",
                verdict(seconds <= 2),
            )
        )
    for architecture in ARCHITECTURES:
        timing = drawing_latency(architecture, settings.latency_repeats)
        rows.append(
            Row(
                f"drawing → probabilities p50 / p95, `{architecture}` net",
                "",
                f"{timing.p50_ms:.1f} / {timing.p95_ms:.1f} ms",
                "",
                "p50 ≤ 10 ms",
                verdict(timing.p50_ms <= 10),
            )
        )
    return rows


def explain_rows(data: MnistData, settings: Settings, with_app: bool) -> list[Row]:
    """Inside the network: explanation latency on the `deep` net, feature index and map, app memory."""
    progress("explanations of one drawing, deep net")
    timings = explain_bench.explanation_latencies(settings.latency_repeats // 4)
    rows = [
        Row(
            "explain one drawing, `deep` net: activations + Grad-CAM + saliency, p50 / p95",
            "",
            f"{timings['first'].p50_ms:.0f} / {timings['first'].p95_ms:.0f} ms",
            "",
            "≤ 150 ms",
            verdict(timings["first"].p50_ms <= 150),
        ),
        Row(
            "explain one drawing, `deep` net: Integrated Gradients "
            f"({explain.INTEGRATED_GRADIENTS_STEPS} steps), p50 / p95",
            "",
            f"{timings['integrated_gradients'].p50_ms:.0f} / {timings['integrated_gradients'].p95_ms:.0f} ms",
            "",
            "≤ 1 s",
            verdict(timings["integrated_gradients"].p50_ms <= 1000),
        ),
        Row(
            "explain one drawing, `deep` net: occlusion, p50 / p95",
            "",
            f"{timings['occlusion'].p50_ms:.0f} / {timings['occlusion'].p95_ms:.0f} ms",
        ),
    ]
    progress(f"feature index of {len(data.train_labels):,} training digits and map of {len(data.test_labels):,}")
    space = explain_bench.feature_space_figures(data, settings.latency_repeats)
    rows += [
        Row(
            f"feature index build, {len(data.train_labels):,} training digits, `deep` net",
            "",
            f"{space['index_seconds']:.1f} s ({space['kept_variance']:.1%} of the variance on "
            f"{feature_space.INDEX_DIMENSIONS} axes)",
        ),
        Row(
            f"test-set map build (PCA), {len(data.test_labels):,} test digits, `deep` net",
            "",
            f"{space['map_seconds']:.1f} s",
        ),
        Row(
            "similar training digits (8 nearest) once the index exists, p50 / p95",
            "",
            f"{space['lookup'].p50_ms:.1f} / {space['lookup'].p95_ms:.1f} ms",
            "",
            "≤ 50 ms",
            verdict(space["lookup"].p50_ms <= 50),
        ),
        Row(
            "a drawing placed on the map, p50 / p95",
            "",
            f"{space['place'].p50_ms:.1f} / {space['place'].p95_ms:.1f} ms",
        ),
    ]
    if with_app:
        progress("app memory with the section open (AppTest, fresh process, cold caches)")
        try:
            app_memory = explain_bench.measure_app_memory()
        except RuntimeError as error:
            rows.append(Row("app peak memory with Inside the network open", "", f"failed: {error}"))
        else:
            rows.append(
                Row(
                    "app peak RSS: Draw page with a drawing; then Inside the network open, every tab "
                    "(builds the active run's index and map)",
                    "",
                    f"{app_memory['closed_mb']:,.0f} MB; {app_memory['open_mb']:,.0f} MB",
                )
            )
    return rows


def app_rows(settings: Settings, use_browser: bool) -> list[Row]:
    rows = []
    progress("app cold start")
    try:
        start = app_timing.cold_start(use_browser)
    except app_timing.Skipped as reason:
        rows.append(Row("app cold start", "", f"skipped: {reason}"))
    else:
        rendered = (
            f"{start.rendered_seconds:.1f} s" if start.rendered_seconds is not None else f"n/a ({start.browser_note})"
        )
        rows.append(
            Row(
                "app cold start: healthy / Draw page served / rendered in chromium",
                "",
                f"{start.healthy_seconds:.1f} s / {start.served_seconds:.1f} s / {rendered}",
            )
        )
    progress("Draw page reruns (AppTest)")
    try:
        rerun = app_timing.draw_page_reruns(settings.rerun_repeats)
    except app_timing.Skipped as reason:
        rows.append(Row("Draw page rerun with a drawing", "", f"skipped: {reason}"))
    else:
        shown = "" if rerun.predicted else " (no saved runs: no prediction shown)"
        rows.append(
            Row(
                "Draw page with a drawing (AppTest): first run; rerun p50 / p95",
                "",
                f"{rerun.first_run_seconds:.2f} s; {rerun.rerun.p50_ms / 1000:.2f} / "
                f"{rerun.rerun.p95_ms / 1000:.2f} s{shown}",
            )
        )
    return rows + memory_rows(settings, use_browser)


def memory_rows(settings: Settings, use_browser: bool) -> list[Row]:
    if not use_browser:
        return [Row("server memory (RSS)", "", "skipped: needs the browser")]
    progress("server memory (RSS) while a visitor draws, evaluates and trains in chromium")
    try:
        phases = memory.server_memory(quick=settings.train_count is not None)
    except app_timing.Skipped as reason:
        return [Row("server memory (RSS)", "", f"skipped: {reason}")]
    return [
        Row(
            f"server memory after: {phase.name}",
            "",
            f"{phase.rss_mb:,.0f} MB; peak so far {phase.peak_mb:,.0f} MB",
            "",
            f"peak ≤ {memory.LIMIT_MB:,} MB",
            verdict(phase.peak_mb <= memory.LIMIT_MB),
        )
        for phase in phases
    ]


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def machine_lines() -> list[str]:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}, "
        f"{platform.system()} {platform.release()}",
        f"software: Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}",
        f"load average (1, 5, 15 min): {load}",
    ]


def table(rows: list[Row]) -> str:
    lines = [
        "| measurement | tutorial pipeline | ours | ours vs tutorial | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r.measurement} | {r.tutorial} | {r.ours} | {r.ratio} | {r.target} | {r.met} |" for r in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run on slices of MNIST (under a minute); its figures are not comparable",
    )
    parser.add_argument("--skip-app", action="store_true", help="leave out the Streamlit app figures")
    parser.add_argument(
        "--skip-recipes",
        action="store_true",
        help="leave out the `robust` and `best` recipes (about 8 minutes of a full run)",
    )
    parser.add_argument("--no-browser", action="store_true", help="cold start without the chromium render")
    parser.add_argument(
        "--explain-only",
        action="store_true",
        help="only the Inside the network figures (explanations, feature index, map, app memory)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    try:
        data = load_mnist(download=False).subset(settings.train_count, settings.test_count)
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started, header = time.perf_counter(), machine_lines()
    if args.explain_only:
        rows = explain_rows(data, settings, with_app=not args.skip_app)
    else:
        rows = throughput_rows(data, settings) + time_to_target_rows(data, settings)
        rows += [] if args.skip_recipes else recipe_rows(settings)
        rows += inference_rows(data, settings)
        rows += explain_rows(data, settings, with_app=not args.skip_app)
    if not args.skip_app and not args.explain_only:
        rows += app_rows(settings, use_browser=not args.no_browser)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(
        f"# `{command.strip()}` ({'quick smoke run' if args.quick else 'full run'}), "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {time.perf_counter() - started:.0f} s"
    )
    print("\n".join(header[:2]))
    print(f"{header[2]} at the start; {machine_lines()[2].split(': ')[1]} at the end\n")
    print(table(rows))
    return 0
