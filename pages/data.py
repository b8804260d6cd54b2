"""Data: import a file into the current project (preview, column mapping, label values, options, report), draw a
held-out split, and browse its items with filters. Item text is shown only inside dataframes (never as HTML)."""

from __future__ import annotations

import dataclasses

import streamlit as st

from core import vocab
from core.config import field_help
from core.data import export as exporter
from core.data import importer, server_files, splits
from core.errors import SynthloopError
from pages._common import (
    DATA_TAB,
    CacheKey,
    cache_derived,
    current_project,
    database,
    db_path,
    escape_markdown,
    page_guard,
    project_cache_key,
    show_error,
)

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

NONE = "(none)"
ALL = "(all)"
AS_IN_FILE = "(as in the file)"
BROWSE_ROWS = 5_000
BROWSE_COLUMNS = ["item_id", "text", "source", "split", "reference_label", "majority_label", "n_labels",
                  "instance_agreement", "tie"]
RAW_FORMS = ["None", "Long form", "Wide form"]
IMPORT_HELP = field_help(importer.ImportSpec)
# Page labels of the settings a core message may name (show_error writes them instead of field names).
IMPORT_LABELS = {"repeated_ratings": "Repeated ratings", "label_map": "Label values", "add_labels": "Add labels",
                 "text_col": "Text", "id_col": "Id", "label_col": "Reference label", "sep": "Separator",
                 "encoding": "Encoding", "format": "Format", "columns": "Column names"}

st.title(f"Data · {escape_markdown(project.name)}")
# Only the open tab computes (Streamlit runs every tab's code otherwise): Browse reads every item.
import_tab, split_tab, browse_tab = st.tabs(["Import", "Split", "Browse items"], key=DATA_TAB,
                                            on_change="rerun")

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
        show_error(exc, IMPORT_LABELS)
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
        long_form_annotator = importer.suggest_long_form(frame, id_col=None if id_col == NONE else id_col,
                                                         text_col=text_col)
        if long_form_annotator:
            st.info(f"Ids repeat and column {escape_markdown(repr(long_form_annotator))} names different annotators"
                    " on the rows of one item: this looks like long form (a row per item and annotator), so the"
                    " labels are proposed as the annotators' raw labels, not as a reference label.")
        label_guess = () if long_form_annotator else ("label", "gold", "reference_label")
        label_col = _pick("Reference label", optional, label_guess, "data_label_col")
        agreement_col = _pick("Published agreement (0-1 or %)", optional, ("agreement",), "data_agreement_col")
    with right:
        split_mode = st.radio("Split", ["Fixed", "From a column"], horizontal=True, key="data_split_mode")
        if split_mode == "Fixed":
            fixed_split, split_col = st.selectbox("Split for every row", vocab.SPLITS, key="data_split"), None
        else:
            fixed_split, split_col = None, _pick("Split column", columns, ("split",), "data_split_col")
        item_source = st.radio("Source", vocab.SOURCES, horizontal=True, key="data_source")
        raw_form = st.radio("Raw per-annotator labels", RAW_FORMS, horizontal=True, key="data_raw_form",
                            index=1 if long_form_annotator else 0,
                            help="Long: a row per (item, annotator). Wide: a column per annotator, empty = not labelled.")
        annotator_col = annotation_col = None
        annotator_cols: list[str] = []
        repeated_ratings = importer.ImportSpec().repeated_ratings
        if raw_form == "Long form":
            annotator_col = _pick("Annotator column", columns,
                                  (long_form_annotator or "annotator", "annotator", "annotator_id"), "data_annotator_col")
            annotation_col = _pick("Annotator's label column", columns, ("label", "annotation"), "data_annotation_col")
        elif raw_form == "Wide form":
            annotator_cols = st.multiselect("Annotator columns", columns, key="data_annotator_cols")
        if raw_form != "None":
            repeated_ratings = st.selectbox("Repeated ratings (an annotator rating an item again)",
                                            vocab.REPEATED_RATINGS, key="data_repeated_ratings",
                                            help=IMPORT_HELP["repeated_ratings"])
    label_map = _label_map_editor(frame, [None if label_col == NONE else label_col, annotation_col, *annotator_cols])
    add_labels = st.checkbox(f"Add labels that {escape_markdown(repr(project.name))} lacks (else such a file is"
                             " refused)", key="data_add_labels")

    if st.button("Import", type="primary", key="data_import", icon=":material/upload:"):
        try:
            spec = importer.ImportSpec(
                format=file_format, text_col=text_col, id_col=None if id_col == NONE else id_col,
                label_col=None if label_col == NONE else label_col, split=fixed_split, split_col=split_col,
                source=item_source, agreement_col=None if agreement_col == NONE else agreement_col,
                encoding=encoding or "utf-8", sep=separator or None, no_header=no_header,
                columns=importer.split_names(column_names), annotator_col=annotator_col,
                annotation_col=annotation_col, annotator_cols=tuple(annotator_cols),
                repeated_ratings=repeated_ratings, label_map=label_map,
            )
            with database() as db:
                report = importer.import_file(db, project.id, source, spec, add_missing_labels=add_labels,
                                              filename=name)
        except SynthloopError as exc:
            show_error(exc, IMPORT_LABELS)
        else:
            st.success(escape_markdown(report.summary), icon=":material/check_circle:")
            if report.conflict_line:
                st.warning(escape_markdown(report.conflict_line), icon=":material/warning:")
            with st.expander("Import report"):
                st.json(report.to_dict())


def _label_map_editor(frame, label_columns: list[str | None]) -> dict[str, str]:
    """A select per distinct file value of the label columns: the project label it stands for (0/1 codes)."""
    values = importer.label_values(frame, label_columns)
    if not values:
        return {}
    st.subheader("Label values")
    if len(values) > importer.MAX_LABEL_VALUES:
        st.caption(f"The label columns hold {len(values):,} distinct values: check the column mapping.")
        return {}
    st.caption("Map each value of the file to a project label, so that prompts, buttons and reports show label"
               " names. A value left as in the file must be a label of the project.")
    options = [AS_IN_FILE, *project.label_names]
    mapping: dict[str, str] = {}
    for start in range(0, len(values), 3):
        for column, value in zip(st.columns(3), values[start:start + 3], strict=False):
            choice = column.selectbox(f"File value {escape_markdown(repr(value))}", options, key=f"data_map_{value}",
                                      index=options.index(value) if value in options else 0)
            if choice not in (AS_IN_FILE, value):
                mapping[value] = choice
    return mapping


def _split_section() -> None:
    st.caption("A stratified, seeded held-out split of the real items: each reference label keeps the same shares"
               " of test and dev; the same seed always draws the same split.")
    with st.form("split_form"):
        left, middle, right = st.columns(3)
        test_share = left.number_input("Test share", min_value=0.0, max_value=0.95, value=0.2, step=0.05,
                                       key="split_test")
        dev_share = middle.number_input("Dev share", min_value=0.0, max_value=0.95, value=0.0, step=0.05,
                                        key="split_dev")
        seed = right.number_input("Seed", min_value=0, value=0, step=1, key="split_seed")
        redraw = st.checkbox("Redraw the whole split", key="split_redraw",
                             help="moves every real item, including those already in dev or test")
        drawn = st.form_submit_button("Draw the split", type="primary", key="split_draw")
    if drawn:
        try:
            with database() as db:
                report = splits.split_real_items(db, project.id, test=float(test_share), dev=float(dev_share),
                                                 seed=int(seed), redraw=redraw)
        except SynthloopError as exc:
            show_error(exc, {"redraw": "Redraw the whole split"})
        else:
            st.success(report.message, icon=":material/check_circle:")
    if split_tab.open:  # the counts read every real item: only when this tab is shown
        st.caption("Real items per reference label and split.")
        with database() as db:
            st.dataframe(splits.split_label_counts(db, project.id), width="stretch")


with import_tab:
    _import_section()

with split_tab:
    _split_section()

@cache_derived("Reading the items…")
def _browse(_db, key: CacheKey, source: str | None, split: str | None, label: str | None,
            search: str) -> exporter.ItemBrowse:
    """The filtered items cut to the rows and columns the table shows: a cached entry is copied on every rerun."""
    browse = exporter.browse_items(_db, key.project.id, source=source, split=split, label=label, search=search)
    return dataclasses.replace(browse, frame=browse.frame.head(BROWSE_ROWS)[BROWSE_COLUMNS])


with browse_tab:
    left, middle, right = st.columns(3)
    source_filter = left.selectbox("Source", [ALL, *vocab.SOURCES], key="browse_source")
    split_filter = middle.selectbox("Split", [ALL, *vocab.SPLITS], key="browse_split")
    label_filter = right.selectbox("Label (reference, adjudicated or majority)", [ALL, *project.label_names],
                                   key="browse_label")
    search = st.text_input("Text contains", key="browse_search")
    if browse_tab.open:
        with database() as db:
            browse = _browse(db, project_cache_key(db, project), None if source_filter == ALL else source_filter,
                             None if split_filter == ALL else split_filter,
                             None if label_filter == ALL else label_filter, search)
        st.metric("Items shown", f"{browse.shown:,} of {browse.total:,}")
        if browse.by_source_split:
            st.caption(" · ".join(f"{key}: {n:,}" for key, n in browse.by_source_split.items()))
        if browse.shown > BROWSE_ROWS:
            st.caption(f"The table lists the first {BROWSE_ROWS:,}: narrow the filters, or use Export for all.")
        st.dataframe(browse.frame, hide_index=True, width="stretch")
