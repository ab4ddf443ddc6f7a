"""Notebook 01's helpers: a classifier's confusion matrix (cl.analysis, cl.plots) and a run against a goal
(cl.stats.against_goal)."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from cl import analysis, plots, stats  # noqa: E402


def test_the_confusion_matrix_counts_true_classes_in_rows_and_answers_in_columns():
    true = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 0])
    counts = analysis.confusion_matrix(true, pred, 3)
    assert counts.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 0]]
    assert counts.dtype == torch.long and counts.sum() == len(true)


def test_a_class_never_seen_is_a_row_of_zeros():
    counts = analysis.confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 0]), 3)
    assert counts[1].tolist() == [0, 0, 0]


def test_the_confusion_plot_writes_each_row_in_percent_of_its_class():
    counts = torch.tensor([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    ax = plots.confusion(counts, ["a", "b", "c"], title="t")
    written = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert written[(0, 0)] == "75" and written[(0, 1)] == "25" and written[(1, 1)] == "50"
    assert written[(2, 2)] == "0"  # an empty class is 0 %, not a division by zero
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]


@pytest.mark.parametrize("value, goal, lower, word", [
    (85.0, 85.0, False, "met"), (84.99, 85.0, False, "not met"),
    (599.0, 600.0, True, "met"), (601.0, 600.0, True, "not met")])
def test_a_value_meets_its_goal_on_the_right_side(value, goal, lower, word):
    assert stats.against_goal(value, goal, lower_is_better=lower).endswith(f": {word})")


def test_the_goal_is_worded_with_its_unit():
    assert stats.against_goal(83.4, 85, " %") == "83.40 % (goal 85.00 %: not met)"
    assert stats.against_goal(547.2, 600, " s", 0, lower_is_better=True) == "547 s (goal 600 s: met)"
