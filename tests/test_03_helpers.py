"""The helpers notebooks 03 and 04 read, word and draw their results with: the table of conditions with
their settings, the clamp rates of the debiased estimators, the words for shares, and a sweep's figure."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cl import analysis, plots, stats  # noqa: E402
from cl.config import Config  # noqa: E402


def record(name, seed, knn, clamp=None, **overrides):
    """A finished run's record as ``metrics.json`` keeps it, with a clamp rate per epoch when given."""
    epochs = [{"epoch": e + 1} | ({} if clamp is None else {"clamp_rate": c})
              for e, c in enumerate(clamp or [0, 0])]
    final = {"knn_top1": knn, "linear_top1": knn - 1, "alignment": 0.5, "uniformity": -2.0}
    return {"run": f"{name}_s{seed}", "config": Config.from_dict({**overrides, "seed": seed}).to_dict(),
            "epochs": epochs, "final": final}


RESULTS = {"moco": [record("moco", 0, 70.0), record("moco", 1, 72.0)],
           "debiased_paper": [record("debiased_paper", 0, 60.0, clamp=[0.2, 0.1], source="batch", t=0.5,
                                     optimizer="adam", lr=0.001, loss="debiased", tau_plus=0.1),
                              record("debiased_paper", 1, 62.0, clamp=[0.4, 0.3], source="batch", t=0.5,
                                     optimizer="adam", lr=0.001, loss="debiased", tau_plus=0.1)],
           "debiased_tau0.1": [record("debiased_tau0.1", 0, 65.0, clamp=[0.9, 1.0], loss="debiased",
                                      tau_plus=0.1)]}


def test_condition_table_gives_mean_std_and_each_conditions_setting():
    table = analysis.condition_table(RESULTS)
    assert list(table.index) == list(RESULTS)
    assert table.loc["moco", "knn_top1"] == "71.00 ± 1.41"
    assert table.loc["debiased_tau0.1", "knn_top1"] == "65.00"  # one seed: no std
    assert table.loc["debiased_paper", "setting"].startswith("in-batch 2B−2")
    paper = table.loc["debiased_paper", "setting"]
    assert "t=0.5" in paper and "adam" in paper
    assert table.loc["moco", "setting"].startswith("queue K=")
    assert table.columns[-1] == "setting"


def test_clamp_rates_are_per_epoch_means_over_seeds():
    clamp = analysis.clamp_rates(RESULTS, ["debiased_paper", "debiased_tau0.1"])
    assert list(clamp.index) == [1, 2] and clamp.index.name == "epoch"
    assert list(clamp.columns) == ["debiased_paper", "debiased_tau0.1"]
    assert clamp.loc[1, "debiased_paper"] == pytest.approx(0.3)
    assert clamp.loc[2, "debiased_paper"] == pytest.approx(0.2)
    assert clamp.iloc[-1]["debiased_tau0.1"] == pytest.approx(1.0)
    with pytest.raises(KeyError):  # a run without a debiased estimator records no clamp rate
        analysis.clamp_rates(RESULTS, ["moco"])


def test_shares_word_a_share():
    assert stats.shares({"DCL": 0.9, "HCL": 0.25}) == "DCL 90.0 % and HCL 25.0 %"
    assert stats.shares({"paper setting": 0.0314}, digits=2) == "paper setting 3.14 %"


def test_sweep_draws_the_curve_in_order_and_one_level_per_reference():
    table = pd.DataFrame({"knn_top1": [70.0, 60.0, 65.0, 62.0]},
                         index=["moco", "tau0.2", "tau0.1", "tau0.05"])
    ax = plots.sweep(table, {0.2: "tau0.2", 0.05: "tau0.05", 0.1: "tau0.1"}, {"InfoNCE": "moco"},
                     label="DCL", xlabel="τ⁺", mark=0.1)
    curve, level, mark = ax.lines
    assert list(curve.get_xdata()) == [0.05, 0.1, 0.2]
    assert list(curve.get_ydata()) == [62.0, 65.0, 60.0]
    assert list(level.get_ydata()) == [70.0, 70.0] and list(mark.get_xdata()) == [0.1, 0.1]
    assert ax.get_ylabel() == "kNN top-1 (%)" and ax.get_xlabel() == "τ⁺"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["DCL", "InfoNCE"]
    plt.close("all")


def test_sweep_fills_given_panels():
    table = pd.DataFrame({"knn_top1": [1.0, 2.0], "linear_top1": [3.0, 4.0]}, index=["a", "b"])
    fig, axes = plt.subplots(1, 2)
    plots.sweep(table, {0.0: "a", 1.0: "b"}, ax=axes[0])
    plots.sweep(table, {0.0: "a", 1.0: "b"}, metric="linear_top1", ax=axes[1])
    assert len(fig.axes) == 2
    assert list(axes[1].lines[0].get_ydata()) == [3.0, 4.0]
    assert axes[1].get_ylabel() == "linear-probe top-1 (%)"
    plt.close("all")


def test_a_control_is_named_as_such_in_place_of_a_setting():
    control = [{**record("control_untrained", 0, 50.0), "control": "untrained"}]
    control[0]["final"]["train_seconds"] = 0.0
    table = analysis.condition_table({**RESULTS, "control_untrained": control})
    assert table.loc["control_untrained", "setting"] == "control: untrained encoder (random init)"
    assert analysis.overview({"control_untrained": control}).loc["control_untrained", "epochs"] == 0
