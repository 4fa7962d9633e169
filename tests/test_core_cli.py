"""The CLI in-process, on tiny data: the same functions the app uses, reached through argv."""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_DIR
from ocr_core.cli import build_parser, main
from ocr_core.cli import run as cli_run


@pytest.fixture
def trained(tiny_data_dir, store, capsys):
    assert main(["train", "--name", "tiny", "--epochs", "1", "--batch-size", "64", "--holdout", "64"]) == 0
    capsys.readouterr()
    return store


def run_json(capsys, argv):
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_train_saves_a_run_and_reports_it(tiny_data_dir, store, capsys):
    assert (
        main(
            ["train", "--name", "cli-run", "--model", "seed", "--epochs", "0.5", "--augment", "seed", "--holdout", "64"]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "saved cli-run" in captured.out and "epoch 0.5" in captured.err
    metadata = store.info("cli-run").metadata
    assert metadata.architecture == "seed" and metadata.config.augment == "seed"
    assert metadata.config.holdout == 64 and metadata.data.train_size == 512


def test_list_evaluate_and_info_as_json(trained, capsys):
    code, listing = run_json(capsys, ["list", "--json"])
    assert code == 0 and [entry["name"] for entry in listing] == ["tiny"]
    assert 0 <= listing[0]["accuracy"] <= 1
    code, clean = run_json(capsys, ["evaluate", "tiny", "--json"])
    assert code == 0 and 0 <= clean["accuracy"] <= 1 and clean["augment"] == "none"
    assert len(clean["confusion"]) == 10 and sum(map(sum, clean["confusion"])) == 128
    code, augmented = run_json(capsys, ["evaluate", "tiny", "--augment", "rotate=30", "--json"])
    assert code == 0 and augmented["augment"] == "rotate=30"
    assert main(["info", "tiny"]) == 0 and json.loads(capsys.readouterr().out)["architecture"] == "fast"


def test_predict_reads_image_files_and_reports_bad_ones(trained, tmp_path, capsys):
    drawing = np.zeros((200, 200), np.uint8)
    drawing[40:160, 90:110] = 255
    good = tmp_path / "digit.png"
    Image.fromarray(255 - drawing).save(good)  # dark on light, like a scan
    blank, text = tmp_path / "blank.png", tmp_path / "notes.txt"
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(blank)
    text.write_text("not an image")
    assert main(["predict", "tiny", str(good), str(blank), str(text), "--json"]) == 2, "a failed image: exit 2"
    printed = capsys.readouterr()
    results = json.loads(printed.out)  # the whole batch, each failure with its error field
    assert 0 <= results[0]["prediction"] <= 9 and 0 < results[0]["confidence"] <= 1
    assert len(results[0]["probabilities"]) == 10
    assert "no ink" in results[1]["error"] and "not an image" in results[2]["error"]
    errors = printed.err.strip().splitlines()  # and each failure on stderr, one line each
    assert errors == [f"error: {blank}: {results[1]['error']}", f"error: {text}: {results[2]['error']}"]
    assert main(["predict", "tiny", str(good), str(blank)]) == 2
    printed = capsys.readouterr()
    assert printed.out.startswith(f"{good}: ") and "blank" not in printed.out and "no ink" in printed.err


def test_rename_delete_and_list_survive_a_corrupt_file(trained, capsys):
    (trained.root / "broken.safetensors").write_bytes(b"junk")
    assert main(["rename", "tiny", "renamed"]) == 0
    assert "renamed tiny to renamed" in capsys.readouterr().out
    code, listing = run_json(capsys, ["list", "--json"])
    assert code == 0
    names = {entry["name"]: entry for entry in listing}
    assert "problem" in names["broken"] and names["renamed"]["architecture"] == "fast"
    assert main(["delete", "renamed"]) == 0
    capsys.readouterr()
    assert not trained.exists("renamed") and not (trained.root / "renamed.safetensors").exists()
    code, listing = run_json(capsys, ["list", "--json"])
    assert "renamed" not in {entry["name"] for entry in listing} and "broken" in {entry["name"] for entry in listing}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--name", "../x"], "invalid run name"),
        (["train", "--name", "ok", "--augment", "wobble=2"], "unknown augmentation"),
        (["train", "--name", "ok", "--epochs", "-1"], "epochs"),
        (["evaluate", "ghost"], "no run named 'ghost'"),
        (["predict", "ghost", "x.png"], "no run named"),
        (["delete", "../../etc"], "invalid run name"),
    ],
)
def test_bad_input_gives_a_one_line_error_and_non_zero_exit(tiny_data_dir, store, capsys, argv, message):
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and message in error and "\n" not in error


def test_missing_data_is_explained(tmp_path, monkeypatch, store, capsys):
    from ocr_core import data

    monkeypatch.setenv("OCR_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(data, "DEFAULT_DATA_DIR", tmp_path / "default")
    monkeypatch.setattr(data, "download_mnist", lambda root: (_ for _ in ()).throw(OSError("offline")))
    assert main(["train", "--name", "x"]) == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_models_lists_sizes(capsys):
    code, models = run_json(capsys, ["models", "--json"])
    assert code == 0 and {m["name"] for m in models} == {"seed", "fast", "accurate", "deep"}
    assert next(m for m in models if m["name"] == "seed")["parameters"] == 421_642


def test_preview_writes_a_png(tiny_data_dir, tmp_path, capsys):
    output = tmp_path / "grid.png"
    assert main(["preview", "--augment", "seed", "--output", str(output), "--rows", "2", "--columns", "3"]) == 0
    assert Image.open(output).size == (3 * (2 + 3 * 30), 3 * (2 + 2 * 30))


def test_module_entry_point_runs():
    completed = subprocess.run(
        [sys.executable, "-m", "ocr_core", "--help"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0 and "train" in completed.stdout


def test_rescore_updates_a_run_and_names_a_missing_one(trained, capsys):
    assert main(["rescore", "tiny"]) == 0
    assert "rescored tiny: test accuracy" in capsys.readouterr().out
    assert trained.info("tiny").metadata.rescored
    assert main(["rescore", "nope"]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_instead_of_a_one_line_error(tiny_data_dir, store, monkeypatch):
    from ocr_core import cli

    def broken(args):
        raise ValueError("an internal bug, not a user mistake")

    monkeypatch.setattr(cli, "command_list", broken)
    with pytest.raises(ValueError, match="internal bug"):
        main(["list"])


def test_first_ctrl_c_stops_at_the_next_batch_and_a_second_aborts_at_once(tiny_data_dir, store, monkeypatch, capsys):
    import os
    import signal

    from ocr_core import cli

    seen = {}

    def interrupted_twice(name, config, run_store, data, callbacks, stop, overwrite):
        os.kill(os.getpid(), signal.SIGINT)  # delivered to the handler main installed, in this thread
        seen["stop after the first"] = stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        seen["reached after the second"] = True

    monkeypatch.setattr(cli, "train_run", interrupted_twice)
    previous = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN under nohup or `&`
    assert main(["train", "--name", "x"]) == 130
    assert seen == {"stop after the first": True}
    error = capsys.readouterr().err
    assert "press Ctrl-C again to abort" in error and "interrupted" in error
    assert signal.getsignal(signal.SIGINT) is previous, "the previous handler is restored"


def test_the_ocr_lab_console_command_points_at_the_cli():
    import importlib

    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["ocr-lab"].partition(":")
    assert getattr(importlib.import_module(module), function) is cli_run


def test_every_option_has_help_that_gives_its_default():
    """As pytorch/examples does: `--help` says what each option does and what it is when not given."""
    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    undocumented, no_default = [], []
    for command, subparser in commands.choices.items():
        for action in subparser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = f"{command} {'/'.join(action.option_strings) or action.dest}"
            text = subparser.formatter_class(command)._expand_help(action) if action.help else ""
            if not text:
                undocumented.append(name)
            elif action.option_strings and not action.required and "default" not in text:
                no_default.append(name)
    assert not undocumented, f"no help: {undocumented}"
    assert not no_default, f"help without the default: {no_default}"
