"""Take a run elsewhere: one self-contained ONNX file that needs nothing but an ONNX runtime.

The graph takes what `predict` gives a model before normalising: float (N, 1, 28, 28) in [0, 1], white ink on
black, any batch size; MNIST's normalisation is inside. Its first output, `logits`, is the logits exactly as
PyTorch computes them; a calibrated run adds `digit_score`, the out-of-distribution score of
`calibration.DigitDetector` (above the threshold: not a digit). The file's `metadata_props` state that contract
plus the class labels, the run's name and its calibration (`EXPORT_FORMAT`'s keys), so a consumer reads
everything from the file.

Exporting needs `onnx` and `onnxscript` (torch's dynamo exporter; `requirements-export.txt`), which serving
the app does not: they are imported only here, when an export is asked for.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from .calibration import Calibration, calibration_of, projection
from .checkpoints import atomic_path
from .errors import UserError
from .metadata import RunMetadata
from .models import MNIST_MEAN, MNIST_STD, normalize

EXPORT_FORMAT = "ocr-lab-onnx/1"
INPUT_NAME, LOGITS_NAME, SCORE_NAME = "images", "logits", "digit_score"
CLASS_LABELS = tuple(str(digit) for digit in range(10))
INPUT_CONTRACT = (
    "float32 (N, 1, 28, 28), pixels in [0, 1], white ink on black (MNIST's polarity), the digit centred by "
    f"mass in a 20x20 box as MNIST's are; N is dynamic; normalisation ((x - {MNIST_MEAN}) / {MNIST_STD}) "
    "is inside the graph"
)
LOGITS_CONTRACT = (
    "logits (N, 10) as PyTorch computes them; softmax(logits / temperature) gives calibrated probabilities"
)
SCORE_CONTRACT = "digit_score (N,): Mahalanobis distance to the nearest class mean; above threshold: not a digit"
INSTALL_HINT = "ONNX export needs the onnx and onnxscript packages: pip install -r requirements-export.txt"
OPSET = 18


class ExportError(UserError):
    """An export that cannot be made (a missing package, a file in the way); the message says what to do."""


class NormalisedRun(nn.Module):
    """The run's network with `predict`'s normalisation in front and, for a calibrated run, the digit score."""

    def __init__(self, model: nn.Module, calibration: Calibration | None):
        super().__init__()
        self.model = model.eval()
        self.scored = calibration is not None
        if self.scored:
            detector = calibration.detector
            width = model[-1].in_features
            self.register_buffer("projection", projection(width, detector.seed))
            self.register_buffer("class_means", torch.from_numpy(detector.class_means))
            self.register_buffer("precision", torch.from_numpy(detector.precision))

    def forward(self, images: torch.Tensor):
        features = self.model[:-1](normalize(images)).flatten(1)
        logits = self.model[-1](features)
        if not self.scored:
            return logits
        # calibration.projected and DigitDetector.scores, written out so the exporter traces plain tensor ops
        points = features / features.norm(dim=1, keepdim=True).clamp_min(1e-6) @ self.projection
        offsets = points[:, None, :] - self.class_means[None]
        distances = ((offsets @ self.precision) * offsets).sum(-1)
        return logits, distances.min(1).values


def export_metadata(name: str, metadata: RunMetadata, calibration: Calibration | None) -> dict[str, str]:
    """The `metadata_props` of an exported run (ONNX keeps them as text)."""
    props = {
        "format": EXPORT_FORMAT,
        "run_name": name,
        "architecture": metadata.architecture,
        "input": INPUT_CONTRACT,
        "output.logits": LOGITS_CONTRACT,
        "class_labels": json.dumps(list(CLASS_LABELS)),
        "created": metadata.created,
        "calibration.temperature": "1.0" if calibration is None else repr(calibration.temperature),
        "calibrated": "false" if calibration is None else "true",
    }
    if metadata.metric("clean") is not None:
        props["clean_test_accuracy"] = f"{metadata.metric('clean'):.6f}"
    if calibration is not None:
        props["output.digit_score"] = SCORE_CONTRACT
        props["calibration.threshold"] = repr(calibration.detector.threshold)
    return props


def onnx_program(model: nn.Module, calibration: Calibration | None):
    """torch's dynamo exporter on the wrapped run, batch axis dynamic; ExportError without its packages."""
    try:
        import onnx  # noqa: F401  (the exporter imports both; asking first gives one clear message)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(INSTALL_HINT) from None
    wrapped = NormalisedRun(model, calibration).eval()
    outputs = [LOGITS_NAME, SCORE_NAME] if calibration is not None else [LOGITS_NAME]
    return torch.onnx.export(
        wrapped,
        (torch.rand(2, 1, 28, 28),),
        input_names=[INPUT_NAME],
        output_names=outputs,
        opset_version=OPSET,
        dynamo=True,
        dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
        external_data=False,
        verbose=False,
    )


def export_onnx(name: str, model: nn.Module, metadata: RunMetadata, out: Path | str, overwrite: bool = False) -> Path:
    """Write the run as one ONNX file at `out` (atomically; an existing file only replaced if `overwrite`)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists already; choose another file or overwrite it")
    calibration = calibration_of(metadata)
    program = onnx_program(model, calibration)
    program.model.metadata_props.update(export_metadata(name, metadata, calibration))
    try:
        with atomic_path(out, overwrite) as temporary:
            program.save(str(temporary), external_data=False)  # weights inside: no side file
    except OSError as error:
        raise ExportError(f"cannot write {out}: {error.strerror or error}") from None
    return out


def onnx_bytes(name: str, model: nn.Module, metadata: RunMetadata) -> bytes:
    """The ONNX file's bytes, for a download."""
    with tempfile.TemporaryDirectory() as folder:
        return export_onnx(name, model, metadata, Path(folder) / f"{name}.onnx").read_bytes()


def export_available() -> bool:
    """Whether this installation can export (the exporter's packages are installed)."""
    from importlib.util import find_spec

    return find_spec("onnx") is not None and find_spec("onnxscript") is not None
