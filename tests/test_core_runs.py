import threading
from dataclasses import replace
from unittest import mock

import pytest

from ocr_core import runs
from ocr_core.checkpoints import CheckpointError
from ocr_core.metadata import DataInfo
from ocr_core.runs import rescore_run, train_run
from ocr_core.training import TrainConfig, TrainingCallback

TINY = TrainConfig(architecture="fast", epochs=1, batch_size=64, augment="seed,hflip=0")


def test_a_run_is_trained_scored_and_saved_with_self_describing_metadata(store, tiny_data):
    info, result = train_run("tiny", TINY, store, tiny_data)
    metadata = store.info("tiny").metadata
    assert info.name == "tiny" and not result.stopped
    assert metadata.architecture == "fast" and metadata.config == TINY
    assert metadata.augment == "rotate=20,translate=0.2,crop=0.8-1.2"
    assert metadata.precision in ("fp32", "bf16")
    assert set(metadata.metrics) == {"clean", "seed_augmented"}
    assert 0 <= metadata.metric("clean") <= 1
    assert metadata.metric("clean") == pytest.approx(result.history[-1].test_accuracy)
    assert len(metadata.history) == 1 and len(metadata.per_class) == 10
    assert metadata.data == DataInfo("synthetic", 512, 128)
    assert {"torch", "torchvision", "python", "ocr_core"} <= set(metadata.versions)
    assert metadata.parameters > 0 and metadata.multiply_adds > 0 and metadata.created
    assert store.load("tiny")[1] == metadata


def test_bad_or_taken_names_fail_before_any_training(store, tiny_data):
    with mock.patch.object(runs, "fit") as fit:
        with pytest.raises(CheckpointError, match="invalid run name"):
            train_run("../x", TINY, store, tiny_data)
        fit.assert_not_called()


def test_taken_name_is_refused_unless_overwriting(store, tiny_data):
    train_run("taken", TINY, store, tiny_data)
    with mock.patch.object(runs, "fit") as fit:
        with pytest.raises(CheckpointError, match="exists already"):
            train_run("taken", TINY, store, tiny_data)
        fit.assert_not_called()
    info, _ = train_run("taken", TINY, store, tiny_data, overwrite=True)
    assert info.name == "taken"


class StopAfterFirstReport(TrainingCallback):
    def __init__(self, stop):
        self.stop = stop

    def on_batch(self, progress):
        self.stop.set()


@pytest.mark.parametrize("keep", [True, False])
def test_a_stopped_run_is_kept_marked_or_discarded(store, tiny_data, keep):
    stop = threading.Event()
    config = TrainConfig(architecture="fast", epochs=3, batch_size=32)
    info, result = train_run(
        "halfway", config, store, tiny_data, (StopAfterFirstReport(stop),), stop, keep_if_stopped=keep
    )
    assert result.stopped
    if keep:
        metadata = store.info("halfway").metadata
        assert metadata.stopped_early and metadata.epochs_completed == pytest.approx(32 / 512)  # one step
    else:
        assert info is None and not store.exists("halfway")


def test_rescoring_rewrites_the_metrics_and_keeps_the_rest(store, tiny_data):
    train_run("again", TINY, store, tiny_data)
    before = store.info("again").metadata
    stale = replace(before, metrics={name: replace(score, accuracy=0.0) for name, score in before.metrics.items()})
    model, _ = store.load("again")
    store.save("again", model, stale, overwrite=True)
    after = rescore_run("again", store, tiny_data).metadata
    assert after.metrics == before.metrics and after.per_class == before.per_class
    assert after.history == before.history and after.config == before.config and after.rescored


def test_rescoring_on_other_data_is_refused(store, tiny_data):
    train_run("other", TINY, store, tiny_data)
    with pytest.raises(CheckpointError, match="other data"):
        rescore_run("other", store, tiny_data.subset(test=64))
