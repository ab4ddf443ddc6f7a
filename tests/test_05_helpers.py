"""The helpers notebooks 05 and 06 word and draw their results with: a difference against the
direction a paper reported, a condition's means in words, the mixup row and the similarity
histograms."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cl import plots, stats  # noqa: E402


def difference(low, high, n=3, metric="alignment"):
    return stats.Difference("mochi", "moco", metric, stats.Interval((low + high) / 2, low, high, n))


TABLE = pd.DataFrame({"seeds": [3, 1], "knn_top1": [80.123, 70.0], "knn_top1 std": [0.456, math.nan],
                      "alignment": [0.5, 0.53], "alignment std": [0.0041, math.nan],
                      "uniformity": [-3.2, -3.1], "uniformity std": [0.01, math.nan]},
                     index=pd.Index(["moco", "mochi"], name="condition"))


@pytest.mark.parametrize("low, high, reported, word", [
    (0.01, 0.03, "higher", "larger, as the paper reports"),
    (0.01, 0.03, "lower", "larger, unlike the paper"),
    (-0.03, -0.01, "higher", "smaller, unlike the paper"),
    (-0.03, -0.01, "lower", "smaller, as the paper reports"),
    (-0.01, 0.03, "higher", stats.UNRESOLVED)])
def test_against_reported_words_the_side_and_whether_the_paper_saw_it(low, high, reported, word):
    text = stats.against_reported(difference(low, high), reported, "larger", "smaller")
    assert text == f"{difference(low, high).text(3)} ({word})"


def test_against_reported_puts_the_two_means_first_and_claims_nothing_on_one_seed():
    d = difference(0.01, 0.05)
    text = stats.against_reported(d, "higher", table=TABLE)
    assert text.startswith("0.500 → 0.530, +0.030 [+0.010, +0.050]")
    assert text.endswith("as the paper reports)")
    one = stats.against_reported(difference(0.01, 0.05, n=1), "higher", table=TABLE)
    assert one.endswith("(1 seed, no claim)") and "paper" not in one
    with pytest.raises(ValueError, match="higher"):
        stats.against_reported(d, "up")


def test_measured_words_means_with_their_std_and_seeds():
    assert stats.measured(TABLE, "moco", ("knn_top1", "alignment")) == \
        "kNN 80.12 ± 0.46 % and alignment 0.500 ± 0.004 (3 seeds)"
    assert stats.measured(TABLE, "mochi") == "kNN 70.00 % (1 seed)"
    assert stats.measured(TABLE, "mochi", ("knn_top1", "alignment", "uniformity")) == \
        "kNN 70.00 %, alignment 0.530 and uniformity -3.100 (1 seed)"


def test_mixup_row_shows_both_ends_and_each_mix():
    first, second = torch.zeros(4, 4), torch.ones(4, 4)
    axes = plots.mixup_row(first, second, torch.tensor([0.75, 0.25]), names=("a", "b"))
    assert [ax.get_title() for ax in axes] == ["a", "λ = 0.25", "λ = 0.75", "b"]
    assert axes[1].images[0].get_array().mean() == pytest.approx(0.75)  # 0.25·first + 0.75·second
    plt.close("all")


def test_similarity_histograms_draw_one_labelled_density_per_group():
    ax = plots.similarity_histograms({"queue": torch.rand(100), "mixes": torch.rand(10) + 1}, bins=5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["queue", "mixes"]
    assert len(ax.patches) == 10
    heights = [p.get_height() * p.get_width() for p in ax.patches[:5]]
    assert sum(heights) == pytest.approx(1)  # a density: each histogram's area is 1
    assert "similarity" in ax.get_xlabel() and ax.get_ylabel().startswith("density")
    plt.close("all")
