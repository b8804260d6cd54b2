"""Serving the app on several cores: N Streamlit processes over one database behind nginx (``python -m core
serve``), each browser kept on one process."""
