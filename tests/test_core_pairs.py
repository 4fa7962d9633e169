"""The pair reader: glyphs composed from digits, its input, training, saving, and the shipped reader on
touching digits the tests draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import requires_mnist
from ocr_core.cli import main
from ocr_core.data import load_mnist
from ocr_core.errors import UserError
from ocr_core.evaluation import predict_probabilities
from ocr_core.pairs import (
    CLASSES,
    FORMAT,
    INK_HEIGHT,
    INK_WIDTH,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    SINGLE,
    PairTraining,
    check_pair_reader,
    composed_pair,
    load_pair_reader,
    pair_input,
    pair_marginals,
    pair_reader,
    pushed_together,
    save_pair_reader,
    shipped_pair_reader,
    train_pair_reader,
    training_glyphs,
)
from ocr_core.reading import components


def drawn_digits() -> tuple[np.ndarray, np.ndarray]:
    """Ten 28x28 uint8 'digits' in MNIST's style (white ink on black), drawn with PIL's default font."""
    images = []
    for digit in range(10):
        image = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(image).text((7, 2), str(digit), fill=255, font_size=22)
        images.append(np.asarray(image))
    return np.stack(images), np.arange(10)


def test_pushed_together_makes_two_blocks_touch_then_overlap():
    left, right = np.ones((10, 6), bool), np.ones((10, 4), bool)
    assert pushed_together(left, right, 0, 0, depth=0) == 6, "touching: the right block starts where the left ends"
    assert pushed_together(left, right, 0, 0, depth=2) == 4
    assert pushed_together(left, right, 0, 0, depth=-3) == 9, "a gap, bridged by a pen stroke"
    assert pushed_together(left, right, 0, 20, depth=0) == 6, "no rows in common: side by side"


def test_composed_pairs_are_one_glyph():
    images, _ = drawn_digits()
    rng = np.random.default_rng(0)
    glyphs = [
        composed_pair(images[first], images[second], rng) for first, second in [(1, 7), (4, 9), (0, 0), (3, 8)] * 5
    ]
    one_piece = [len([part for part in components(glyph) if part.mask.sum() > 20]) == 1 for glyph in glyphs]
    assert np.mean(one_piece) >= 0.9, "the digits touch (or are joined by a stroke)"
    boxes = [components(glyph.astype(bool)) for glyph in glyphs]
    spans = [
        (
            max(p.right for p in parts) - min(p.left for p in parts),
            max(p.bottom for p in parts) - min(p.top for p in parts),
        )
        for parts in boxes
    ]
    assert all(width > 0.8 * height for width, height in spans), "two digits side by side"


def test_training_glyphs_are_labelled_and_repeatable():
    images, labels = drawn_digits()
    inputs, classes = training_glyphs(images, labels, 60, seed=3)
    assert inputs.shape == (60, INPUT_HEIGHT, INPUT_WIDTH) and inputs.dtype == torch.uint8
    assert classes.min() >= 0 and classes.max() < CLASSES
    assert (classes == SINGLE).any() and (classes != SINGLE).any()
    again, same = training_glyphs(images, labels, 60, seed=3)
    assert torch.equal(inputs, again) and torch.equal(classes, same)


def test_pair_input_keeps_proportions_and_centres_the_ink():
    wide = np.zeros((50, 300), bool)
    wide[10:40, 20:280] = True
    glyph = pair_input(wide)
    assert glyph.shape == (INPUT_HEIGHT, INPUT_WIDTH) and glyph.min() >= 0 and glyph.max() <= 1
    rows, columns = torch.nonzero(glyph > 0.5, as_tuple=True)
    assert columns.max() - columns.min() + 1 == pytest.approx(INK_WIDTH, abs=1), "a wide glyph fills the width"
    assert rows.max() - rows.min() + 1 < INK_HEIGHT, "... and keeps its proportions"
    tall = np.zeros((200, 60), bool)
    tall[:, 20:40] = True
    rows, columns = torch.nonzero(pair_input(tall) > 0.5, as_tuple=True)
    assert rows.max() - rows.min() + 1 == pytest.approx(INK_HEIGHT, abs=1)
    assert abs(float(columns.float().mean()) - (INPUT_WIDTH - 1) / 2) <= 1, "centred by its centre of mass"


def test_pair_marginals_split_the_pair_reading():
    probabilities = np.zeros(CLASSES)
    probabilities[47], probabilities[41], probabilities[SINGLE] = 0.6, 0.2, 0.2
    left, right = pair_marginals(probabilities)
    assert left.argmax() == 4 and left[4] == pytest.approx(1.0)
    assert right.argmax() == 7 and right[7] == pytest.approx(0.75) and right.sum() == pytest.approx(1.0)


def test_training_learns_and_reports_each_epoch_and_the_saved_reader_reads_the_same(tmp_path):
    images, labels = drawn_digits()
    inputs, classes = training_glyphs(images, labels, 256, seed=0)
    epochs = []
    model = train_pair_reader(inputs, classes, PairTraining(epochs=3, batch_size=32), lambda *args: epochs.append(args))
    assert [epoch for epoch, _, _ in epochs] == [1, 2, 3]
    assert epochs[-1][1] < epochs[0][1], "the loss falls"
    path = tmp_path / "pairs.safetensors"
    save_pair_reader(model, path, {"samples": "256"})
    assert not list(tmp_path.glob(".*partial")), "no partial file is left behind"
    glyphs = inputs[:16].float() / 255
    assert np.allclose(
        predict_probabilities(load_pair_reader(path), glyphs), predict_probabilities(model, glyphs), atol=2e-2
    )


def test_a_damaged_or_foreign_pair_reader_file_is_refused_clearly(tmp_path):
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="cannot load the pair reader"):
        load_pair_reader(damaged)
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(UserError, match="not a pair reader"):
        load_pair_reader(foreign)
    described_but_wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(3)}, str(described_but_wrong), metadata={"format": FORMAT})
    with pytest.raises(UserError, match="not a pair reader"):
        load_pair_reader(described_but_wrong)
    with pytest.raises(UserError, match="cannot load"):
        load_pair_reader(tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="cannot write the pair reader"):
        save_pair_reader(pair_reader(), tmp_path / "no such folder" / "pairs.safetensors", {})


def test_the_shipped_pair_reader_tells_a_pair_from_one_digit():
    """Digits drawn as a hand would: a 1 and a 7 touching, and a single wide 0."""
    pair = Image.new("L", (240, 140), 0)
    pen = ImageDraw.Draw(pair)
    pen.line([(60, 20), (60, 120)], fill=255, width=10)
    pen.line([(60, 22), (150, 22), (95, 120)], fill=255, width=10, joint="curve")
    zero = Image.new("L", (240, 140), 0)
    ImageDraw.Draw(zero).ellipse([40, 20, 200, 120], outline=255, width=10)
    glyphs = torch.stack([pair_input(np.asarray(image) > 128) for image in (pair, zero)])
    probabilities = predict_probabilities(shipped_pair_reader(), glyphs)
    assert probabilities[0].argmax() == 17
    assert probabilities[1].argmax() == SINGLE


def test_cli_train_pairs_writes_a_reader_and_reports_its_check(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "pairs.safetensors"
    assert main(["train-pairs", "--out", str(out), "--samples", "200", "--epochs", "1"]) == 0
    printed = capsys.readouterr()
    assert "epoch 1/1" in printed.err
    assert f"saved {out}" in printed.out and "pairs read right" in printed.out
    assert load_pair_reader(out) is not None


@requires_mnist
def test_the_shipped_pair_reader_reads_pairs_of_mnist_test_digits_it_never_saw():
    """Pairs composed from MNIST's test digits (it trained on training digits): 96.4% measured on 2,000."""
    data = load_mnist(download=False)
    check = check_pair_reader(shipped_pair_reader(), data.test_images.numpy(), data.test_labels.numpy(), 1000, 7)
    assert check.pairs_right >= 0.94 and check.singles_right >= 0.98 and check.pairs_taken_for_one <= 0.02


@pytest.mark.parametrize("arguments", [["--samples", "0"], ["--epochs", "0"]])
def test_cli_train_pairs_refuses_nothing_to_train_with_one_line(tiny_data_dir, tmp_path, capsys, arguments):
    out = tmp_path / "pairs.safetensors"
    assert main(["train-pairs", "--out", str(out), *arguments]) == 2
    printed = capsys.readouterr().err
    assert printed.strip().splitlines()[-1].startswith("error: ") and "at least" in printed
    assert "Traceback" not in printed and not out.exists()
