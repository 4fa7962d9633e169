"""The run store: one safetensors file per run, its JSON metadata in the file's header.

One file per run means saving, renaming, deleting, downloading and uploading a run are each a single
atomic file operation, and listing runs reads only headers.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import UserError
from .models import build_model

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT_DIR = PROJECT_DIR / "checkpoints"
SUFFIX = ".safetensors"
FORMAT = "ocr-lab-run"
FORMAT_VERSION = 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


class CheckpointError(UserError):
    """A run that cannot be saved, found or read; the message is meant for the user."""


def validate_run_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise CheckpointError(
            f"invalid run name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (no '/', no '..')")
    return name


def checkpoint_dir() -> Path:
    return Path(os.environ.get("OCR_CHECKPOINT_DIR") or DEFAULT_CHECKPOINT_DIR).expanduser()


@dataclass
class RunInfo:
    name: str
    path: Path
    metadata: dict | None  # None when the file is unreadable or not one of ours
    problem: str | None
    modified: float  # mtime, part of cache keys so a rewritten run is never served stale
    size: int

    @property
    def ok(self) -> bool:
        return self.problem is None

    def metric(self, which: str = "clean") -> float | None:
        return ((self.metadata or {}).get("metrics", {}).get(which) or {}).get("accuracy")


def read_metadata(path: Path, shown_as: str | None = None) -> dict:
    """The run's metadata, or CheckpointError saying why this file is not a usable run; messages call the
    file `shown_as` (an upload's own name rather than its temporary copy's), by default its name."""
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
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{shown_as} was written by a newer version of this lab")
    return metadata


def rebuild_model(path: Path, metadata: dict, shown_as: str | None = None) -> nn.Module:
    """Build the architecture the metadata names and load the weights (no pickle involved)."""
    shown_as = shown_as or path.name
    try:
        model = build_model(metadata["architecture"])
        model.load_state_dict(load_file(str(path)), strict=True)
    except (KeyError, ValueError, RuntimeError, SafetensorError) as error:
        raise CheckpointError(f"{shown_as}: weights do not fit the architecture it names ({error})") from None
    return model.eval()


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final` that replaces it only if the block completes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide runs from other users of a shared server
        os.replace(temporary, final)
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

    def load(self, name: str) -> tuple[nn.Module, dict]:
        info = self.info(name)
        return rebuild_model(info.path, info.metadata), info.metadata

    def save(self, name: str, model: nn.Module, metadata: dict, overwrite: bool = False) -> RunInfo:
        final = self.path(name)
        if final.exists() and not overwrite:
            raise CheckpointError(f"a run named {name!r} exists already; choose another name or overwrite it")
        tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "metadata": json.dumps(metadata)}
        with atomic_path(final) as temporary:
            save_file(tensors, str(temporary), metadata=header)
        return self.info(name)

    def rename(self, old: str, new: str) -> RunInfo:
        source, target = self.path(old), self.path(new)
        if not source.is_file():
            raise CheckpointError(f"no run named {old!r}")
        try:
            os.link(source, target)  # fails instead of replacing when `new` exists
        except FileExistsError:
            raise CheckpointError(f"a run named {new!r} exists already") from None
        source.unlink()
        return self.info(new)

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.is_file():
            raise CheckpointError(f"no run named {name!r}")
        path.unlink()

    def import_bytes(self, name: str, payload: bytes, overwrite: bool = False,
                     file_name: str | None = None) -> RunInfo:
        """Add an uploaded run file after checking it is a complete, loadable run; messages name the file
        `file_name` (the upload's name), by default the run's own file name."""
        file_name = file_name or f"{name}{SUFFIX}"
        if len(payload) > MAX_UPLOAD_BYTES:
            raise CheckpointError(f"file too large ({len(payload) / 1e6:.0f} MB; at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB)")
        final = self.path(name)
        if final.exists() and not overwrite:
            raise CheckpointError(f"a run named {name!r} exists already")
        with atomic_path(final) as temporary:
            temporary.write_bytes(payload)
            rebuild_model(temporary, read_metadata(temporary, file_name), file_name)
        return self.info(name)
