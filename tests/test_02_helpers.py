"""The helpers notebook 02 reads, words and draws its results with: the bands of a contrast with the
queue, a share over seeds against a reference, a margin a difference clears, and its three figures."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cl import analysis, negatives, plots, stats  # noqa: E402


def contrast(n=4, keys=2000):
    """n queries against ``keys`` keys whose similarity falls with the index; the 10 most similar keys of
    every row share the query's class, the others one key in ten; the last key is the query's own (-inf)."""
    neg = torch.linspace(0.9, -0.5, keys).repeat(n, 1)
    neg[:, -1] = -math.inf
    same = torch.arange(keys).remainder(10).eq(0).repeat(n, 1)
    same[:, :10] = True
    labels = torch.zeros(n, dtype=torch.long)
    pos = torch.full((n,), 0.95)
    return analysis.QueueContrast(torch.arange(n), labels, torch.zeros(n, 8), pos, neg, same)


def test_band_table_reads_what_each_band_holds():
    c = contrast()
    table = analysis.band_table(c, t=0.1)
    assert list(table.index) == list(negatives.BAND_NAMES)
    assert table.loc["hardest 0.1%", "same-class fraction"] == 1  # the 1 hardest of 1999 finite keys
    # ranks 1..18 (⌊0.001·1999⌋ to ⌊0.01·1999⌋): keys 1..9 forced same-class, and key 10
    assert table.loc["0.1-1%", "same-class fraction"] == pytest.approx(10 / 18)
    assert table["negatives per query"].sum() == 1999  # the query's own key excluded
    assert table["gradient share"].sum() == pytest.approx(1)
    assert table["gradient share"].iloc[0] > table["gradient share"].iloc[-1]  # the hardest weigh most


def test_same_class_rate_counts_only_the_finite_negatives():
    c = contrast(n=2, keys=100)
    # keys 0..9 forced same-class, then 10, 20, ..., 90: 9 more; key 99 (not same-class) is excluded
    assert analysis.same_class_rate(c) == pytest.approx(19 / 99)


def test_hardest_filled_band_skips_a_band_one_table_leaves_empty():
    full = pd.DataFrame({"same-class fraction": [0.5, 0.4, 0.2]}, index=["a", "b", "c"])
    empty_first = pd.DataFrame({"same-class fraction": [math.nan, 0.3, 0.1]}, index=["a", "b", "c"])
    assert analysis.hardest_filled_band([full]) == "a"
    assert analysis.hardest_filled_band([full, empty_first]) == "b"
    with pytest.raises(ValueError, match="no band"):
        analysis.hardest_filled_band([pd.DataFrame({"same-class fraction": [math.nan]}, index=["a"])])


@pytest.mark.parametrize("values, reference, expected", [
    ([0.6, 0.65, 0.7], 0.1, "65 % [53 %, 77 %] over 3 seeds, above the 10 % of the queue"),
    ([0.05, 0.2, 0.1], 0.1, "12 % [-7 %, 31 %] over 3 seeds, not resolved from the 10 % of the queue"),
    ([0.01, 0.02, 0.03], 0.1, "2 % [0 %, 4 %] over 3 seeds, below the 10 % of the queue"),
    ([0.6], 0.1, "60 % (1 seed, no claim), against the 10 % of the queue"),
])
def test_share_interval_places_the_interval_against_the_reference(values, reference, expected):
    assert stats.share_interval(values, reference, "the queue") == expected


def test_share_interval_without_a_reference_is_the_interval_alone():
    assert stats.share_interval([0.6, 0.65, 0.7], digits=1) == "65.0 % [52.6 %, 77.4 %] over 3 seeds"


@pytest.mark.parametrize("low, n, expected", [
    (-0.42, 3, "shown (lower end -0.42 > -1)"),
    (-1.8, 3, "not shown (lower end -1.80 ≤ -1)"),
    (-0.42, 1, "1 seed, no claim"),
])
def test_margin_shown(low, n, expected):
    d = stats.Difference("hardest_5pct", "moco", "knn_top1", stats.Interval(low + 0.5, low, low + 1, n))
    assert stats.margin_shown(d, -1) == expected


def test_the_three_figures_draw_what_they_are_given():
    kept = {"hardest": torch.arange(50) < 5, "drop same class": torch.arange(50) % 10 != 0}
    ax = plots.selected_entries(kept)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(kept)
    assert [len(c.get_offsets()) for c in ax.collections] == [5, 45]

    c = contrast(n=3, keys=100)
    bands = negatives.difficulty_bands(c.pos, c.neg, 0.1, same_class=c.same_class)
    axes = plots.negative_bands([{"epoch": 1, "negatives": bands}, {"epoch": 2, "negatives": bands}],
                                reference=0.1)
    assert len(axes[0].lines) == 2 and len(axes[1].patches) == len(negatives.BAND_NAMES)
    assert "gradient" in axes[1].get_ylabel() and axes[2].get_legend() is not None

    images = torch.randint(0, 255, (100, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(100) % 10
    classes = [str(i) for i in range(10)]
    fig = plots.hardest_negatives(images, labels, classes, torch.tensor([3, 4]), c.neg[:2], torch.arange(100),
                                  labels, per_query=4)
    assert len(fig.axes) == 2 * 5
    assert fig.axes[0].get_title() == "query: 3"
    assert fig.axes[1].get_title() == "0 0.90"  # key 0, the most similar
    plt.close("all")
