"""Agreement core: hand-computed matrices with exact a_i, ties, alpha, per-annotator agreement; Dawid–Skene
against crowd-kit; the report; ConvAbuse imported in long and in wide form giving identical results."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pandas as pd
import pytest

from core import projects
from core.agreement.dawid_skene import aggregate_with_quality, model_aggregate
from core.agreement.metrics import (
    _alpha_from_sums,
    alpha_band,
    alpha_sufficient_statistics,
    bootstrap_alpha_ci,
    encode,
    instance_agreement,
    krippendorff_alpha,
    label_fidelity,
    label_matrix,
    matrix_to_long,
    per_annotator_agreement,
    per_label_stats,
)
from core.agreement.project import items_agreement, project_agreement
from core.agreement.report import AgreementReport, ReportConfig, agreement_report
from core.data import importer
from core.errors import SynthloopError

# items × annotators (None = not labelled). Hand computation of nominal alpha over the pairable items 1-4:
#   n_x = 3+2+1 = 6, n_y = 1+2+1 = 4, n = 10; Σ_c o_cc = 3 + 1 + 2 + 0 = 6
#   alpha = 1 − (n−1)(n − Σ o_cc)/(n² − Σ n_c²) = 1 − 9·4/(100 − 36 − 16) = 1 − 36/48 = 0.25
MATRIX = {
    "i1": {"a": "x", "b": "x", "c": "x"},
    "i2": {"a": "x", "b": "x", "c": "y"},
    "i3": {"a": "y", "b": "y"},
    "i4": {"a": "x", "b": "y"},
    "i5": {"a": "z"},
}


def _long(matrix: dict[str, dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(item, annotator, label) for item, row in matrix.items() for annotator, label in row.items()],
        columns=["item_id", "annotator", "label"],
    )


@pytest.fixture
def tiny() -> pd.DataFrame:
    return _long(MATRIX)


def test_instance_agreement_exact_values_and_ties(tiny: pd.DataFrame) -> None:
    per_item = instance_agreement(tiny)
    assert per_item["n_labels"].tolist() == [3, 3, 2, 2, 1]
    assert per_item.loc["i1", "instance_agreement"] == 1.0
    assert per_item.loc["i2", "instance_agreement"] == pytest.approx(2 / 3)
    assert per_item.loc["i4", "instance_agreement"] == 0.5
    assert math.isnan(per_item.loc["i5", "instance_agreement"])
    assert per_item["tie"].tolist() == [False, False, False, True, False]
    assert per_item.loc["i2", "majority_label"] == "x"
    assert per_item.loc["i4", "majority_label"] is None or pd.isna(per_item.loc["i4", "majority_label"])
    assert per_item.loc["i2", "votes"] == '{"x": 2, "y": 1}'
    assert per_item.loc["i4", "votes"] == '{"x": 1, "y": 1}'


def test_alpha_matches_hand_computation_and_the_package(tiny: pd.DataFrame) -> None:
    coded = encode(tiny)
    assert krippendorff_alpha(coded.counts) == pytest.approx(0.25)
    reliability = label_matrix(tiny).T.replace({"x": 0, "y": 1, "z": 2}).astype(float).to_numpy()
    assert krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal") == pytest.approx(0.25)
    # the bootstrap's closed form on unit weights equals the package
    counts, diagonal = alpha_sufficient_statistics(coded.counts)
    alpha = _alpha_from_sums(counts.sum(axis=0, keepdims=True), np.array([diagonal.sum()]))
    assert alpha[0] == pytest.approx(0.25)


def test_per_annotator_leave_one_out_agreement(tiny: pd.DataFrame) -> None:
    # a: i1 1, i2 ½ (others x,y tie), i3 1, i4 0 → 2.5/4; b: same; c: i1 1, i2 0 → ½. a's i5 has no other label.
    frame = per_annotator_agreement(encode(tiny))
    assert frame.loc["a", "agreement_with_others"] == pytest.approx(0.625)
    assert frame.loc["b", "agreement_with_others"] == pytest.approx(0.625)
    assert frame.loc["c", "agreement_with_others"] == pytest.approx(0.5)
    assert frame["n"].to_dict() == {"a": 4, "b": 4, "c": 2}
    assert frame["n_labels"].to_dict() == {"a": 5, "b": 4, "c": 2}


def test_per_label_specific_agreement(tiny: pd.DataFrame) -> None:
    # o_xx = 3 + 1 = 4 over n_x = 6; o_yy = 2 over n_y = 4; z only on a single-label item.
    frame = per_label_stats(encode(tiny))
    assert frame.loc["x", "specific_agreement"] == pytest.approx(2 / 3)
    assert frame.loc["y", "specific_agreement"] == pytest.approx(0.5)
    assert math.isnan(frame.loc["z", "specific_agreement"])
    assert frame["n_votes"].to_dict() == {"x": 6, "y": 4, "z": 1}
    assert frame["n_majority"].to_dict() == {"x": 2, "y": 1, "z": 0}
    assert frame.loc["x", "mean_agreement_when_majority"] == pytest.approx(5 / 6)


def test_report_keys_counts_and_exclusions(tiny: pd.DataFrame) -> None:
    report = agreement_report(tiny, config=ReportConfig(n_boot=500, seed=1))
    data = report.to_dict()
    for key in ("krippendorff_alpha", "alpha_ci", "mean_instance_agreement", "n_items", "n_annotations",
                "n_annotators", "per_annotator"):
        assert key in data
    assert data["krippendorff_alpha"] == pytest.approx(0.25)
    assert data["n_items"] == 4 and data["n_items_excluded"] == 1 and data["n_items_single_label"] == 1
    assert data["n_annotations"] == 11 and data["n_annotators"] == 3 and data["n_ties"] == 1
    assert data["mean_instance_agreement"] == pytest.approx((1 + 2 / 3 + 1 + 0.5) / 4)
    assert data["band"] == "low"
    low, high = data["alpha_ci"]
    assert low <= 0.25 <= high
    assert set(data["per_annotator"][0]) >= {"annotator", "n", "agreement_with_others", "quality"}
    assert [row["annotator"] for row in data["per_annotator"]] == ["a", "b", "c"]
    # seeded: the same interval twice, a different one with another seed
    assert agreement_report(tiny, config=ReportConfig(n_boot=500, seed=1)).alpha_ci == report.alpha_ci


def test_bootstrap_matches_explicit_item_resampling() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 400)
    counts = np.zeros((400, 3), dtype=np.int64)
    for i, t in enumerate(truth):
        for _ in range(rng.integers(2, 6)):
            counts[i, t if rng.random() < 0.7 else rng.integers(0, 3)] += 1
    fast = bootstrap_alpha_ci(counts, n_boot=4000, seed=0)
    # The straightforward bootstrap: draw item indices, recompute alpha with the package.
    draws = [krippendorff_alpha(counts[rng.integers(0, 400, 400)]) for _ in range(1500)]
    slow = np.percentile(draws, [2.5, 97.5])
    assert fast[0] == pytest.approx(slow[0], abs=0.015)
    assert fast[1] == pytest.approx(slow[1], abs=0.015)


def test_alpha_band_thresholds() -> None:
    assert alpha_band(0.8) == "reliable"
    assert alpha_band(0.7999) == "tentative"
    assert alpha_band(0.667) == "tentative"
    assert alpha_band(0.6669) == "low"
    assert alpha_band(None) == "undefined"
    assert alpha_band(float("nan")) == "undefined"


def test_alpha_undefined_when_everyone_agrees_on_one_label() -> None:
    frame = _long({"i1": {"a": "x", "b": "x"}, "i2": {"a": "x", "b": "x"}})
    report = agreement_report(frame, config=ReportConfig(model=False))
    assert report.krippendorff_alpha is None and report.alpha_ci == (None, None) and report.band == "undefined"
    assert report.mean_instance_agreement == 1.0


def test_duplicate_labels_and_unknown_labels_are_refused(tiny: pd.DataFrame) -> None:
    twice = pd.concat([tiny, tiny.iloc[[0]]])
    with pytest.raises(SynthloopError, match="annotator 'a' labelled item 'i1' twice"):
        encode(twice)
    with pytest.raises(SynthloopError, match="label 'z', which is not one of"):
        encode(tiny, labels=["x", "y"])
    with pytest.raises(SynthloopError, match="n_boot 0 must be"):
        ReportConfig(n_boot=0)


def test_label_matrix_round_trip(tiny: pd.DataFrame) -> None:
    matrix = label_matrix(tiny)
    assert matrix.shape == (5, 3)
    assert matrix.loc["i3", "c"] is np.nan or pd.isna(matrix.loc["i3", "c"])
    back = matrix_to_long(matrix).sort_values(["item_id", "annotator"]).reset_index(drop=True)
    assert back.equals(tiny.sort_values(["item_id", "annotator"]).reset_index(drop=True))


def test_label_fidelity_ties_count_as_not_equal_and_llm_labels_do_not_count() -> None:
    annotations = _long({
        "s1": {"a": "x", "b": "x", "c": "y"},  # majority x = intended x → match
        "s2": {"a": "x", "b": "y"},  # tie → not equal
        "s3": {"a": "y", "llm:model": "x"},  # human majority y = intended y → match
    })
    intended = pd.Series({"s1": "x", "s2": "y", "s3": "y", "s4": "x"})  # s4 has no labels
    result = label_fidelity(annotations, intended)
    assert result["fidelity"] == pytest.approx(2 / 3)
    assert (result["n_items"], result["n_match"], result["n_ties"], result["n_items_excluded"]) == (3, 2, 1, 1)
    assert {row["label"]: row["fidelity"] for row in result["per_label"]} == {"x": 1.0, "y": 0.5}
    assert "tie" in result["rule"]


def test_report_by_source_imported_agreement_and_fidelity(tiny: pd.DataFrame) -> None:
    synthetic = _long({"s1": {"a": "x", "b": "x"}, "s2": {"a": "x", "b": "y"}})
    items = pd.DataFrame({
        "id": ["i1", "i2", "i3", "i4", "i5", "s1", "s2", "r9"],
        "source": ["real"] * 5 + ["synthetic", "synthetic", "real"],
        "group": [None] * 5 + ["few-shot", "zero-shot", None],
        "reference_label": [None] * 5 + ["x", "x", None],
        "imported_agreement": [None] * 7 + [0.8],
    })
    report = agreement_report(pd.concat([tiny, synthetic]), items, config=ReportConfig(model=False))
    assert set(report.by_source) == {"real", "synthetic", "few-shot", "zero-shot"}
    assert report.by_source["real"]["krippendorff_alpha"] == pytest.approx(0.25)
    assert report.by_source["real"]["n_items_excluded"] == 2  # i5 (one label) and r9 (none)
    assert report.by_source["synthetic"]["n_items"] == 2
    assert report.label_fidelity["fidelity"] == 0.5  # s1 matches; s2 is a tie
    # r9 has no labels but an imported agreement: it joins the mean, and is counted
    assert report.n_items_imported_agreement == 1
    raw = [1, 2 / 3, 1, 0.5, 1, 0.5]
    assert report.mean_instance_agreement_labels == pytest.approx(sum(raw) / 6)
    assert report.mean_instance_agreement == pytest.approx((sum(raw) + 0.8) / 7)
    assert report.n_items_unlabelled == 1 and report.n_items_excluded == 2


def test_dawid_skene_matches_crowd_kit() -> None:
    from crowdkit.aggregation import DawidSkene

    rng = np.random.default_rng(7)
    accuracy = [0.9, 0.8, 0.6, 0.45, 0.95]
    rows = []
    for i in range(300):
        truth = rng.integers(0, 3)
        for w, acc in enumerate(accuracy):
            if rng.random() < 0.6:
                rows.append((i, f"w{w}", f"l{truth if rng.random() < acc else rng.integers(0, 3)}"))
    frame = pd.DataFrame(rows, columns=["item_id", "annotator", "label"])
    aggregate, quality = aggregate_with_quality(frame)
    model = DawidSkene(n_iter=100)
    expected = model.fit_predict_proba(frame.rename(columns={"item_id": "task", "annotator": "worker"}))
    expected = expected.reindex(index=aggregate.index)
    assert (aggregate["aggregate_label"] == expected.idxmax(axis=1)).all()
    np.testing.assert_allclose(aggregate["aggregate_confidence"], expected.max(axis=1), atol=1e-9)
    errors, priors = model.errors_, model.priors_
    for worker in quality.index:
        want = sum(priors[label] * errors.loc[(worker, label), label] for label in priors.index
                   if (worker, label) in errors.index)
        assert quality.loc[worker, "quality"] == pytest.approx(want, abs=1e-9)
    assert set(quality["quality"].nlargest(2).index) == {"w0", "w4"} and quality["quality"].idxmin() == "w3"


def test_model_aggregate_resolves_a_majority_tie_by_annotator_quality() -> None:
    rows = [(i, w, "x") for i in range(20) for w in ("good1", "good2")]
    rows += [(i, "bad", "y" if i % 2 else "x") for i in range(20)]
    rows += [(99, "good1", "x"), (99, "bad", "y")]  # a 1-1 tie: the reliable annotator wins
    result = model_aggregate(pd.DataFrame(rows, columns=["item_id", "annotator", "label"]))
    assert list(result.columns) == ["aggregate_label", "aggregate_confidence"]
    assert result.loc[99, "aggregate_label"] == "x"
    assert 0.5 < result.loc[99, "aggregate_confidence"] <= 1.0


def test_report_serialises_to_json(tiny: pd.DataFrame) -> None:
    import json

    report = agreement_report(tiny)
    assert isinstance(report, AgreementReport)
    parsed = json.loads(json.dumps(report.to_dict()))
    assert parsed["alpha_ci"][0] <= parsed["krippendorff_alpha"] <= parsed["alpha_ci"][1]


# --- ConvAbuse: long form (1_full) and wide form (2_splits) must agree ---------------------------------------

SEVERITY = {"1": "not_abusive", "0": "ambiguous", "-1": "mild", "-2": "strong", "-3": "very_strong"}
CONTEXT = ["conv_id", "prev_agent", "prev_user", "agent", "user"]


def _item_key(frame: pd.DataFrame) -> pd.Series:
    """ConvAbuse has no item id shared by both forms (example_no numbers rows): key on the conversation turn."""
    return pd.util.hash_pandas_object(frame[CONTEXT], index=False).map("k{:016x}".format)


def _convabuse_long(folder) -> pd.DataFrame:
    full = pd.read_csv(folder / "1_full" / "ConvAbuseEMNLPfull.csv", dtype=str, keep_default_na=False)
    onehot = full[[f"is_abuse.{v}" for v in SEVERITY]].astype(int).to_numpy()
    assert (onehot.sum(axis=1) == 1).all()
    full["label"] = np.array(list(SEVERITY.values()))[onehot.argmax(axis=1)]
    full["item"] = _item_key(full)
    # Some annotators rated an item twice (for intra-annotator agreement): keep the later rating.
    full = full.drop_duplicates(["item", "annotator_id"], keep="last")
    return full[["item", "user", "annotator_id", "label"]]


def _convabuse_wide(folder) -> pd.DataFrame:
    parts = [pd.read_csv(folder / "2_splits" / f"ConvAbuseEMNLP{name}.csv", dtype=str, keep_default_na=False)
             for name in ("train", "valid", "test")]
    wide = pd.concat(parts, ignore_index=True)
    wide["item"] = _item_key(wide)
    out = wide[["item", "user"]].copy()
    for n in range(1, 9):
        columns = [f"Annotator{n}_is_abuse.{v}" for v in SEVERITY]
        # A cell holds "1", "0", "" or, where the annotator rated twice, "1, 0": keep the later rating.
        last = wide[columns].apply(lambda col: col.str.split(",").str[-1].str.strip())
        labelled = last.ne("").any(axis=1)
        hot = last.replace("", "0").astype(int).to_numpy()
        out[f"Annotator{n}"] = np.where(labelled, np.array(list(SEVERITY.values()))[hot.argmax(axis=1)], "")
    return out


def test_convabuse_long_and_wide_imports_agree(shared_data, fresh_db) -> None:
    folder = shared_data / "convabuse"
    long_form, wide_form = _convabuse_long(folder), _convabuse_wide(folder)
    # Four conversation turns appear twice in the splits as different examples (with different annotators);
    # the long form cannot tell them apart, so both sides leave them out.
    # And four turns of the full file are in no split. Both imports keep the turns the two forms share.
    ambiguous = set(wide_form.loc[wide_form["item"].duplicated(), "item"])
    assert len(ambiguous) == 4
    shared = (set(long_form["item"]) & set(wide_form["item"])) - ambiguous
    assert len(set(long_form["item"]) - set(wide_form["item"])) == 4
    long_form = long_form[long_form["item"].isin(shared)]
    wide_form = wide_form[wide_form["item"].isin(shared)]

    labels = projects.parse_labels(list(SEVERITY.values()))
    long_project = projects.create_project(fresh_db, "convabuse-long", labels)
    wide_project = projects.create_project(fresh_db, "convabuse-wide", labels)
    importer.import_frame(fresh_db, long_project.id, long_form, importer.ImportSpec(
        text_col="user", id_col="item", annotator_col="annotator_id", annotation_col="label"))
    importer.import_frame(fresh_db, wide_project.id, wide_form, importer.ImportSpec(
        text_col="user", id_col="item", annotator_cols=tuple(f"Annotator{n}" for n in range(1, 9))))

    config = ReportConfig(n_boot=200, seed=0)
    long_report = project_agreement(fresh_db, long_project, config=config)
    wide_report = project_agreement(fresh_db, wide_project, config=config)
    assert long_report.n_items == wide_report.n_items == 4177
    assert long_report.n_annotations == wide_report.n_annotations
    assert long_report.krippendorff_alpha == pytest.approx(wide_report.krippendorff_alpha, abs=1e-12)
    assert long_report.alpha_ci == pytest.approx(wide_report.alpha_ci, abs=1e-12)
    assert 0.3 < long_report.krippendorff_alpha < 0.9
    pd.testing.assert_frame_equal(pd.DataFrame(long_report.per_annotator), pd.DataFrame(wide_report.per_annotator))

    long_items = items_agreement(fresh_db, long_project).set_index("item_id").sort_index()
    wide_items = items_agreement(fresh_db, wide_project).set_index("item_id").sort_index()
    assert long_items.index.equals(wide_items.index)
    pd.testing.assert_frame_equal(long_items, wide_items)
