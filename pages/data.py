"""Data: import a file into the current project (preview, column mapping, options, report) and browse its items
with filters. Item text is shown only inside dataframes (never as HTML)."""

from __future__ import annotations

import streamlit as st

from core import vocab
from core.data import export as exporter
from core.data import importer, server_files
from core.errors import SynthloopError
from pages._common import current_project, database, db_path, escape_markdown, page_guard, show_error

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

NONE = "(none)"
ALL = "(all)"
BROWSE_ROWS = 5_000

st.title(f"Data · {project.name}")
import_tab, browse_tab = st.tabs(["Import", "Browse items"])

def _pick(label: str, options: list[str], guess: tuple[str, ...], key: str, help: str | None = None) -> str:
    """A column selectbox that starts on the first likely column name."""
    index = next((options.index(g) for g in guess if g in options), 0)
    return st.selectbox(label, options, index=index, key=key, help=help)


@st.cache_data(ttl=120, max_entries=4, show_spinner="Reading the file…")
def _read_preview(source: str | bytes, name: str | None, spec: dict):
    """The parsed file, cached briefly so that each widget change does not parse a large file again."""
    return importer.read_table(source, importer.ImportSpec.from_dict(spec), name=name)


def _import_section() -> None:
    # A server path is offered only when SYNTHLOOP_DATA_DIR names the folder it may read from.
    data_dir = server_files.configured_data_dir()
    max_upload_mb = st.get_option("server.maxUploadSize")
    origin = "Upload"
    if data_dir:
        origin = st.radio("File", ["Upload", "Path on the server"], horizontal=True, key="data_origin",
                          help=f"a file already in the server's data folder (SYNTHLOOP_DATA_DIR); at most "
                               f"{max_upload_mb} MB, like an upload")
    source = None
    name = None
    if origin == "Upload":
        uploaded = st.file_uploader("File (CSV, TSV, JSONL, Parquet)", key="data_upload")
        if uploaded is not None:
            source, name = uploaded.getvalue(), uploaded.name
    else:
        path = st.text_input(f"Path of the file inside {escape_markdown(data_dir)}", key="data_path").strip()
        if path:
            try:
                found = server_files.read_server_file(
                    path, data_dir=data_dir, max_upload_mb=max_upload_mb, database=db_path(),
                    secrets_files=st.get_option("secrets.files"))
            except SynthloopError as exc:
                show_error(exc)
                return
            source, name = found.content, found.name

    left, middle, right = st.columns(3)
    file_format = left.selectbox("Format", vocab.IMPORT_FORMATS, key="data_format",
                                 help="auto: from the file extension")
    encoding = middle.text_input("Encoding", value="utf-8", key="data_encoding",
                                 help="e.g. latin-1 or cp1252 for older files")
    separator = right.text_input("Separator", value="", key="data_sep",
                                 help="blank: ',' for CSV, tab for TSV; type \\t for a tab")
    no_header = st.checkbox("The file has no header row", key="data_no_header")
    column_names = ""
    if no_header:
        column_names = st.text_input("Column names, comma-separated", key="data_columns", placeholder="label,text")

    if source is None:
        st.info("Upload a file or give its path to see a preview.")
        return
    try:
        read_spec = importer.ImportSpec(
            format=file_format, encoding=encoding or "utf-8", sep=separator or None, no_header=no_header,
            columns=importer.split_names(column_names),
        )
        frame = _read_preview(source, name, read_spec.to_dict())
    except SynthloopError as exc:
        show_error(exc)
        return

    st.caption(f"Preview: the first rows of {len(frame):,} (row numbers as in the file).")
    st.dataframe(frame.head(20), width="stretch")

    columns = list(frame.columns)
    optional = [NONE, *columns]

    st.subheader("Column mapping")
    left, right = st.columns(2)
    with left:
        text_col = _pick("Text", columns, ("text", "sentence", "user", "content", "message"), "data_text_col")
        id_col = _pick("Id", optional, ("id", "item_id", "example_id"), "data_id_col",
                       help="rows sharing an id are one item")
        label_col = _pick("Reference label", optional, ("label", "gold", "reference_label"), "data_label_col")
        agreement_col = _pick("Published agreement (0-1 or %)", optional, ("agreement",), "data_agreement_col")
    with right:
        split_mode = st.radio("Split", ["Fixed", "From a column"], horizontal=True, key="data_split_mode")
        if split_mode == "Fixed":
            fixed_split, split_col = st.selectbox("Split for every row", vocab.SPLITS, key="data_split"), None
        else:
            fixed_split, split_col = None, _pick("Split column", columns, ("split",), "data_split_col")
        item_source = st.radio("Source", vocab.SOURCES, horizontal=True, key="data_source")
        raw_form = st.radio("Raw per-annotator labels", ["None", "Long form", "Wide form"], horizontal=True,
                            key="data_raw_form",
                            help="Long: a row per (item, annotator). Wide: a column per annotator, empty = not labelled.")
        annotator_col = annotation_col = None
        annotator_cols: list[str] = []
        if raw_form == "Long form":
            annotator_col = _pick("Annotator column", columns, ("annotator", "annotator_id"), "data_annotator_col")
            annotation_col = _pick("Annotator's label column", columns, ("label", "annotation"), "data_annotation_col")
        elif raw_form == "Wide form":
            annotator_cols = st.multiselect("Annotator columns", columns, key="data_annotator_cols")
    add_labels = st.checkbox(f"Add labels that {project.name!r} lacks (else such a file is refused)",
                             key="data_add_labels")

    if st.button("Import", type="primary", key="data_import", icon=":material/upload:"):
        try:
            spec = importer.ImportSpec(
                format=file_format, text_col=text_col, id_col=None if id_col == NONE else id_col,
                label_col=None if label_col == NONE else label_col, split=fixed_split, split_col=split_col,
                source=item_source, agreement_col=None if agreement_col == NONE else agreement_col,
                encoding=encoding or "utf-8", sep=separator or None, no_header=no_header,
                columns=importer.split_names(column_names), annotator_col=annotator_col,
                annotation_col=annotation_col, annotator_cols=tuple(annotator_cols),
            )
            with database() as db:
                report = importer.import_file(db, project.id, source, spec, add_missing_labels=add_labels,
                                              filename=name)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.success(report.message, icon=":material/check_circle:")
            with st.expander("Import report"):
                st.json(report.to_dict())


with import_tab:
    _import_section()

with browse_tab:
    left, middle, right = st.columns(3)
    source_filter = left.selectbox("Source", [ALL, *vocab.SOURCES], key="browse_source")
    split_filter = middle.selectbox("Split", [ALL, *vocab.SPLITS], key="browse_split")
    label_filter = right.selectbox("Label (reference, adjudicated or majority)", [ALL, *project.label_names],
                                   key="browse_label")
    search = st.text_input("Text contains", key="browse_search")
    with database() as db:
        browse = exporter.browse_items(
            db, project.id, source=None if source_filter == ALL else source_filter,
            split=None if split_filter == ALL else split_filter, label=None if label_filter == ALL else label_filter,
            search=search,
        )
    st.metric("Items shown", f"{browse.shown:,} of {browse.total:,}")
    if browse.by_source_split:
        st.caption(" · ".join(f"{key}: {n:,}" for key, n in browse.by_source_split.items()))
    if browse.shown > BROWSE_ROWS:
        st.caption(f"The table lists the first {BROWSE_ROWS:,}: narrow the filters, or use Export for all.")
    st.dataframe(
        browse.frame.head(BROWSE_ROWS)[["item_id", "text", "source", "split", "reference_label", "majority_label", "n_labels",
                      "instance_agreement", "tie"]],
        hide_index=True, width="stretch",
    )
