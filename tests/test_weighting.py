"""Selecting and weighting synthetic rows, on seeded Gaussian clusters (one per label) in 16 dimensions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from goldloop.errors import ConfigError, StageError
from goldloop.weighting import (MIN_ROWS_FOR_CV, RowChoice, SelectionSettings, importance_weights,
                                label_thresholds, select_synthetic)

LABELS = ("a", "b", "c")
DIM = 16


def centre(label: str) -> np.ndarray:
    """Each label's cluster sits on its own axis, 4 units out (noise has standard deviation 1)."""
    c = np.zeros(DIM)
    c[LABELS.index(label)] = 4.0
    return c


class Clusters:
    """Seeded draws around label centres (or any point)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int, label: str | None = None, at: np.ndarray | None = None) -> np.ndarray:
        point = centre(label) if at is None else at
        return point + self.rng.normal(size=(n, DIM))

    def gold(self, per_label: int = 12) -> tuple[np.ndarray, list[str]]:
        return (np.vstack([self.draw(per_label, label) for label in LABELS]),
                [label for label in LABELS for _ in range(per_label)])


def kept(choices: list[RowChoice], rows: range | list[int]) -> list[bool]:
    return [choices[i].keep for i in rows]


@pytest.fixture
def mixed():
    """Gold: 12 rows per label. Synthetic: 12 on-label rows per label (rows 0-35), then 6 rows
    labelled 'a' but drawn from b's cluster (rows 36-41)."""
    data = Clusters(0)
    gX, gy = data.gold()
    sX = np.vstack([data.draw(12, label) for label in LABELS] + [data.draw(6, "b")])
    sy = [label for label in LABELS for _ in range(12)] + ["a"] * 6
    return gX, gy, sX, sy


def test_on_label_rows_are_kept_and_rows_of_another_cluster_dropped(mixed):
    gX, gy, sX, sy = mixed
    choices = select_synthetic(gX, gy, sX, sy)
    assert len(choices) == len(sy)
    on_label, off_label = range(36), range(36, 42)
    # The default threshold is the 0.2 quantile of gold's own cross-validated p, so a few
    # on-label drafts that look less typical than most real rows fall under it.
    assert sum(kept(choices, on_label)) >= 0.6 * 36
    assert not any(kept(choices, off_label))
    for i in off_label:
        assert "under the label's threshold" in choices[i].reason
        assert "nearest gold rows disagree" in choices[i].reason
        assert choices[i].weight == 0.0
    lenient = select_synthetic(gX, gy, sX, sy, SelectionSettings(confidence_quantile=0.0))
    assert sum(kept(lenient, on_label)) >= 0.9 * 36
    assert not any(kept(lenient, off_label))


def test_knn_agreement_drops_drafts_that_a_lax_threshold_lets_through():
    """One 'a' gold row sits in b's cluster (a labelling slip), so a's weakest cross-validated p is
    near zero and the confidence rule with quantile 0 lets anything through; the nearest gold
    rows of drafts labelled 'a' in b's cluster are still mostly 'b'."""
    data = Clusters(0)
    gX, gy = data.gold(10)
    gX, gy = np.vstack([gX, data.draw(1, "b")]), gy + ["a"]
    sX, sy = data.draw(4, "b"), ["a"] * 4
    settings = SelectionSettings(confidence_quantile=0.0, min_confidence=0.0)
    choices = select_synthetic(gX, gy, sX, sy, settings)
    assert not any(c.keep for c in choices)
    for c in choices:
        assert c.confidence >= c.threshold
        assert c.reason.startswith("dropped: nearest gold rows disagree: 3 nearest gold rows (cosine ")
        assert "'b'" in c.reason
    without_knn = select_synthetic(gX, gy, sX, sy, SelectionSettings(confidence_quantile=0.0, min_confidence=0.0,
                                                                      knn_agreement=False))
    assert all(c.keep for c in without_knn)
    assert all("nearest gold rows" not in c.reason for c in without_knn)


def test_rows_that_look_real_weigh_more_than_rows_only_drafts_occupy():
    """Drafts of 'a' come in two groups: around a's gold cluster, and around a point between
    a and b, 6 units out along an axis no gold row uses. The synthetic classifier is sure of
    'a' in both places; the gold classifier only near a's cluster."""
    data = Clusters(1)
    gX, gy = data.gold(10)
    off = (centre("a") + centre("b")) / 2
    off[5] = 6.0
    sX = np.vstack([data.draw(10, "a"), data.draw(10, at=off), data.draw(10, "b"), data.draw(10, "c")])
    sy = ["a"] * 20 + ["b"] * 10 + ["c"] * 10
    settings = SelectionSettings(weighting="importance")
    w = importance_weights(gX, gy, sX, sy, settings)
    assert w.shape == (40,)
    assert np.median(w[:10]) > 0.8
    assert np.median(w[10:20]) < 0.5
    assert w[:10].mean() > 2 * w[10:20].mean()
    assert np.all((w >= settings.weight_floor) & (w <= settings.weight_cap))
    # select_synthetic multiplies base_weight into the same ratios for the rows it keeps.
    choices = select_synthetic(gX, gy, sX, sy, settings)
    for c, ratio in zip(choices, w):
        if c.keep:
            assert c.weight == pytest.approx(settings.base_weight * ratio)
            assert "p_real/p_syn = " in c.reason


def test_the_cap_per_label_holds_and_keeps_the_most_confident_rows():
    data = Clusters(2)
    gX, gy = data.gold(10)
    sX = np.vstack([data.draw(15, label) for label in LABELS])
    sy = [label for label in LABELS for _ in range(15)]
    settings = SelectionSettings(confidence_quantile=0.0, min_confidence=0.0, knn_agreement=False, max_per_gold=0.5)
    uncapped = select_synthetic(gX, gy, sX, sy, SelectionSettings(confidence_quantile=0.0, min_confidence=0.0,
                                                                   knn_agreement=False, max_per_gold=10.0))
    choices = select_synthetic(gX, gy, sX, sy, settings)
    for label in LABELS:
        rows = [i for i, y in enumerate(sy) if y == label]
        passing = [i for i in rows if uncapped[i].keep]
        assert len(passing) > 5                            # the cap has something to cut
        kept_rows = [i for i in rows if choices[i].keep]
        capped = [i for i in passing if not choices[i].keep]
        assert len(kept_rows) == 5                         # 0.5 per gold row x 10 gold rows
        assert min(choices[i].confidence for i in kept_rows) >= max(choices[i].confidence for i in capped)
        lowest = min(choices[i].confidence for i in kept_rows)
        for i in capped:
            reason = choices[i].reason
            assert f"over the cap for '{label}': at most 5 drafts (0.5 per gold row x 10 gold rows)" in reason
            assert f"p({label})={choices[i].confidence:.3f}" in reason
            assert f"the lowest kept {lowest:.3f}" in reason


def test_reasons_name_the_rule_and_the_numbers(mixed):
    gX, gy, sX, sy = mixed
    settings = SelectionSettings()
    choices = select_synthetic(gX, gy, sX, sy, settings)
    thresholds = label_thresholds(gX, gy, settings)
    dropped = [(c, y) for c, y in zip(choices, sy) if not c.keep and "threshold" in c.reason]
    assert dropped
    for c, label in dropped:
        assert c.threshold == pytest.approx(thresholds[label])
        assert c.confidence < c.threshold
        assert (f"p({label})={c.confidence:.3f} under the label's threshold {c.threshold:.3f} "
                f"(the 0.2 quantile of its 12 gold rows' cross-validated p)") in c.reason
    for c, label in zip(choices, sy):
        if c.keep:
            assert c.reason.startswith(f"kept: p({label})={c.confidence:.3f} at or above the threshold "
                                       f"{c.threshold:.3f}; 3 nearest gold rows")
            assert c.reason.endswith(f"weight {settings.base_weight:g} (flat)")
            assert c.weight == settings.base_weight
    importance = SelectionSettings(weighting="importance")
    for c, label in zip(select_synthetic(gX, gy, sX, sy, importance), sy):
        if c.keep:
            assert c.reason.endswith(f"= {c.weight:.3f}")


def test_thresholds_are_quantiles_of_cross_validated_gold_confidence(mixed):
    gX, gy, _, _ = mixed
    strict = label_thresholds(gX, gy, SelectionSettings(confidence_quantile=0.8))
    loose = label_thresholds(gX, gy, SelectionSettings(confidence_quantile=0.0))
    assert set(strict) == set(LABELS)
    for label in LABELS:
        assert 0.0 < loose[label] <= strict[label] < 1.0
    floored = label_thresholds(gX, gy, SelectionSettings(confidence_quantile=0.0, min_confidence=0.999999))
    assert all(v == pytest.approx(0.999999) for v in floored.values())


def test_selection_is_deterministic_given_the_seed(mixed):
    gX, gy, sX, sy = mixed
    first = select_synthetic(gX, gy, sX, sy, SelectionSettings(seed=3))
    second = select_synthetic(gX.copy(), list(gy), sX.copy(), list(sy), SelectionSettings(seed=3))
    assert first == second
    assert [c.to_json() for c in first] == [c.to_json() for c in second]
    assert np.array_equal(importance_weights(gX, gy, sX, sy), importance_weights(gX, gy, sX, sy))


def test_a_label_with_one_gold_row_gets_the_chance_threshold():
    data = Clusters(3)
    gX, gy = data.gold(10)
    lone = np.zeros(DIM)
    lone[3] = 4.0
    gX, gy = np.vstack([gX, lone + data.rng.normal(size=(1, DIM))]), gy + ["d"]
    sX = np.vstack([data.draw(5, at=lone), data.draw(5, "a")])
    sy = ["d"] * 5 + ["a"] * 5
    settings = SelectionSettings()
    thresholds = label_thresholds(gX, gy, settings)
    assert thresholds["d"] == pytest.approx(max(1 / 4, settings.min_confidence))
    choices = select_synthetic(gX, gy, sX, sy, settings)
    assert len(choices) == 10
    for c in choices[:5]:
        assert c.threshold == pytest.approx(0.25)
        assert math.isfinite(c.confidence)
    # d's single gold row is among their nearest neighbours; the cap (3 per gold row) keeps 3
    assert sum(c.keep for c in choices[:5]) == 3
    assert any("over the cap for 'd': at most 3 drafts (3 per gold row x 1 gold row)" in c.reason for c in choices)
    assert all(c.weight <= settings.base_weight * settings.weight_cap for c in choices)
    dropped = [c for c in choices[:5] if not c.keep and "threshold" in c.reason]
    assert dropped
    for c in dropped:
        assert f"1 gold row, too few to cross-validate (needs {MIN_ROWS_FOR_CV})" in c.reason


def test_weights_are_finite_and_bounded(mixed):
    gX, gy, sX, sy = mixed
    for settings in (SelectionSettings(), SelectionSettings(weighting="importance"),
                     SelectionSettings(weight_cap=1.5, weight_floor=0.5, base_weight=0.2, weighting="importance",
                                       confidence_quantile=0.0, knn_agreement=False)):
        choices = select_synthetic(gX, gy, sX, sy, settings)
        low, high = settings.weight_floor * settings.base_weight, settings.weight_cap * settings.base_weight
        for c in choices:
            assert math.isfinite(c.weight) and math.isfinite(c.confidence)
            if c.keep:
                assert low - 1e-12 <= c.weight <= high + 1e-12
            else:
                assert c.weight == 0.0
        w = importance_weights(gX, gy, sX, sy, settings)
        assert np.all(np.isfinite(w)) and w.min() >= settings.weight_floor and w.max() <= settings.weight_cap


def test_p_syn_fallbacks_weigh_base_weight_and_say_why():
    data = Clusters(4)
    gX, gy = data.gold(10)
    settings = SelectionSettings(confidence_quantile=0.0, knn_agreement=False, weighting="importance")
    one_label = select_synthetic(gX, gy, data.draw(6, "a"), ["a"] * 6, settings)
    assert any(c.keep for c in one_label)
    for c in one_label:
        if c.keep:
            assert c.weight == pytest.approx(settings.base_weight)
            assert "all synthetic rows hold one label ('a'), so p_syn cannot be estimated" in c.reason
    sX = np.vstack([data.draw(6, "a"), data.draw(2, "b")])
    few = select_synthetic(gX, gy, sX, ["a"] * 6 + ["b"] * 2, settings)
    for c in few[6:]:
        if c.keep:
            assert c.weight == pytest.approx(settings.base_weight)
            assert f"'b' has 2 synthetic rows, too few to estimate p_syn (needs {MIN_ROWS_FOR_CV})" in c.reason
    assert any(c.keep for c in few[6:])


def test_a_label_without_gold_rows_is_dropped():
    data = Clusters(5)
    gX, gy = data.gold(10)
    sX = np.vstack([data.draw(4, "a"), data.draw(3, at=centre("a") * 0)])
    choices = select_synthetic(gX, gy, sX, ["a"] * 4 + ["z"] * 3)
    for c in choices[4:]:
        assert not c.keep and c.weight == 0.0 and c.confidence == 0.0
        assert "label 'z' has no gold rows" in c.reason and "ingest gold rows of 'z' first" in c.reason


def test_bad_inputs_and_settings_are_named():
    data = Clusters(6)
    gX, gy = data.gold(4)
    sX = data.draw(3, "a")
    assert select_synthetic(gX, gy, np.zeros((0, DIM)), []) == []
    with pytest.raises(StageError, match="gold_X has 12 rows but gold_y has 11 labels"):
        select_synthetic(gX, gy[:-1], sX, ["a"] * 3)
    with pytest.raises(StageError, match="at least two labels; gold_y has 1"):
        select_synthetic(gX[:4], gy[:4], sX, ["a"] * 3)
    with pytest.raises(StageError, match="syn_X rows have 5 dimensions but gold_X rows have 16"):
        importance_weights(gX, gy, sX[:, :5], ["a"] * 3)
    bad = sX.copy()
    bad[1, 2] = np.nan
    with pytest.raises(StageError, match="syn_X row 1 holds NaN"):
        select_synthetic(gX, gy, bad, ["a"] * 3)
    with pytest.raises(ConfigError, match="SelectionSettings.weight_cap must be finite and at least 1"):
        SelectionSettings(weight_cap=0.5)
    with pytest.raises(ConfigError, match="SelectionSettings.confidence_quantile must be between 0 and 1"):
        SelectionSettings(confidence_quantile=1.5)
