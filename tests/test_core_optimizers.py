import subprocess
import sys

import pytest
import torch

from ocr_core.optimizers import ONECYCLE_MIN_STEPS, Optimizer, Schedule


def twin_models():
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def reference(kind: str, model: torch.nn.Module, rate: float, decay: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=rate, weight_decay=decay, foreach=False)
    return torch.optim.Adam(model.parameters(), lr=rate, weight_decay=decay, foreach=False)


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("onecycle", [True, False])
@pytest.mark.parametrize("decay", [0.0, 0.05])
def test_updates_match_torch_optim_step_for_step(kind, onecycle, decay):
    ours, theirs = twin_models()
    steps, rate = 20, 0.01
    optimizer = Optimizer(kind, ours.parameters(), rate, decay)
    schedule = Schedule(optimizer, steps, onecycle)
    torch_optimizer = reference(kind, theirs, rate, decay)
    torch_schedule = (
        torch.optim.lr_scheduler.OneCycleLR(torch_optimizer, max_lr=rate, total_steps=steps, pct_start=0.25)
        if onecycle
        else torch.optim.lr_scheduler.LambdaLR(torch_optimizer, lambda step: 1.0)
    )
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        images = torch.randn(8, 1, 8, 8, generator=generator)
        labels = torch.randint(0, 3, (8,), generator=generator)
        for model, step in ((ours, optimizer), (theirs, torch_optimizer)):
            step.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            step.step()
        schedule.advance()
        torch_schedule.step()
        assert optimizer.rate == pytest.approx(torch_optimizer.param_groups[0]["lr"], rel=1e-12)
    for mine, torch_parameter in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(mine, torch_parameter, rtol=1e-5, atol=1e-6)
    untouched = twin_models()[0].parameters()
    with torch.no_grad():
        moved = sum(float((a - b).abs().sum()) for a, b in zip(ours.parameters(), untouched, strict=True))
    assert moved > 0.1  # the comparison is of trained weights, not of two untouched copies


def test_very_short_runs_keep_a_constant_rate():
    model, _ = twin_models()
    optimizer = Optimizer("adam", model.parameters(), 0.01)
    schedule = Schedule(optimizer, ONECYCLE_MIN_STEPS - 1, onecycle=True)
    for _ in range(ONECYCLE_MIN_STEPS - 1):
        schedule.advance()
        assert optimizer.rate == 0.01


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        Optimizer("lion", twin_models()[0].parameters(), 0.01)


def test_training_imports_neither_dynamo_nor_torchvision():
    """What the default `train` saves in start-up: torch.optim's import of torch._dynamo, torchvision (which
    imports it too) and scipy.stats, about 2 CPU seconds here."""
    code = (
        "import sys, torch\n"
        "from ocr_core import cli\n"
        "from ocr_core.training import TrainConfig, fit\n"
        "from ocr_core.data import MnistData\n"
        "images = torch.randint(0, 255, (64, 28, 28), dtype=torch.uint8)\n"
        "labels = torch.arange(64) % 10\n"
        "data = MnistData(images, labels, images[:16], labels[:16], 'tiny', 'test')\n"
        "fit(TrainConfig(epochs=1, batch_size=16, precision='fp32', ema_decay=0.9), data)\n"
        "print(sorted(m for m in ('torch._dynamo', 'torchvision', 'scipy.stats') if m in sys.modules))\n"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert finished.stdout.strip() == "[]"
