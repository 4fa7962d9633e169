"""Every file the lab writes goes through `atomic_path`: the bytes are written under a temporary name beside the
target, synced, then published under the target's name in one step. A reader, a crash or a `kill -9` never
sees half a file; the worst a killed writer leaves is a temporary file, which `remove_stale_temporaries`
deletes once it is old enough that no live writer can still own it.

Caches are read with `read_cached_arrays`: a damaged cache file (empty, truncated, foreign bytes) is discarded
and counts as missing, so the caller rebuilds it instead of failing on every later load.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

TEMPORARY_PREFIX = "."
TEMPORARY_SUFFIX = ".tmp"
# A temporary file this old belongs to a writer that died: the slowest write here (a run file of a few MB,
# a cache of 100 MB) takes seconds, so an hour leaves a wide margin for a slow disk.
STALE_AFTER_SECONDS = 3600
# errno values of file systems that have no hard links (FAT, some network and FUSE mounts)
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}
# What reading a damaged .npy/.npz raises: empty (EOFError), truncated (BadZipFile, ValueError), unreadable.
DAMAGED_CACHE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def temporary_pattern(final_name: str = "*") -> str:
    """The glob of temporary files for `final_name`: hidden and ending in .tmp, which no run, report or cache
    name does, so a clean-up by this pattern cannot delete a finished file."""
    return f"{TEMPORARY_PREFIX}{final_name}.*{TEMPORARY_SUFFIX}"


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
    try at once; FileExistsError if the name is taken. True if `source` still exists (it was linked), False
    if it was moved (on file systems without hard links, after claiming `target` with O_EXCL)."""
    try:
        os.link(source, target)
        return True
    except OSError as error:
        if error.errno not in NO_HARD_LINKS:
            raise
    # no hard links here: claim the name with an empty placeholder, then move the file over it
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    os.replace(source, target)
    return False


def remove_stale_temporaries(directory: Path, final_name: str = "*", now: float | None = None) -> list[Path]:
    """Delete temporary files left in `directory` by killed writers (older than STALE_AFTER_SECONDS); the
    paths removed. Only regular files matching `temporary_pattern` are touched."""
    cutoff = (time.time() if now is None else now) - STALE_AFTER_SECONDS
    removed = []
    try:
        candidates = list(directory.glob(temporary_pattern(final_name)))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # removed by another process meanwhile, or not ours to remove
    return removed


@contextmanager
def atomic_path(final: Path, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path beside `final`: what the block writes there is synced to disk and then published as
    `final` in one step, replacing an existing file only if `overwrite` (else FileExistsError, and `final`
    is left as it was). The temporary file is gone afterwards whatever happens."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent, final.name)
    handle, temporary = tempfile.mkstemp(
        prefix=f"{TEMPORARY_PREFIX}{final.name}.", suffix=TEMPORARY_SUFFIX, dir=final.parent
    )
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide files from other users of a shared server
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())  # the data is on disk before any name points at it
        if overwrite:
            os.replace(temporary, final)
        else:
            publish_new(Path(temporary), final)
        sync_directory(final.parent)
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_atomically(final: Path, write: Callable[[BinaryIO], object], overwrite: bool = True) -> Path:
    """`write(stream)` into a new file that is published as `final` only once complete (see `atomic_path`)."""
    with atomic_path(final, overwrite) as temporary, open(temporary, "wb") as stream:
        write(stream)
    return final


def write_bytes_atomically(final: Path, payload: bytes, overwrite: bool = True) -> Path:
    return write_atomically(final, lambda stream: stream.write(payload), overwrite)


def write_text_atomically(final: Path, text: str) -> Path:
    return write_bytes_atomically(final, text.encode("utf-8"))


def write_cache(final: Path, write: Callable[[BinaryIO], object]) -> bool:
    """`write_atomically` for a cache: a read-only or full cache dir only costs the rebuild next time (False)."""
    try:
        write_atomically(final, write)
    except OSError:
        return False
    return True


def discard(path: Path) -> None:
    with contextlib.suppress(OSError):  # read-only cache: the next write replaces it, or the rebuild repeats
        path.unlink(missing_ok=True)


def read_cached_arrays(path: Path, check: Callable[[dict[str, np.ndarray]], bool] | None = None):
    """The arrays of a cached .npz (a dict) or .npy (one array under the key ''), or None when the file is
    absent, damaged or fails `check`; a damaged or failing file is deleted so that it is rebuilt."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as stream:
            loaded = np.load(stream, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                arrays = {"": loaded}
            else:
                with loaded:
                    arrays = {name: loaded[name] for name in loaded.files}
    except DAMAGED_CACHE:
        discard(path)
        return None
    if check is not None and not check(arrays):
        discard(path)
        return None
    return arrays
