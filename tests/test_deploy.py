"""The Community Cloud entry runs the same app, and its requirements stay in step with the main ones."""

from __future__ import annotations

import re

from streamlit.testing.v1 import AppTest

from app_fixtures import PROJECT_DIR
from test_app import TIMEOUT, texts

DEPLOY_DIR = PROJECT_DIR / "deploy"
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
CPU_BUILDS = ("torch", "torchvision")  # pinned to PyTorch's +cpu builds on Cloud


def requirements(path) -> list[str]:
    """Requirement lines, without comments and blank lines."""
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_deploy_requirements_are_the_main_ones_with_cpu_torch_from_pytorchs_index():
    main = requirements(PROJECT_DIR / "requirements.txt")
    deploy = requirements(DEPLOY_DIR / "requirements.txt")
    assert deploy[0] == CPU_INDEX  # before any requirement, so the +cpu builds are found
    expected = [f"{line}+cpu" if line.split("==")[0] in CPU_BUILDS else line for line in main]
    assert deploy[1:] == expected, "deploy/requirements.txt drifted from requirements.txt: edit both"
    for name in CPU_BUILDS:
        assert any(re.fullmatch(rf"{name}==[\d.]+\+cpu", line) for line in deploy), f"{name} is not pinned +cpu"


def test_the_cloud_entry_runs_the_app_and_its_pages(app_env):
    app = AppTest.from_file(str(DEPLOY_DIR / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    assert not app.exception
    draw_title = texts(app.title)
    assert draw_title == "Draw a digit"
    app.switch_page("app_pages/train.py").run()
    assert not app.exception and texts(app.title) == "Train a model"
    app.switch_page("app_pages/evaluate.py").run()
    assert not app.exception and texts(app.title) == "Evaluate runs"
    main = AppTest.from_file(str(PROJECT_DIR / "app.py"), default_timeout=TIMEOUT).run()
    assert texts(main.title) == draw_title  # the same app
