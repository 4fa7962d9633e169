"""`python -m ocr_core ...`: see cli.py."""

from .cli import run

run()
