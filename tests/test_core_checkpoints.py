import errno
import json
import os
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from conftest import sample_metadata
from ocr_core import checkpoints
from ocr_core.checkpoints import CheckpointError, RunStore, validate_run_name
from ocr_core.evaluation import predict_probabilities
from ocr_core.models import build_model

METADATA = sample_metadata()


def saved(store, name="one"):
    torch.manual_seed(0)
    model = build_model("fast").eval()
    return model, store.save(name, model, METADATA)


def test_save_then_load_rebuilds_the_same_model(store):
    model, info = saved(store)
    loaded, metadata = store.load("one")
    images = torch.rand(4, 28, 28)
    assert metadata == METADATA and info.metric("clean") == 0.5
    assert (predict_probabilities(loaded, images) == predict_probabilities(model, images)).all()
    assert not loaded.training


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "a/b",
        "",
        ".hidden",
        "x" * 65,
        "a..b",
        "name with space",
        "c:\\x",
        None,
        "best.safetensors",
        "best.SafeTensors",
        "Ünïcode",
    ],
)
def test_unsafe_names_are_rejected(name):
    with pytest.raises(CheckpointError, match="invalid run name") as refused:
        validate_run_name(name)
    assert "ASCII letters" in str(refused.value) and "not ending in '.safetensors'" in str(refused.value)


def test_good_names_pass():
    for name in ("best", "seed-aug", "run_2.v1", "A" * 64):
        assert validate_run_name(name) == name


def test_saving_over_an_existing_run_needs_overwrite(store):
    model, _ = saved(store)
    with pytest.raises(CheckpointError, match="exists already"):
        store.save("one", model, METADATA)
    store.save("one", model, replace(METADATA, device="v2"), overwrite=True)
    assert store.info("one").metadata.device == "v2"


def test_a_failed_save_leaves_neither_a_file_nor_a_temp(store, monkeypatch):
    model, _ = saved(store)

    def disk_full(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(checkpoints, "save_file", disk_full)
    with pytest.raises(OSError):
        store.save("two", model, METADATA)
    with pytest.raises(OSError):
        store.save("one", model, replace(METADATA, device="lost"), overwrite=True)
    assert sorted(p.name for p in store.root.iterdir()) == ["one.safetensors"]
    assert store.info("one").metadata == METADATA, "the old run survives a failed overwrite"


def test_listing_reports_corrupt_and_foreign_files_and_keeps_going(store):
    saved(store, "good")
    (store.root / "garbage.safetensors").write_bytes(b"\x00\x01 definitely not safetensors")
    save_file({"w": torch.zeros(2)}, str(store.root / "foreign.safetensors"), metadata={"producer": "someone"})
    save_file(
        {"w": torch.zeros(2)},
        str(store.root / "damaged.safetensors"),
        metadata={"format": "ocr-lab-run", "metadata": "{not json"},
    )
    (store.root / ".partial.safetensors.123.tmp").write_bytes(b"in progress")
    runs = {run.name: run for run in store.list()}
    assert set(runs) == {"good", "garbage", "foreign", "damaged"}
    assert runs["good"].ok
    assert "not a readable safetensors" in runs["garbage"].problem
    assert "foreign" in runs["foreign"].problem
    assert "damaged" in runs["damaged"].problem
    with pytest.raises(CheckpointError):
        store.load("foreign")


def test_weights_that_do_not_fit_the_named_architecture_are_reported(store):
    model, _ = saved(store)
    store.save("liar", model, replace(METADATA, architecture="seed"))
    with pytest.raises(CheckpointError, match="do not fit"):
        store.load("liar")


def test_rename_and_delete(store):
    saved(store, "a")
    saved(store, "b")
    with pytest.raises(CheckpointError, match="exists already"):
        store.rename("a", "b")
    store.rename("a", "c")
    assert sorted(run.name for run in store.list()) == ["b", "c"]
    store.delete("c")
    with pytest.raises(CheckpointError, match="no run named"):
        store.delete("c")
    with pytest.raises(CheckpointError, match="invalid run name"):
        store.rename("b", "../escape")
    assert [run.name for run in store.list()] == ["b"]


def test_missing_run_is_a_clear_error(store):
    with pytest.raises(CheckpointError, match="no run named 'ghost'"):
        store.load("ghost")


def test_import_accepts_a_run_file_and_refuses_anything_else(store):
    saved(store, "original")
    payload = store.path("original").read_bytes()
    assert store.import_bytes("copy", payload).metadata == METADATA
    with pytest.raises(CheckpointError):
        store.import_bytes("junk", b"PK\x03\x04 a zip, not a run")
    assert not store.exists("junk")
    assert not [p for p in store.root.iterdir() if p.name.endswith(".tmp")]


def test_a_refused_upload_is_named_as_uploaded_not_by_its_temporary_copy(store):
    with pytest.raises(CheckpointError, match=r"^bogus\.safetensors is not a readable") as refused:
        store.import_bytes("bogus", b"not a run", file_name="bogus.safetensors")
    assert ".tmp" not in str(refused.value)
    with pytest.raises(CheckpointError, match=r"^junk\.safetensors is not"):
        store.import_bytes("junk", b"not a run")


def test_metadata_is_plain_json_in_the_safetensors_header(store):
    saved(store)
    raw = store.path("one").read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_length])
    assert json.loads(header["__metadata__"]["metadata"]) == METADATA.to_dict()


def test_default_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_CHECKPOINT_DIR", str(tmp_path / "elsewhere"))
    assert RunStore().root == tmp_path / "elsewhere"
    monkeypatch.delenv("OCR_CHECKPOINT_DIR")
    assert RunStore().root == checkpoints.DEFAULT_CHECKPOINT_DIR
    assert os.path.basename(RunStore().root) == "checkpoints"


def test_saved_runs_are_readable_by_other_users(store):
    saved(store)
    assert store.path("one").stat().st_mode & 0o777 == 0o644


RACE_SCRIPT = """
import sys, time
from pathlib import Path
from dataclasses import replace
import ocr_core.checkpoints as checkpoints
from conftest import sample_metadata
from ocr_core.models import build_model

root, go, who = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
original_save_file = checkpoints.save_file

def slow_save_file(*args, **kwargs):  # a big run takes a while to write: both saves are in flight at once
    original_save_file(*args, **kwargs)
    time.sleep(1.0)

checkpoints.save_file = slow_save_file
model = build_model("fast")
while not go.exists():
    time.sleep(0.01)
try:
    checkpoints.RunStore(root).save("same", model, replace(sample_metadata(), device=who))
except checkpoints.CheckpointError as error:
    print("refused:", error)
else:
    print("saved")
"""


def test_two_processes_saving_the_same_new_name_cannot_both_succeed(tmp_path):
    import subprocess
    import sys

    from conftest import PROJECT_DIR

    go = tmp_path / "go"
    environment = {**os.environ, "PYTHONPATH": f"{PROJECT_DIR}{os.pathsep}{PROJECT_DIR / 'tests'}"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, str(tmp_path / "runs"), str(go), who],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for who in ("first", "second")
    ]
    time.sleep(0.5)
    go.touch()
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [error for _, error in outputs]
    results = sorted(out.strip() for out, _ in outputs)
    assert results[1] == "saved" and results[0].startswith("refused: a run named 'same' exists already"), results
    winner = ("first", "second")[[out.strip() for out, _ in outputs].index("saved")]
    assert RunStore(tmp_path / "runs").info("same").metadata.device == winner, "the saved run is the winner's"
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["same.safetensors"]


def test_the_data_is_synced_before_a_name_points_at_it(store, monkeypatch):
    events = []
    real_fsync, real_link = os.fsync, os.link
    monkeypatch.setattr(checkpoints.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(checkpoints.os, "link", lambda a, b: events.append("link") or real_link(a, b))
    saved(store)
    assert events[:2] == ["fsync", "link"]


def test_without_hard_links_new_names_are_still_never_clobbered(store, monkeypatch):
    def no_hard_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(checkpoints.os, "link", no_hard_links)
    model, _ = saved(store, "a")
    with pytest.raises(CheckpointError, match="exists already"):
        store.save("a", model, replace(METADATA, device="second"))
    saved(store, "b")
    with pytest.raises(CheckpointError, match="exists already"):
        store.rename("a", "b")
    store.rename("a", "c")
    assert sorted(path.name for path in store.root.iterdir()) == ["b.safetensors", "c.safetensors"]
    assert store.info("c").metadata == METADATA
