"""Evaluation maths and the run config on tiny hand-computed inputs (exact expected values)."""

from __future__ import annotations

import math

import pytest

from core.errors import SynthloopError
from core.training.config import TrainConfig
from core.training.metrics import agreement_sweep, classification_metrics, line_fit

# Six test items: true label, predicted label, instance agreement (None: unknown, e.g. a single label).
Y_TRUE = ["a", "a", "b", "b", "a", "b"]
Y_PRED = ["a", "b", "b", "a", "a", "b"]
AGREEMENT = [1.0, 2 / 3, 1.0, 0.5, None, 2 / 3]


def test_classification_metrics_exact():
    m = classification_metrics(Y_TRUE, Y_PRED, labels=["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: TP 2, FP 1, FN 1; b: TP 2, FP 1, FN 1; c never occurs and stays out of the macro average.
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["labels"] == ["a", "b", "c"]
    assert m["confusion_matrix"] == [[2, 1, 0], [1, 2, 0], [0, 0, 0]]


def test_classification_metrics_appends_unexpected_labels_once():
    m = classification_metrics(["a", "x"], ["b", "x"], labels=["a", "b"])
    assert m["labels"] == ["a", "b", "x"]
    assert m["confusion_matrix"] == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_sweep_points_fit_and_rank_correlation_exact():
    sweep = agreement_sweep(Y_TRUE, Y_PRED, AGREEMENT)
    # γ = 1/2 keeps items 1,2,3,4,6 (item 5 has no known agreement); 2/3 keeps 1,2,3,6; 1 keeps 1,3.
    assert [p.gamma for p in sweep.points] == pytest.approx([0.5, 2 / 3, 1.0])
    assert [p.n_items for p in sweep.points] == [5, 4, 2]
    assert [p.accuracy for p in sweep.points] == pytest.approx([3 / 5, 3 / 4, 1.0])
    # γ=1/2: F1(a) = 1/2, F1(b) = 2/3; γ=2/3: F1(a) = 2/3, F1(b) = 4/5; γ=1: both 1.
    assert [p.macro_f1 for p in sweep.points] == pytest.approx([7 / 12, 11 / 15, 1.0])
    # Least squares through (1/2, 3/5), (2/3, 3/4), (1, 1): slope 111/140, intercept 59/280, R² 12321/12348.
    assert sweep.slope == pytest.approx(111 / 140)
    assert sweep.intercept == pytest.approx(59 / 280)
    assert sweep.r2 == pytest.approx(12321 / 12348)
    assert sweep.spearman_rho == pytest.approx(1.0)
    as_dict = sweep.to_dict()
    assert as_dict["sweep"][1] == {"gamma": pytest.approx(2 / 3), "n_items": 4, "accuracy": 0.75,
                                   "macro_f1": pytest.approx(11 / 15)}
    assert as_dict["sweep_r2"] == pytest.approx(12321 / 12348)


def test_sweep_treats_equal_ratios_as_one_level_and_nan_as_unknown():
    sweep = agreement_sweep(["a", "a", "b"], ["a", "b", "b"], [2 / 3, 0.66666666667, float("nan")])
    assert len(sweep.points) == 1
    assert sweep.points[0].n_items == 2
    assert sweep.points[0].accuracy == 0.5
    assert (sweep.slope, sweep.r2, sweep.spearman_rho) == (None, None, None)


def test_sweep_with_constant_accuracy_has_flat_line_and_no_r2_or_rho():
    sweep = agreement_sweep(["a", "b", "a"], ["a", "b", "a"], [0.5, 0.75, 1.0])
    assert [p.accuracy for p in sweep.points] == [1.0, 1.0, 1.0]
    assert sweep.slope == pytest.approx(0.0)
    assert sweep.intercept == pytest.approx(1.0)
    assert sweep.r2 is None and sweep.spearman_rho is None


def test_sweep_without_any_known_agreement_is_empty():
    sweep = agreement_sweep(["a"], ["b"], [None])
    assert sweep.points == [] and sweep.to_dict()["sweep_r2"] is None


def test_sweep_decreasing_accuracy_gives_negative_rho():
    # γ levels 0.5, 0.75, 1: kept sets {1,2,3}, {2,3}, {3}; only item 1 is right, so accuracy falls 1/3 → 0 → 0.
    sweep = agreement_sweep(["a", "a", "b"], ["a", "b", "a"], [0.5, 0.75, 1.0])
    assert [p.accuracy for p in sweep.points] == pytest.approx([1 / 3, 0.0, 0.0])
    assert sweep.spearman_rho == pytest.approx(-math.sqrt(3) / 2)


def test_line_fit_perfect_line():
    assert line_fit([0, 1, 2], [1, 3, 5]) == pytest.approx((2.0, 1.0, 1.0))
    assert line_fit([1, 1], [0, 1]) == (None, None, None)


def test_config_round_trip_and_data_source_name():
    config = TrainConfig(sources=["real", "few-shot", "real"], generation_job_ids=[7], min_agreement=1,
                         cap_per_label=50, seed=3)
    assert config.sources == ("real", "few-shot")
    assert config.min_agreement == 1.0
    assert config.data_source == "real+few-shot+job 7"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["sources"] == ["real", "few-shot"]
    assert config.replace(epochs=1).epochs == 1


@pytest.mark.parametrize(("changes", "message"), [
    ({"sources": ("fake",)}, r"sources='fake' is not valid: use one or more of real, zero-shot, few-shot, seeds"),
    ({"sources": ()}, r"no training data chosen"),
    ({"label_source": "gold"}, r"label_source='gold' is not valid: use one of reference, majority"),
    ({"min_agreement": 1.5}, r"min_agreement=1.5 is not valid: use a number from 0 to 1"),
    ({"epochs": 0}, r"epochs=0 is not valid: use a whole number from 1 to 1000"),
    ({"learning_rate": 0}, r"learning_rate=0 is not valid"),
    ({"cap_per_label": 0}, r"cap_per_label=0 is not valid"),
    ({"model": " "}, r"model=' ' is not valid"),
    ({"batch_size": True}, r"batch_size=True is not valid"),
])
def test_config_rejects_bad_values_with_the_fix(changes, message):
    with pytest.raises(SynthloopError, match=message):
        TrainConfig(**changes)


def test_config_from_dict_names_unknown_setting():
    with pytest.raises(SynthloopError, match=r"unknown training setting 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})
