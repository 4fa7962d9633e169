from dataclasses import replace

import pytest

from ocr_core.duration import Speed, estimate_duration, measure_speed, speed_key
from ocr_core.training import RECIPES, TrainConfig

CONFIG = TrainConfig(architecture="fast", epochs=2, batch_size=16, holdout=0, precision="fp32")
SPEED = Speed(training_images_per_second=1000.0, scoring_images_per_second=10_000.0)


def test_estimate_counts_steps_scoring_batch_norm_and_calibration():
    plain = estimate_duration(CONFIG, train_count=1000, test_count=500, speed=SPEED)
    steps = 2 * 63  # ceil(1000 / 16) steps an epoch
    assert plain.training_seconds == pytest.approx(steps * 16 / 1000)
    # two epochs' test scoring, then the seed-augmented test set (the clean one is the last epoch's)
    assert plain.scoring_seconds == pytest.approx((2 * 500 + 500) / 10_000)
    assert plain.total_seconds == pytest.approx(plain.training_seconds + plain.scoring_seconds)
    more = estimate_duration(
        replace(CONFIG, holdout=100, batchnorm_images=300), 1000, 500, scores_per_epoch=4, speed=SPEED
    )
    extra = 300 + 100 + 1000 + (4 * 2 - 2) * 2 * 500  # batch norm, calibration, six more score points
    assert more.scoring_seconds == pytest.approx(plain.scoring_seconds + extra / 10_000)
    half = estimate_duration(replace(CONFIG, epochs=1), 1000, 500, speed=SPEED)
    assert half.training_seconds == pytest.approx(plain.training_seconds / 2)


def test_speed_is_measured_here_and_cached_for_settings_that_change_it():
    speed = measure_speed(CONFIG)
    assert speed.training_images_per_second > 0 and speed.scoring_images_per_second > 0
    assert measure_speed(replace(CONFIG, learning_rate=0.5, seed=3, epochs=7)) is speed, "rates and seeds: cached"
    assert speed_key(replace(CONFIG, augment="noise=0.1")) != speed_key(CONFIG)
    assert speed_key(replace(CONFIG, outliers=0.25)) != speed_key(CONFIG), "non-digits lengthen every step"
    assert speed_key(RECIPES["best"]).architecture == "deep"
