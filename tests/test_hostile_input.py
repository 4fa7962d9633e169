"""Hostile and unlucky input (issue 16): each test reproduces one cause of a crash, hang or wrong answer."""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import EpsImagePlugin, Image
from safetensors.torch import save_file

from conftest import PROJECT_DIR, sample_metadata
from ocr_core.checkpoints import FORMAT
from ocr_core.cleanup import MAX_ENLARGEMENT, MAX_WORKING_PIXELS, clean_up
from ocr_core.cli import json_safe, main
from ocr_core.data import load_mnist
from ocr_core.errors import CheckpointError, ImageError, printable
from ocr_core.feature_space import read_cached
from ocr_core.files import STALE_AFTER_SECONDS, atomic_path, remove_stale_temporaries
from ocr_core.metadata import RunMetadataError, RunMetadata
from ocr_core.models import build_model
from ocr_core.preprocess import MAX_ASPECT, digit_from_image, load_image
from ocr_core.reading import READ_SIDE, read_number
from ocr_core.robustness import corrupted_suite, first_readable, report_cache_dir

# ---- images ---------------------------------------------------------------------------------------------------


def a_one(height: int = 64, width: int = 64) -> np.ndarray:
    """Dark bar on white paper, RGB: a '1' any reader can find."""
    image = np.full((height, width, 3), 255, np.uint8)
    image[height // 6 : height - height // 6, width // 2 - max(1, width // 16) : width // 2 + max(1, width // 16)] = 0
    return image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 32 32
newpath 4 4 moveto 28 28 lineto stroke
showpage
%%EOF
"""


def test_an_eps_file_renamed_png_never_reaches_ghostscript(monkeypatch):
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(self))
    with pytest.raises(ImageError, match="not an image this app can read"):
        load_image(EPS)
    assert not opened, "Pillow's EPS plugin (which runs Ghostscript) was asked to open the upload"


def test_a_lab_tiff_renamed_png_is_read_by_its_lightness():
    rgb = Image.fromarray(a_one())
    lab = Image.merge("LAB", (rgb.convert("L"), Image.new("L", rgb.size, 128), Image.new("L", rgb.size, 128)))
    prepared = digit_from_image(load_image(encoded(lab, "TIFF")))
    assert prepared.readable and prepared.digit.max() > 0.5


def test_a_16_bit_greyscale_scan_larger_than_the_working_size_is_read():
    page = np.full((3508, 2480), 60000, np.uint16)  # A4 at 300 dpi, 16-bit grey, as scanners write it
    page[800:2800, 1160:1320] = 2000
    array = load_image(encoded(Image.fromarray(page), "PNG"))
    assert max(array.shape) == 512 and digit_from_image(array).readable


def exif_block(*entries: tuple[int, int, int, bytes]) -> bytes:
    """Little-endian EXIF with the given (tag, type, count, 4-byte value) entries."""
    body = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", *entry[:3]) + entry[3] for entry in entries)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + body + struct.pack("<I", 0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_damaged_exif_falls_back_to_the_unrotated_image(fmt):
    # orientation 6 (turn) beside a resolution tag typed as text: Pillow's exif_transpose raises TypeError
    exif = exif_block((0x0112, 3, 1, b"\x06\x00\x00\x00"), (0x011A, 2, 4, b"abc\x00"))
    array = load_image(encoded(Image.fromarray(a_one(64, 48)), fmt, exif=exif))
    assert array.shape[:2] == (64, 48), "unrotated"


def test_the_worst_shapes_answer_in_bounded_work(monkeypatch):
    """Every shape is refused or read; no step works on an unbounded enlargement (12x2500 took minutes)."""
    too_thin = np.full((12, 2500), 255, np.uint8)
    too_thin[4:8, 100:2400] = 0
    with pytest.raises(ImageError, match="long and thin"):
        load_image(encoded(Image.fromarray(too_thin), "PNG"), max_side=READ_SIDE)
    seen = []
    real_clean_up = clean_up

    def measured(array):
        result = real_clean_up(array)
        seen.append((result.grey.size, result.scale))
        return result

    monkeypatch.setattr("ocr_core.preprocess.clean_up", measured)
    monkeypatch.setattr("ocr_core.reading.clean_up", measured)
    model = build_model("fast").eval()
    for height, width in [(8, 8), (8, 8 * MAX_ASPECT), (8 * MAX_ASPECT, 8), (20, 500), (1000, 1000), (40, 1000)]:
        picture = np.full((height, width), 255, np.uint8)
        picture[height // 2 - max(1, height // 10) : height // 2 + max(1, height // 10), width // 10 : -width // 10] = 0
        picture[height // 10 : -height // 10, width // 2 - max(1, width // 10) : width // 2 + max(1, width // 10)] = 0
        payload = encoded(Image.fromarray(picture), "PNG")
        with contextlib.suppress(ImageError):  # a refusal with a reason is an answer
            digit_from_image(load_image(payload))
        read_number(load_image(payload, max_side=READ_SIDE), model)  # 1000x1000 crashed with an int8 overflow
    assert seen and all(pixels <= MAX_WORKING_PIXELS * 1.01 and scale <= MAX_ENLARGEMENT for pixels, scale in seen)


def test_non_finite_pixels_of_a_float_tiff_are_repaired():
    values = 1 - a_one()[..., 0].astype(np.float32) / 255  # white ink on black, floats
    values[0, 0], values[5, 5] = np.nan, np.inf
    prepared = digit_from_image(load_image(encoded(Image.fromarray(values, mode="F"), "TIFF")))
    assert prepared.readable and torch.isfinite(prepared.digit).all()
    nothing = np.full((32, 32), np.nan, np.float32)
    with pytest.raises(ImageError, match="NaN"):
        load_image(encoded(Image.fromarray(nothing, mode="F"), "TIFF"))


def test_a_file_name_that_is_not_utf8_is_printed_escaped(tmp_path, monkeypatch):
    name = os.fsdecode(b"\xff\xfe-digit.png")
    (tmp_path / name).write_bytes(encoded(Image.fromarray(a_one()), "PNG"))
    monkeypatch.chdir(tmp_path)
    strict_stdout, strict_stderr = io.BytesIO(), io.BytesIO()  # a UTF-8 terminal refuses lone surrogates
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(strict_stdout, "utf-8", errors="strict"))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(strict_stderr, "utf-8", errors="strict"))
    code = main(["predict", "best", name, os.fsdecode(b"\xff-missing.png")])
    sys.stdout.flush()
    sys.stderr.flush()
    assert code == 2
    assert strict_stdout.getvalue().decode().startswith("\\xff\\xfe-digit.png: 1 (")
    assert "\\xff-missing.png" in strict_stderr.getvalue().decode()


def test_printable_escapes_control_characters_and_keeps_unicode():
    assert printable("a\tb\nc\x1b[31m é") == "a\\tb\\nc\\x1b[31m é"


# ---- run files ------------------------------------------------------------------------------------------------


def crafted_run(path: Path, metadata_text: str, version: str = "1") -> Path:
    tensors = {name: value.contiguous() for name, value in build_model("fast").state_dict().items()}
    save_file(tensors, str(path), metadata={"format": FORMAT, "format_version": version, "metadata": metadata_text})
    return path


@pytest.mark.parametrize(
    ("metadata", "version", "reason"),
    [("[" * 100_000 + "]" * 100_000, "1", "damaged run metadata"), ("{}", "²", "damaged format version")],
)
def test_crafted_run_files_are_listed_as_skipped_and_refused_on_upload(store, metadata, version, reason):
    store.root.mkdir(parents=True)
    crafted_run(store.root / "crafted.safetensors", metadata, version)
    (listed,) = store.list()
    assert listed.name == "crafted" and reason in listed.problem
    with pytest.raises(CheckpointError, match=reason):
        store.import_bytes("again", (store.root / "crafted.safetensors").read_bytes())
    assert not store.exists("again")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_like_a_run_does_not_block_listing(store):
    store.root.mkdir(parents=True)
    os.mkfifo(store.root / "x.safetensors")  # opening it for reading would block forever
    (listed,) = store.list()
    assert listed.problem == "not a regular file"
    with pytest.raises(CheckpointError, match="no run named"):
        store.info("x")


def test_nan_or_infinite_weights_are_refused(store):
    model = build_model("fast")
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    store.save("poisoned", model, sample_metadata())
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        store.load("poisoned")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        store.import_bytes("copy", store.path("poisoned").read_bytes())
    assert json.dumps(json_safe({"confidence": float("nan"), "list": [float("inf"), 1.0]}), allow_nan=False)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("metrics", "clean", "accuracy"), 7.5),
        (("epochs_completed",), -5),
        (("parameters",), -1),
        (("data", "train_size"), -3),
        (("history", 0, "test_accuracy"), 1.5),
        (("per_class", 0, "recall"), -0.1),
        (("training_seconds",), float("nan")),
    ],
)
def test_impossible_metadata_is_refused(path, value):
    values = sample_metadata().to_dict()
    target = values
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(RunMetadataError, match=str(path[-1])):
        RunMetadata.from_dict(json.loads(json.dumps(values)))


@pytest.mark.parametrize("name", ["café", "tab\there", "new\nline", "esc\x1b[2J"])
def test_run_files_with_unusable_names_are_listed_as_skipped_without_control_characters(store, capsys, name):
    store.save("fine", build_model("fast"), sample_metadata())
    (store.root / f"{name}.safetensors").write_bytes(store.path("fine").read_bytes())
    listed = {run.name: run for run in store.list()}
    skipped = listed[printable(name)]
    assert "rename the file" in skipped.problem and listed["fine"].ok
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\t" not in printed
    assert len(printed.strip().splitlines()) == 3, "a header and one row per file: no forged rows"


RACER = textwrap.dedent(
    """
    import sys, time
    from ocr_core.checkpoints import RunStore
    from ocr_core.errors import CheckpointError
    store, role, until = RunStore(sys.argv[1]), sys.argv[2], time.time() + float(sys.argv[3])
    done = 0
    while time.time() < until:
        try:
            if role == "rename":
                store.rename("a", "b") if store.exists("a") else store.rename("b", "a")
            else:
                store.delete("a" if done % 2 else "b")
                store.import_bytes("a", open(sys.argv[4], "rb").read())
            store.list()
            store.info("a")
        except CheckpointError as error:
            assert "\\n" not in str(error)
        done += 1
    print(done)
    """
)


def test_rename_racing_delete_fails_only_with_one_line_reasons(store, tmp_path):
    model_file = store.save("a", build_model("fast"), sample_metadata()).path
    spare = tmp_path / "spare.safetensors"
    spare.write_bytes(model_file.read_bytes())
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(store.root), role, "4", str(spare)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for role in ("rename", "delete")
    ]
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        assert int(out) > 0 and "Traceback" not in err
    assert {path.name for path in store.root.iterdir()} <= {"a.safetensors", "b.safetensors"}


def test_a_run_renamed_or_deleted_by_another_process_mid_rename_is_one_line(store, monkeypatch):
    import ocr_core.checkpoints as checkpoints

    real_publish = checkpoints.publish_new
    store.save("a", build_model("fast"), sample_metadata())

    def deleted_first(source, target):  # another process deletes the run just before the link
        source.unlink()
        return real_publish(source, target)

    monkeypatch.setattr(checkpoints, "publish_new", deleted_first)
    with pytest.raises(CheckpointError, match="no run named 'a'"):
        store.rename("a", "b")
    store.save("a", build_model("fast"), sample_metadata())

    def deleted_after(source, target):  # ... or deletes the old name just after the link: renamed all the same
        linked = real_publish(source, target)
        source.unlink()
        return linked

    monkeypatch.setattr(checkpoints, "publish_new", deleted_after)
    assert store.rename("a", "b").name == "b" and [run.name for run in store.list()] == ["b"]


def test_stale_temporary_files_of_killed_saves_are_removed(store):
    store.save("kept", build_model("fast"), sample_metadata())
    stale = store.root / ".kept.safetensors.abc123.tmp"
    fresh = store.root / ".other.safetensors.def456.tmp"
    stale.write_bytes(b"half a run")
    fresh.write_bytes(b"a save in progress")
    old = time.time() - STALE_AFTER_SECONDS - 60
    os.utime(stale, (old, old))
    assert [run.name for run in store.list()] == ["kept"]
    assert not stale.exists() and fresh.exists() and store.path("kept").exists()
    assert remove_stale_temporaries(store.root, now=time.time() + 2 * STALE_AFTER_SECONDS) == [fresh]


def test_an_interrupted_atomic_write_leaves_neither_half_a_file_nor_a_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed midway")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(FileExistsError), atomic_path(target, overwrite=False) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_every_file_write_of_the_engine_goes_through_the_one_atomic_helper():
    hand_rolled = [
        path.name
        for path in [*(PROJECT_DIR / "ocr_core").glob("*.py"), *(PROJECT_DIR / "bench").glob("*.py")]
        if path.name != "files.py" and "os.replace(" in path.read_text()
    ]
    assert not hand_rolled


# ---- damaged caches -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated"])
def test_a_damaged_mnist_cache_is_discarded_and_rebuilt(tiny_data_dir, tiny_data, damage):
    load_mnist(download=False)
    (cached,) = (tiny_data_dir.parent / "cache").glob("mnist-*.npz")
    cached.write_bytes(damage)
    for _ in range(2):  # and the next load finds a good cache again
        assert torch.equal(load_mnist(download=False).train_images, tiny_data.train_images)
    assert cached.stat().st_size > 1000


def test_a_report_of_random_bytes_counts_as_missing(store, tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    report_cache_dir().mkdir(parents=True)
    (report_cache_dir() / "x.json").write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 300, np.uint8)))
    assert first_readable(store, "x.json", json.loads, lambda value: True) is None


def test_a_zero_byte_corrupted_digit_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    images = torch.zeros(4, 28, 28, dtype=torch.uint8)
    images[:, 6:22, 12:16] = 255
    built = corrupted_suite(images, "shear")
    (cached,) = report_cache_dir().glob("*shear.npy")
    cached.write_bytes(b"")
    assert torch.equal(corrupted_suite(images, "shear"), built) and cached.stat().st_size > 0


def test_a_truncated_inside_the_network_cache_is_discarded(tmp_path):
    path = tmp_path / "index-key.npz"
    buffer = io.BytesIO()
    np.savez(buffer, mean=np.zeros(3), axes=np.zeros((2, 3)), kept_variance=np.array(0.5), points=np.zeros((5, 2)))
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert read_cached(path, {"mean", "axes", "kept_variance", "points"}, 5) is None and not path.exists()
    path.write_bytes(buffer.getvalue())
    assert read_cached(path, {"mean", "axes", "kept_variance", "points"}, 5) is not None
