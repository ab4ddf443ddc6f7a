"""Tests of the cl helpers notebook 07 calls: the class-pair tables across measures, the per-method
quantities, the mean of per-seed tables, and its figures (drawn off screen)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cl import analysis, difficulty, plots  # noqa: E402

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def pair_difficulty():
    """D[a, b]: {a, b} the hardest pair, then {c, d}, {a, c}, …; the diagonal is left out of the ranks."""
    d = torch.tensor([[0.5, 0.9, 0.6, 0.1],
                      [0.9, 0.5, 0.3, 0.2],
                      [0.6, 0.3, 0.5, 0.8],
                      [0.1, 0.2, 0.8, 0.5]], dtype=torch.float64)
    return d


def similarities():
    """Two measures that agree that {a, b} is the closest pair and disagree on the rest."""
    first = [[1, .9, .2, .8], [.9, 1, .1, .3], [.2, .1, 1, .4], [.8, .3, .4, 1]]
    second = [[1, .9, .8, .2], [.9, 1, .1, .3], [.8, .1, 1, .4], [.2, .3, .4, 1]]
    return {"first": torch.tensor(first).double(), "second": torch.tensor(second).double()}


def ranked():
    return {m: difficulty.ranked_class_pairs(pair_difficulty(), s, CLASSES)
            for m, s in similarities().items()}


def test_pairs_across_measures_one_row_per_pair_sorted_by_mean_rank():
    table = analysis.pairs_across_measures(ranked())
    assert len(table) == 6
    assert list(table.columns) == ["class_a", "class_b", "difficulty", "difficulty_rank", "first rank",
                                   "first label", "second rank", "second label", "mean similarity rank"]
    assert (table.iloc[0]["class_a"], table.iloc[0]["class_b"]) == ("a", "b")
    assert table.iloc[0]["mean similarity rank"] == 1.0 and table.iloc[0]["difficulty_rank"] == 1.0
    assert table["mean similarity rank"].is_monotonic_increasing
    row = table.set_index(["class_a", "class_b"]).loc[("a", "d")]
    assert row["first rank"] == 2.0 and row["second rank"] == 5.0 and row["mean similarity rank"] == 3.5
    assert row["difficulty"] == pytest.approx(0.1)


def test_labelled_everywhere_is_the_intersection_over_measures():
    tables = ranked()
    assert difficulty.labelled_pairs(tables["first"], difficulty.ANTI_CORRELATED) == {("a", "d")}
    assert difficulty.labelled_pairs(tables["second"], difficulty.ANTI_CORRELATED) == set()
    assert analysis.labelled_everywhere(tables, difficulty.ANTI_CORRELATED) == set()
    assert analysis.labelled_everywhere(tables, difficulty.CORRELATED) == {("a", "b")}


def test_semantic_quantities_per_method_and_seed():
    final = {(m, s): {"rho": {"first": 10 * i + s, "second": -s}, "same_minus_other": 0.1 * s + i}
             for i, m in enumerate(["base", "other"]) for s in (0, 1, 2)}
    values = analysis.semantic_quantities(final, ["base", "other"], [2, 0], ["first", "second"])
    assert list(values) == [("base", "ρ first"), ("base", "ρ second"), ("base", "same − other classes"),
                            ("other", "ρ first"), ("other", "ρ second"), ("other", "same − other classes")]
    assert values[("other", "ρ first")] == [12, 10]
    assert values[("base", "ρ second")] == [-2, 0]
    assert values[("other", "same − other classes")] == pytest.approx([1.2, 1.0])


def test_mean_of_tables_keeps_the_first_tables_row_order():
    index = pd.Index(["0–0.05", "0.05–0.95", "0.95–1"], name="band")
    one = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=index)
    two = pd.DataFrame({"x": [3.0, 4.0, 7.0]}, index=index)
    mean = analysis.mean_of_tables([one, two])
    assert list(mean.index) == list(index)
    assert mean["x"].tolist() == [2.0, 3.0, 5.0]


def test_class_matrices_one_labelled_panel_per_matrix():
    fig = plots.class_matrices(similarities(), CLASSES, colorbar={"first": "unit one"}, xlabel="x", vmin=0)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["first", "second"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == CLASSES
    colorbars = [ax for ax in fig.axes if not ax.get_title()]
    assert [ax.get_ylabel() for ax in colorbars] == ["unit one", ""]


def test_boxes_one_box_per_group_float_names_rounded():
    levels = {0.125: torch.tensor([0.1, 0.2]), difficulty.SAME_CLASS: torch.tensor([0.9, 0.8, 0.7])}
    fig = plots.boxes({"m": levels, "n": levels}, ylabel="percentile")
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.12", "same class"]
    assert fig.axes[1].get_ylabel() == "percentile"


def test_consistency_three_lines_per_run_one_legend_entry_each():
    table = pd.DataFrame({"observed": [0.5, 0.7], "within_class_pairs": [0.3, 0.3], "global": [0.0, 0.01]},
                         index=pd.Index([1, 2], name="epoch"))
    ax = plots.consistency({0: table, 1: table + 0.01})
    assert len(ax.lines) == 6
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "observed", "shuffled within class pairs", "shuffled globally"]


def test_class_pair_examples_draws_the_first_images_of_each_class():
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 2, 2) * 40
    labels = torch.tensor([1, 0, 1, 0, 1, 2])
    fig = plots.class_pair_examples([("close", ("a", "b"))], images, labels, ["a", "b", "c"])
    drawn = [ax.images[0].get_array()[0, 0] * 255 for ax in fig.axes]
    assert drawn == pytest.approx([40, 120, 0, 80])  # class a: images 1 and 3; class b: images 0 and 2
    assert fig.axes[0].get_title() == "a\n(close)"
    assert plots.class_pair_examples([], images, labels, ["a", "b", "c"]) is None
