"""The run metadata schema: incomplete or malformed run files are named problems, never KeyErrors, and keys
this version does not know survive a read and a rewrite."""

import json
from dataclasses import replace

import pytest
from safetensors.torch import save_file

from conftest import sample_metadata
from ocr_core.checkpoints import FORMAT, CheckpointError
from ocr_core.cli import main
from ocr_core.metadata import RunMetadata
from ocr_core.models import build_model


def write_run_file(store, name: str, metadata: dict) -> bytes:
    """A run file in the lab's format with exactly this metadata, as an older or newer lab might write it."""
    store.root.mkdir(parents=True, exist_ok=True)
    path = store.root / f"{name}.safetensors"
    tensors = {
        key: value.contiguous() for key, value in build_model(metadata.get("architecture", "fast")).state_dict().items()
    }
    save_file(tensors, str(path), metadata={"format": FORMAT, "format_version": "1", "metadata": json.dumps(metadata)})
    return path.read_bytes()


def test_the_schema_round_trips_through_json():
    metadata = sample_metadata()
    assert RunMetadata.from_dict(json.loads(json.dumps(metadata.to_dict()))) == metadata


def test_a_run_trained_on_the_images_it_was_given_less_its_held_out_ones():
    metadata = sample_metadata()
    held_out = replace(metadata, config=replace(metadata.config, holdout=5_000))
    assert metadata.trained_images == metadata.data.train_size
    assert held_out.trained_images == metadata.data.train_size - 5_000


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda m: {"architecture": "fast"}, "'parameters' is missing"),
        (lambda m: {k: v for k, v in m.items() if k != "history"}, "'history' is missing"),
        (lambda m: {**m, "parameters": "many"}, "'parameters' must be a whole number"),
        (lambda m: {**m, "stopped_early": 1}, "'stopped_early' must be true or false"),
        (lambda m: {**m, "metrics": {"clean": m["metrics"]["clean"]}}, "seed_augmented"),
        (
            lambda m: {**m, "metrics": {**m["metrics"], "clean": {"accuracy": 0.9}}},
            "'metrics.clean.augment' is missing",
        ),
        (lambda m: {**m, "history": [{**m["history"][0], "test_accuracy": "high"}]}, "history[0]"),
        (lambda m: {**m, "config": {**m["config"], "epochs": -3}}, "not a valid training config"),
        (lambda m: {**m, "data": None}, "'data' must be a JSON object"),
        (lambda m: {**m, "calibration": 1.5}, "'calibration' must be a JSON object"),
        (lambda m: ["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_incomplete_or_malformed_metadata_is_a_named_problem(damage, message):
    with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RunMetadata.from_dict(damage(sample_metadata().to_dict()))


def test_keys_and_sections_of_a_newer_lab_are_read_and_written_back(store):
    newer = {
        **sample_metadata().to_dict(),
        "calibration": {"temperature": 1.3, "ood_threshold": 0.2},
        "robustness": {"mean": 0.93},
        "from_the_future": [1, 2, 3],
    }
    write_run_file(store, "newer", newer)
    info = store.info("newer")
    assert info.metadata.calibration == {"temperature": 1.3, "ood_threshold": 0.2}
    assert info.metadata.extras == {"from_the_future": [1, 2, 3]}
    model, metadata = store.load("newer")
    store.save("copy", model, replace(metadata, device="rewritten"))
    assert store.info("copy").metadata.to_dict() == {**newer, "device": "rewritten"}


def test_an_incomplete_run_is_listed_as_skipped_and_refused_on_upload(store, capsys):
    store.save("good", build_model("fast"), sample_metadata())
    payload = write_run_file(store, "old", {"architecture": "fast"})
    runs = {run.name: run for run in store.list()}
    assert runs["good"].ok and not runs["old"].ok and runs["old"].metadata is None
    assert "incomplete run metadata" in runs["old"].problem and runs["old"].metric() is None
    with pytest.raises(CheckpointError, match="incomplete run metadata"):
        store.load("old")
    with pytest.raises(CheckpointError, match="incomplete run metadata"):
        store.import_bytes("uploaded", payload)
    assert not store.exists("uploaded")

    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "old" in listing and "skipped:" in listing and "'parameters' is missing" in listing
    assert main(["list", "--json"]) == 0
    entries = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert "incomplete" in entries["old"]["problem"] and entries["good"]["accuracy"] == 0.5
    assert main(["info", "old"]) == 2
    assert "incomplete run metadata" in capsys.readouterr().err
