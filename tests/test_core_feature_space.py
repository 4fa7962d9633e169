"""ocr_core.feature_space: nearest training digits and the test-set map, and their disk caches."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import sample_metadata, tiny_mnist

from ocr_core import feature_space
from ocr_core.checkpoints import run_weights_hash
from ocr_core.models import build_model, penultimate_features


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "explain"


def saved_run(store, name: str, seed: int) -> tuple[torch.nn.Module, object]:
    torch.manual_seed(seed)
    model = build_model("seed").eval()
    return model, store.save(name, model, sample_metadata("seed"), overwrite=True)


def refuse_to_build(*args, **kwargs):
    raise AssertionError("built again although the cache is valid")


def test_a_training_digit_is_its_own_nearest_neighbour():
    data = tiny_mnist(train=256)
    model = build_model("fast").eval()  # 3,136 features: projected on 128 axes
    index = feature_space.build_index(model, data.train_images)
    assert index.points.shape == (len(data.train_labels), feature_space.INDEX_DIMENSIONS)
    assert 0.5 < index.projection.kept_variance <= 1.0
    for position in (0, 17, 200):
        digit = data.train_images[position].float() / 255
        neighbours = feature_space.similar_digits(model, index, data, digit, k=5)
        assert len(neighbours) == 5 and neighbours[0].distance == pytest.approx(0, abs=1e-2)
        assert neighbours[0].label == int(data.train_labels[position])
        assert np.array_equal(neighbours[0].image, data.train_images[neighbours[0].index].numpy())
        assert [n.distance for n in neighbours] == sorted(n.distance for n in neighbours)


def test_with_few_features_the_index_is_exact():
    data = tiny_mnist()
    torch.manual_seed(0)  # the weights, whatever tests ran before
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 12), torch.nn.ReLU(), torch.nn.Linear(12, 10))
    index = feature_space.build_index(model, data.train_images)
    assert index.points.shape[1] == 12 and index.projection.kept_variance == pytest.approx(1.0)
    features = penultimate_features(model, data.train_images).numpy()
    query = features[5]
    exact = np.sort(np.sqrt(((features - query) ** 2).sum(1)))[:6]
    found, distances = index.nearest(query, 6)
    # The synthetic digits repeat, so neighbours tie: the exact distances, not the indices, are what must match.
    np.testing.assert_allclose(np.sort(distances), exact, atol=1e-3)
    np.testing.assert_allclose(distances, np.sqrt(((features[found] - query) ** 2).sum(1)), atol=1e-3)


def test_the_map_places_a_test_digit_on_its_own_point():
    data = tiny_mnist()
    model = build_model("seed").eval()
    built = feature_space.build_map(model, data.test_images, data.test_labels)
    assert built.points.shape == (len(data.test_labels), 2)
    np.testing.assert_array_equal(built.labels, data.test_labels.numpy())
    expected = model(((data.test_images.float() / 255 - 0.1307) / 0.3081)[:, None]).argmax(1).numpy()
    np.testing.assert_array_equal(built.predictions, expected)
    placed = feature_space.place_on_map(model, built, data.test_images[9].float() / 255)
    np.testing.assert_allclose(placed, built.points[9], atol=1e-3)
    assert built.points[:, 0].var() >= built.points[:, 1].var()  # the first axis carries the most variance


def test_caches_are_reused_and_invalidated_when_the_weights_change(store, cache, monkeypatch):
    data = tiny_mnist()
    model, run = saved_run(store, "mine", seed=0)
    weights = run_weights_hash(run)
    first_index = feature_space.training_index(model, weights, data)
    first_map = feature_space.map_of_test_set(model, weights, data)
    assert len(list(cache.glob("index-*.npz"))) == 1 and len(list(cache.glob("map-*.npz"))) == 1
    monkeypatch.setattr(feature_space, "build_index", refuse_to_build)
    monkeypatch.setattr(feature_space, "build_map", refuse_to_build)
    again = feature_space.training_index(model, weights, data)
    np.testing.assert_allclose(again.points, first_index.points, atol=0.05)  # stored as float16
    np.testing.assert_array_equal(feature_space.map_of_test_set(model, weights, data).points, first_map.points)
    renamed = store.rename("mine", "renamed")  # the same bytes under another name: no rebuild
    feature_space.training_index(model, run_weights_hash(renamed), data)
    # the metadata rewritten, as `calibrate` and `rescore` do, the weights unchanged: no rebuild either
    before = renamed.path.read_bytes()
    rewritten = store.save(
        "renamed", model, replace(renamed.metadata, rescored="2026-01-01T00:00:00+00:00"), overwrite=True
    )
    assert rewritten.path.read_bytes() != before, "the file changed, its weights did not"
    feature_space.training_index(model, run_weights_hash(rewritten), data)
    feature_space.map_of_test_set(model, run_weights_hash(rewritten), data)
    # retrained: new weights in the same file, even with the old modification time
    retrained, retrained_run = saved_run(store, "renamed", seed=1)
    os.utime(retrained_run.path, ns=(retrained_run.path.stat().st_atime_ns, int(rewritten.modified * 1e9)))
    with pytest.raises(AssertionError, match="built again"):
        feature_space.training_index(retrained, run_weights_hash(store.info("renamed")), data)
    with pytest.raises(AssertionError, match="built again"):
        feature_space.map_of_test_set(retrained, run_weights_hash(store.info("renamed")), data)
    with pytest.raises(AssertionError, match="built again"):  # other data: another key too
        feature_space.training_index(model, weights, replace(data, fingerprint="other"))


def test_a_damaged_cache_file_is_rebuilt(store, cache):
    data = tiny_mnist()
    model, run = saved_run(store, "mine", seed=0)
    feature_space.training_index(model, run_weights_hash(run), data)
    cached = next(cache.glob("index-*.npz"))
    cached.write_bytes(b"garbage")
    rebuilt = feature_space.training_index(model, run_weights_hash(run), data)
    assert rebuilt.points.shape[0] == len(data.train_labels)
    with np.load(cached) as stored:  # and written again, whole
        assert stored["points"].shape[0] == len(data.train_labels)


def test_old_cache_files_are_pruned(store, cache, monkeypatch):
    monkeypatch.setattr(feature_space, "KEEP_CACHED", 2)
    data = tiny_mnist(train=64, test=32)
    for seed in range(4):
        model, run = saved_run(store, f"run{seed}", seed=seed)
        feature_space.map_of_test_set(model, run_weights_hash(run), data)
    assert len(list(cache.glob("map-*.npz"))) == 2
