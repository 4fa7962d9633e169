"""The tutorial's pipeline, re-implemented faithfully as the reference: torchvision's MNIST dataset read
through a DataLoader (batch 64, shuffled, no workers) with PIL transforms, the seed CNN, Adam 1e-3."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from bench.measure import PROJECT_DIR, TargetRun
from ocr_core.data import MnistData, cache_dir, find_mnist
from ocr_core.evaluation import evaluate
from ocr_core.files import write_atomically
from ocr_core.models import MNIST_MEAN, MNIST_STD, build_model

BATCH_SIZE = 64
LEARNING_RATE = 1e-3
PLAIN = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
AUGMENTED = transforms.Compose(
    [
        transforms.RandomRotation(20),
        transforms.RandomAffine(0, translate=(0.2, 0.2)),
        transforms.RandomResizedCrop(28, scale=(0.8, 1.2)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)),
    ]
)


def torchvision_root() -> Path:
    """A root holding MNIST/raw/ with the *extracted* files torchvision wants, made from our data dir's
    files in our cache dir: the data dir may be read-only and shared, so nothing is ever written there."""
    found = find_mnist()
    if found is None:
        raise FileNotFoundError("MNIST is not in OCR_DATA_DIR; see README's Data section")
    _, files = found
    root = cache_dir() / "torchvision"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        target = raw / name
        if target.is_file() and target.stat().st_mtime_ns >= source.stat().st_mtime_ns:
            continue
        with gzip.open(source) if source.suffix == ".gz" else open(source, "rb") as reader:
            write_atomically(target, lambda writer, reader=reader: shutil.copyfileobj(reader, writer))
    return root


def tutorial_loader(augmented: bool, train_count: int | None = None, seed: int = 0) -> DataLoader:
    dataset = datasets.MNIST(
        str(torchvision_root()), train=True, download=False, transform=AUGMENTED if augmented else PLAIN
    )
    if train_count is not None:
        dataset = Subset(dataset, range(min(train_count, len(dataset))))
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, generator=torch.Generator().manual_seed(seed))


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches) -> int:
    """The tutorial's inner loop; returns the number of images trained on."""
    model.train()
    images_seen = 0
    for images, labels in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        images_seen += len(labels)
    return images_seen


def new_run(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = build_model("seed").to(memory_format=torch.contiguous_format)  # as the tutorial builds it
    return model, torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)


def throughput(augmented: bool, batches: int, warmup_batches: int = 5, train_count: int | None = None) -> float:
    """Training images per second through the tutorial's DataLoader, after a few warm-up batches."""
    model, optimizer = new_run(seed=0)
    iterator = iter(tutorial_loader(augmented, train_count))
    train_steps(model, optimizer, islice(iterator, warmup_batches))
    started = time.perf_counter()
    images = train_steps(model, optimizer, islice(iterator, batches))
    return images / (time.perf_counter() - started)


def time_to_accuracy(
    data: MnistData,
    target: float,
    max_epochs: float,
    evaluations_per_epoch: int = 4,
    train_count: int | None = None,
    seed: int = 0,
) -> TargetRun:
    """Train the tutorial recipe, scoring the test set `evaluations_per_epoch` times an epoch, until it
    reaches `target` or has trained `max_epochs`. The clock includes building the dataset but not the scoring,
    which the tutorial does not need."""
    started = time.perf_counter()
    model, optimizer = new_run(seed)
    loader = tutorial_loader(augmented=False, train_count=train_count, seed=seed)
    steps_per_check = max(1, len(loader) // evaluations_per_epoch)
    total_checks = round(max_epochs * len(loader) / steps_per_check)
    training_seconds, images_seen, accuracy = time.perf_counter() - started, 0, 0.0
    batches = endless(loader)
    for _ in range(total_checks):
        resumed = time.perf_counter()
        images_seen += train_steps(model, optimizer, islice(batches, steps_per_check))
        training_seconds += time.perf_counter() - resumed
        accuracy = evaluate(model, data.test_images, data.test_labels).accuracy
        if accuracy >= target:
            return TargetRun(training_seconds, images_seen / len(loader.dataset), accuracy)
    return TargetRun(None, images_seen / len(loader.dataset), accuracy)


def endless(loader: DataLoader) -> Iterator:
    """Batches epoch after epoch, reshuffled each time, as the tutorial's epoch loop reads them."""
    while True:
        yield from loader


def whole_script(
    target: float, max_epochs: int, train_count: int | None = None, test_count: int | None = None
) -> TargetRun:
    """`python -m bench.tutorial_script` (the tutorial's whole script, scoring the test set once an epoch) in a
    fresh process: the clock runs from starting `python` to the epoch that reaches `target`."""
    command = [sys.executable, "-m", "bench.tutorial_script", str(torchvision_root()), "--target", str(target)]
    command += ["--max-epochs", str(max_epochs)]
    command += ["--train-limit", str(train_count)] if train_count else []
    command += ["--test-limit", str(test_count)] if test_count else []
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-2000:]}")
    last = json.loads(finished.stdout.splitlines()[-1])
    reached = last["accuracy"] >= target
    return TargetRun(seconds if reached else None, float(last["epoch"]), last["accuracy"])
