"""Streamlit Community Cloud entry: point Cloud at this file and it installs `deploy/requirements.txt` (the
app's requirements with CPU-only torch from PyTorch's index) and runs the same app as `streamlit run app.py`.

Streamlit resolves page paths (`st.Page`, `st.switch_page`, `st.page_link`) against the entry file's folder,
so `deploy/app_pages` is a link to the project's `app_pages/`: the pages keep their one set of paths."""

import runpy
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:  # ocr_core and lab_ui, whatever the working directory
    sys.path.insert(0, str(PROJECT_DIR))
runpy.run_path(str(PROJECT_DIR / "app.py"), run_name="__main__")
