"""`python -m ocr_core ...`: see cli.py."""
import os
import sys

from .cli import main

code = main()
# Unloading torch at interpreter exit takes 0.5-1 s here (measured), a sixth of a default training run.
# Every file we write is complete and renamed into place before main returns, so skip the unloading.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
