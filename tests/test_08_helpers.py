"""Notebook 08's helpers: the verdict of a design from its accuracy and cost intervals, the sentences
that word the transfer bar and the discussion answers, and the computations on its runs."""
import math

import pandas as pd
import pytest

from cl import analysis, stats


def interval(mean, low, high, n=3):
    return stats.Interval(mean, low, high, n)


def accuracy(mean, low, high, n=3):
    return stats.Difference("design", "moco", "knn_top1", interval(mean, low, high, n))


def records(name, knn, seconds=(60.0, 120.0, 180.0), epochs=4):
    return [{"run": f"{name}_s{seed}", "config": {"seed": seed, "epochs": epochs},
             "final": {"knn_top1": k, "linear_top1": k - 1, "alignment": 0.5, "uniformity": -2.0,
                       "train_seconds": s}}
            for seed, (k, s) in enumerate(zip(knn, seconds))]


def test_cost_and_saved_share_word_the_interval_and_claim_nothing_on_too_few_rounds():
    cheaper = interval(0.62, 0.60, 0.64)
    assert stats.cost_text(cheaper) == "0.62× [0.60, 0.64]"
    assert stats.saved_share(cheaper) == "38.0% [36.0%, 40.0%] of a step"
    assert stats.saved_share(interval(0.98, 0.95, 1.01)).startswith("no share of a step resolved (0.980×")
    few = interval(0.5, math.nan, math.nan, n=2)
    assert stats.cost_text(few) == "0.50× (2 rounds, no claim)"
    assert stats.saved_share(few).startswith("no share of a step resolved")


@pytest.mark.parametrize("difference, cost, kind", [
    (accuracy(0.8, 0.2, 1.4), interval(1.3, 1.2, 1.4), "buys accuracy"),       # better, dearer
    (accuracy(-0.2, -0.9, 0.5), interval(0.6, 0.5, 0.7), "saves work"),        # cheaper, within 1 point
    (accuracy(-0.5, -1.1, 0.1), interval(0.6, 0.5, 0.7), "helps neither"),     # cheaper, lower end ≤ −1
    (accuracy(-0.2, -0.9, 0.5), interval(0.9, 0.8, 1.0), "helps neither"),     # not resolved cheaper
    (accuracy(-0.2, -0.9, 0.5), interval(1.0, 0.9, 1.1), "helps neither"),
    (accuracy(2.0, math.nan, math.nan, n=1), interval(0.6, 0.5, 0.7), "no claim"),
])
def test_a_design_buys_accuracy_saves_work_or_helps_neither_by_its_thresholds(difference, cost, kind):
    lever = stats.Leverage(difference, cost)
    assert lever.kind == kind
    assert lever.helps == (kind in ("buys accuracy", "saves work"))
    assert lever.sentence().startswith(kind if kind != "no claim" else "+2.00 (1 seed, no claim) at 0.60×")
    assert lever.sentence().count("no claim") <= 1


def test_which_designs_help_is_a_sentence_or_no_claim():
    helps = stats.Leverage(accuracy(0.8, 0.2, 1.4), interval(1.3, 1.2, 1.4))
    neither = stats.Leverage(accuracy(-3.0, -4.0, -2.0), interval(1.3, 1.2, 1.4))
    assert stats.helping({"a": helps, "b": neither}, "them") == "Of them, a helps."
    assert stats.helping({"a": helps, "c": helps}, "them") == "Of them, a and c help."
    assert stats.helping({"b": neither}, "them").startswith("None of them helps: none is both cheaper")
    one_seed = stats.Leverage(accuracy(2.0, math.nan, math.nan, n=1), interval(0.6, 0.5, 0.7))
    assert stats.helping({"a": helps, "d": one_seed}, "them") == "1 seed: no claim."


def test_clearing_names_who_clears_the_bar_and_what_is_resolved_between_them():
    resolved = stats.Difference("b", "a", "knn_top1", interval(-2.0, -3.0, -1.0))
    unresolved = stats.Difference("c", "a", "knn_top1", interval(0.1, -0.5, 0.7))
    gains = {"a": interval(5.0, 4.0, 6.0), "b": interval(0.5, -1.0, 2.0), "c": interval(6.0, 5.0, 7.0)}
    text = stats.clearing(gains, [resolved, unresolved], "the bar", 60.0)
    assert text == "a and c clear the bar; resolved between them: b − a (worse)."
    below = {"a": interval(-1.0, -2.0, 0.5)}
    text = stats.clearing(below, [unresolved], "the bar", 60.0)
    assert text.startswith("no condition is resolved above the bar (its own kNN top-1: 60.00 %); "
                           "no difference")
    assert "either" in text
    one_seed = {"a": interval(1.0, math.nan, math.nan, n=1)}
    assert stats.clearing(one_seed, [], "the bar", 60.0) == "1 seed: no claim."


def test_answers_compare_labelled_pairs_and_say_what_was_not_run():
    results = {"a": records("a", [80.0, 81.0, 82.0]), "moco": records("moco", [78.0, 78.5, 79.5])}
    text = stats.answer(results, {"a − moco": ("a", "moco"), "gone": ("b", "moco"), "said": "as worded"})
    assert text == (f"a − moco: {stats.compared(results, 'a', 'moco')}; gone: not run at this scale; "
                    "said: as worded")
    assert stats.answers(results, {"Q?": {"said": "as worded"}}) == "* **Q?**: said: as worded"


def test_diagnostic_difference_pairs_by_seed():
    diagnostics = {"x": pd.DataFrame({"effective rank": [10.0, 12.0, 14.0]}, index=[0, 1, 2]),
                   "control": pd.DataFrame({"effective rank": [4.0, 5.0, 6.0]}, index=[2, 1, 0])}
    difference = analysis.diagnostic_difference(diagnostics, "x", "control")
    assert difference == stats.t_interval([10.0 - 6.0, 12.0 - 5.0, 14.0 - 4.0])  # by seed, not by row


def test_the_overview_reads_every_condition_best_first_with_its_setting_and_minutes():
    results = {"low": records("low", [70.0, 71.0, 72.0]), "high": records("high", [80.0, 81.0, 82.0])}
    table = analysis.overview(results)
    assert list(table.index) == ["high", "low"]
    assert table.loc["high", "knn_top1"] == "81.00 ± 1.00"
    assert table.loc["high", "train minutes"] == 2.0 and table.loc["high", "epochs"] == 4
    assert table.loc["high", "setting"].startswith("queue K=")
