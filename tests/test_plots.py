"""Figures a reader can decode: families in the alignment–uniformity plane, labelled axes, whole epochs."""
import matplotlib
import pytest

matplotlib.use("Agg")

from cl import plots  # noqa: E402


def record(seed, uniformity, alignment, control=None, **config):
    return {"control": control, "config": {"seed": seed, **config},
            "final": {"uniformity": uniformity, "alignment": alignment},
            "epochs": [{"epoch": e, "loss": 5.0 - e, "knn_top1": 70.0 + e} for e in (1, 2, 3)]}


def test_each_run_has_the_family_of_its_method():
    assert plots.family(record(0, -3, 0.5)) == "MoCo / InfoNCE"
    assert plots.family(record(0, -3, 0.5, control="untrained")) == "control"
    assert plots.family(record(0, -3, 0.5, loss="positives_only")) == "no negatives"
    assert plots.family(record(0, -3, 0.5, loss="byol")) == "SimSiam / BYOL"
    assert plots.family(record(0, -3, 0.5, loss="hard")) == "DCL / HCL"
    assert plots.family(record(0, -3, 0.5, mochi_s=64)) == "MoCHi"
    assert plots.family(record(0, -3, 0.5, select="hardest")) == "selected negatives"
    assert plots.family(record(0, -3, 0.5, mined_queue=256)) == "selected negatives"
    assert plots.family(record(0, -3, 0.5, loss="supcon")) == "SupCon"


def test_the_plane_has_a_legend_entry_per_family_and_a_label_per_condition():
    results = {"moco": [record(0, -3.0, 0.5), record(1, -3.2, 0.6)],
               "moco_t0.2": [record(0, -2.5, 0.4, t=0.2)],
               "positives_only": [record(0, -0.03, 0.01, loss="positives_only")],
               "control_untrained": [record(0, -1.0, 0.2, control="untrained")]}
    ax = plots.alignment_uniformity(results)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["MoCo / InfoNCE", "no negatives", "control"]
    labels = {t.get_text(): t.xy for t in ax.texts}
    assert set(labels) == set(results)
    assert labels["moco"] == pytest.approx((-3.1, 0.55))  # at the mean of its runs
    assert ax.get_xlabel() == "uniformity loss (lower: more uniform)"


def test_curves_have_labelled_axes_and_whole_epochs():
    fig = plots.curves({"moco": record(0, -3, 0.5)}, keys=("loss", "knn_top1"))
    loss, knn = fig.axes
    assert loss.get_ylabel() == "training loss (nats)" and knn.get_ylabel() == "kNN top-1 (%, monitor bank)"
    fig.canvas.draw()
    assert all(tick == int(tick) for tick in loss.get_xticks())
