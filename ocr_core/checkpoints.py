"""The run store: one safetensors file per run, its JSON metadata in the file's header.

One file per run means saving, renaming, deleting, downloading and uploading a run are each a single
atomic file operation, and listing runs reads only headers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError
from .metadata import CLEAN_TEST, RunMetadata
from .models import build_model

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT_DIR = PROJECT_DIR / "checkpoints"
SUFFIX = ".safetensors"
FORMAT = "ocr-lab-run"
FORMAT_VERSION = 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


# What a run name may be, for messages, CLI help and the app (the checks are in validate_run_name).
NAME_RULE = (
    f"1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit, without '..' "
    f"and not ending in '{SUFFIX}' (the file gets that suffix)"
)


def validate_run_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name or name.lower().endswith(SUFFIX):
        raise CheckpointError(f"invalid run name {name!r}: use {NAME_RULE}")
    return name


def name_taken(name: str) -> CheckpointError:
    return CheckpointError(f"a run named {name!r} exists already; choose another name or overwrite it")


def checkpoint_dir() -> Path:
    return Path(os.environ.get("OCR_CHECKPOINT_DIR") or DEFAULT_CHECKPOINT_DIR).expanduser()


@dataclass
class RunInfo:
    name: str
    path: Path
    metadata: RunMetadata | None  # None when the file is unreadable, incomplete or not one of ours
    problem: str | None
    modified: float  # mtime, part of cache keys so a rewritten run is never served stale
    size: int

    @property
    def ok(self) -> bool:
        return self.problem is None

    def metric(self, which: str = CLEAN_TEST) -> float | None:
        return None if self.metadata is None else self.metadata.metric(which)


def read_metadata(path: Path, shown_as: str | None = None) -> RunMetadata:
    """The run's validated metadata, or CheckpointError saying why this file is not a usable run; messages
    call the file `shown_as` (an upload's own name rather than its temporary copy's), by default its name."""
    shown_as = shown_as or path.name
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{shown_as} is not a readable safetensors file ({error})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{shown_as} is a safetensors file but not an OCR lab run (foreign checkpoint)")
    try:
        metadata = json.loads(header["metadata"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{shown_as} has damaged run metadata") from None
    written_by = header.get("format_version", "0")
    if not written_by.isdigit() or int(written_by) > FORMAT_VERSION:
        raise CheckpointError(f"{shown_as} was written by a newer version of this lab")
    try:
        return RunMetadata.from_dict(metadata)
    except CheckpointError as error:
        raise CheckpointError(f"{shown_as}: {error}") from None


def rebuild_model(path: Path, metadata: RunMetadata, shown_as: str | None = None) -> nn.Module:
    """Build the architecture the metadata names and load the weights (no pickle involved)."""
    shown_as = shown_as or path.name
    try:
        model = build_model(metadata.architecture)
        model.load_state_dict(load_file(str(path)), strict=True)
    except (ValueError, RuntimeError, SafetensorError) as error:
        raise CheckpointError(f"{shown_as}: weights do not fit the architecture it names ({error})") from None
    return model.eval()


# errno values of file systems that have no hard links (FAT, some network and FUSE mounts)
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def sync_directory(directory: Path) -> None:
    """Make a rename or link in `directory` survive a power cut (where the platform can sync directories)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems refuse to sync a directory; the data itself is synced already
    finally:
        os.close(handle)


def publish_new(source: Path, target: Path) -> bool:
    """Give `source` the name `target` only if no file has that name, atomically even when two processes
    try at once; CheckpointError if the name is taken. True if `source` still exists (it was linked),
    False if it was moved (on file systems without hard links, after claiming `target` with O_EXCL)."""
    try:
        os.link(source, target)
        return True
    except FileExistsError:
        raise name_taken(target.stem) from None
    except OSError as error:
        if error.errno not in NO_HARD_LINKS:
            raise
    try:  # no hard links here: claim the name with an empty placeholder, then move the file over it
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise name_taken(target.stem) from None
    os.replace(source, target)
    return False


@contextmanager
def atomic_path(final: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary path beside `final`: what the block writes there is synced to disk and then published
    as `final` in one step, replacing an existing file only if `overwrite`, else raising CheckpointError."""
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide runs from other users of a shared server
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())  # the data is on disk before any name points at it
        if overwrite:
            os.replace(temporary, final)
        else:
            publish_new(Path(temporary), final)
        sync_directory(final.parent)
    finally:
        Path(temporary).unlink(missing_ok=True)


class RunStore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else checkpoint_dir()

    def path(self, name: str) -> Path:
        return self.root / f"{validate_run_name(name)}{SUFFIX}"

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def list(self) -> list[RunInfo]:
        runs = []
        for path in sorted(self.root.glob(f"*{SUFFIX}")):
            if path.name.startswith("."):
                continue  # a save in progress
            try:
                stat = path.stat()
                metadata, problem = read_metadata(path), None
            except CheckpointError as error:
                metadata, problem = None, str(error)
            except OSError:
                continue  # deleted while listing
            runs.append(RunInfo(path.stem, path, metadata, problem, stat.st_mtime, stat.st_size))
        return runs

    def info(self, name: str) -> RunInfo:
        path = self.path(name)
        if not path.is_file():
            raise CheckpointError(f"no run named {name!r} in {self.root}")
        stat = path.stat()
        return RunInfo(name, path, read_metadata(path), None, stat.st_mtime, stat.st_size)

    def load(self, name: str) -> tuple[nn.Module, RunMetadata]:
        info = self.info(name)
        return rebuild_model(info.path, info.metadata), info.metadata

    def save(self, name: str, model: nn.Module, metadata: RunMetadata, overwrite: bool = False) -> RunInfo:
        final = self.path(name)
        if final.exists() and not overwrite:
            raise name_taken(name)
        tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "metadata": json.dumps(metadata.to_dict())}
        with atomic_path(final, overwrite) as temporary:
            save_file(tensors, str(temporary), metadata=header)
        return self.info(name)

    def rename(self, old: str, new: str) -> RunInfo:
        source, target = self.path(old), self.path(new)
        if not source.is_file():
            raise CheckpointError(f"no run named {old!r}")
        if publish_new(source, target):
            source.unlink()
        sync_directory(self.root)
        return self.info(new)

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.is_file():
            raise CheckpointError(f"no run named {name!r}")
        path.unlink()

    def import_bytes(self, name: str, payload: bytes, overwrite: bool = False, file_name: str | None = None) -> RunInfo:
        """Add an uploaded run file after checking it is a complete, loadable run; messages name the file
        `file_name` (the upload's name), by default the run's own file name."""
        file_name = file_name or f"{name}{SUFFIX}"
        if len(payload) > MAX_UPLOAD_BYTES:
            raise CheckpointError(
                f"file too large ({len(payload) / 1e6:.0f} MB; at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB)"
            )
        final = self.path(name)
        if final.exists() and not overwrite:
            raise name_taken(name)
        with atomic_path(final, overwrite) as temporary:
            temporary.write_bytes(payload)
            rebuild_model(temporary, read_metadata(temporary, file_name), file_name)
        return self.info(name)


def weights_hash(path: Path, architecture: str) -> str:
    """sha256 over the architecture and the safetensors file minus its metadata: tensor names, dtypes,
    shapes and bytes. Renames and metadata rewrites keep it; any change to a weight changes it."""
    with open(path, "rb") as stream:
        (header_size,) = struct.unpack("<Q", stream.read(8))
        header = json.loads(stream.read(header_size))
        header.pop("__metadata__", None)
        digest = hashlib.sha256(architecture.encode())
        digest.update(json.dumps(header, sort_keys=True).encode())
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:20]


def run_weights_hash(info: RunInfo) -> str:
    """The one key of a run's weights, for every cache computed from them (robustness reports, sweeps, the
    feature-space index and map): renaming, rescoring or calibrating a run keeps it."""
    return weights_hash(info.path, info.metadata.architecture)
