import threading

import pytest
import torch

from ocr_core.training import RECIPES, TrainConfig, TrainingCallback, fit, resolve_device, with_overrides

TINY = TrainConfig(architecture="fast", epochs=2, batch_size=32, learning_rate=0.01, report_every=4)


class Recorder(TrainingCallback):
    def __init__(self, stop_after_step=None, stop=None):
        self.batches, self.epochs = [], []
        self.stop_after_step, self.stop = stop_after_step, stop

    def on_batch(self, progress):
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
    assert last.images_per_second > 0 and last.seconds > 0 and 0 <= last.train_loss
    assert [record.epoch for record in recorder.epochs] == [1, 2]
    steps = [step for step, *_ in recorder.batches]
    assert steps == list(range(4, 33, 4)) and recorder.batches[-1][1] == 1.0
    assert not result.model.training


def test_same_seed_gives_the_same_numbers(tiny_data):
    config = with_overrides(TINY, epochs=1, augment="recommended")
    first, second = fit(config, tiny_data), fit(config, tiny_data)
    assert [r.test_loss for r in first.history] == [r.test_loss for r in second.history]
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
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
    fit(with_overrides(TINY, epochs=0.5, report_every=1), tiny_data, (recorder,))
    assert recorder.batches[-1][0] == 8


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "constant"), ("adamw", "onecycle"), ("adam", "constant")])
def test_optimizer_and_schedule_choices_train(tiny_data, optimizer, schedule):
    config = with_overrides(TINY, epochs=1, optimizer=optimizer, schedule=schedule, learning_rate=0.02)
    assert fit(config, tiny_data).history[0].test_accuracy > 0.3


@pytest.mark.parametrize("overrides, message", [
    ({"architecture": "vgg"}, "architecture"), ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch size"),
    ({"learning_rate": -1}, "learning rate"), ({"optimizer": "lion"}, "optimizer"),
    ({"schedule": "cosine"}, "schedule"), ({"augment": "spin=1"}, "spin"),
])
def test_bad_config_is_rejected_before_training(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides)


def test_recipes_include_the_exact_tutorial_recipe():
    tutorial = RECIPES["tutorial"]
    assert (tutorial.architecture, tutorial.epochs, tutorial.batch_size, tutorial.learning_rate,
            tutorial.optimizer, tutorial.schedule, tutorial.augment) == ("seed", 5, 64, 1e-3, "adam", "constant", "none")
    assert RECIPES["fast"] == TrainConfig(), "the defaults are the fast recipe"


def test_config_round_trips_through_a_dict():
    config = RECIPES["best"]
    assert TrainConfig.from_dict({**config.as_dict(), "from_a_newer_version": 1}) == config


def test_device_auto_selects_an_available_device():
    device = resolve_device("auto")
    assert device.type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        assert device.type in ("cpu", "mps")
