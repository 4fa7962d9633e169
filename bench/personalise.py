"""Personalisation on synthetic writers whose style MNIST lacks (bench/writers.py), and the sample store's speed.

    python -m bench.personalise [--run best] [--layers head,block,all] [--per-digit 5] [--check 30]
    python -m bench.personalise --set REPLAY_WEIGHT=3 --set STYLED_COUNT=0   # another setting of ocr_core.personal
    python -m bench.personalise --timing        # whole-process `personalise` on 50 samples, and saving a sample

For each writer: `--per-digit` samples of each digit go into a fresh sample store (the writer's collection;
personalise trains on two thirds of them and holds a third out), and `--check` more per digit, never stored,
measure the error before and after on many more digits than the held-out share has. Every writer's digits
are redrawn from MNIST's held-out training digits (the last 5,000, which no shipped run trained on), so the
choice of layers made here is not made on the test set. MNIST test accuracy is measured before and after."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.writers import WRITERS, pick_per_digit, writer_digits
from ocr_core import RunStore, evaluate, load_mnist, personal
from ocr_core.personal import DEFAULT_LAYERS, LAYERS, STEPS, personalise
from ocr_core.samples import SampleStore

PROJECT_DIR = Path(__file__).resolve().parent.parent


def error(model, images: np.ndarray, labels: np.ndarray) -> float:
    return 1 - evaluate(model, torch.from_numpy(images), torch.from_numpy(labels)).accuracy


WRITER_BASES = 2500  # the first 2,500 of the 5,000 held-out training digits are redrawn as writers' digits;
# the other 2,500 measure what MNIST loses, without looking at the test set (the choices here were made there)


def collections(data, per_digit: int, check: int, names: list[str] | None = None):
    """Per writer: (stored inputs, labels, drawings) and (check inputs, labels), from held-out MNIST digits."""
    images, labels = data.train_images[-5000:][:WRITER_BASES].numpy(), data.train_labels[-5000:][:WRITER_BASES].numpy()
    stored, checked = pick_per_digit(labels, per_digit), pick_per_digit(labels, check, skip=per_digit)
    for index, style in enumerate(WRITERS):
        if names and style.name not in names:
            continue
        # each writer redraws other MNIST digits
        rotate = np.roll(np.arange(len(labels)), -index * 600)
        own_images, own_labels = images[rotate], labels[rotate]
        yield (
            style.name,
            writer_digits(style, own_images[stored], own_labels[stored]),
            writer_digits(style, own_images[checked], own_labels[checked])[:2],
        )


def measure(args: argparse.Namespace) -> None:
    data = load_mnist()
    with tempfile.TemporaryDirectory() as folder:
        runs = RunStore(Path(folder) / "runs")
        parent = RunStore().info(args.run).path
        runs.root.mkdir()
        runs.path(args.run).write_bytes(parent.read_bytes())
        parent_model, _ = runs.load(args.run)
        mnist_before = 1 - error(parent_model, data.test_images.numpy(), data.test_labels.numpy())
        held_images = data.train_images[-5000:][WRITER_BASES:].numpy()
        held_labels = data.train_labels[-5000:][WRITER_BASES:].numpy()
        held_before = 1 - error(parent_model, held_images, held_labels)
        print(
            f"{args.run}: MNIST test accuracy {mnist_before:.2%}, held-out MNIST digits {held_before:.2%}; "
            f"{args.per_digit} samples per digit stored, {args.check} per digit checked"
        )
        print(
            "writer       layers  check error before -> after (fall)   held-out own before -> after   "
            "held-out MNIST   MNIST test"
        )
        totals: dict[str, list] = {layers: [] for layers in args.layers}
        for name, (own, own_labels, drawings), (check, check_labels) in collections(
            data, args.per_digit, args.check, args.writers
        ):
            samples = SampleStore(Path(folder) / f"{name}.sqlite")
            for digit, label, drawing in zip(own, own_labels, drawings, strict=True):
                samples.add(name, int(label), digit, drawing, "canvas")
            before = error(parent_model, check, check_labels)
            for layers in args.layers:
                result = personalise(
                    args.run, name, f"{name}-{layers}", runs, samples, data, layers=layers, steps=args.steps
                )
                model, _ = runs.load(result.info.name)
                after = error(model, check, check_labels)
                held = 1 - error(model, held_images, held_labels)
                fall = (before - after) / before if before else float("nan")
                totals[layers].append((before, after, held, result.mnist_after))
                print(
                    f"{name:<12} {layers:<6}  {before:6.2%} -> {after:6.2%} ({fall:+.0%} of the errors gone)   "
                    f"{1 - result.before.accuracy:6.2%} -> {1 - result.after.accuracy:6.2%}   "
                    f"{(held - held_before) * 100:+.2f} points   "
                    f"{result.mnist_before:.2%} -> {result.mnist_after:.2%}  "
                    f"({result.info.metadata.personalisation['seconds']:.0f} s)",
                    flush=True,
                )
        for layers, rows in totals.items():
            before, after, held, mnist = (np.mean(column) for column in zip(*rows, strict=True))
            print(
                f"mean {layers:<6}: check error {before:.2%} -> {after:.2%} ({(before - after) / before:.0%} gone), "
                f"held-out MNIST {(held - held_before) * 100:+.2f} points (worst "
                f"{(min(row[2] for row in rows) - held_before) * 100:+.2f}), MNIST test {mnist_before:.2%} -> "
                f"{mnist:.2%} ({(mnist - mnist_before) * 100:+.2f} points, worst {min(row[3] for row in rows):.2%})"
            )


def timing(args: argparse.Namespace) -> None:
    """The CLI `personalise` on 50 samples as one whole process, and the milliseconds to save one sample."""
    data = load_mnist()
    name, (own, own_labels, drawings), _ = next(collections(data, 5, 0))
    with tempfile.TemporaryDirectory() as folder:
        environment = {
            **os.environ,
            "OCR_CHECKPOINT_DIR": folder,
            "OCR_SAMPLES_DB": str(Path(folder) / "samples.sqlite"),
        }
        Path(folder, f"{args.run}.safetensors").write_bytes(RunStore().info(args.run).path.read_bytes())
        samples = SampleStore(environment["OCR_SAMPLES_DB"])
        samples.count()  # the file is created here, not in the first timed save
        seconds = []
        for digit, label, drawing in zip(own, own_labels, drawings, strict=True):
            started = time.perf_counter()
            samples.add(name, int(label), digit, drawing, "canvas")
            seconds.append(time.perf_counter() - started)
        print(
            f"saving a sample ({len(seconds)} canvas drawings): median {np.median(seconds) * 1e3:.1f} ms, "
            f"max {max(seconds) * 1e3:.1f} ms"
        )
        command = [sys.executable, "-m", "ocr_core", "personalise", args.run, "--writer", name, "--name", "mine"]
        started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, env=environment, cwd=PROJECT_DIR, check=True, stderr=subprocess.DEVNULL)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
        print(
            f"`{' '.join(command[1:])}` on 50 samples: {time.perf_counter() - started:.1f} s whole process, "
            f"{cpu_seconds:.1f} CPU seconds (load average at the end: {os.getloadavg()[0]:.1f})"
        )


TUNABLE = ("OWN_BATCH", "REPLAY_BATCH", "LEARNING_RATE", "REPLAY_WEIGHT", "OWN_AUGMENT", "STYLED_COUNT")
TUNABLE += ("STYLED_BATCH", "STYLED_WEIGHT", "PARENT_SHARE")


def apply_setting(text: str) -> None:
    """`NAME=VALUE`: one of ocr_core.personal's `TUNABLE` settings, for this process only."""
    name, _, value = text.partition("=")
    if name not in TUNABLE:
        raise SystemExit(f"--set: {name!r} is not one of {', '.join(TUNABLE)}")
    setattr(personal, name, type(getattr(personal, name))(value))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.personalise", description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="best", help="the run to personalise (default best)")
    parser.add_argument(
        "--layers", default=DEFAULT_LAYERS, help=f"comma-separated, of {', '.join(LAYERS)} (default {DEFAULT_LAYERS})"
    )
    parser.add_argument("--per-digit", type=int, default=5, help="samples per digit in the store (default 5)")
    parser.add_argument("--check", type=int, default=30, help="further digits per digit to measure on (default 30)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument(
        "--writers", help=f"comma-separated, of {', '.join(w.name for w in WRITERS)} (default: all of them)"
    )
    parser.add_argument("--timing", action="store_true", help="time the CLI and saving a sample instead")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help=f"change a setting: {', '.join(TUNABLE)}"
    )
    args = parser.parse_args(argv)
    for setting in args.set:
        apply_setting(setting)
    args.layers = args.layers.split(",")
    args.writers = args.writers.split(",") if args.writers else None
    timing(args) if args.timing else measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
