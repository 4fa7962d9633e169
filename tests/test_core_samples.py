"""The sample store: schema and migrations, damaged and foreign files, two processes writing at once, export
and import, deleting a writer."""

from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_DIR
from ocr_core import samples as samples_module
from ocr_core.errors import ImageError, UserError
from ocr_core.samples import (
    APPLICATION_ID,
    COLUMNS,
    MAX_PNG_BYTES,
    SCHEMA_VERSION,
    SampleStore,
    SamplesError,
    png_of,
    validate_writer,
)


def stroke(label: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(a canvas-like RGBA drawing, a distinct 28x28 uint8 model input) for tests."""
    rng = np.random.default_rng(seed * 10 + label)
    drawing = np.zeros((140, 140, 4), np.uint8)
    drawing[..., 3] = 255
    drawing[20:120, 60 + label : 75 + label, :3] = 255
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 10 + label // 2 : 13 + label // 2] = rng.integers(100, 256)
    return drawing, digit


@pytest.fixture
def samples(tmp_path, monkeypatch) -> SampleStore:
    monkeypatch.setenv("OCR_SAMPLES_DB", str(tmp_path / "samples.sqlite"))
    return SampleStore()


def fill(store: SampleStore, writer: str = "ada", per_digit: int = 2) -> list[int]:
    ids = []
    for label in range(10):
        for seed in range(per_digit):
            drawing, digit = stroke(label, seed)
            ids.append(store.add(writer, label, digit, drawing, "canvas"))
    return ids


def test_a_new_file_describes_itself_and_keeps_what_is_added(samples):
    drawing, digit = stroke(3)
    sample_id = samples.add("  Ada Lovelace ", 3, digit, drawing, "canvas")
    with sqlite3.connect(samples.path) as connection:
        assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert tuple(row[1] for row in connection.execute("PRAGMA table_info(samples)")) == COLUMNS
    (sample,) = samples.samples("Ada Lovelace")
    assert sample.id == sample_id and sample.label == 3 and sample.source == "canvas"
    assert np.array_equal(sample.model_input, digit)
    assert Image.open(io.BytesIO(sample.png)).size == (140, 140)
    (summary,) = samples.writers()
    assert summary.writer == "Ada Lovelace" and summary.count == 1 and summary.per_digit[3] == 1


@pytest.mark.parametrize("name", ["", "   ", "bad\nname", "tab\there", "bell\x07", "x" * 65, None])
def test_writer_names_are_checked(samples, name):
    with pytest.raises(SamplesError, match="invalid writer name"):
        samples.add(name, 1, np.zeros((28, 28)), np.zeros((40, 40)), "canvas")


@pytest.mark.parametrize("label", [-1, 10, "x", 2.5, True])
def test_labels_and_sources_are_checked(samples, label):
    with pytest.raises(SamplesError, match="invalid label"):
        samples.add("ada", label, np.zeros((28, 28)), np.zeros((40, 40)), "canvas")
    with pytest.raises(SamplesError, match="invalid source"):
        samples.add("ada", 1, np.zeros((28, 28)), np.zeros((40, 40)), "telepathy")
    assert validate_writer("Zoë 7") == "Zoë 7"  # any language's letters are fine


def test_an_older_schema_is_migrated_and_keeps_its_samples(samples, monkeypatch):
    fill(samples, per_digit=1)
    migrated = (*samples_module.MIGRATIONS, "ALTER TABLE samples ADD COLUMN note TEXT")
    monkeypatch.setattr(samples_module, "MIGRATIONS", migrated)
    monkeypatch.setattr(samples_module, "SCHEMA_VERSION", len(migrated))
    monkeypatch.setattr(samples_module, "COLUMNS", (*COLUMNS, "note"))
    reopened = SampleStore(samples.path)
    assert reopened.count("ada") == 10
    with sqlite3.connect(samples.path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_newer_schema_is_refused_not_rewritten(samples):
    fill(samples, per_digit=1)
    with sqlite3.connect(samples.path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SamplesError, match="newer lab"):
        SampleStore(samples.path).writers()


def test_a_foreign_database_is_a_clear_error_and_stays_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER, balance REAL)")
    before = path.read_bytes()
    with pytest.raises(SamplesError, match="another program"):
        SampleStore(path).count()
    assert path.read_bytes() == before


def test_a_file_that_is_no_database_is_a_clear_error(tmp_path):
    path = tmp_path / "samples.sqlite"
    path.write_bytes(b"these are my notes, not a database" * 100)
    with pytest.raises(SamplesError, match="not a readable sample database"):
        SampleStore(path).writers()
    assert isinstance(SamplesError("x"), UserError)  # the CLI prints it in one line, exit code 2


def test_a_damaged_database_is_a_clear_error_not_a_silent_reset(samples):
    fill(samples, per_digit=3)
    with sqlite3.connect(samples.path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damaged = bytearray(samples.path.read_bytes())
    page_size = 4096
    damaged[page_size : 3 * page_size] = b"\xa5" * (2 * page_size)  # the table's first pages
    samples.path.write_bytes(bytes(damaged))
    with pytest.raises(SamplesError):
        SampleStore(samples.path).samples("ada")
    assert samples.path.read_bytes() == bytes(damaged)  # nothing was reset or rewritten


WRITER_SCRIPT = """
import sys
import numpy as np
from ocr_core.samples import SampleStore
store = SampleStore(sys.argv[1])
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()  # both processes start writing at the same moment
for index in range(40):
    store.add(sys.argv[2], index % 10, np.full((28, 28), index, np.uint8), np.zeros((64, 64)), "canvas")
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    SampleStore(path).count()  # created first, as a running app would have it
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(path), name],
            cwd=PROJECT_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    for process in writers:
        assert process.stdout.readline() == "ready\n"
    for process in writers:
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in writers:
        process.stdin.close()
        assert process.wait(timeout=120) == 0
    store = SampleStore(path)
    assert store.count("first") == 40 and store.count("second") == 40
    assert sorted(sample.model_input[0, 0] for sample in store.samples("second")) == list(range(40))


def test_export_and_import_round_trip(samples):
    fill(samples, per_digit=2)
    payload = samples.export_zip("ada")
    archive = zipfile.ZipFile(io.BytesIO(payload))
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    assert len(rows) == 20 and {row["writer"] for row in rows} == {"ada"}
    assert all(row["file"].startswith(f"{row['label']}/") for row in rows)  # one folder per digit
    result = samples.import_zip(payload, writer="ada again")
    assert result.added == 20 and not result.skipped
    original, copied = samples.samples("ada"), samples.samples("ada again")
    assert [s.label for s in original] == [s.label for s in copied]
    assert all(np.array_equal(a.model_input, b.model_input) for a, b in zip(original, copied, strict=True))
    assert all(s.source == "import" for s in copied)
    with pytest.raises(SamplesError, match="say which writer"):
        SampleStore(samples.path).import_zip(zip_of({"labels.csv": "file,label\n"}))


def zip_of(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_import_reads_plain_digit_folders_and_skips_what_is_no_digit(samples):
    drawing, _ = stroke(1)
    blank = np.zeros((60, 60), np.uint8)
    payload = zip_of({"1/a.png": png_of(drawing), "1/blank.png": png_of(blank), "notes/readme.txt": "hello"})
    result = samples.import_zip(payload, writer="bob")
    assert result.added == 1 and len(result.skipped) == 1 and "blank.png" in result.skipped[0]
    assert samples.samples("bob")[0].label == 1


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"not a zip at all", "not a readable zip"),
        (zip_of({"labels.csv": "name,digit\n"}), "columns"),
        (zip_of({"readme.txt": "no digits here"}), "no digit images"),
    ],
)
def test_a_bad_import_is_a_clear_error_and_adds_nothing(samples, payload, message):
    with pytest.raises(SamplesError, match=message):
        samples.import_zip(payload, writer="eve")
    assert samples.count() == 0


def test_deleting_a_writer_removes_only_their_samples(samples):
    fill(samples, "ada", per_digit=1)
    keep = fill(samples, "bob", per_digit=1)
    assert samples.delete_writer("ada") == 10
    assert samples.count("ada") == 0 and [s.id for s in samples.samples("bob")] == keep
    assert samples.delete(keep[0]) and not samples.delete(keep[0])
    assert samples.count() == 9
    with pytest.raises(SamplesError, match="no samples"):
        samples.export_zip("ada")


def test_a_large_original_is_stored_shrunk_below_the_cap():
    noise = np.random.default_rng(0).integers(0, 256, (1024, 1024), dtype=np.uint8)
    encoded = png_of(noise)
    assert len(encoded) <= MAX_PNG_BYTES and Image.open(io.BytesIO(encoded)).width < 1024


def test_add_image_prepares_like_predict_and_refuses_a_blank(samples):
    drawing, _ = stroke(7)
    sample_id = samples.add_image("ada", 7, drawing.astype(np.float32) / 255, "upload")
    (sample,) = samples.samples("ada")
    assert sample.id == sample_id and sample.model_input.max() > 0
    with pytest.raises(ImageError):
        samples.add_image("ada", 7, np.zeros((80, 80), np.float32), "upload")
