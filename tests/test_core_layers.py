"""The map in ocr_core/__init__.py holds: each module imports only the modules the map lists before it."""

import ast
import re

from conftest import PROJECT_DIR

import ocr_core

ENGINE = PROJECT_DIR / "ocr_core"


def test_imports_run_one_way_in_the_order_the_map_gives():
    sentence = ocr_core.__doc__.split("Imports run one way, in this order")[1].split(".\n")[0]
    listed = re.sub(r"\([^)]*\)", "", sentence.replace("\n", " ").split(":", 1)[1])
    order = [name.strip() for name in re.split(r"[;,]", listed)]
    assert set(order) == {path.stem for path in ENGINE.glob("*.py")} - {"__init__", "__main__"}
    for position, name in enumerate(order):
        tree = ast.parse((ENGINE / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        later = imported - set(order[:position])
        assert not later, f"{name} imports {later}, listed after it"
