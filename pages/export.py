"""Export: the current project's data, aggregated (a row per item) or raw (a row per annotation), as CSV, JSONL
or Parquet, with a preview and a download button."""

from __future__ import annotations

import streamlit as st

from core import vocab
from core.data import export as exporter
from core.errors import SynthloopError
from pages._common import current_project, database, page_guard, show_error

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

st.title(f"Export · {project.name}")
VIEWS = {"aggregated": "Aggregated: a row per item", "raw": "Raw: a row per annotation"}
left, right = st.columns(2)
view = left.radio("View", list(VIEWS), format_func=VIEWS.__getitem__, key="export_view")
file_format = right.selectbox("Format", vocab.EXPORT_FORMATS, key="export_format",
                              help="CSV cells starting with = + - @ are neutralised for spreadsheets;"
                                   " JSONL and Parquet keep every value exactly.")
try:
    with database() as db:
        export = exporter.export_data(db, project.id, view=view, fmt=file_format)
except SynthloopError as exc:
    show_error(exc)
    st.stop()

st.caption(f"{export.rows:,} rows · {len(export.data):,} bytes · preview of the first 50")
st.dataframe(export.frame.head(50), hide_index=True, width="stretch")
st.download_button(
    f"Download {export.filename}", data=export.data, file_name=export.filename, mime=export.mime,
    type="primary", icon=":material/download:", key="export_download", on_click="ignore",
)
