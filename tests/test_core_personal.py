"""Scoring runs on a writer's samples and personalising a run, on tiny synthetic data, and the CLI verbs."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from bench.personalise import apply_setting
from conftest import sample_metadata, synthetic_digits, tiny_mnist, write_idx_dataset
from ocr_core import RunStore, TrainConfig, evaluate, load_mnist, personal, train_run
from ocr_core.cli import main
from ocr_core.metadata import RunMetadata, RunMetadataError
from ocr_core.personal import (
    PersonalisationError,
    WriterStyle,
    fine_tune,
    held_out_count,
    personalise,
    restyled,
    score_writer,
    split_samples,
    styled_digits,
    trainable_parameters,
    writer_style,
)
from ocr_core.samples import SampleStore

WRITER = "tilted"


def tilted_writer(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tests' synthetic digits as a writer who draws every bar two rows lower: a run trained on the
    usual bars reads many of them as the next digit."""
    images, labels = synthetic_digits(count, seed)
    return torch.roll(images, 2, dims=1), labels


@pytest.fixture(scope="module")
def parent_template(tmp_path_factory):
    """A run trained on tiny synthetic digits written as IDX files (so the CLI's load_mnist finds the data it
    was trained on), with 128 held-out digits to calibrate on."""
    root = tmp_path_factory.mktemp("personal")
    write_idx_dataset(root / "data", tiny_mnist(train=768))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OCR_DATA_DIR", str(root / "data"))
        patch.setenv("OCR_CACHE_DIR", str(root / "cache"))
        data = load_mnist(download=False)
    train_run("parent", TrainConfig(epochs=2, batch_size=64, holdout=128), RunStore(root / "runs"), data)
    return root, data


@pytest.fixture
def lab(parent_template, tmp_path, monkeypatch):
    """A copy of the parent run, and a sample store with 6 samples of each digit by the writer."""
    root, data = parent_template
    store = RunStore(tmp_path / "runs")
    store.root.mkdir()
    store.path("parent").write_bytes(RunStore(root / "runs").path("parent").read_bytes())
    monkeypatch.setenv("OCR_CHECKPOINT_DIR", str(store.root))
    monkeypatch.setenv("OCR_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("OCR_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("OCR_SAMPLES_DB", str(tmp_path / "samples.sqlite"))
    samples = SampleStore()
    images, labels = tilted_writer(400, seed=5)
    for digit in range(10):
        for index in np.flatnonzero(labels.numpy() == digit)[:6]:
            samples.add(WRITER, digit, images[index], images[index].numpy(), "canvas")
    return store, samples, data


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_third_of_each_digit_is_held_out_the_newest():
    assert [held_out_count(n) for n in (0, 1, 2, 3, 5, 6, 9)] == [0, 0, 1, 1, 2, 2, 3]
    labels = np.array([1, 1, 1, 2, 2, 3, 1])
    train, held_out = split_samples(labels)
    assert held_out.tolist() == [4, 6] and train.tolist() == [0, 1, 2, 3, 5]


def test_layers_choose_what_is_trained(lab):
    store, _, _ = lab
    model, _ = store.load("parent")
    head = trainable_parameters(model, "head")
    block = trainable_parameters(model, "block")
    everything = trainable_parameters(model, "all")
    assert len(head) < len(block) < len(everything) == len(list(model.parameters()))
    assert sum(p.requires_grad for p in model.parameters()) == len(everything)
    with pytest.raises(PersonalisationError):
        trainable_parameters(model, "some")


def test_personalising_lowers_the_held_out_error_and_leaves_the_parent_alone(lab):
    store, samples, data = lab
    parent_digest = digest(store.path("parent"))
    result = personalise("parent", WRITER, "mine", store, samples, data, layers="all", steps=60)
    assert store.path("parent").exists() and digest(store.path("parent")) == parent_digest
    assert 1 - result.after.accuracy < 1 - result.before.accuracy
    section = result.info.metadata.personalisation
    assert section["parent"] == "parent" and section["writer"] == WRITER
    assert section["samples_trained"] == 40 and section["samples_held_out"] == 20
    assert section["before"]["own_accuracy"] < section["after"]["own_accuracy"]
    assert set(section["sample_ids"]).isdisjoint(section["held_out_ids"])
    assert result.info.metadata.calibration is not None  # calibrated again on the parent's held-out digits
    # the saved section survives a round trip through the validated schema
    assert RunMetadata.from_dict(result.info.metadata.to_dict()).personalisation == section
    with pytest.raises(Exception, match="exists already"):
        personalise("parent", WRITER, "mine", store, samples, data, steps=2)


@pytest.mark.parametrize("style", [WriterStyle(), WriterStyle(0.5, 0.4), WriterStyle(1.0, -0.5), WriterStyle(1.3, 0.2)])
def test_a_writers_width_and_slant_are_found_from_their_digits(style):
    """The odd synthetic digits (a bar and an upright stroke: a lean to find) redrawn in a style, then found
    again against other such digits, as a writer's style is found against MNIST's."""
    images, labels = synthetic_digits(60, seed=3)
    references, reference_labels = synthetic_digits(300, seed=4)
    mine, theirs = labels % 2 == 1, reference_labels % 2 == 1
    drawn = restyled(images[mine].numpy(), style).numpy()
    found = writer_style(drawn, labels[mine].numpy(), references[theirs].numpy(), reference_labels[theirs].numpy())
    assert abs(found.width / style.width - 1) < 0.12 and abs(found.slant - style.slant) < 0.06


def test_styled_digits_keep_their_labels_and_a_seed_gives_the_same_ones():
    own, own_labels = synthetic_digits(30, seed=3)
    narrow = restyled(own.numpy(), WriterStyle(0.5, 0.0))
    replay, replay_labels = synthetic_digits(500, seed=4)
    replay, replay_labels = replay[replay_labels % 2 == 1], replay_labels[replay_labels % 2 == 1]  # none alike
    style, images, labels = styled_digits(narrow, own_labels, replay, replay_labels, seed=1)
    again = styled_digits(narrow, own_labels, replay, replay_labels, seed=1)
    assert style == again[0] and torch.equal(images, again[1]) and torch.equal(labels, again[2])
    assert style.width < 0.65 and images.dtype == torch.uint8 and len(images) == len(labels) > 0
    # each styled digit is a replayed digit redrawn narrower, under the replayed digit's label
    labels_of: dict[bytes, set] = {}
    for image, label in zip(restyled(replay.numpy(), style), replay_labels, strict=True):
        labels_of.setdefault(bytes(image.numpy()), set()).add(int(label))
    assert all(int(label) in labels_of[bytes(image.numpy())] for image, label in zip(images, labels, strict=True))


def test_fine_tuning_is_deterministic_under_a_seed_and_learns_the_writer(lab):
    store, _, data = lab
    own, own_labels = tilted_writer(200, seed=6)
    train, check = slice(0, 40), slice(40, 200)
    replay, replay_labels = data.train_images[:256], data.train_labels[:256]
    styled = styled_digits(own[train], own_labels[train], replay, replay_labels)[1:]
    parent, _ = store.load("parent")
    before = 1 - evaluate(parent, own[check], own_labels[check]).accuracy
    tuned = []
    for _ in range(2):
        model, _ = store.load("parent")
        tuned.append(fine_tune(model, own[train], own_labels[train], replay, steps=40, seed=7, styled=styled))
    first, second = (model.state_dict() for model in tuned)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert 1 - evaluate(tuned[0], own[check], own_labels[check]).accuracy < before


def test_the_weights_end_part_of_the_way_back_to_the_parent(lab, monkeypatch):
    store, _, data = lab
    own, own_labels = tilted_writer(40, seed=6)
    parent, _ = store.load("parent")
    monkeypatch.setattr("ocr_core.personal.PARENT_SHARE", 1.0)
    model, _ = store.load("parent")
    fine_tune(model, own, own_labels, data.train_images[:256], steps=5)
    assert all(torch.allclose(a, b) for a, b in zip(model.parameters(), parent.parameters(), strict=True))
    monkeypatch.setattr("ocr_core.personal.PARENT_SHARE", 0.0)
    fine_tune(model, own, own_labels, data.train_images[:256], steps=5)
    assert not all(torch.allclose(a, b) for a, b in zip(model.parameters(), parent.parameters(), strict=True))


def test_scoring_a_writer_gives_accuracy_per_digit_and_mistakes(lab):
    store, samples, _ = lab
    model, _ = store.load("parent")
    result = score_writer(model, WRITER, samples)
    summary = result.summary()
    assert summary["count"] == 60 and len(summary["per_digit"]) == 10
    assert summary["errors"] == len(summary["mistakes"]) == round((1 - summary["accuracy"]) * 60)
    with pytest.raises(PersonalisationError, match="no samples"):
        score_writer(model, "nobody", samples)


def test_too_few_samples_is_a_clear_error(lab):
    store, samples, data = lab
    samples.add("newcomer", 3, np.zeros((28, 28)), np.zeros((28, 28)), "canvas")
    with pytest.raises(PersonalisationError, match="at least two"):
        personalise("parent", "newcomer", "x", store, samples, data, steps=2)


def test_a_damaged_personalisation_section_is_named():
    values = {"parent": "best", "writer": "ada", "layers": "block"}
    metadata = sample_metadata().to_dict()
    with pytest.raises(RunMetadataError, match="personalisation"):
        RunMetadata.from_dict({**metadata, "personalisation": values})


def digit_png(path, label_row: int) -> None:
    drawing = np.full((120, 120), 235, np.uint8)  # dark ink on light paper, as a scan
    drawing[15:105, 50 + label_row : 66 + label_row] = 30
    Image.fromarray(drawing).save(path)


def test_the_cli_adds_lists_exports_imports_evaluates_personalises_and_deletes(lab, tmp_path, capsys):
    for index in range(3):
        digit_png(tmp_path / f"one-{index}.png", index)
    images = [str(tmp_path / f"one-{index}.png") for index in range(3)]
    assert main(["samples", "add", "--writer", "cli", "--label", "1", *images]) == 0
    assert "added 3 sample(s) of 1 for cli" in capsys.readouterr().out
    assert main(["samples", "list", "--json"]) == 0
    listing = {entry["writer"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert listing["cli"]["per_digit"][1] == 3 and listing[WRITER]["count"] == 60

    out = tmp_path / "cli.zip"
    assert main(["samples", "export", "--writer", "cli", str(out)]) == 0
    assert "labels.csv" in zipfile.ZipFile(out).namelist()
    assert main(["samples", "import", str(out), "--writer", "copy"]) == 0
    assert "imported 3 sample(s) for copy" in capsys.readouterr().out.splitlines()[-1]

    assert main(["evaluate", "parent", "--writer", WRITER, "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert 0 <= scored["accuracy"] <= 1 and scored["count"] == 60 and "mnist_accuracy" in scored

    argv = ["personalise", "parent", "--writer", WRITER, "--name", "cli-mine", "--steps", "20", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parent"] == "parent" and {"own_accuracy", "mnist_accuracy"} <= set(result["after"])
    assert main(["personalise", "parent", "--writer", WRITER, "--name", "cli-text", "--steps", "5"]) == 0
    text = capsys.readouterr().out
    assert "before" in text and "after" in text

    assert main(["samples", "delete", "--writer", "copy"]) == 0
    assert main(["samples", "list", "--writer", "copy"]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["samples", "add", "--writer", "a\tb", "--label", "1", "x.png"], "invalid writer name"),
        (["samples", "add", "--writer", "ada", "--label", "12", "x.png"], "invalid label"),
        (["samples", "export", "--writer", "nobody", "out.zip"], "no samples"),
        (["samples", "import", "missing.zip"], "cannot read"),
        (["samples", "delete", "--writer", "nobody"], "no samples"),
        (["evaluate", "parent", "--writer", "nobody"], "no samples"),
        (["personalise", "parent", "--writer", WRITER, "--name", "bad name"], "invalid run name"),
        (["personalise", "parent", "--writer", WRITER, "--name", "parent"], "exists already"),
    ],
)
def test_cli_mistakes_are_one_line_with_exit_code_2(lab, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_a_damaged_sample_database_is_exit_code_2(lab, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"garbage" * 1000)
    monkeypatch.setenv("OCR_SAMPLES_DB", str(broken))
    assert main(["samples", "list"]) == 2
    assert "not a readable sample database" in capsys.readouterr().err


def test_the_bench_sets_a_personalisation_setting_with_its_type_and_refuses_others(monkeypatch):
    monkeypatch.setattr(personal, "REPLAY_WEIGHT", personal.REPLAY_WEIGHT)  # restored after the test
    monkeypatch.setattr(personal, "STYLED_COUNT", personal.STYLED_COUNT)
    apply_setting("REPLAY_WEIGHT=2.5")
    apply_setting("STYLED_COUNT=0")
    assert personal.REPLAY_WEIGHT == 2.5 and personal.STYLED_COUNT == 0 and isinstance(personal.STYLED_COUNT, int)
    with pytest.raises(SystemExit, match="not one of"):
        apply_setting("SEED=3")
