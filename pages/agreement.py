"""Agreement: how subjective each item and the whole task are — Krippendorff's alpha with its interval, the
histogram of instance agreement, annotator quality, real vs synthetic, label fidelity — and the adjudication
queue where a researcher sets an item's final label."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.agreement.charts import agreement_bins, agreement_histogram, reliability_chart
from core.agreement.panel import PanelReport
from core.agreement.project import ExclusionEffect, agreement_view, exclusion_effect, project_panel
from core.agreement.report import AgreementReport, ReportConfig
from core.annotation.adjudication import adjudicate
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
    vega_lite_spec,
)

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

st.title("Agreement")
st.caption("Instance agreement a_i = share of an item's labels that go to its most frequent label (items with ≥ 2 "
           "labels; ties are flagged, not broken). Task agreement: Krippendorff's alpha (nominal) with a bootstrap "
           "interval over items. The LLM annotator, when it has labelled, appears like any annotator.")

with st.expander("Settings"):
    left, middle, right = st.columns(3)
    n_boot = left.number_input("Bootstrap resamples", min_value=100, max_value=20000, value=1000, step=100)
    seed = middle.number_input("Seed", min_value=0, value=0, step=1)
    include_done = right.checkbox("Show adjudicated items in the queue", value=False)
    auto = st.toggle("Refresh every 10 seconds (watch labels come in)", value=False)


QUEUE_ROWS = 200


@cache_derived("Computing agreement…")
def _agreement(_db, key: CacheKey, n_boot: int, seed: int,
               include_adjudicated: bool) -> tuple[AgreementReport, dict | None, pd.DataFrame]:
    """The report, the histogram (None when no item has two labels) and the queue's first rows: only what the
    page shows, since a cached entry is copied on every rerun."""
    view = agreement_view(_db, key.project, config=ReportConfig(n_boot=n_boot, seed=seed),
                          include_adjudicated=include_adjudicated)
    bins = agreement_bins(view.items)
    histogram = None if bins.empty else vega_lite_spec(agreement_histogram(bins))
    return view.report, histogram, view.queue.head(QUEUE_ROWS)


@cache_derived()
def _exclusion(_db, key: CacheKey) -> ExclusionEffect | None:
    """Alpha with and without the annotators excluded on the Crowd study page (None: nobody is excluded)."""
    return exclusion_effect(_db, key.project)


def _exclusion_note(effect: ExclusionEffect | None) -> None:
    if effect is None:
        return

    def fmt(alpha: float | None) -> str:
        return "undefined" if alpha is None else f"{alpha:.3f}"

    st.warning(f"{len(effect.excluded)} excluded annotators ({effect.n_annotations_excluded} labels) are left out "
               f"of every figure here: alpha without them {fmt(effect.alpha_without)}, with them "
               f"{fmt(effect.alpha_with)}.", icon=":material/person_remove:")
    st.caption("Excluded: " + escape_markdown(", ".join(effect.excluded)))


@cache_derived()
def _panel(_db, key: CacheKey) -> tuple[PanelReport, dict | None]:
    """The LLM panel's report and its reliability diagram (None when no item has panel and human labels)."""
    report = project_panel(_db, key.project)
    bins = report.calibration.reliability_frame()
    return report, None if bins.empty else vega_lite_spec(reliability_chart(bins))


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _llm_panel(panel: PanelReport, chart: dict | None) -> None:
    """The LLM panel against people: agreement, accuracy and calibration on the items both labelled."""
    st.subheader("LLM panel vs people")
    if not panel.members:
        st.info("No LLM panel yet: every LLM annotator is a panel member. Run one or more on the synthetic items "
                "(Generate page, LLM annotator tab: several models, or one model with several instruction variants), "
                "or `python -m core llm-annotate PROJECT --panel FILE.json`.")
        return
    st.caption(f"{len(panel.members)} panel members: " + escape_markdown(", ".join(panel.members)) + ". "
               f"{panel.n_synthetic_labelled} of {panel.n_synthetic} synthetic items have panel labels; mean share "
               f"of the panel giving the intended label {_number(panel.mean_panel_agreement)}.")
    calibration = panel.calibration
    if not calibration.n_items:
        st.info("No item is labelled by both the panel and people (with an untied human majority), so the panel "
                "cannot be compared with people yet.")
        return
    cols = st.columns(5)
    cols[0].metric("Items labelled by both", calibration.n_items,
                   help=f"{calibration.n_human_ties} more items are skipped: the people tie")
    cols[1].metric("Panel accuracy", _number(calibration.accuracy),
                   help=f"panel majority = human majority; {calibration.n_panel_ties} panel ties count as wrong")
    cols[2].metric("Panel Cohen's kappa", _number(calibration.cohen_kappa), help="panel majority vs human majority")
    cols[3].metric("Panel Krippendorff's alpha", _number(calibration.krippendorff_alpha),
                   help="nominal; panel majority and human majority as two coders")
    cols[4].metric("Panel ECE", _number(calibration.ece), help="expected calibration error of the panel's vote share")
    st.caption(calibration.rule)
    if chart is not None:
        st.vega_lite_chart(chart, width="stretch")


def _intra_annotator(intra: dict | None) -> None:
    """Intra-annotator consistency: how often annotators who rated an item again gave it the same label."""
    st.subheader("Intra-annotator consistency")
    if not intra:
        st.info("No repeated ratings: no annotator rated an item twice (imports keep such repeats as pairs).")
        return
    st.caption("Over repeated ratings (an annotator rating the same item again): the share of repeat pairs with "
               "the same label, and Krippendorff's alpha (nominal) with each pair as one item of two labels.")
    cols = st.columns(4)
    cols[0].metric("Repeat pairs", intra["n_pairs"])
    cols[1].metric("Annotators with repeats", intra["n_annotators"])
    cols[2].metric("Same label", f"{intra['same_label_share']:.1%}")
    cols[3].metric("Intra-annotator alpha", "—" if intra["alpha"] is None else f"{intra['alpha']:.3f}",
                   help="undefined when every repeat pair uses one and the same label")


@st.fragment(run_every=10 if auto else None)
def _overview() -> None:
    try:
        with database() as db:
            report, histogram, queue = _agreement(db, project_cache_key(db, project), int(n_boot), int(seed),
                                                  bool(include_done))
    except SynthloopError as exc:
        show_error(exc)
        return
    alpha = report.krippendorff_alpha
    low, high = report.alpha_ci
    cols = st.columns(4)
    cols[0].metric("Krippendorff's alpha", "—" if alpha is None else f"{alpha:.3f}",
                   help="nominal; items with ≥ 2 labels")
    cols[1].metric("95% interval" if report.config.get("confidence") == 0.95 else "interval",
                   "—" if low is None else f"{low:.2f} to {high:.2f}")
    cols[2].metric("Mean instance agreement",
                   "—" if report.mean_instance_agreement is None else f"{report.mean_instance_agreement:.3f}")
    cols[3].metric("Items with ≥ 2 labels", report.n_items,
                   help=f"{report.n_items_excluded} items with fewer labels are excluded "
                        f"({report.n_items_single_label} with one, {report.n_items_unlabelled} with none)")
    {"reliable": st.success, "tentative": st.warning, "low": st.error, "undefined": st.info}[report.band](
        f"Reading: {report.band_text}")
    with database() as db:
        _exclusion_note(_exclusion(db, project_cache_key(db, project)))
    st.caption(f"{report.n_annotations} annotations by {report.n_annotators} annotators · {report.n_ties} items "
               f"tie for the majority · {report.n_items_excluded} items excluded (fewer than 2 labels)"
               + (f" · {report.n_items_imported_agreement} items use their imported agreement"
                  if report.n_items_imported_agreement else ""))

    hist, sources = st.columns([3, 2])
    with hist:
        st.subheader("Instance agreement")
        if histogram is not None:
            st.vega_lite_chart(histogram, width="stretch")
        else:
            st.info("No item has two labels yet.")
    with sources:
        st.subheader("Real vs synthetic")
        if report.by_source:
            by_source = pd.DataFrame.from_dict(report.by_source, orient="index")
            by_source["alpha_ci"] = [
                "—" if ci is None or ci[0] is None else f"{ci[0]:.2f} to {ci[1]:.2f}" for ci in by_source["alpha_ci"]
            ]
            st.dataframe(by_source[["krippendorff_alpha", "alpha_ci", "band", "mean_instance_agreement", "n_items",
                                    "n_items_excluded", "n_annotations"]], width="stretch")
        fidelity = report.label_fidelity
        if fidelity and fidelity["fidelity"] is not None:
            st.metric("Label fidelity (synthetic)", f"{fidelity['fidelity']:.1%}",
                      help=fidelity["rule"])
            st.caption(f"{fidelity['n_match']} of {fidelity['n_items']} synthetic items: the human majority equals "
                       f"the intended label; {fidelity['n_ties']} ties count as not equal.")
            st.dataframe(pd.DataFrame(fidelity["per_label"]), hide_index=True)

    annotators, labels = st.columns(2)
    with annotators:
        st.subheader("Annotators")
        st.caption("Agreement with the majority of the other labels of the same items (leave-one-out; a tie "
                   "among the others scores 1/t); quality = Dawid–Skene estimate of the chance of the true label.")
        st.dataframe(pd.DataFrame(report.per_annotator), hide_index=True)
    with labels:
        st.subheader("Labels")
        st.caption("Specific agreement: when one annotator chose the label, the chance that another did too.")
        st.dataframe(pd.DataFrame(report.per_label), hide_index=True)

    _intra_annotator(report.intra_annotator)
    with database() as db:
        _llm_panel(*_panel(db, project_cache_key(db, project)))

    st.subheader("Adjudication queue")
    st.caption("Lowest agreement first. The final label you set here is used by export and training before the "
               "majority label.")
    if queue.empty:
        st.info("Nothing to adjudicate: no unadjudicated item has two or more labels.")
        return
    st.dataframe(queue.head(200)[["id", "external_id", "text", "votes", "instance_agreement", "tie",
                                  "adjudicated_label"]], hide_index=True, width="stretch")
    options = queue["id"].head(200).tolist()
    texts = dict(zip(queue["id"], queue["text"], strict=True))
    with st.form("adjudicate"):
        item_id = st.selectbox("Item", options, format_func=lambda i: f"{i}: {str(texts[i])[:80]}")
        label = st.radio("Final label", project.label_names, horizontal=True)
        left_button, right_button = st.columns(2)
        submitted = left_button.form_submit_button("Set final label", type="primary")
        cleared = right_button.form_submit_button("Clear final label")
    if submitted or cleared:
        try:
            with database() as db:
                adjudicate(db, project, int(item_id), None if cleared else label)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.toast(f"Item {item_id}: final label {'cleared' if cleared else label}.")
            st.rerun()


_overview()
