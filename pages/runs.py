"""Runs: compare training runs in the paper's Table 1 layout, filter and delete them, download a model, and look
at one run in detail — metrics, per-class scores, confusion matrix, accuracy against the agreement threshold γ
(several runs overlaid, like the paper's Figure 2) and training curves (like its Figure B.1)."""

from __future__ import annotations

import streamlit as st

from core.errors import SynthloopError
from core.training import charts, service
from pages._common import (
    RUNS_DETAIL_TAB,
    CacheKey,
    cache_derived,
    current_project,
    database,
    db_path,
    escape_markdown,
    page_guard,
    runs_cache_key,
    show_error,
    vega_lite_spec,
)


@cache_derived()
def _runs_tables(_db, key: CacheKey, project_names: list[str] | None = None, models: list[str] | None = None,
                 label_sources: list[str] | None = None, statuses: list[str] | None = None):
    """The runs table, filtered, and its Table 1 summary."""
    runs = service.runs_frame(_db, project_names=project_names, models=models, label_sources=label_sources,
                              statuses=statuses)
    return runs, service.table1(runs)


@cache_derived()
def _run_details(_db, key: CacheKey, run_id: int) -> service.RunDetails:
    return service.run_details(_db, key.db_file, run_id)


@cache_derived()
def _sweep(_db, key: CacheKey, run_ids: list[int], metric: str) -> tuple[list[dict], dict | None]:
    """The overlaid runs' results and their chart (None when no run has a sweep)."""
    overlays = service.sweep_results(_db, key.db_file, run_ids)
    has_sweep = any(o["sweep"] for o in overlays)
    return overlays, vega_lite_spec(charts.sweep_chart(overlays, metric=metric)) if has_sweep else None


user = page_guard(__file__)
with database() as db:
    project = current_project(db)
    runs_key = runs_cache_key(db, service.runs_version(db))
    all_runs, _ = _runs_tables(db, runs_key)

st.title("Runs")
if all_runs.empty:
    st.info("No training runs yet: start one on the Train page (or `python -m core train PROJECT`).")
    st.stop()

with st.expander("Filter", expanded=False, icon=":material/filter_list:"):
    a, b, c, d = st.columns(4)
    project_names = sorted(all_runs["project"].unique())
    chosen_projects = a.multiselect("Projects", project_names, key="runs_filter_projects")
    chosen_models = b.multiselect("Models", sorted(all_runs["model"].unique()), key="runs_filter_models")
    chosen_labels = c.multiselect("Label sources", sorted(all_runs["label_source"].unique()),
                                  key="runs_filter_label_sources")
    chosen_status = d.multiselect("Status", sorted(all_runs["status"].unique()), key="runs_filter_status")

with database() as db:
    runs, summary = _runs_tables(db, runs_key, chosen_projects or None, chosen_models or None,
                                 chosen_labels or None, chosen_status or None)

st.subheader("Table 1: macro-F1 and accuracy by training data")
st.caption("Rows: projects, label sources and objectives (hard: one label per item; soft: the human vote "
           "distribution); columns: training data source × metric, averaged over the finished runs shown (use the "
           "filter to compare one model at a time).")
if summary.empty:
    st.caption("No finished runs match the filter.")
else:
    if note := service.table1_note(summary):
        st.warning(escape_markdown(note), icon=":material/warning:")
    st.dataframe(summary, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in summary.columns if " · " in c})

st.subheader("All runs")
st.dataframe(runs, hide_index=True, column_config={
    "macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
    "accuracy": st.column_config.NumberColumn(format="%.3f"),
    "soft_cross_entropy": st.column_config.NumberColumn("cross-entropy", format="%.3f",
                                                        help="against the human votes of test items with ≥ 2 labels"),
    "soft_manhattan": st.column_config.NumberColumn("Manhattan", format="%.3f"),
    "soft_ece": st.column_config.NumberColumn("ECE", format="%.3f"),
    "soft_entropy_agreement_rho": st.column_config.NumberColumn("entropy–agreement ρ", format="%.2f"),
    "soft_n_items": st.column_config.NumberColumn("items with ≥ 2 labels"),
    "sweep_r2": st.column_config.NumberColumn("sweep R²", format="%.2f"),
    "sweep_spearman_rho": st.column_config.NumberColumn("sweep ρ", format="%.2f"),
    "sweep_note": st.column_config.TextColumn("sweep R² and ρ"),
    "seconds": st.column_config.NumberColumn(format="%.0f"),
})
if runs.empty:
    st.stop()

run_ids = runs["run"].tolist()
labels = {row.run: f"run {row.run} · {row.project} · {row.data_source} · {row.model} · {row.status}"
          for row in runs.itertuples()}
run_id = st.selectbox("Run details", run_ids, format_func=labels.get, key="runs_detail")
with database() as db:
    details = _run_details(db, runs_key, run_id)

left, right = st.columns([2, 1])
with right:
    bundle = service.zip_file(db_path(), run_id)
    if bundle is not None:
        st.download_button("Model zip", data=bundle.read_bytes, file_name=bundle.name,
                           mime="application/zip", icon=":material/download:", key="runs_download")
    confirm = st.checkbox("Confirm delete", key="runs_delete_confirm",
                          help="Deletes the run, its predictions and its saved model.")
    if st.button("Delete run", icon=":material/delete:", disabled=not confirm, key="runs_delete"):
        try:
            with database() as db:
                service.delete(db, db_path(), run_id)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.success(f"Deleted run {run_id}.")
            st.rerun()
with left:
    st.markdown(f"**{escape_markdown(details.label)}**")
    if details.status == "failed":
        st.error(escape_markdown(details.error or "failed"), icon=":material/error:")
    elif details.status != "done":
        st.info(f"Run {run_id} is {details.status}: results appear when it has finished.")

if details.status == "done":
    a, b, c, d, e = st.columns(5)
    a.metric("Accuracy", f"{details.accuracy:.3f}")
    b.metric("Macro-F1", f"{details.macro_f1:.3f}")
    c.metric("Training items", details.n_train)
    d.metric("Test items", details.n_test)
    e.metric("Seconds", f"{details.seconds or 0:.0f}")
    if soft := details.result.get("soft_metrics"):
        st.caption(f"Against the human vote distribution of the {soft['n_items']} test items with ≥ 2 labels:")
        a, b, c, d, _ = st.columns(5)
        for column, name, key in ((a, "Cross-entropy", "cross_entropy"), (b, "Manhattan", "manhattan"),
                                  (c, "ECE", "ece"), (d, "Entropy–agreement ρ", "entropy_agreement_spearman")):
            column.metric(name, "n/a" if soft[key] is None else f"{soft[key]:.3f}")
    if heads := details.result.get("annotator_heads"):
        st.caption("Annotator heads: each annotator's head, scored on the test items that annotator labelled "
                   "(the item prediction is the majority of the heads, ties broken by their mean probability).")
        st.dataframe(heads, hide_index=True, key="runs_annotator_heads", column_config={
            "n_test_labels": st.column_config.NumberColumn("test labels"),
            "error_rate": st.column_config.NumberColumn("error rate", format="%.3f")})

    # Only the open tab computes (Streamlit runs every tab's code otherwise: four charts and the predictions).
    sweep_tab, classes_tab, curves_tab, predictions_tab, config_tab = st.tabs(
        ["Accuracy vs agreement", "Per class", "Training curves", "Predictions", "Config"], key=RUNS_DETAIL_TAB,
        on_change="rerun")
    with sweep_tab:
        done_ids = [r for r in run_ids if runs.loc[runs["run"] == r, "status"].iloc[0] == "done"]
        overlay = st.multiselect("Overlay runs", done_ids, default=[run_id], format_func=labels.get,
                                 key="runs_overlay")
        metric = st.radio("Metric", ["accuracy", "macro_f1"], horizontal=True, key="runs_sweep_metric")
        if sweep_tab.open:
            with database() as db:
                overlays, sweep_spec = _sweep(db, runs_key, overlay, metric)
            if sweep_spec is not None:
                for overlaid in overlays:
                    if overlaid["sweep"] and overlaid["sweep_fit_note"]:
                        st.warning(f"Run {overlaid['run_id']} ({overlaid['data_source']}): "
                                   f"{overlaid['sweep_fit_note']}.", icon=":material/warning:")
                st.vega_lite_chart(sweep_spec, width="stretch")
                st.dataframe(service.sweep_table(overlays), hide_index=True)
            else:
                st.caption("No test item has a known instance agreement (it needs ≥ 2 labels or an imported "
                           "agreement), so there is no sweep.")
    with classes_tab:
        if classes_tab.open:
            st.dataframe(details.per_class_table, column_config={
                c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "f1")})
            st.markdown("Confusion matrix (rows: true label, columns: predicted label)")
            st.altair_chart(charts.confusion_chart(details.confusion_table), width="stretch")
    with curves_tab:
        if curves_tab.open:
            history = details.history
            st.altair_chart(charts.loss_chart(history), width="stretch")
            st.altair_chart(charts.dev_chart(history), width="stretch")
    with predictions_tab:
        if predictions_tab.open:
            st.dataframe(details.predictions, hide_index=True)
    with config_tab:
        if config_tab.open:
            st.json(details.config)
            st.json(details.data_report, expanded=False)
