"""Streamlit helpers of the app: cached loaders, the canvas adapter, charts, the training manager and
shared widgets. Pages combine these with `ocr_core`; `ocr_core` itself never imports Streamlit."""
