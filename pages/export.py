"""Export: the current project's data, aggregated (a row per item) or raw (a row per annotation), as CSV, JSONL
or Parquet, with a preview and a download button; and the Hugging Face dataset folder as a zip, built on request."""

from __future__ import annotations

import dataclasses

import streamlit as st

from core import vocab
from core.data import export as exporter
from core.data import hf
from core.errors import SynthloopError
from pages._common import (
    CacheKey,
    cache_derived,
    current_project,
    database,
    escape_markdown,
    page_guard,
    project_cache_key,
    show_error,
)

PREVIEW_ROWS = 50


@cache_derived("Preparing the export…")
def _export(_db, key: CacheKey, view: str, file_format: str) -> tuple[exporter.Export, int]:
    """The export with its table cut to the preview, and its row count: a cached entry is copied on every
    rerun, and the bytes are all the download needs."""
    export = exporter.export_data(_db, key.project.id, view=view, fmt=file_format)
    return dataclasses.replace(export, frame=export.frame.head(PREVIEW_ROWS)), export.rows


user = page_guard(__file__)
with database() as db:
    project = current_project(db)

st.title(f"Export · {escape_markdown(project.name)}")
VIEWS = {"aggregated": "Aggregated: a row per item", "raw": "Raw: a row per annotation"}
left, right = st.columns(2)
view = left.radio("View", list(VIEWS), format_func=VIEWS.__getitem__, key="export_view")
file_format = right.selectbox("Format", vocab.EXPORT_FORMATS, key="export_format",
                              help="CSV cells starting with = + - @ are neutralised for spreadsheets;"
                                   " JSONL and Parquet keep every value exactly.")
try:
    with database() as db:
        export, rows = _export(db, project_cache_key(db, project), view, file_format)
except SynthloopError as exc:
    show_error(exc)
    st.stop()

st.caption(f"{rows:,} rows · {len(export.data):,} bytes · preview of the first {PREVIEW_ROWS}")
st.dataframe(export.frame, hide_index=True, width="stretch")
st.download_button(
    f"Download {export.filename}", data=export.data, file_name=export.filename, mime=export.mime,
    type="primary", icon=":material/download:", key="export_download", on_click="ignore",
)

st.subheader("Hugging Face dataset")
st.caption("Every item with its final label, vote distribution, raw labels and provenance, one split per project"
           " split, and a dataset card: a `datasets` folder (load_from_disk), zipped.")
if st.button("Prepare the Hugging Face dataset", key="export_hf_prepare"):
    try:
        with database() as db:
            st.session_state["export_hf_zip"] = (project.id, *hf.export_zip(db, project.id))
    except SynthloopError as exc:
        show_error(exc)
prepared = st.session_state.get("export_hf_zip")
if prepared and prepared[0] == project.id:  # never another project's zip
    st.download_button(f"Download {prepared[2]}", data=prepared[1], file_name=prepared[2], mime="application/zip",
                       icon=":material/download:", key="export_hf_download", on_click="ignore")
