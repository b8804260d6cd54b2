"""Issue 11, items 8, 9 and 11 — no silent wrong result out: the study trains what its table says (label source,
empty and identical runs), diversity is compared at one set size (small sources left out, with a note), and
small γ sweeps and Table 1 rows of different label sources are flagged. Exact values on tiny projects."""

from __future__ import annotations

import pytest

from core.training.metrics import agreement_sweep, sweep_fit_note

# --- item 11: small γ sweeps are flagged -------------------------------------------------------------------

FEW_POINTS = ("R² and ρ are not meaningful: only 3 thresholds (at least 5 are needed) and only 2 items at"
              " γ = 1.00 (at least 30 are needed at every γ)")


def _levels(counts: list[int]) -> tuple[list[str], list[str], list[float]]:
    """Items at agreement levels 0.2, 0.4, … (``counts[i]`` items at level i); the first of each level is wrong."""
    y_true, y_pred, agreement = [], [], []
    for level, count in enumerate(counts):
        for k in range(count):
            y_true.append("a")
            y_pred.append("b" if k == 0 else "a")
            agreement.append(round(0.2 * (level + 1), 1))
    return y_true, y_pred, agreement


def test_sweep_with_few_thresholds_and_items_says_r2_and_rho_are_not_meaningful() -> None:
    sweep = agreement_sweep(["a", "a", "b", "b", "a", "b"], ["a", "b", "b", "a", "a", "b"],
                            [1.0, 2 / 3, 1.0, 0.5, None, 2 / 3])
    result = sweep.to_dict()
    assert [p["n_items"] for p in result["sweep"]] == [5, 4, 2]
    assert result["sweep_r2"] == pytest.approx(12321 / 12348)  # still reported, but flagged
    assert result["sweep_fit_meaningful"] is False
    assert result["sweep_fit_note"] == FEW_POINTS
    assert sweep_fit_note(result["sweep"]) == FEW_POINTS  # the same rule on a stored sweep


def test_sweep_with_five_thresholds_of_thirty_items_is_meaningful() -> None:
    sweep = agreement_sweep(*_levels([1, 1, 1, 1, 30])).to_dict()
    assert [p["n_items"] for p in sweep["sweep"]] == [34, 33, 32, 31, 30]
    assert (sweep["sweep_fit_meaningful"], sweep["sweep_fit_note"]) == (True, None)
    too_few_items = agreement_sweep(*_levels([1, 1, 1, 1, 29])).to_dict()
    assert too_few_items["sweep_fit_note"] == ("R² and ρ are not meaningful: only 29 items at γ = 1.00 (at least 30"
                                               " are needed at every γ)")
    four = agreement_sweep(*_levels([40, 40, 40, 40])).to_dict()
    assert four["sweep_fit_note"] == "R² and ρ are not meaningful: only 4 thresholds (at least 5 are needed)"
    assert agreement_sweep(["a"], ["a"], [None]).to_dict()["sweep_fit_note"] == (
        "R² and ρ are not meaningful: only 0 thresholds (at least 5 are needed)")
