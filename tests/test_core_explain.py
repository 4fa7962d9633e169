"""ocr_core.explain: activations, filters and attributions, each method checked for faithfulness on hand-built
models whose answer is known to depend on one place of the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from conftest import sample_metadata
from ocr_core import explain
from ocr_core.cli import main
from ocr_core.errors import UserError
from ocr_core.models import build_model, penultimate_features

HORIZONTAL_ROW, VERTICAL_COLUMN = 6, 20


def lines_image() -> torch.Tensor:
    """A thin horizontal and a thin vertical line from border to border (so no line ends, which look like
    strokes of the other direction to a 3x3 detector)."""
    image = torch.zeros(28, 28)
    image[HORIZONTAL_ROW, :] = 1
    image[:, VERTICAL_COLUMN] = 1
    return image


def line_detector_model() -> nn.Sequential:
    """Channel 0 answers horizontal strokes, channel 1 vertical ones; logit 0 sums channel 0, logit 1
    channel 1, the other logits are 0. Kernels sum to 0 and pad by replication: blank paper answers 0."""
    conv = nn.Conv2d(1, 2, 3, padding=1, padding_mode="replicate", bias=False)
    horizontal = torch.tensor([[-1.0, -1, -1], [2, 2, 2], [-1, -1, -1]])
    conv.weight.data = torch.stack([horizontal, horizontal.T])[:, None]
    classifier = nn.Linear(2 * 28 * 28, 10)
    classifier.weight.data.zero_()
    classifier.bias.data.zero_()
    classifier.weight.data[0, : 28 * 28] = 1
    classifier.weight.data[1, 28 * 28 :] = 1
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), classifier).eval()


def quadrant_model() -> nn.Sequential:
    """Logit 3 sums the (rectified, normalised) pixels of the top-left quadrant and nothing else."""
    identity = nn.Conv2d(1, 1, 1)
    identity.weight.data.fill_(1)
    identity.bias.data.zero_()
    classifier = nn.Linear(28 * 28, 10)
    classifier.weight.data.zero_()
    classifier.bias.data.zero_()
    classifier.weight.data[3] = F.pad(torch.ones(14, 14), (0, 14, 0, 14)).flatten()
    return nn.Sequential(identity, nn.ReLU(), nn.Flatten(), classifier).eval()


def two_blobs() -> torch.Tensor:
    image = torch.zeros(28, 28)
    image[3:10, 3:10] = 1  # top left
    image[18:25, 18:25] = 1  # bottom right
    return image


def share(values: np.ndarray, region: tuple[slice, slice]) -> float:
    magnitude = np.abs(values)
    return float(magnitude[region].sum() / magnitude.sum())


HORIZONTAL_REGION = (slice(HORIZONTAL_ROW - 3, HORIZONTAL_ROW + 4), slice(None))
VERTICAL_REGION = (slice(None), slice(VERTICAL_COLUMN - 3, VERTICAL_COLUMN + 4))


@pytest.mark.parametrize("method", list(explain.METHODS))
@pytest.mark.parametrize("target, region", [(0, HORIZONTAL_REGION), (1, VERTICAL_REGION)])
def test_each_method_puts_the_attribution_on_the_strokes_the_class_reads(method, target, region):
    explainer = explain.explainable(line_detector_model())
    values = explain.attribute(explainer, lines_image(), target, method)
    assert values.shape == (28, 28) and np.isfinite(values).all()
    # 1.0 for the gradient methods; occlusion ~0.86: blanking a patch of the other line cuts it, and the cut
    # ends look like short strokes of the class's direction, a real effect of blanking
    assert share(values, region) > 0.8, f"{method} spreads class {target}'s evidence off its strokes"


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "occlusion"])
def test_pixel_methods_ignore_ink_the_logit_does_not_read(method):
    values = explain.attribute(explain.explainable(quadrant_model()), two_blobs(), 3, method)
    assert share(values, (slice(0, 14), slice(0, 14))) > 0.99
    assert np.abs(values[14:, 14:]).max() == 0


def test_integrated_gradients_add_up_to_the_logit_difference_from_blank_paper():
    explainer = explain.explainable(line_detector_model())
    values = explain.attribute(explainer, lines_image(), 0, "integrated_gradients")
    difference = explain.logits(explainer, lines_image())[0] - explain.logits(explainer, torch.zeros(28, 28))[0]
    assert difference > 10
    assert values.sum() == pytest.approx(difference, rel=0.01)


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_signed_methods_show_what_argues_against_a_class(method):
    model = quadrant_model()
    model[-1].weight.data[3] -= F.pad(torch.ones(14, 14), (14, 0, 14, 0)).flatten()  # bottom-right ink: not a 3
    values = explain.attribute(explain.explainable(model), two_blobs(), 3, method)
    assert values[3:10, 3:10].min() > 0 and values[18:25, 18:25].max() < 0
    assert values[3:10, 3:10].sum() == pytest.approx(-values[18:25, 18:25].sum(), rel=1e-3)


def test_grad_cam_finds_nothing_for_a_class_that_reads_no_channel():
    grad_cam = explain.attribute(explain.explainable(line_detector_model()), lines_image(), 2, "grad_cam")
    assert grad_cam.max() == 0


def test_attributions_of_blank_paper_are_zero_or_finite():
    explainer = explain.explainable(build_model("deep"))
    blank = torch.zeros(28, 28)
    for method in explain.METHODS:
        values = explain.attribute(explainer, blank, 5, method)
        assert np.isfinite(values).all()
        if method in ("integrated_gradients", "occlusion"):  # the input is the baseline: nothing to explain
            assert np.abs(values).max() < 1e-6
        picture = explain.overlay(blank, values)
        assert picture.shape == (28, 28, 3) and picture.dtype == np.uint8
        if method in ("integrated_gradients", "occlusion"):
            assert len(np.unique(picture)) == 1  # plain grey: rounding noise is not painted as evidence


def test_bad_targets_and_methods_are_user_errors():
    explainer = explain.explainable(line_detector_model())
    with pytest.raises(UserError, match="0 to 9"):
        explain.attribute(explainer, lines_image(), 10, "saliency")
    with pytest.raises(UserError, match="unknown attribution method"):
        explain.attribute(explainer, lines_image(), 1, "lime")
    with pytest.raises(UserError, match="28x28"):
        explain.activations(line_detector_model(), torch.zeros(20, 20))


def test_activations_cover_every_layer_and_end_with_the_classifier_input():
    model = build_model("deep").eval()
    digit = lines_image()
    layers = explain.activations(model, digit)
    assert [layer.name for layer in layers] == [
        "conv 1",
        "pool 1",
        "conv 2",
        "conv 3",
        "pool 2",
        "conv 4",
        "conv 5",
        "pool 3",
        "classifier input",
    ]
    assert layers[0].values.shape == (32, 28, 28) and layers[-2].values.shape == (128, 3, 3)
    assert layers[0].values.min() >= 0  # after the ReLU: a conv layer is shown as the next layer reads it
    np.testing.assert_allclose(layers[-1].values, penultimate_features(model, digit[None])[0].numpy(), atol=1e-5)
    assert "32 maps of 28x28" in layers[0].description and "1,152 numbers" in layers[-1].description
    tiled = explain.tile(layers[0].values)
    assert tiled.shape == (6 * 29 - 1, 6 * 29 - 1) and tiled.min() >= 0 and tiled.max() <= 1
    assert explain.tile(layers[-1].values).shape == (34, 34)  # 1,152 numbers in a 34x34 square


def test_fast_net_filters_are_the_space_to_depth_kernels_on_the_image():
    model = build_model("fast").eval()
    filters = explain.first_layer_filters(model)
    assert filters.shape == (32, 6, 6)
    image = torch.rand(1, 1, 28, 28)
    through_the_net = model[1](model[0](image))  # space-to-depth, then the 3x3 conv on the 14x14 grid
    on_the_image = F.conv2d(image, torch.from_numpy(filters)[:, None], stride=2, padding=2)
    torch.testing.assert_close(on_the_image, through_the_net, atol=1e-5, rtol=1e-4)
    assert explain.activations(model, image[0, 0])[0].name == "space-to-depth 1"


def test_a_model_without_conv_layers_says_so_instead_of_failing():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    layers = explain.activations(model, lines_image())
    assert [layer.name for layer in layers] == ["classifier input"] and layers[0].values.shape == (16,)
    with pytest.raises(explain.NotApplicableError, match="no conv layer"):
        explain.first_layer_filters(model)
    explainer = explain.explainable(model)
    with pytest.raises(explain.NotApplicableError, match="Grad-CAM needs a conv layer"):
        explain.attribute(explainer, lines_image(), 1, "grad_cam")
    for method in ("saliency", "integrated_gradients", "occlusion"):
        assert np.abs(explain.attribute(explainer, lines_image(), 1, method)).sum() > 0


def test_the_explainable_copy_leaves_the_model_alone():
    model = build_model("deep").train()
    explainer = explain.explainable(model)
    assert model.training and all(parameter.requires_grad for parameter in model.parameters())
    assert not any(getattr(module, "inplace", False) for module in explainer.modules())
    with torch.no_grad():
        expected = model.eval()(explain.as_batch(lines_image()).sub(0.1307).div(0.3081))
    np.testing.assert_allclose(explain.logits(explainer, lines_image()), expected[0].numpy(), atol=1e-4)


def test_overlay_colours_evidence_for_red_and_against_blue():
    attribution = np.zeros((28, 28))
    attribution[2, 2], attribution[20, 20] = 1.0, -1.0
    picture = explain.overlay(torch.zeros(28, 28), attribution).astype(int)
    assert picture[2, 2, 0] > picture[2, 2, 2] and picture[20, 20, 2] > picture[20, 20, 0]
    filters = explain.tile_filters(np.array([[[1.0, -1.0]]]))
    assert filters[0, 0] == 1.0 and filters[0, 1] == 0.0


def test_explain_command_writes_every_picture_and_says_so(store, tmp_path, capsys):
    store.save("mine", build_model("fast"), sample_metadata("fast"))
    image = tmp_path / "seven.png"
    seven = Image.new("L", (140, 140), 255)  # dark on light, away from the borders, as a scan
    ImageDraw.Draw(seven).line([(35, 30), (100, 30), (55, 115)], fill=0, width=10)
    seven.save(image)
    assert main(["explain", "mine", str(image), "--out", str(tmp_path / "out"), "--target", "3"]) == 0
    printed = capsys.readouterr().out
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert "explaining 3" in printed and all(f"wrote {tmp_path / 'out' / name}" in printed for name in written)
    expected = {"input.png", "filters.png", "layer-01-space-to-depth-1.png", "layer-05-classifier-input.png"}
    assert expected <= set(written)
    assert {f"attribution-{method.replace('_', '-')}-3.png" for method in explain.METHODS} <= set(written)
    with Image.open(tmp_path / "out" / "attribution-grad-cam-3.png") as picture:
        assert picture.mode == "RGB" and picture.width >= explain.PICTURE_WIDTH


def test_explain_command_reports_a_blank_image_and_a_bad_run(store, tmp_path, capsys):
    store.save("mine", build_model("fast"), sample_metadata("fast"))
    blank = tmp_path / "blank.png"
    Image.new("L", (60, 60), 255).save(blank)
    assert main(["explain", "mine", str(blank), "--out", str(tmp_path / "out")]) == 2
    assert "no ink" in capsys.readouterr().err
    assert main(["explain", "../x", str(blank), "--out", str(tmp_path / "out")]) == 2
    assert "invalid run name" in capsys.readouterr().err
