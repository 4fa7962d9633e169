import threading
from dataclasses import replace

import pytest
import torch

from ocr_core.errors import ConfigError, UserError
from ocr_core.evaluation import evaluate
from ocr_core.training import (
    HOLDOUT,
    RECIPES,
    Cadence,
    TrainConfig,
    TrainingCallback,
    ema_update,
    fit,
    has_native_bf16,
    recalibrate_batch_norm,
    resolve_device,
    resolve_precision,
    with_overrides,
)

TINY = TrainConfig(architecture="fast", epochs=2, batch_size=32, learning_rate=0.01)


class Recorder(TrainingCallback):
    def __init__(self, stop_after_step=None, stop=None):
        self.batches, self.epochs, self.progress = [], [], []
        self.stop_after_step, self.stop = stop_after_step, stop

    def on_batch(self, progress):
        self.progress.append(progress)
        self.batches.append((progress.step, progress.fraction_done, progress.eta_seconds, progress.images_per_second))
        if self.stop_after_step and progress.step >= self.stop_after_step:
            self.stop.set()

    def on_epoch(self, progress):
        self.epochs.append(progress.history[-1])


def test_fit_learns_the_tiny_task_and_reports_history(tiny_data):
    recorder = Recorder()
    result = fit(TINY, tiny_data, (recorder,))
    assert len(result.history) == 2 and not result.stopped
    last = result.history[-1]
    assert last.epoch == 2 and last.test_accuracy > 0.8
    assert last.images_per_second > 0 and last.seconds > 0 and last.train_loss >= 0
    assert [record.epoch for record in recorder.epochs] == [1, 2]
    steps = [step for step, *_ in recorder.batches]
    assert steps == list(range(1, 33)) and recorder.batches[-1][1] == 1.0, "every step is reported"
    assert {progress.steps_per_epoch for progress in recorder.progress} == {16}
    assert not result.model.training


def test_same_seed_gives_the_same_numbers(tiny_data):
    config = with_overrides(TINY, epochs=1, augment="recommended")
    first, second = fit(config, tiny_data), fit(config, tiny_data)
    assert [r.test_loss for r in first.history] == [r.test_loss for r in second.history]
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = fit(with_overrides(config, seed=1), tiny_data)
    assert other.history[0].train_loss != first.history[0].train_loss


def test_stop_ends_at_the_next_batch_and_keeps_a_partial_epoch(tiny_data):
    stop = threading.Event()
    recorder = Recorder(stop_after_step=4, stop=stop)
    result = fit(TINY, tiny_data, (recorder,), stop)
    assert result.stopped
    assert len(result.history) == 1 and result.history[0].epoch == pytest.approx(4 * 32 / 512)


def test_stop_before_start_trains_nothing(tiny_data):
    stop = threading.Event()
    stop.set()
    result = fit(TINY, tiny_data, (), stop)
    assert result.stopped and result.history == []


def test_fractional_epochs_train_that_share_of_steps(tiny_data):
    recorder = Recorder()
    fit(with_overrides(TINY, epochs=0.5), tiny_data, (recorder,))
    assert recorder.batches[-1][0] == 8


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "constant"), ("adamw", "onecycle"), ("adam", "constant")])
def test_optimizer_and_schedule_choices_train(tiny_data, optimizer, schedule):
    config = with_overrides(TINY, epochs=1, optimizer=optimizer, schedule=schedule, learning_rate=0.02)
    assert fit(config, tiny_data).history[0].test_accuracy > 0.3


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"architecture": "vgg"}, "architecture"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch size"),
        ({"learning_rate": -1}, "learning rate"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"schedule": "cosine"}, "schedule"),
        ({"augment": "spin=1"}, "spin"),
        ({"ema_decay": 1.0}, "ema decay"),
        ({"precision": "fp16"}, "precision"),
    ],
)
def test_bad_config_is_rejected_before_training(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**overrides)


def test_recipes_include_the_exact_tutorial_recipe():
    tutorial = RECIPES["tutorial"]
    assert (
        tutorial.architecture,
        tutorial.epochs,
        tutorial.batch_size,
        tutorial.learning_rate,
        tutorial.optimizer,
        tutorial.schedule,
        tutorial.augment,
    ) == ("seed", 5, 64, 1e-3, "adam", "constant", "none")
    assert (tutorial.weight_decay, tutorial.label_smoothing, tutorial.ema_decay, tutorial.precision) == (
        0,
        0,
        0,
        "fp32",
    )
    assert RECIPES["fast"] == TrainConfig(holdout=HOLDOUT), "the defaults are the fast recipe, with a holdout"
    assert all(recipe.holdout == HOLDOUT == 5000 for recipe in RECIPES.values())


def test_config_round_trips_through_a_dict():
    config = RECIPES["best"]
    assert TrainConfig.from_dict({**config.as_dict(), "from_a_newer_version": 1}) == config


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu"), "a named device is taken as given"


def test_fit_returns_the_last_clean_scoring_for_reuse(tiny_data):
    result = fit(with_overrides(TINY, epochs=1), tiny_data)
    assert result.final_test is not None and result.final_test.augment == "none"
    assert result.final_test.accuracy == result.history[-1].test_accuracy
    assert len(result.final_test.labels) == len(tiny_data.test_labels)


def test_weight_average_warms_up_then_keeps_its_decay():
    update = ema_update(0.999)
    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    update(averaged, current, torch.tensor(0))
    assert torch.allclose(averaged[0], torch.full((3,), 0.9)), "first update moves 1 - 1/10 of the way"
    averaged = [torch.zeros(3)]
    update(averaged, current, torch.tensor(1_000_000))
    assert torch.allclose(averaged[0], torch.full((3,), 0.001))
    counters = [torch.tensor(5)]
    update(counters, [torch.tensor(9)], torch.tensor(3))
    assert int(counters[0]) == 9, "integer buffers (BN batch counters) are copied, not averaged"


def test_fit_with_weight_averaging_returns_the_averaged_model(tiny_data):
    config = with_overrides(TINY, epochs=1, ema_decay=0.99)
    plain, averaged = fit(with_overrides(config, ema_decay=0.0), tiny_data), fit(config, tiny_data)
    assert averaged.history[-1].test_accuracy > 0.8
    assert type(averaged.model) is type(plain.model), "a plain model, saved and loaded like any other"
    assert averaged.model.state_dict().keys() == plain.model.state_dict().keys()
    assert not torch.equal(next(averaged.model.parameters()), next(plain.model.parameters()))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_train(tiny_data, precision):
    result = fit(with_overrides(TINY, epochs=1, precision=precision), tiny_data)
    assert result.precision == precision and result.history[-1].test_accuracy > 0.8
    assert all(value.dtype != torch.bfloat16 for value in result.model.state_dict().values()), "weights stay fp32"


def test_auto_precision_uses_bf16_only_where_the_hardware_has_it():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if has_native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": "2"}, "epochs must be a number"),
        ({"batch_size": 1.5}, "batch_size must be a whole number"),
        ({"seed": True}, "seed must be a whole number"),
        ({"optimizer": 3}, "optimizer must be text"),
    ],
)
def test_settings_of_the_wrong_type_are_config_errors_not_type_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as raised:
        TrainConfig(**settings)
    assert isinstance(raised.value, UserError)


def test_cadence_acts_at_the_first_step_then_once_a_second_and_at_the_last_step(tiny_data):
    recorder = Recorder()
    fit(with_overrides(TINY, epochs=1), tiny_data, (recorder,))
    progress = recorder.progress  # 16 steps
    now = [100.0]
    cadence = Cadence(seconds=1.0, clock=lambda: now[0])
    acted = []
    for seconds, report in zip([0.0, 0.3, 0.6, 0.99, 1.0, 1.5, 2.2, 2.3], progress[:8], strict=True):
        now[0] = 100.0 + seconds
        acted.append(cadence.due(report))
    assert acted == [True, False, False, False, True, False, True, False]
    now[0] += 0.01
    assert cadence.due(progress[-1]), "the last step always shows, so the bar ends at 100%"


def test_config_holds_only_what_changes_the_model():
    with pytest.raises(TypeError):
        TrainConfig(report_every=20)
    old_run_config = {**TrainConfig().as_dict(), "report_every": 20}  # as runs saved before this version hold it
    assert TrainConfig.from_dict(old_run_config) == TrainConfig()


class ScoreRecorder(TrainingCallback):
    def __init__(self):
        self.points = []

    def on_score(self, progress, point):
        self.points.append(point)


def test_scores_per_epoch_scores_test_and_training_images_alike_without_changing_the_run(tiny_data):
    recorder = ScoreRecorder()
    scored = fit(TINY, tiny_data, (recorder,), scores_per_epoch=4)  # 16 steps per epoch: every 4 steps
    assert [point.epoch for point in recorder.points] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    last = recorder.points[-1]
    assert last.test_accuracy == scored.history[-1].test_accuracy and last.test_loss == scored.history[-1].test_loss
    training_images = evaluate(scored.model, tiny_data.train_images[:128], tiny_data.train_labels[:128])
    assert last.train_accuracy == training_images.accuracy  # eval mode, unaugmented: as the test set is scored
    plain = fit(TINY, tiny_data)
    assert all(
        torch.equal(a, b)
        for a, b in zip(plain.model.state_dict().values(), scored.model.state_dict().values(), strict=True)
    )
    recorder.points.clear()
    fit(replace(TINY, epochs=0.5), tiny_data, (recorder,), scores_per_epoch=4)  # 8 steps: every 2
    assert [point.epoch for point in recorder.points] == [0.125, 0.25, 0.375, 0.5]


@pytest.mark.parametrize("steps", [1, 4, 7])
def test_onecycle_runs_with_very_few_steps(tiny_data, steps):
    result = fit(replace(TINY, epochs=steps / 16), tiny_data)  # 16 steps per epoch
    assert result.history[-1].epoch == pytest.approx(steps / 16, abs=1e-3)


def test_batch_norm_statistics_are_re_estimated_on_clean_images_after_training(tiny_data):
    config = TrainConfig(architecture="fast", epochs=1, batch_size=64, augment="brightness=0.8", batchnorm_images=256)
    model = fit(config, tiny_data).model
    first_norm = next(module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d))
    fitted_mean = first_norm.running_mean.clone()
    recalibrate_batch_norm(model, tiny_data.train_images[:256])
    assert torch.allclose(first_norm.running_mean, fitted_mean, atol=1e-5), "fit ended with clean statistics"
    assert not model.training and first_norm.momentum == 0.1
    brighter = (tiny_data.train_images[:256].float() * 0.5 + 127).to(torch.uint8)
    recalibrate_batch_norm(model, brighter)
    assert not torch.allclose(first_norm.running_mean, fitted_mean, atol=1e-3)
    with pytest.raises(ConfigError, match="batchnorm_images"):
        TrainConfig(batchnorm_images=-1)
