import numpy as np
import pytest
import torch
from torch import nn

from ocr_core.evaluation import evaluate, predict_probabilities


class FixedAnswers(nn.Module):
    """Predicts the digit written in pixel (0, 0), with confidence depending on pixel (0, 1)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raw = (x[:, 0] * 0.3081 + 0.1307) * 255  # undo normalize
        answers = raw[:, 0, 0].round().long()
        logits = torch.zeros(len(x), 10) + self.dummy
        logits[torch.arange(len(x)), answers] = 1 + raw[:, 0, 1] / 10
        return logits


def images_answering(answers, strengths):
    images = torch.zeros(len(answers), 28, 28, dtype=torch.uint8)
    images[:, 0, 0] = torch.tensor(answers, dtype=torch.uint8)
    images[:, 0, 1] = torch.tensor(strengths, dtype=torch.uint8)
    return images


def test_metrics_match_a_hand_count():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    images = images_answering([0, 1, 1, 1, 2, 0], [10, 50, 10, 10, 10, 90])
    evaluation = evaluate(FixedAnswers(), images, labels)
    assert evaluation.accuracy == pytest.approx(4 / 6)
    assert evaluation.confusion[0].tolist()[:3] == [1, 1, 0]
    assert evaluation.confusion[2].tolist()[:3] == [1, 0, 1]
    assert evaluation.confusion.sum() == 6
    per_class = {m.digit: m for m in evaluation.per_class()}
    assert per_class[1].precision == pytest.approx(2 / 3) and per_class[1].recall == 1.0
    assert per_class[0].precision == pytest.approx(1 / 2) and per_class[0].recall == pytest.approx(1 / 2)
    assert per_class[1].f1 == pytest.approx(0.8)
    assert per_class[5].support == 0 and per_class[5].f1 == 0
    assert evaluation.misclassified.tolist() == [5, 1], "most confident mistake first"
    assert evaluation.loss > 0 and evaluation.summary()["augment"] == "none"


def test_probabilities_are_distributions():
    probabilities = predict_probabilities(FixedAnswers(), torch.zeros(5, 28, 28))
    assert probabilities.shape == (5, 10) and np.allclose(probabilities.sum(1), 1)


def test_augmented_evaluation_is_seeded_and_reports_its_spec(tiny_data):
    model = FixedAnswers()
    first = evaluate(model, tiny_data.test_images, tiny_data.test_labels, "seed")
    second = evaluate(model, tiny_data.test_images, tiny_data.test_labels, "seed")
    assert torch.equal(first.images, second.images)
    assert first.augment == "rotate=20,translate=0.2,crop=0.8-1.2,hflip=0.5"
    assert not torch.equal(first.images, evaluate(model, tiny_data.test_images, tiny_data.test_labels).images)


def test_evaluation_restores_training_mode():
    model = FixedAnswers().train()
    evaluate(model, images_answering([1], [1]), torch.tensor([1]))
    assert model.training


@pytest.mark.parametrize("architecture", ["fast", "deep"])
def test_folding_batch_norm_keeps_the_outputs_and_leaves_the_model_alone(architecture):
    from ocr_core.evaluation import folded_for_inference
    from ocr_core.models import as_model_input, build_model, penultimate_features

    torch.manual_seed(0)
    model = build_model(architecture)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):  # statistics a trained model would have
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    images = as_model_input(torch.rand(8, 1, 28, 28))
    folded = folded_for_inference(model)
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in folded.modules())
    assert any(isinstance(layer, torch.nn.BatchNorm2d) for layer in model.modules())
    assert model.training  # the original keeps its mode: a model being trained can be scored mid-run
    with torch.no_grad():
        assert torch.allclose(folded(images), model.eval()(images), atol=1e-5)
    # still a Sequential ending in the classifier: the reader takes its features from the folded copy
    assert torch.allclose(penultimate_features(folded, images), penultimate_features(model, images), atol=1e-5)
