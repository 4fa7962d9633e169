"""The run store: one safetensors file per run, its JSON metadata in the file's header.

One file per run means saving, renaming, deleting, downloading and uploading a run are each a single
atomic file operation, and listing runs reads only headers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError, printable
from .files import TEMPORARY_PREFIX, atomic_path, publish_new, remove_stale_temporaries, sync_directory
from .metadata import CLEAN_TEST, RunMetadata
from .models import build_model

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT_DIR = PROJECT_DIR / "checkpoints"
SUFFIX = ".safetensors"
FORMAT = "ocr-lab-run"
FORMAT_VERSION = 1
FORMAT_VERSION_PATTERN = re.compile(r"[0-9]{1,6}")  # ASCII digits only: str.isdigit() accepts "²", int() does not
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


def missing_run(name: str, root: Path) -> CheckpointError:
    return CheckpointError(f"no run named {name!r} in {root}")


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
    except FileNotFoundError:
        raise CheckpointError(f"{shown_as} is gone (deleted or renamed meanwhile)") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{shown_as} is not a readable safetensors file ({error})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{shown_as} is a safetensors file but not an OCR lab run (foreign checkpoint)")
    written_by = header.get("format_version", "0")
    if not FORMAT_VERSION_PATTERN.fullmatch(written_by):
        raise CheckpointError(f"{shown_as} has a damaged format version ({written_by[:20]!r})")
    if int(written_by) > FORMAT_VERSION:
        raise CheckpointError(f"{shown_as} was written by a newer version of this lab")
    try:
        metadata = json.loads(header["metadata"])
    except (KeyError, json.JSONDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise CheckpointError(f"{shown_as} has damaged run metadata") from None
    try:
        return RunMetadata.from_dict(metadata)
    except CheckpointError as error:
        raise CheckpointError(f"{shown_as}: {error}") from None


def rebuild_model(path: Path, metadata: RunMetadata, shown_as: str | None = None) -> nn.Module:
    """Build the architecture the metadata names and load the weights (no pickle involved); weights that are
    not all finite numbers (NaN, infinity) are refused, since every answer of such a model is meaningless."""
    shown_as = shown_as or path.name
    try:
        tensors = load_file(str(path))
        model = build_model(metadata.architecture)
        model.load_state_dict(tensors, strict=True)
    except FileNotFoundError:
        raise CheckpointError(f"{shown_as} is gone (deleted or renamed meanwhile)") from None
    except (ValueError, RuntimeError, SafetensorError, OSError) as error:
        raise CheckpointError(f"{shown_as}: weights do not fit the architecture it names ({error})") from None
    broken = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise CheckpointError(f"{shown_as}: weights hold NaN or infinite values ({', '.join(broken[:3])})")
    return model.eval()


def regular_file(path: Path) -> os.stat_result | None:
    """The file's status if it is a regular file (following links), else None: a FIFO, device or folder
    named like a run would block or fail the reader."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status if stat.S_ISREG(status.st_mode) else None


class RunStore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else checkpoint_dir()

    def path(self, name: str) -> Path:
        return self.root / f"{validate_run_name(name)}{SUFFIX}"

    def exists(self, name: str) -> bool:
        return regular_file(self.path(name)) is not None

    def list(self) -> list[RunInfo]:
        """Every file named like a run, the unusable ones with the reason (`problem`); removes the temporary
        files that killed saves left behind."""
        remove_stale_temporaries(self.root)
        runs = []
        for path in sorted(self.root.glob(f"*{SUFFIX}")):
            if path.name.startswith(TEMPORARY_PREFIX):
                continue  # a save in progress
            status = regular_file(path)
            if status is None:
                if path.exists():
                    runs.append(RunInfo(printable(path.stem), path, None, "not a regular file", 0.0, 0))
                continue  # deleted while listing
            try:
                valid_name = validate_run_name(path.stem)
            except CheckpointError:
                problem = f"its file name is not a usable run name: rename the file to {NAME_RULE}"
                runs.append(RunInfo(printable(path.stem), path, None, problem, status.st_mtime, status.st_size))
                continue
            try:
                metadata, problem = read_metadata(path), None
            except CheckpointError as error:
                metadata, problem = None, str(error)
            runs.append(RunInfo(valid_name, path, metadata, problem, status.st_mtime, status.st_size))
        return runs

    def info(self, name: str) -> RunInfo:
        path = self.path(name)
        status = regular_file(path)
        if status is None:
            raise missing_run(name, self.root)
        return RunInfo(name, path, read_metadata(path), None, status.st_mtime, status.st_size)

    def load(self, name: str) -> tuple[nn.Module, RunMetadata]:
        info = self.info(name)
        return rebuild_model(info.path, info.metadata), info.metadata

    def save(self, name: str, model: nn.Module, metadata: RunMetadata, overwrite: bool = False) -> RunInfo:
        final = self.path(name)
        if final.exists() and not overwrite:
            raise name_taken(name)
        tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "metadata": json.dumps(metadata.to_dict())}
        try:
            with atomic_path(final, overwrite) as temporary:
                save_file(tensors, str(temporary), metadata=header)
        except FileExistsError:
            raise name_taken(name) from None
        return self.info(name)

    def rename(self, old: str, new: str) -> RunInfo:
        """Each outcome is one line: renamed, or why not (also when another process renames or deletes the
        same run at the same moment)."""
        source, target = self.path(old), self.path(new)
        if regular_file(source) is None:
            raise missing_run(old, self.root)
        try:
            linked = publish_new(source, target)
        except FileNotFoundError:
            raise missing_run(old, self.root) from None
        except FileExistsError:
            raise name_taken(new) from None
        if linked:
            source.unlink(missing_ok=True)  # gone already: another process deleted the old name meanwhile
        sync_directory(self.root)
        try:
            return self.info(new)
        except CheckpointError as error:
            raise CheckpointError(
                f"renamed {old!r} to {new!r}, but another process changed it right after: {error}"
            ) from None

    def delete(self, name: str) -> None:
        path = self.path(name)
        if regular_file(path) is None:
            raise missing_run(name, self.root)
        try:
            path.unlink()
        except FileNotFoundError:
            raise missing_run(name, self.root) from None

    def import_bytes(self, name: str, payload: bytes, overwrite: bool = False, file_name: str | None = None) -> RunInfo:
        """Add an uploaded run file after checking it is a complete, loadable run; messages name the file
        `file_name` (the upload's name), by default the run's own file name."""
        file_name = printable(file_name or f"{name}{SUFFIX}")
        if len(payload) > MAX_UPLOAD_BYTES:
            raise CheckpointError(
                f"file too large ({len(payload) / 1e6:.0f} MB; at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB)"
            )
        final = self.path(name)
        if final.exists() and not overwrite:
            raise name_taken(name)
        try:
            with atomic_path(final, overwrite) as temporary:
                temporary.write_bytes(payload)
                rebuild_model(temporary, read_metadata(temporary, file_name), file_name)
        except FileExistsError:
            raise name_taken(name) from None
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
