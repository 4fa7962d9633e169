"""The sample store: people's own handwritten digits, in one SQLite file (the standard library's sqlite3).

Design:
- One file, `OCR_SAMPLES_DB`, by default `samples.sqlite` in the checkpoint dir (beside the runs a person
  personalises with it; the cache dir may be wiped). WAL mode and a busy timeout, and every write is one
  `BEGIN IMMEDIATE` transaction, so two processes (two visitors, the app and the CLI) writing at once both
  succeed, one after the other; nothing is lost.
- The file describes itself: SQLite's `application_id` says it is ours, `user_version` is the schema
  version, and `MIGRATIONS[n]` brings a file from version n to n + 1 (a new file is version 0). Opening
  checks both and the tables' columns: a damaged, foreign or newer file is a `SamplesError` (a UserError
  the CLI prints in one line with exit code 2), never a crash and never a silent reset.
- A sample is a writer, a label, a source, a time, the original image as PNG (re-encoded greyscale,
  shrunk until it fits `MAX_PNG_BYTES`) and the 28x28 model input (uint8, as MNIST stores digits).
- Export is a zip any tool reads: `D/ID.png` (the original, one folder per digit), `labels.csv`, and the
  exact model inputs in `model-input/D/ID.png`; import reads the same layout back (or only folders named
  0-9), decoding every image through the lab's safe image loader.
- Deleting uses SQLite's `secure_delete`, so a deleted writer's images are overwritten, not just unlinked."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoints import checkpoint_dir
from .errors import ImageError, UserError
from .preprocess import digit_from_image, load_image

APPLICATION_ID = 0x4F43524C  # "OCRL": SQLite's header field for "which program's file is this"
DB_FILE = "samples.sqlite"
SETTING = "OCR_SAMPLES_DB"
SOURCES = ("canvas", "upload", "correction", "import")
WRITER_MAX_LENGTH = 64
WRITER_RULE = f"1-{WRITER_MAX_LENGTH} characters, no control characters, not only spaces"
MAX_PNG_BYTES = 256 * 1024  # an original larger than this is stored shrunk
MAX_IMPORT_BYTES = 100 * 1024 * 1024  # a zip, and the sum of its members' sizes
MAX_IMPORT_FILES = 20_000
BUSY_TIMEOUT_MS = 15_000  # how long a write waits for another process's write to finish
SIDE = 28
EXPORT_INPUTS = "model-input"
LABELS_CSV = "labels.csv"
CSV_FIELDS = ("file", "label", "writer", "source", "created", "model_input")

# MIGRATIONS[n] brings a file from schema version n to n + 1; len(MIGRATIONS) is the current version.
MIGRATIONS = (
    """
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        writer TEXT NOT NULL,
        label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
        source TEXT NOT NULL,
        created TEXT NOT NULL,
        png BLOB NOT NULL,
        model_input BLOB NOT NULL CHECK (length(model_input) = 784)
    );
    CREATE INDEX samples_by_writer ON samples (writer, label);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
COLUMNS = ("id", "writer", "label", "source", "created", "png", "model_input")


class SamplesError(UserError):
    """A sample database, writer name, label or import that cannot be used; the message says why."""


def validate_writer(name: str) -> str:
    """The writer name without surrounding spaces; SamplesError for an empty, long or control-character name."""
    if not isinstance(name, str):
        raise SamplesError(f"invalid writer name {name!r}: use {WRITER_RULE}")
    stripped = name.strip()
    if not stripped or len(stripped) > WRITER_MAX_LENGTH or any(unicodedata.category(c)[0] == "C" for c in stripped):
        raise SamplesError(f"invalid writer name {name!r}: use {WRITER_RULE}")
    return stripped


def validate_label(label) -> int:
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
        raise SamplesError(f"invalid label {label!r}: a digit from 0 to 9")
    return int(label)


def default_path() -> Path:
    configured = os.environ.get(SETTING)
    return Path(configured).expanduser() if configured else checkpoint_dir() / DB_FILE


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def as_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Float images in [0, 1] or uint8, as uint8."""
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)


def png_of(image: np.ndarray, limit: int = MAX_PNG_BYTES) -> bytes:
    """PNG bytes of an image (H, W), (H, W, 3) or (H, W, 4) as `load_image` or the canvas gives it, greyscale
    with alpha kept, halved in size until it fits in `limit` bytes."""
    array = as_uint8(image)
    if array.ndim == 3 and array.shape[2] == 3:
        picture = Image.fromarray(array, "RGB").convert("L")
    else:
        picture = Image.fromarray(array[..., [0, 3]] if array.ndim == 3 else array, "LA" if array.ndim == 3 else "L")
    while True:
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", optimize=False)
        if buffer.tell() <= limit or min(picture.size) <= SIDE:
            return buffer.getvalue()
        picture = picture.resize((max(SIDE, picture.width // 2), max(SIDE, picture.height // 2)), Image.BILINEAR)


@dataclass(frozen=True)
class Sample:
    id: int
    writer: str
    label: int
    source: str
    created: str
    png: bytes
    model_input: np.ndarray  # uint8 (28, 28), white ink on black, what a model reads


@dataclass(frozen=True)
class WriterSummary:
    writer: str
    count: int
    per_digit: tuple[int, ...]  # samples of each digit 0-9
    last: str  # time of the newest sample


@dataclass(frozen=True)
class ImportResult:
    writer: str
    added: int
    skipped: tuple[str, ...]  # "file: why", for members that were not digit images


def sample_from_row(row: tuple) -> Sample:
    identifier, writer, label, source, created, png, model_input = row
    if not isinstance(model_input, bytes) or len(model_input) != SIDE * SIDE:
        raise SamplesError(f"the sample database holds a damaged sample (id {identifier})")
    digit = np.frombuffer(model_input, np.uint8).reshape(SIDE, SIDE).copy()
    return Sample(identifier, writer, label, source, created, png, digit)


class SampleStore:
    """The samples in one SQLite file (created on first use). Each call opens its own connection, so one
    store may serve several threads (Streamlit sessions) and processes."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_path()
        self.prepared = False

    # --- opening and validation ---

    def problem(self, reason: str) -> SamplesError:
        return SamplesError(f"{self.path} is {reason}; move it away or point {SETTING} at another file")

    def connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise SamplesError(f"cannot open the sample database {self.path}: {error}") from None
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA secure_delete = ON")
        return connection

    def check(self, connection: sqlite3.Connection) -> int:
        """The file's schema version after checking it is ours (or a new, empty file: version 0)."""
        application = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if application == 0 and version == 0 and not tables:
            return 0
        if application != APPLICATION_ID:
            raise self.problem("an SQLite database of another program, not the lab's sample store")
        if version > SCHEMA_VERSION:
            raise self.problem(
                f"a sample store of a newer lab (schema {version}; this lab reads up to {SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            columns = tuple(row[1] for row in connection.execute("PRAGMA table_info(samples)"))
            if columns != COLUMNS:
                raise self.problem(f"a damaged sample store (table 'samples' has columns {columns or 'none'})")
        return version

    def migrate(self, connection: sqlite3.Connection) -> None:
        """Bring the file to SCHEMA_VERSION, one migration per transaction; a second process that gets
        there first leaves nothing to do (the version is read again inside the transaction)."""
        if self.check(connection) == SCHEMA_VERSION:
            return
        if connection.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise SamplesError(f"the sample database {self.path} cannot use write-ahead logging on this file system")
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = self.check(connection)
            for step in range(version, SCHEMA_VERSION):
                for statement in filter(str.strip, MIGRATIONS[step].split(";")):
                    connection.execute(statement)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    @contextmanager
    def session(self) -> Iterator[sqlite3.Connection]:
        """A checked connection; SQLite's own errors (a damaged page, a locked file) become SamplesErrors."""
        connection = None
        try:
            connection = self.connect()
            if self.prepared:
                self.check(connection)
            else:
                self.migrate(connection)
                self.prepared = True
            yield connection
        except sqlite3.DatabaseError as error:
            reason = str(error)
            if "not a database" in reason or "malformed" in reason:
                raise self.problem(f"not a readable sample database ({reason})") from None
            raise SamplesError(f"the sample database {self.path} failed: {reason}") from None
        finally:
            if connection is not None:
                connection.close()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE), so concurrent writers queue rather than fail."""
        with self.session() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    # --- reading ---

    def writers(self) -> list[WriterSummary]:
        with self.session() as connection:
            rows = connection.execute(
                "SELECT writer, label, count(*), max(created) FROM samples GROUP BY writer, label ORDER BY writer"
            ).fetchall()
        summaries: dict[str, list] = {}
        for writer, label, count, last in rows:
            entry = summaries.setdefault(writer, [[0] * 10, ""])
            entry[0][label] = count
            entry[1] = max(entry[1], last)
        return [WriterSummary(name, sum(counts), tuple(counts), last) for name, (counts, last) in summaries.items()]

    def samples(self, writer: str, label: int | None = None) -> list[Sample]:
        """A writer's samples, oldest first (optionally of one digit)."""
        query = f"SELECT {', '.join(COLUMNS)} FROM samples WHERE writer = ?"
        arguments: tuple = (validate_writer(writer),)
        if label is not None:
            query, arguments = query + " AND label = ?", (*arguments, validate_label(label))
        with self.session() as connection:
            return [sample_from_row(row) for row in connection.execute(query + " ORDER BY id", arguments)]

    def digits(self, writer: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(uint8 images (N, 28, 28), int64 labels, sample ids) of a writer, as models and `evaluate` take them."""
        samples = self.samples(writer)
        images = (
            np.stack([sample.model_input for sample in samples]) if samples else np.zeros((0, SIDE, SIDE), np.uint8)
        )
        labels = np.array([sample.label for sample in samples], np.int64)
        return torch.from_numpy(images), torch.from_numpy(labels), np.array([s.id for s in samples], np.int64)

    def count(self, writer: str | None = None) -> int:
        with self.session() as connection:
            if writer is None:
                return connection.execute("SELECT count(*) FROM samples").fetchone()[0]
            return connection.execute(
                "SELECT count(*) FROM samples WHERE writer = ?", (validate_writer(writer),)
            ).fetchone()[0]

    # --- writing ---

    def add(
        self, writer: str, label: int, model_input: torch.Tensor | np.ndarray, original: np.ndarray, source: str
    ) -> int:
        """Store one sample: its 28x28 model input (float in [0, 1] or uint8) and the original image it came
        from (an array as `load_image` or the canvas gives it). Returns the sample's id."""
        return self.add_many(writer, [(label, model_input, png_of(original))], source)[0]

    def add_many(
        self, writer: str, items: list[tuple[int, torch.Tensor | np.ndarray, bytes]], source: str
    ) -> list[int]:
        """Store (label, model input, PNG bytes) triples in one transaction: all of them or none."""
        writer = validate_writer(writer)
        if source not in SOURCES:
            raise SamplesError(f"invalid source {source!r}: one of {', '.join(SOURCES)}")
        rows = []
        for label, model_input, png in items:
            digit = as_uint8(model_input).reshape(-1)
            if digit.size != SIDE * SIDE:
                raise SamplesError(f"a model input must be 28x28, got {digit.size} pixels")
            rows.append((writer, validate_label(label), source, now(), png, digit.tobytes()))
        with self.writing() as connection:
            return [
                connection.execute(
                    "INSERT INTO samples (writer, label, source, created, png, model_input) VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                ).lastrowid
                for row in rows
            ]

    def add_image(self, writer: str, label: int, image: np.ndarray, source: str) -> int:
        """Prepare an image as `predict` does and store it; ImageError for a blank image or ink that cannot
        be a digit (a dot, a line along the edge)."""
        prepared = digit_from_image(image)
        if not prepared.readable:
            raise ImageError(f"not stored: {prepared.problem}")
        return self.add(writer, label, prepared.digit, image, source)

    def delete(self, sample_id: int) -> bool:
        with self.writing() as connection:
            return connection.execute("DELETE FROM samples WHERE id = ?", (int(sample_id),)).rowcount > 0

    def delete_writer(self, writer: str) -> int:
        """Delete every sample of a writer (overwritten on disk: secure_delete); returns how many there were."""
        writer = validate_writer(writer)
        with self.writing() as connection:
            deleted = connection.execute("DELETE FROM samples WHERE writer = ?", (writer,)).rowcount
        with self.session() as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the write-ahead log held the images too
        return deleted

    # --- export and import ---

    def export_zip(self, writer: str) -> bytes:
        """A zip of the writer's samples: `D/ID.png` originals, `model-input/D/ID.png`, and `labels.csv`."""
        samples = self.samples(writer)
        if not samples:
            raise SamplesError(f"no samples of writer {validate_writer(writer)!r}")
        table = io.StringIO()
        rows = csv.DictWriter(table, CSV_FIELDS, lineterminator="\n")
        rows.writeheader()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for sample in samples:
                name = f"{sample.label}/{sample.id}.png"
                archive.writestr(name, sample.png)
                archive.writestr(f"{EXPORT_INPUTS}/{name}", png_of(sample.model_input))
                rows.writerow(
                    {
                        "file": name,
                        "label": sample.label,
                        "writer": sample.writer,
                        "source": sample.source,
                        "created": sample.created,
                        "model_input": f"{EXPORT_INPUTS}/{name}",
                    }
                )
            archive.writestr(LABELS_CSV, table.getvalue())
        return buffer.getvalue()

    def import_zip(self, payload: bytes, writer: str | None = None) -> ImportResult:
        """Add the samples of an exported zip (or of any zip with folders named 0-9 of images) under `writer`,
        by default the writer its labels.csv names. All or nothing; members that are not digit images are
        skipped and listed."""
        if writer is not None:
            writer = validate_writer(writer)
        entries, skipped = read_import(payload)
        writers = {entry.writer for entry in entries if entry.writer}
        if writer is None:
            if len(writers) != 1:
                found = f"it names {len(writers)} writers" if writers else "it names no writer"
                raise SamplesError(f"say which writer the samples are ({found}): --writer NAME")
            writer = validate_writer(writers.pop())
        items = []
        for entry in entries:
            try:
                items.append(entry.prepared())
            except ImageError as error:
                skipped.append(f"{entry.file}: {error}")
        if not items:
            raise SamplesError("the zip holds no digit images (folders 0-9 of PNG or JPEG files, or a labels.csv)")
        self.add_many(writer, items, "import")
        return ImportResult(writer, len(items), tuple(skipped))


@dataclass
class ImportEntry:
    file: str
    label: int
    writer: str
    read: Callable[[str], bytes]
    model_input: str

    def prepared(self) -> tuple[int, np.ndarray, bytes]:
        """(label, 28x28 model input, PNG of the original): the exported model input when it is a valid
        28x28 greyscale image, else the original prepared as `predict` prepares an image."""
        original = load_image(self.read(self.file))
        digit = None
        if self.model_input:
            try:
                stored = load_image(self.read(self.model_input))
            except (ImageError, KeyError):
                stored = None
            if stored is not None and stored.shape == (SIDE, SIDE):
                digit = stored
        if digit is None:
            prepared = digit_from_image(original)
            if not prepared.readable:
                raise ImageError(prepared.problem)
            digit = prepared.digit
        return self.label, digit, png_of(original)


def read_import(payload: bytes) -> tuple[list[ImportEntry], list[str]]:
    """The entries of an import zip, checked for size, member count and paths before anything is decoded."""
    if len(payload) > MAX_IMPORT_BYTES:
        raise SamplesError(f"zip too large ({len(payload) / 1e6:.0f} MB; at most {MAX_IMPORT_BYTES / 1e6:.0f} MB)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise SamplesError(f"not a readable zip file ({error})") from None
    if len(members) > MAX_IMPORT_FILES or sum(info.file_size for info in members.values()) > MAX_IMPORT_BYTES:
        raise SamplesError(
            f"the zip holds too much: at most {MAX_IMPORT_FILES:,} files and {MAX_IMPORT_BYTES / 1e6:.0f} MB"
        )

    def read(name: str) -> bytes:
        if name not in members:
            raise ImageError(f"{name} is not in the zip")
        try:
            return archive.read(members[name])
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as error:
            raise ImageError(f"damaged zip member ({error})") from None

    skipped: list[str] = []
    if LABELS_CSV in members:
        try:
            text = read(LABELS_CSV).decode("utf-8-sig")
        except (ImageError, UnicodeDecodeError) as error:
            raise SamplesError(f"{LABELS_CSV} cannot be read ({error})") from None
        table = csv.DictReader(io.StringIO(text))
        if not table.fieldnames or not {"file", "label"} <= set(table.fieldnames):
            raise SamplesError(f"{LABELS_CSV} needs the columns 'file' and 'label'")
        entries = []
        for line, row in enumerate(table, 2):
            try:
                label = validate_label(row.get("label") or "")
            except SamplesError as error:
                skipped.append(f"{LABELS_CSV} line {line}: {error}")
                continue
            entries.append(
                ImportEntry(
                    row["file"] or "", label, (row.get("writer") or "").strip(), read, row.get("model_input") or ""
                )
            )
        return entries, skipped
    entries = []
    for name in sorted(members):
        parts = name.split("/")
        if len(parts) >= 2 and parts[-2] in "0123456789" and len(parts[-2]) == 1 and parts[0] != EXPORT_INPUTS:
            entries.append(ImportEntry(name, int(parts[-2]), "", read, ""))
    return entries, skipped
