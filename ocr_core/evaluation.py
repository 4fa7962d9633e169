"""Accuracy, loss, per-class metrics, confusion matrix and mistakes, on clean or augmented test sets."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .augment import AugmentSpec, as_spec, augment_images, to_float_images
from .models import as_model_input

EVAL_BATCH = 256  # measured on a 2-core CPU: faster than 128, 512 or 1,000
AUGMENTED_TEST_SEED = 1234  # one fixed seed, so every run is scored on the same augmented digits


@dataclass
class ClassMetrics:
    digit: int
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Evaluation:
    augment: str  # canonical spec of the test-set transform, "none" for the clean set
    images: torch.Tensor  # float (N, 1, 28, 28) in [0, 1]: what the model saw
    labels: np.ndarray
    probabilities: np.ndarray  # (N, 10)
    loss: float

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    @property
    def confidences(self) -> np.ndarray:
        return self.probabilities.max(1)

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean()) if len(self.labels) else 0.0

    @property
    def confusion(self) -> np.ndarray:
        """counts[true, predicted]"""
        return np.bincount(self.labels * 10 + self.predictions, minlength=100).reshape(10, 10)

    @property
    def misclassified(self) -> np.ndarray:
        """Indices of wrong predictions, most confident first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        return wrong[np.argsort(-self.confidences[wrong], kind="stable")]

    def per_class(self) -> list[ClassMetrics]:
        confusion = self.confusion
        hits = np.diag(confusion).astype(float)
        predicted, actual = confusion.sum(0), confusion.sum(1)
        precision = np.divide(hits, predicted, out=np.zeros(10), where=predicted > 0)
        recall = np.divide(hits, actual, out=np.zeros(10), where=actual > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros(10), where=both > 0)
        return [ClassMetrics(d, float(precision[d]), float(recall[d]), float(f1[d]), int(actual[d])) for d in range(10)]

    def summary(self) -> dict:
        return {"augment": self.augment, "accuracy": self.accuracy, "loss": self.loss, "count": len(self.labels)}


def predict_probabilities(
    model: nn.Module, images: torch.Tensor, device: torch.device | str | None = None
) -> np.ndarray:
    """Class probabilities (N, 10) for float images (N, [1,] 28, 28) in [0, 1] or uint8."""
    device = device or next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        chunks = [F.softmax(model(as_model_input(chunk.to(device))), 1).cpu() for chunk in images.split(EVAL_BATCH)]
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 10), np.float32)


def folded_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy with each batch norm folded into the convolution before it: the same outputs
    for one pass less over the activations (5-20% faster on a CPU, measured). Worth its few milliseconds for a
    test set, not for one drawing. A Sequential stays a Sequential of the same length (each folded batch norm
    becomes an Identity), so its layers can still be sliced (`models.penultimate_features`); another model is
    folded by torch.fx, or used as it is when it cannot be traced. `model` itself is left as it was."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, nn.Sequential):
        layers = list(model)
        for index, layer in enumerate(layers[1:], 1):
            if isinstance(layer, nn.BatchNorm2d) and isinstance(layers[index - 1], nn.Conv2d):
                layers[index - 1], layers[index] = fuse_conv_bn_eval(layers[index - 1], layer), nn.Identity()
        return nn.Sequential(*layers).eval()
    try:
        return fuse(model)
    except Exception:
        return model


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    augment: AugmentSpec | str | None = None,
    seed: int = AUGMENTED_TEST_SEED,
    device: torch.device | str | None = None,
) -> Evaluation:
    """Score uint8 test images (N, 28, 28), optionally transformed by a seeded augmentation."""
    spec = as_spec(augment)
    inputs = augment_images(images, spec, seed, labels) if not spec.is_identity else to_float_images(images)
    probabilities = predict_probabilities(folded_for_inference(model), inputs, device)
    label_array = labels.numpy()
    picked = probabilities[np.arange(len(label_array)), label_array]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean()) if len(label_array) else 0.0
    return Evaluation(spec.to_string(), inputs, label_array, probabilities, loss)
