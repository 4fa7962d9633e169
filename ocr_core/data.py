"""MNIST as in-memory uint8 tensors, read from a local data dir laid out like torchvision's."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, UserError
from .files import read_cached_arrays, write_cache

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_DIR / "data"

# name -> (md5 of the original .gz, as in torchvision; per-sample shape). Plain (extracted) files are
# checked by header and sizes only, which also lets tests use small IDX files.
MNIST_FILES = {
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", (28, 28)),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", ()),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", (28, 28)),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", ()),
}
IDX_UBYTE = 0x08
CACHE_FORMAT = 1


class DataUnavailableError(UserError):
    """MNIST is neither in the data dir nor downloadable; the message says what to do."""


@dataclass(frozen=True)
class MnistData:
    """Images are uint8 (N, 28, 28), labels int64 (N,); the fingerprint identifies the source files."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    fingerprint: str
    source: str

    def subset(self, train: int | None = None, test: int | None = None) -> MnistData:
        """The first `train`/`test` samples, for quick runs."""
        return MnistData(
            self.train_images[:train],
            self.train_labels[:train],
            self.test_images[:test],
            self.test_labels[:test],
            fingerprint=f"{self.fingerprint}[:{train},:{test}]",
            source=self.source,
        )

    def holdout_part(self, holdout: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last `holdout` training images and labels: never trained on by a run with that `holdout`,
        so calibration and out-of-distribution thresholds can be fit there instead of on the test set."""
        start = len(self.train_labels) - holdout
        return self.train_images[start:], self.train_labels[start:]

    def without_holdout(self, holdout: int) -> MnistData:
        """The same data minus the last `holdout` training images (what `fit` trains on)."""
        if not 0 <= holdout < len(self.train_labels):
            raise ConfigError(
                f"a holdout of {holdout:,} images leaves nothing to train on: the training set has "
                f"{len(self.train_labels):,} images"
            )
        end = len(self.train_labels) - holdout
        return MnistData(
            self.train_images[:end],
            self.train_labels[:end],
            self.test_images,
            self.test_labels,
            fingerprint=self.fingerprint,
            source=self.source,
        )


def data_dir() -> Path:
    return Path(os.environ.get("OCR_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()


def cache_dir() -> Path:
    """Where decoded copies go: never inside the data dir, which may be read-only or shared."""
    configured = os.environ.get("OCR_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ocr-lab"


def raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def find_raw_file(root: Path, name: str) -> Path | None:
    for candidate in (raw_dir(root) / f"{name}.gz", raw_dir(root) / name):
        if candidate.is_file():
            return candidate
    return None


def missing_files_message(searched: list[Path], reason: str) -> str:
    names = ", ".join(f"{name}.gz" for name in MNIST_FILES)
    places = " or ".join(str(raw_dir(root)) for root in searched)
    return (
        f"MNIST is not available ({reason}). Put the four files {names} in {places}, "
        "or set OCR_DATA_DIR to a folder holding MNIST/raw/."
    )


def read_idx(path: Path, sample_shape: tuple[int, ...]) -> np.ndarray:
    """Decode one IDX file (gzip or plain), checking its header against the MNIST layout."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        payload = stream.read()
    if len(payload) < 4:
        raise DataUnavailableError(f"{path} is truncated")
    zero, dtype_code, ndim = struct.unpack(">HBB", payload[:4])
    if zero != 0 or dtype_code != IDX_UBYTE or ndim != 1 + len(sample_shape):
        raise DataUnavailableError(f"{path} is not an MNIST IDX file (bad header)")
    shape = struct.unpack(f">{ndim}I", payload[4 : 4 + 4 * ndim])
    if tuple(shape[1:]) != sample_shape:
        raise DataUnavailableError(f"{path} holds samples of shape {shape[1:]}, expected {sample_shape}")
    body = np.frombuffer(payload, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataUnavailableError(f"{path} is truncated")
    return body.reshape(shape).copy()  # frombuffer is read-only; tensors want writable memory


def file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def locate_raw_files(root: Path) -> dict[str, Path] | None:
    found = {name: find_raw_file(root, name) for name in MNIST_FILES}
    return None if any(path is None for path in found.values()) else found


def fingerprint_of(files: dict[str, Path]) -> str:
    """Stat-based identity, so a cache hit costs no hashing; content is checked when decoding."""
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        stat = path.stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def decode_raw_files(files: dict[str, Path]) -> dict[str, np.ndarray]:
    arrays = {}
    for name, path in files.items():
        expected_md5, shape = MNIST_FILES[name]
        if path.suffix == ".gz" and file_md5(path) != expected_md5:
            raise DataUnavailableError(f"{path} is corrupt (md5 differs from the MNIST original)")
        arrays[name] = read_idx(path, shape)
    for split in ("train", "t10k"):
        if len(arrays[f"{split}-images-idx3-ubyte"]) != len(arrays[f"{split}-labels-idx1-ubyte"]):
            raise DataUnavailableError(f"MNIST {split} images and labels differ in count")
    return arrays


def content_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(arrays[name].tobytes())
    return "mnist-" + digest.hexdigest()[:12]


def load_decoded(files: dict[str, Path]) -> tuple[dict[str, np.ndarray], str]:
    """Decoded arrays plus a content fingerprint, from the cache when the raw files are unchanged."""
    cache_file = cache_dir() / f"mnist-v{CACHE_FORMAT}-{fingerprint_of(files)}.npz"
    cached = read_cached_arrays(cache_file, lambda arrays: {*MNIST_FILES, "fingerprint"} <= arrays.keys())
    if cached is not None:
        return {name: cached[name] for name in MNIST_FILES}, str(cached["fingerprint"])
    arrays = decode_raw_files(files)
    fingerprint = content_fingerprint(arrays)
    write_cache(cache_file, lambda stream: np.savez(stream, fingerprint=np.array(fingerprint), **arrays))
    return arrays, fingerprint


def download_mnist(root: Path) -> None:
    """torchvision's own downloader; it also extracts next to the .gz, inside `root` (ours)."""
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(str(root), train=train, download=True)


def download_failure(error: Exception) -> str:
    """Why a download failed, in words: torchvision reports unreachable mirrors as a RuntimeError whose text
    quotes each mirror's `urlopen error`; urllib's own errors are OSErrors."""
    if isinstance(error, OSError) or "urlopen error" in str(error):
        return "download failed: the network is unreachable from this machine (no MNIST mirror answered)"
    first_line = next(iter(str(error).splitlines()), "")
    return f"download failed: {first_line or type(error).__name__}"


def search_roots() -> list[Path]:
    return list(dict.fromkeys([data_dir(), DEFAULT_DATA_DIR]))


def find_mnist() -> tuple[Path, dict[str, Path]] | None:
    for root in search_roots():
        files = locate_raw_files(root)
        if files is not None:
            return root, files
    return None


def load_mnist(download: bool = True) -> MnistData:
    """MNIST from the data dir; else downloaded into the default data dir; else a clear error."""
    found = find_mnist()
    if found is None:
        if not download:
            raise DataUnavailableError(missing_files_message(search_roots(), "files not found"))
        try:
            download_mnist(DEFAULT_DATA_DIR)
        except Exception as error:  # torchvision raises several kinds when offline
            raise DataUnavailableError(missing_files_message(search_roots(), download_failure(error))) from error
        found = find_mnist()
        if found is None:
            raise DataUnavailableError(missing_files_message(search_roots(), "download left no files"))
    root, files = found
    arrays, fingerprint = load_decoded(files)
    return MnistData(
        train_images=torch.from_numpy(arrays["train-images-idx3-ubyte"]),
        train_labels=torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long(),
        test_images=torch.from_numpy(arrays["t10k-images-idx3-ubyte"]),
        test_labels=torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long(),
        fingerprint=fingerprint,
        source=str(root),
    )


def data_status() -> str | None:
    """None when MNIST loads without a download, else why not (for status lines in UIs)."""
    if find_mnist() is not None:
        return None
    return missing_files_message(search_roots(), "files not found")
