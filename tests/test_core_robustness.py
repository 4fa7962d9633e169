"""Robustness reports on tiny runs: every corruption and severity scored, JSON round trip, mCE, the cache keyed
by the weights (kept through renames and metadata rewrites), shipped reports, the CLI; the held-out split."""

import json
import math
from unittest import mock

import pytest
import torch

from ocr_core import robustness
from ocr_core.cli import main
from ocr_core.corruptions import CORRUPTIONS, SEVERITIES, SUITE_VERSION
from ocr_core.errors import ConfigError, UserError
from ocr_core.robustness import (
    RobustnessReport,
    cached_report,
    report_subset,
    run_report,
    run_weights_hash,
    write_report,
)
from ocr_core.runs import holdout_digits, rescore_run, train_run
from ocr_core.training import TrainConfig, TrainingCallback, fit

TINY = TrainConfig(architecture="fast", epochs=1, batch_size=64, holdout=64)


@pytest.fixture
def trained(store, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    train_run("tiny", TINY, store, tiny_data)
    return store


def test_the_report_subset_is_the_first_digits_of_each_class_in_test_order():
    labels = torch.tensor([3, 1, 3, 3, 0, 1, 2, 3, 0])
    images = torch.arange(9).view(9, 1, 1).expand(9, 28, 28).to(torch.uint8)
    chosen_images, chosen_labels = report_subset(images, labels, per_class=2)
    assert chosen_labels.tolist() == [3, 1, 3, 0, 1, 2, 0]
    assert chosen_images[:, 0, 0].tolist() == [0, 1, 2, 4, 5, 6, 8]


def test_a_report_scores_every_corruption_and_severity_and_round_trips(trained, tiny_data):
    heard = []
    report = run_report("tiny", trained, tiny_data, progress=lambda *step: heard.append(step))
    assert [done for done, _, _ in heard] == list(range(1, 77)) and {total for _, total, _ in heard} == {76}
    assert heard[1][2] == "Shot noise, severity 1", "progress in the words the page shows, not `shot_noise 1`"
    assert set(report.accuracy) == set(CORRUPTIONS) and all(
        set(by) == set(SEVERITIES) for by in report.accuracy.values()
    )
    assert all(0 <= value <= 1 for by in report.accuracy.values() for value in by.values())
    assert report.digits == 128 and report.suite_version == SUITE_VERSION and 0 <= report.clean <= 1
    assert report.mean(3) == pytest.approx(sum(by[3] for by in report.accuracy.values()) / 15)
    assert report.worst(3)[1] == min(by[3] for by in report.accuracy.values())
    assert RobustnessReport.from_json(report.to_json()) == report
    assert report.mce(report) == pytest.approx(1.0) and report.mce(None) is None


def test_mce_is_the_mean_of_error_ratios_summed_over_severities():
    def report(accuracy: float, fog: float) -> RobustnessReport:
        table = {name: dict.fromkeys(SEVERITIES, fog if name == "fog" else accuracy) for name in CORRUPTIONS}
        return RobustnessReport("w", SUITE_VERSION, 10, 1.0, table, 0.0)

    baseline, better = report(0.8, 0.5), report(0.9, 0.5)  # half the errors on 14 corruptions, the same on fog
    assert better.mce(baseline) == pytest.approx((14 * 0.5 + 1) / 15)
    assert better.corruption_errors(baseline)["fog"] == pytest.approx(1.0)


def test_reports_are_cached_by_weights_through_renames_and_rewrites(trained, tiny_data):
    first = run_report("tiny", trained, tiny_data)
    with mock.patch.object(robustness, "compute_report", side_effect=AssertionError("computed twice")):
        assert run_report("tiny", trained, tiny_data) == first
        trained.rename("tiny", "renamed")
        assert run_report("renamed", trained, tiny_data) == first
        rescore_run("renamed", trained, tiny_data)  # rewrites the metadata, not the weights
        assert run_report("renamed", trained, tiny_data) == first
    train_run("other", TINY.__class__(**{**TINY.as_dict(), "seed": 1}), trained, tiny_data)
    assert run_weights_hash(trained.info("other")) != run_weights_hash(trained.info("renamed"))
    assert cached_report(trained.info("other"), trained) is None


def test_shipped_reports_are_read_first_and_damaged_cache_files_are_ignored(trained, tiny_data):
    info = trained.info("tiny")
    report = run_report("tiny", trained, tiny_data)
    cached = robustness.report_cache_dir() / robustness.report_file_name(report.weights)
    cached.write_text("{ not json")
    assert cached_report(info, trained) is None, "a damaged cache file is a missing one"
    shipped = RobustnessReport(**{**report.__dict__, "seconds": 1234.0})
    write_report(shipped, robustness.shipped_reports_dir(trained))
    assert cached_report(info, trained) == shipped


@pytest.mark.parametrize("payload", ["[]", "{}", '{"format": 1, "weights": "w"}', "nonsense"])
def test_broken_report_files_are_user_errors(payload):
    with pytest.raises(UserError, match="robustness report"):
        RobustnessReport.from_json(payload)


def test_cli_robustness_table_json_and_info(trained, tiny_data_dir, capsys):
    train_run("seed", TINY, trained)  # the mCE baseline, on the same tiny data
    assert main(["robustness", "tiny", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)["tiny"]
    assert set(payload["corruptions"]) == set(CORRUPTIONS) and set(payload["corruptions"]["fog"]) == {"3"}
    assert 0 <= payload["mean"]["3"] <= 1 and math.isfinite(payload["mce"]) and 0 <= payload["clean"] <= 1
    assert main(["robustness", "tiny", "seed", "--severity", "all"]) == 0
    table = capsys.readouterr().out
    assert "tiny s5" in table and "seed s1" in table and "canny_edges" in table and "mCE %" in table
    worst_row = next(line for line in table.splitlines() if line.startswith("worst"))
    assert len(worst_row.split()) == 1 + 2 * 5, "a corruption's name never runs into the next column's"
    assert main(["info", "tiny"]) == 0
    assert json.loads(capsys.readouterr().out)["robustness"]["mean"] == pytest.approx(payload["mean"]["3"])
    assert main(["robustness", "missing"]) == 2
    assert "no run named 'missing'" in capsys.readouterr().err


def test_the_holdout_is_never_trained_on_and_is_found_again_from_the_run(store, tiny_data):
    steps = []

    class Steps(TrainingCallback):
        def on_batch(self, progress):
            steps.append(progress.steps_per_epoch)

    fit(TINY, tiny_data, (Steps(),))
    assert steps[0] == math.ceil((512 - 64) / 64), "the last 64 of the 512 training digits are left out"
    train_run("held", TINY, store, tiny_data)
    images, labels = holdout_digits(store.info("held").metadata, tiny_data)
    assert torch.equal(images, tiny_data.train_images[-64:]) and torch.equal(labels, tiny_data.train_labels[-64:])
    kept = tiny_data.without_holdout(64)
    assert len(kept.train_labels) == 448 and torch.equal(kept.test_images, tiny_data.test_images)
    with pytest.raises(ConfigError, match="leaves nothing to train on"):
        fit(TrainConfig(holdout=512), tiny_data)
