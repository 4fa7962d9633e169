"""Where an input sits among MNIST in a run's feature space (`models.penultimate_features`, what the
classifier reads): the nearest training digits, and a 2-D map of the test set.

Both are built once per run and cached on disk in OCR_CACHE_DIR. The cache key is the run's weights hash
(`checkpoints.run_weights_hash`, the robustness reports' key; plus the data's fingerprint and this module's
format): a content hash cannot be fooled by a run rewritten within the file system's mtime resolution, or
copied with its mtime kept, as a size+mtime key could, and a renamed, rescored or calibrated run keeps its
index and map, since its weights did not change.

The index keeps the features' projection on their first INDEX_DIMENSIONS principal components: the `deep`
net's 1,152 features for 60,000 digits would take 276 MB in float32, the projection 31 MB, and it keeps
nearly all of their variance (recorded in `FeatureIndex.kept_variance`; nets with fewer features are
kept whole, only rotated, so their distances are exact).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import MnistData, cache_dir
from .explain import as_batch
from .files import read_cached_arrays, write_cache
from .models import penultimate_features

INDEX_DIMENSIONS = 128
MAP_DIMENSIONS = 2
FEATURE_BATCH = 1000
FIT_SAMPLES = 10_000
CACHE_FORMAT = 1
KEEP_CACHED = 12  # cache files of each kind; the least recently used beyond this are deleted
ProgressCallback = Callable[[float], None]  # fraction done, 0 to 1


@dataclass(frozen=True)
class Projection:
    """Centre, then project on principal axes: (F,) mean, (D, F) axes."""

    mean: np.ndarray
    axes: np.ndarray
    kept_variance: float  # fraction of the features' variance along the kept axes

    def apply(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, np.float32) - self.mean) @ self.axes.T


@dataclass(frozen=True)
class FeatureIndex:
    """The training digits' projected features, for nearest-neighbour search."""

    projection: Projection
    points: np.ndarray  # (N, D) float32
    squared_norms: np.ndarray  # (N,)

    def nearest(self, features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the k nearest training digits to one feature vector (F,), nearest first, and their
        Euclidean distances in the projected space."""
        query = self.projection.apply(features[None])[0]
        squared = self.squared_norms - 2 * self.points @ query + query @ query
        k = min(k, len(squared))
        nearest = np.argpartition(squared, k - 1)[:k]
        nearest = nearest[np.argsort(squared[nearest], kind="stable")]
        return nearest, np.sqrt(np.maximum(squared[nearest], 0))


@dataclass(frozen=True)
class DigitMap:
    """The test digits on the plane of their features' two principal axes."""

    projection: Projection
    points: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,)
    predictions: np.ndarray  # (N,) the run's answers


@dataclass(frozen=True)
class Neighbour:
    index: int  # in the training set
    label: int
    distance: float
    image: np.ndarray  # uint8 (28, 28)


def run_key(weights: str, data_fingerprint: str) -> str:
    return hashlib.sha256(f"{weights}:{data_fingerprint}:{CACHE_FORMAT}".encode()).hexdigest()[:20]


def features_in_chunks(model: nn.Module, images: torch.Tensor, progress: ProgressCallback | None = None):
    """Penultimate features of uint8 images (N, 28, 28), a batch at a time (bounded memory)."""
    for start in range(0, len(images), FEATURE_BATCH):
        yield penultimate_features(model, images[start : start + FEATURE_BATCH]).numpy()
        if progress is not None:
            progress(min(1.0, (start + FEATURE_BATCH) / len(images)))


def fit_projection(features: np.ndarray, dimensions: int) -> Projection:
    """Principal axes of at most FIT_SAMPLES evenly spread rows (10,000 digits pin the leading axes down as
    well as 60,000). Up to `dimensions` features: all axes, exactly (a rotation: distances are unchanged);
    more: the leading ones by torch's randomized PCA, seeded, since a full eigendecomposition of the `fast`
    net's 3,136 x 3,136 covariance takes tens of seconds on two cores."""
    sample = torch.from_numpy(features[:: max(1, len(features) // FIT_SAMPLES)].astype(np.float32))
    mean = sample.mean(0)
    centred = sample - mean
    total_variance = float(centred.pow(2).sum() / len(sample))
    if centred.shape[1] <= dimensions:
        variances, vectors = torch.linalg.eigh(centred.T.double() @ centred.double() / len(sample))
        order = variances.argsort(descending=True)
        variances, axes = variances[order].clamp(min=0).float(), vectors[:, order].T.float()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, singular, vectors = torch.pca_lowrank(
                centred, q=min(dimensions + 10, *centred.shape), center=False, niter=4
            )
        variances, axes = singular[:dimensions] ** 2 / len(sample), vectors[:, :dimensions].T
    # an axis's sign is arbitrary: make each one's largest component positive, so rebuilds agree
    axes = axes * torch.sign(axes[torch.arange(len(axes)), axes.abs().argmax(1)])[:, None]
    kept = float(variances.sum()) / max(total_variance, 1e-12)
    return Projection(mean.numpy(), axes.contiguous().numpy(), min(kept, 1.0))


def build_index(model: nn.Module, images: torch.Tensor, progress: ProgressCallback | None = None) -> FeatureIndex:
    # float16 while the projection is fitted: half the transient memory (138 MB for `deep`), and far finer
    # than neighbours' distances differ
    features = None
    for start, chunk in zip(
        range(0, len(images), FEATURE_BATCH), features_in_chunks(model, images, progress), strict=True
    ):
        if features is None:
            features = np.empty((len(images), chunk.shape[1]), np.float16)
        features[start : start + len(chunk)] = chunk
    projection = fit_projection(features, INDEX_DIMENSIONS)
    points = np.concatenate(
        [projection.apply(features[start : start + FEATURE_BATCH]) for start in range(0, len(features), FEATURE_BATCH)]
    )
    return FeatureIndex(projection, points, (points**2).sum(1))


def build_map(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, progress: ProgressCallback | None = None
) -> DigitMap:
    features = np.concatenate(list(features_in_chunks(model, images, progress)))
    projection = fit_projection(features, MAP_DIMENSIONS)
    predictions = (
        (torch.from_numpy(features) @ model[-1].weight.detach().float().T + model[-1].bias.detach().float())
        .argmax(1)
        .numpy()
    )
    return DigitMap(projection, projection.apply(features), labels.numpy().copy(), predictions)


# ---- the disk cache ------------------------------------------------------------------------------------------


def cache_file(kind: str, key: str) -> Path:
    return cache_dir() / "explain" / f"{kind}-{key}.npz"


def is_cached(kind: str, weights: str, data: MnistData) -> bool:
    """Whether the disk cache holds the `kind` ("index" or "map") of these weights on this data: a caller can
    then show progress only for a build."""
    return cache_file(kind, run_key(weights, data.fingerprint)).is_file()


PROJECTION_KEYS = {"mean", "axes", "kept_variance"}


def read_cached(path: Path, keys: set[str], points: int) -> dict[str, np.ndarray] | None:
    """The cached arrays if they hold `keys` and `points` points; absent or damaged (then deleted): None."""
    arrays = read_cached_arrays(path, lambda arrays: keys <= arrays.keys() and len(arrays["points"]) == points)
    if arrays is not None:
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept by the pruning
    return arrays


def write_cached(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically (a reader never sees half a file); a read-only cache dir only costs the rebuild."""
    if not write_cache(path, lambda stream: np.savez(stream, **arrays)):
        return
    kind = path.name.split("-")[0]
    try:
        stale = sorted(path.parent.glob(f"{kind}-*.npz"), key=lambda file: file.stat().st_mtime, reverse=True)
        for old in stale[KEEP_CACHED:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # pruned by another process meanwhile


def projection_arrays(projection: Projection) -> dict[str, np.ndarray]:
    return {"mean": projection.mean, "axes": projection.axes, "kept_variance": np.array(projection.kept_variance)}


def projection_from(arrays: dict[str, np.ndarray]) -> Projection:
    return Projection(arrays["mean"], arrays["axes"], float(arrays["kept_variance"]))


def training_index(
    model: nn.Module, weights: str, data: MnistData, progress: ProgressCallback | None = None
) -> FeatureIndex:
    """The index of the training digits for the run whose weights hash is `weights`, from the disk cache or
    built (and cached) now."""
    path = cache_file("index", run_key(weights, data.fingerprint))
    cached = read_cached(path, {*PROJECTION_KEYS, "points"}, len(data.train_labels))
    if cached is not None:
        points = cached["points"].astype(np.float32)
        return FeatureIndex(projection_from(cached), points, (points**2).sum(1))
    index = build_index(model, data.train_images, progress)
    write_cached(path, {**projection_arrays(index.projection), "points": index.points.astype(np.float16)})
    return index


def map_of_test_set(
    model: nn.Module, weights: str, data: MnistData, progress: ProgressCallback | None = None
) -> DigitMap:
    """The map of the test digits for the run whose weights hash is `weights`, from the disk cache or built
    (and cached) now."""
    path = cache_file("map", run_key(weights, data.fingerprint))
    cached = read_cached(path, {*PROJECTION_KEYS, "points", "labels", "predictions"}, len(data.test_labels))
    if cached is not None:
        return DigitMap(projection_from(cached), cached["points"], cached["labels"], cached["predictions"])
    built = build_map(model, data.test_images, data.test_labels, progress)
    write_cached(
        path,
        {
            **projection_arrays(built.projection),
            "points": built.points,
            "labels": built.labels,
            "predictions": built.predictions,
        },
    )
    return built


def input_features(model: nn.Module, digit: torch.Tensor | np.ndarray) -> np.ndarray:
    return penultimate_features(model, as_batch(digit))[0].numpy()


def similar_digits(
    model: nn.Module, index: FeatureIndex, data: MnistData, digit: torch.Tensor | np.ndarray, k: int = 8
) -> list[Neighbour]:
    """The k training digits nearest to `digit` in the run's feature space, nearest first."""
    indices, distances = index.nearest(input_features(model, digit), k)
    return [
        Neighbour(int(i), int(data.train_labels[i]), float(d), data.train_images[i].numpy())
        for i, d in zip(indices, distances, strict=True)
    ]


def place_on_map(model: nn.Module, test_map: DigitMap, digit: torch.Tensor | np.ndarray) -> np.ndarray:
    """Where `digit` falls on the run's test-set map, (2,)."""
    return test_map.projection.apply(input_features(model, digit)[None])[0]
