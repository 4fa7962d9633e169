import pytest
import torch
import torch.nn.functional as F

from ocr_core.errors import ConfigError
from ocr_core.outliers import LETTERS, SHAPES, TEMPLATES, outlier_batch
from ocr_core.training import OUTLIER_WEIGHT, TrainConfig, TrainingRun, batch_loss, fit


def drawn(seed: int, count: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return outlier_batch(count, torch.Generator().manual_seed(seed))


def test_the_same_seed_draws_the_same_outliers_and_another_seed_others():
    images, which = drawn(3)
    again, which_again = drawn(3)
    assert torch.equal(images, again) and torch.equal(which, which_again)
    assert not torch.equal(images, drawn(4)[0])


def test_outliers_are_mnist_like_images_with_ink_in_the_middle():
    images, which = drawn(0, 200)
    assert images.shape == (200, 1, 28, 28) and images.dtype == torch.float32
    assert which.shape == (200,) and int(which.min()) >= 0 and int(which.max()) < len(TEMPLATES)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    ink = (images > 0.5).flatten(1).sum(1)
    assert int(ink.min()) >= 25, "every drawing has strokes"
    border = images.clone()
    border[..., 3:25, 3:25] = 0
    assert float(border.amax()) < 0.5, "MNIST-like: the drawing keeps off the edges"
    rows = torch.arange(28.0).view(1, 28, 1)
    centre = (images[:, 0] * rows).sum((1, 2)) / images[:, 0].sum((1, 2))
    assert float((centre - 13.5).abs().max()) < 4


def test_letters_and_shapes_leave_out_what_a_digit_is_written_like():
    for name in ("O", "o", "D", "I", "l", "i", "j", "S", "s", "Z", "z", "B", "G", "g", "q", "b", "T", "L"):
        assert name not in LETTERS
    assert {"star", "plus", "hash", "arrow-right"} <= set(SHAPES)


def test_outliers_must_be_a_share_in_range():
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="outliers must be in"):
            TrainConfig(outliers=bad)
    with pytest.raises(ConfigError, match="outliers must be a number"):
        TrainConfig(outliers="many")
    assert TrainConfig().outliers == 0.0, "off unless asked for"


def test_old_configs_without_the_field_load_with_outliers_off():
    old = {key: value for key, value in TrainConfig().as_dict().items() if key != "outliers"}
    assert TrainConfig.from_dict(old).outliers == 0.0
    assert TrainConfig.from_dict(TrainConfig(outliers=0.25).as_dict()).outliers == 0.25


def test_the_loss_adds_the_outliers_cross_entropy_to_uniform():
    logits = torch.tensor([[4.0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0.0] * 10, [9.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    labels = torch.tensor([0])
    digits_only = batch_loss(logits[:1], labels, 0.0)
    uniform_outlier = batch_loss(logits[:2], labels, 0.0)
    assert float(uniform_outlier - digits_only) == pytest.approx(OUTLIER_WEIGHT * torch.log(torch.tensor(10.0)))
    confident_outlier = batch_loss(logits[[0, 2]], labels, 0.0)
    assert float(confident_outlier) > float(uniform_outlier) + 1, "a confident answer on a non-digit costs"


def test_a_training_step_shows_the_net_the_outliers_and_adds_their_loss(tiny_data, monkeypatch):
    outputs = []
    run = TrainingRun(TrainConfig(batch_size=32, outliers=0.25, precision="fp32", label_smoothing=0.1), tiny_data)
    forward = run.model.forward

    def spy(images):
        outputs.append(forward(images))
        return outputs[-1]

    monkeypatch.setattr(run.model, "forward", spy)
    loss, _, count = run.train_step(torch.arange(32))
    assert len(outputs) == 1, "one forward pass: digits and non-digits in one batch"
    logits = outputs[0].detach()
    assert logits.shape[0] == 40 and count == 32, "8 non-digits ride along; accuracy counts the 32 digits"
    digits = F.cross_entropy(logits[:32], tiny_data.train_labels[:32], label_smoothing=0.1)
    uniform = -F.log_softmax(logits[32:], 1).mean()
    assert loss == pytest.approx(float(digits + OUTLIER_WEIGHT * uniform), rel=1e-5)
    assert loss > float(digits) + 1, "the term is applied: half the cross-entropy to uniform is at least log(10) / 2"


def test_a_tiny_training_with_outliers_runs_and_stays_seeded(tiny_data):
    config = TrainConfig(architecture="fast", epochs=1, batch_size=32, outliers=0.5, precision="fp32")
    first, second = fit(config, tiny_data), fit(config, tiny_data)
    assert first.history[-1].train_loss == second.history[-1].train_loss
    assert (
        first.history[-1].train_loss
        != fit(TrainConfig(**{**config.as_dict(), "outliers": 0.0}), tiny_data).history[-1].train_loss
    )
