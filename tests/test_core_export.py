"""ONNX export: one self-contained file whose graph agrees with PyTorch, its contract in metadata_props."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from ocr_core.calibration import calibration_of, read_digits, softmax
from ocr_core.checkpoints import RunStore
from ocr_core.cli import main
from ocr_core.data import load_mnist
from ocr_core.export import CLASS_LABELS, EXPORT_FORMAT, ExportError, export_onnx, onnx_bytes
from ocr_core.models import as_model_input
from ocr_core.runs import train_run
from ocr_core.training import TrainConfig
from tests.conftest import PROJECT_DIR, requires_mnist

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

CALIBRATED = TrainConfig(architecture="fast", epochs=1, batch_size=64, holdout=128)  # of 512 synthetic digits


def run_onnx(path, images: torch.Tensor) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})


def torch_logits(model, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(as_model_input(images)).double().numpy()


def assert_agrees(path, model, metadata, images: torch.Tensor) -> None:
    """argmax identical and probabilities within 1e-4, calibrated ones too; the digit score as read_digits."""
    outputs = run_onnx(path, images)
    expected = torch_logits(model, images)
    assert outputs[0].shape == expected.shape
    assert (outputs[0].argmax(1) == expected.argmax(1)).all()
    assert np.abs(softmax(outputs[0]) - softmax(expected)).max() < 1e-4
    calibration = calibration_of(metadata)
    if calibration is not None:
        temperature = calibration.temperature
        assert np.abs(softmax(outputs[0], temperature) - softmax(expected, temperature)).max() < 1e-4
        scores = np.array([reading.digit_score for reading in read_digits(model, images, calibration)])
        np.testing.assert_allclose(outputs[1], scores, rtol=1e-3, atol=1e-3)


def test_a_calibrated_run_exports_to_one_file_that_agrees_with_pytorch_and_describes_itself(tmp_path, tiny_data):
    store = RunStore(tmp_path / "runs")
    train_run("tiny", CALIBRATED, store, tiny_data)
    model, metadata = store.load("tiny")
    assert metadata.calibration is not None
    out = export_onnx("tiny", model, metadata, tmp_path / "out" / "tiny.onnx")
    assert sorted(path.name for path in out.parent.iterdir()) == ["tiny.onnx"]  # no external-data side file
    loaded = onnx.load(str(out))
    onnx.checker.check_model(loaded)
    props = {prop.key: prop.value for prop in loaded.metadata_props}
    assert props["format"] == EXPORT_FORMAT and props["run_name"] == "tiny"
    assert json.loads(props["class_labels"]) == list(CLASS_LABELS)
    assert float(props["calibration.temperature"]) == pytest.approx(calibration_of(metadata).temperature)
    assert float(props["calibration.threshold"]) == pytest.approx(calibration_of(metadata).detector.threshold)
    assert "[0, 1]" in props["input"] and "white ink on black" in props["input"]
    batch = loaded.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a dynamic batch axis
    images = tiny_data.test_images.float().div(255).unsqueeze(1)
    assert_agrees(out, model, metadata, images)
    assert_agrees(out, model, metadata, images[:1])  # another batch size through the same graph
    assert onnx_bytes("tiny", model, metadata) == out.read_bytes()  # the download is the same file


def test_export_refuses_to_overwrite_and_says_what_is_missing(tmp_path, tiny_data, monkeypatch):
    store = RunStore(tmp_path / "runs")
    train_run("tiny", TrainConfig(architecture="fast", epochs=0.25, batch_size=64), store, tiny_data)
    model, metadata = store.load("tiny")
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="exists already"):
        export_onnx("tiny", model, metadata, taken)
    assert taken.read_bytes() == b"keep me"
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(ExportError, match=r"requirements-export\.txt"):
        export_onnx("tiny", model, metadata, tmp_path / "new.onnx")
    assert not (tmp_path / "new.onnx").exists()


def test_cli_export_writes_the_file_and_refuses_a_taken_one_with_exit_code_2(tmp_path, store, tiny_data, capsys):
    train_run("tiny", TrainConfig(architecture="fast", epochs=0.25, batch_size=64), store, tiny_data)
    out = tmp_path / "tiny.onnx"
    assert main(["export", "tiny", "--format", "onnx", "--out", str(out)]) == 0
    assert "exported tiny" in capsys.readouterr().out and out.stat().st_size > 10_000
    assert main(["export", "tiny", "--out", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["export", "missing", "--out", str(tmp_path / "m.onnx")]) == 2


@requires_mnist
def test_the_shipped_best_run_agrees_with_pytorch_on_test_digits(tmp_path):
    store = RunStore(PROJECT_DIR / "checkpoints")
    model, metadata = store.load("best")
    out = export_onnx("best", model, metadata, tmp_path / "best.onnx")
    images = load_mnist().test_images[:2000].float().div(255).unsqueeze(1)
    assert_agrees(out, model, metadata, images)
