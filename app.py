"""Digit OCR lab: `streamlit run app.py`. Routing and page config only.

The pages live in app_pages/, not pages/: Streamlit treats a pages/ folder as an old-style multipage app
until st.navigation has run once, so a server's first visitor could land on a page without this file."""

import streamlit as st

from lab_ui.widgets import sidebar_status

st.set_page_config(page_title="Digit OCR lab", page_icon=":material/draw:", layout="wide")
page = st.navigation(
    [
        st.Page("app_pages/draw.py", title="Draw", icon=":material/draw:", default=True),
        st.Page("app_pages/read.py", title="Read", icon=":material/pin:"),
        st.Page("app_pages/my_digits.py", title="My digits", icon=":material/person_edit:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("app_pages/robustness.py", title="Robustness", icon=":material/shield:"),
        st.Page("app_pages/manage.py", title="Manage runs", icon=":material/folder_managed:"),
    ]
)
sidebar_status()
page.run()
