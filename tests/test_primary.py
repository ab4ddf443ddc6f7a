"""The primary contrasts (cl.primary): Holm's correction, the two tests, the declared family."""
import math

import pytest
from scipy import stats as scipy_stats

import cl
from cl import primary


def test_holm_adjusts_in_ascending_order_and_stays_monotone():
    # ascending: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, then 0.04·1 = 0.04 lifted to 0.06
    assert primary.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert primary.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert primary.holm([0.02]) == [0.02]


def test_the_two_tests_are_students_t_on_known_samples():
    values = [0.31, -0.12, 0.05, 0.44, 0.18]
    assert primary.superiority_p(values) == pytest.approx(scipy_stats.ttest_1samp(values, 0).pvalue)
    expected = scipy_stats.ttest_1samp(values, -0.5, alternative="greater").pvalue
    assert primary.non_inferiority_p(values, 0.5) == pytest.approx(expected)
    assert primary.non_inferiority_p([1.0, 1.0, 1.0], 1.5) == 0.0  # no spread: the mean decides
    assert primary.non_inferiority_p([-2.0, -2.0, -2.0], 1.5) == 1.0
    # the wider the margin, the easier non-inferiority: the p-value falls as the margin grows
    assert primary.non_inferiority_p(values, 0.0) > primary.non_inferiority_p(values, 0.2) > \
        primary.non_inferiority_p(values, 1.0)


def test_expected_half_width_and_why_the_primary_conditions_have_five_seeds():
    assert primary.expected_half_width(1.0, 5) == pytest.approx(2.776445 / math.sqrt(5), rel=1e-5)
    # Holm's first step over five contrasts (level 0.05 / 5, two-sided) with 3 seeds needs t ≈ 9.9
    assert scipy_stats.t.ppf(1 - 0.01 / 2, 2) == pytest.approx(9.925, abs=1e-3)
    assert scipy_stats.t.ppf(1 - 0.01 / 2, 4) < 4.7  # with 5 seeds


def runs(means: dict[str, list[float]]) -> dict[str, list[dict]]:
    return {name: [{"config": {"seed": s}, "final": {"knn_top1": v}} for s, v in enumerate(values)]
            for name, values in means.items()}


FAMILY = primary.Family((
    primary.Contrast("learning", "Learns?", "moco", "untrained", "superiority", 0.8),
    primary.Contrast("near", "Nearly full?", "hard", "moco", "non_inferiority", 0.5, "learning", 0.25),
    primary.Contrast("same", "Same?", "other", "moco", "superiority", 0.5)), 0.05, "knn_top1")


def test_tested_contrasts_take_their_margin_from_the_named_contrast_and_word_the_corrected_verdict():
    results = runs({"untrained": [79.0, 79.5, 79.2, 78.8, 79.4], "moco": [81.0, 81.6, 81.1, 81.0, 81.5],
                    "hard": [80.9, 81.5, 81.2, 80.8, 81.5], "other": [81.3, 81.2, 81.0, 81.4, 81.2]})
    learning, near, same = primary.tested(results, FAMILY)
    assert learning.verdict == "better" and learning.rejected
    assert near.margin == pytest.approx(0.25 * learning.difference.mean)
    assert near.verdict == f"not worse by {near.margin:.2f} points or more"
    # tested on d + a quarter of learning, per seed: the margin's own noise is in the test
    combined = primary.margin_combined(results, FAMILY, FAMILY.contrasts[1])
    assert near.p == pytest.approx(primary.non_inferiority_p(combined, 0.0))
    assert not same.rejected and same.verdict == "no difference resolved after correction"
    adjusted = primary.holm([learning.p, near.p, same.p])
    assert [learning.adjusted, near.adjusted, same.adjusted] == pytest.approx(adjusted)
    assert "Holm-adjusted p" in learning.sentence and "**better**" in learning.sentence


def test_one_seed_claims_nothing_and_missing_conditions_are_named():
    results = runs({"untrained": [79.0], "moco": [81.0], "hard": [80.0], "other": [81.0]})
    verdicts = primary.tested(results, FAMILY)
    assert all(math.isnan(t.adjusted) and t.verdict == "1 seed, no claim" for t in verdicts)
    with pytest.raises(ValueError, match="need the conditions other"):
        primary.tested({k: v for k, v in results.items() if k != "other"}, FAMILY)


def test_the_declared_family_is_read_and_checked(tmp_path):
    family = primary.declared(cl.PARAMS / "primary.yaml")
    assert 1 <= len(family.contrasts) <= 5 and family.level == 0.05
    assert {"moco", "control_untrained", "hardest_5pct", "random_5pct"} <= set(family.conditions)
    bad = tmp_path / "primary.yaml"
    bad.write_text("contrasts:\n  a: {question: q, a: x, b: y, test: bigger, planning_sd: 1}\n")
    with pytest.raises(primary.ContrastError, match=rf"^{bad}: contrast 'a': test must be one of"):
        primary.declared(bad)
    bad.write_text("contrasts:\n  a: {question: q, a: x, b: y, test: non_inferiority, planning_sd: 1}\n")
    with pytest.raises(primary.ContrastError, match="margin_of"):
        primary.declared(bad)


def test_the_plan_gives_each_contrast_its_expected_half_widths():
    plan = primary.plan(FAMILY, 5)
    expected = round(primary.expected_half_width(0.8, 5), 2)
    assert plan.loc["learning", "expected ± at 95 %, 5 seeds"] == expected
    assert plan.loc["near", "margin"] == "0.25 × (learning)" and plan.loc["same", "test"] == "superiority"
    assert plan.loc["learning", "expected ± at 98%"] > plan.loc["learning", "expected ± at 95 %, 5 seeds"]
    needed = round(scipy_stats.t.ppf(1 - 0.05 / 3 / 2, 4), 2)
    assert plan.loc["learning", "|t| needed at Holm's first step"] == needed


def test_the_longer_check_reads_each_verdicts_direction_at_the_renamed_conditions():
    results = runs({"untrained": [79.0, 79.5, 79.2], "moco": [81.0, 81.6, 81.1], "hard": [81.2, 81.9, 81.4],
                    "other": [81.1, 81.5, 81.3], "moco_long": [83.0, 83.5, 83.2],
                    "hard_long": [82.0, 82.1, 82.2],
                    "other_long": [82.0, 82.6, 82.1]})
    verdicts = primary.tested(results, FAMILY)
    renamed = lambda name: name if name == "untrained" else f"{name}_long"
    table = primary.check(results, verdicts, renamed, FAMILY)
    assert table.loc["learning", "a − b"] == "moco_long − untrained"
    assert table.loc["learning", "verdict holds"] == "yes"
    # hard_long − moco_long ≈ −1.13, the margin a quarter of moco_long − untrained ≈ 1.0: not within it
    assert verdicts[1].rejected and table.loc["near", "verdict holds"] == "no"
    assert not verdicts[2].rejected and table.loc["same", "verdict holds"] == "no primary verdict"


def test_the_test_set_sentence_reads_the_accuracy_and_the_size_of_the_test_set():
    records = [{"config": {"dataset": "fashion_mnist", "test_subset": 0}, "final": {"knn_top1": 81.0}}]
    assert primary.test_set_sd(81.0, 10_000) == pytest.approx(100 * math.sqrt(0.81 * 0.19 / 10_000))
    sentence = primary.test_set_sentence(records)
    assert "81.0 % measured on 10,000 test images would move by ±0.39 points" in sentence
