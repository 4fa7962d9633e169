import gzip

import numpy as np
import pytest

from conftest import requires_mnist, write_idx
from ocr_core import data as data_module
from ocr_core.data import DataUnavailableError, load_mnist, read_idx


def test_loads_idx_files_from_the_data_dir(tiny_data_dir, tiny_data):
    loaded = load_mnist(download=False)
    assert loaded.train_images.shape == (512, 28, 28) and loaded.train_images.dtype.is_floating_point is False
    assert np.array_equal(loaded.train_images.numpy(), tiny_data.train_images.numpy())
    assert np.array_equal(loaded.test_labels.numpy(), tiny_data.test_labels.numpy())
    assert loaded.source == str(tiny_data_dir)


def test_second_load_comes_from_the_cache_with_the_same_fingerprint(tiny_data_dir, tmp_path):
    first = load_mnist(download=False)
    cached = list((tmp_path / "cache").glob("mnist-*.npz"))
    assert len(cached) == 1
    second = load_mnist(download=False)
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(second.train_images.numpy(), first.train_images.numpy())
    assert not list(tiny_data_dir.rglob("*.npz")), "nothing may be written into the data dir"


def test_reads_gzipped_idx(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = write_idx(tmp_path / "x-idx3-ubyte", images, compress=True)
    assert np.array_equal(read_idx(path, (28, 28)), images)


def test_rejects_a_gz_whose_md5_differs_from_the_original(tiny_data_dir):
    raw = tiny_data_dir / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").unlink()
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(DataUnavailableError, match="corrupt"):
        load_mnist(download=False)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x00\x00\x0d\x03" + b"\x00" * 12, "bad header"),  # float dtype code
        (b"\x00\x00\x08\x03\x00\x00\x00\x05\x00\x00\x00\x1c\x00\x00\x00\x1c" + b"\x00" * 10, "truncated"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00\x00\x10\x00\x00\x00\x10" + b"\x00" * 256, "shape"),
    ],
)
def test_rejects_malformed_idx(tiny_data_dir, payload, message):
    (tiny_data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(payload)
    with pytest.raises(DataUnavailableError, match=message):
        load_mnist(download=False)


def test_rejects_images_and_labels_of_different_counts(tiny_data_dir):
    write_idx(tiny_data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DataUnavailableError, match="differ in count"):
        load_mnist(download=False)


def test_missing_data_and_failed_download_give_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data_module, "DEFAULT_DATA_DIR", tmp_path / "default")

    def offline(root):
        raise OSError("network unreachable")

    monkeypatch.setattr(data_module, "download_mnist", offline)
    with pytest.raises(DataUnavailableError) as caught:
        load_mnist()
    message = str(caught.value)
    for name in data_module.MNIST_FILES:
        assert f"{name}.gz" in message
    assert "download failed" in message and "OCR_DATA_DIR" in message
    assert data_module.data_status() is not None


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://ossci-datasets.s3.amazonaws.com/"
            "mnist/, got:\n<urlopen error [Errno -2] Name or service not known>\n"
        ),  # torchvision offline
        OSError("network unreachable"),
    ],
)
def test_an_offline_download_says_the_network_is_unreachable(tmp_path, monkeypatch, failure):
    monkeypatch.setenv("OCR_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data_module, "DEFAULT_DATA_DIR", tmp_path / "default")
    monkeypatch.setattr(data_module, "download_mnist", lambda root: (_ for _ in ()).throw(failure))
    with pytest.raises(DataUnavailableError, match="the network is unreachable") as caught:
        load_mnist()
    assert "RuntimeError" not in str(caught.value)


def test_download_goes_to_the_default_dir_and_is_then_loaded(tmp_path, monkeypatch, tiny_data):
    from conftest import write_idx_dataset

    default = tmp_path / "default"
    monkeypatch.setenv("OCR_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "DEFAULT_DATA_DIR", default)
    downloaded_into = []
    monkeypatch.setattr(
        data_module, "download_mnist", lambda root: (downloaded_into.append(root), write_idx_dataset(root, tiny_data))
    )
    loaded = load_mnist()
    assert downloaded_into == [default]
    assert len(loaded.train_labels) == 512


@requires_mnist
def test_real_mnist_loads_whole_and_checked():
    loaded = load_mnist(download=False)
    assert loaded.train_images.shape == (60000, 28, 28)
    assert loaded.test_images.shape == (10000, 28, 28)
    assert loaded.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(loaded.test_labels.numpy()).tolist()[:3] == [980, 1135, 1032]
    assert loaded.fingerprint == load_mnist(download=False).fingerprint
