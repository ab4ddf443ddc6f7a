"""What notebooks compute on trained runs (cl.analysis), and the words of a per-seed interval."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from cl import analysis, cli, config, difficulty, parameters, stats, study, train

TINY = dict(train_subset=512, test_subset=128, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            epochs=3, monitor_bank=128, linear_epochs=5, probe=60, device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train.run(TINY, run_dir, progress=False)
    return run_dir


def test_a_runs_probe_is_read_epoch_by_epoch(trained):
    record = analysis.load_probe_set(trained)
    assert list(record.embeddings) == [1, 2, 3] and record.embeddings[3].shape == (60, 8)
    assert record.config["epochs"] == 3 and record.labels.shape == record.indices.shape == (60,)


def test_a_missing_or_unprobed_run_is_one_line_naming_the_fix(trained, tmp_path):
    missing = "nothing_s0 is not a finished run .*run the notebook that trains it"
    with pytest.raises(cli.UserError, match=missing):
        analysis.load_probe_set(tmp_path / "nothing_s0")
    unprobed = tmp_path / "unprobed"
    train.run({**TINY, "epochs": 1, "probe": 0}, unprobed, progress=False)
    no_probe_set = r"has no probe.pt \(it was trained with probe: 0\): train it with a probe set"
    with pytest.raises(cli.UserError, match=no_probe_set):
        analysis.load_probe_set(unprobed)


def test_consistency_of_a_fixed_geometry_is_one_and_beats_its_controls():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(40, 6, generator=g), dim=1)
    labels = torch.arange(40) % 4
    record = analysis.ProbeSet(torch.arange(40), labels, {1: z, 2: z, 3: z}, {})
    table = analysis.consistency(record)
    assert list(table.index) == [1, 2] and table["observed"].tolist() == pytest.approx([1.0, 1.0])
    assert (table["within_class_pairs"] < 0.5).all() and (table["global"].abs() < 0.1).all()


def test_semantic_difficulty_of_embeddings_built_along_the_similarity():
    # four classes on a circle: the nearer two classes' centres, the harder their negatives
    angles = torch.tensor([0.0, 0.3, 1.6, 3.1])
    centres = torch.stack([angles.cos(), angles.sin()], 1)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(10)
    z = F.normalize(centres[labels] + 0.01 * torch.randn(40, 2, generator=g), dim=1)
    similarity = {"closeness": -(angles[:, None] - angles[None, :]).abs()}
    result = analysis.semantic_difficulty(z, labels, similarity)
    assert result["rho"]["closeness"] > 0.9  # percentiles rank within rows: nearly, not exactly, monotone
    assert result["same_class"] > result["other_class"] and result["same_minus_other"] > 0.3


def test_similarity_by_band_reads_what_each_band_holds():
    # the hardest negatives: three of the similar class pair {0, 1}, one of the far pair {2, 0}
    labels = torch.tensor([0, 0, 1, 2])
    nan = float("nan")
    pct = torch.tensor([[nan, 0.5, 1.0, 0.0], [0.5, nan, 1.0, 0.0],
                        [1.0, 0.5, nan, 0.0], [1.0, 0.5, 0.0, nan]], dtype=torch.float64)
    similarity = torch.tensor([[1.0, 0.8, 0.1], [0.8, 1.0, 0.2], [0.1, 0.2, 1.0]], dtype=torch.float64)
    table = difficulty.similarity_by_band(pct, labels, similarity, edges=(0.0, 0.25, 0.75, 1.0))
    assert list(table.index) == ["0–0.25", "0.25–0.75", "0.75–1"]
    assert table.loc["0.75–1", "similarity"] == pytest.approx((0.8 + 0.8 + 0.8 + 0.1) / 4)
    assert table.loc["0.25–0.75", "same class"] == pytest.approx(2 / 4)  # (0, 1) and (1, 0) of four
    assert table.loc["0–0.25", "same class"] == 0.0


def test_labelled_pairs_read_the_ranked_table():
    pairs = torch.tensor([[0.5, 0.9, 0.1], [0.9, 0.5, 0.2], [0.1, 0.2, 0.5]], dtype=torch.float64)
    sim = torch.tensor([[1.0, 0.8, 0.1], [0.8, 1.0, 0.3], [0.1, 0.3, 1.0]], dtype=torch.float64)
    ranked = difficulty.ranked_class_pairs(pairs, sim, ["a", "b", "c"])
    assert difficulty.labelled_pairs(ranked, difficulty.CORRELATED) == {("a", "b")}


@pytest.mark.parametrize("values, expected", [
    ([0.5, 0.6, 0.55], "better"), ([-0.5, -0.6, -0.55], "worse"), ([0.5, -0.6, 0.1], "no effect resolved"),
    ([0.5], "1 seed, no claim"), ([0.5, 0.4], "2 seeds, no claim"),
])
def test_the_words_of_an_interval_over_seeds(values, expected):
    interval = stats.t_interval(values)
    words = interval.words("better", "worse")
    assert words.endswith(expected) or expected in words
    if len(values) >= 3:
        assert f"[{interval.low:+.3f}, {interval.high:+.3f}]" in words and not math.isnan(interval.low)


def test_the_parameters_command_prints_a_notebooks_merged_parameters(capsys):
    assert study.main(["parameters", "--scale", "smoke", "--only", "03_debiased"]) == 0
    printed = cli.load_yaml(capsys.readouterr().out)
    assert printed == parameters.parameters("smoke", "03_debiased") and "paper_setting" in printed
    assert study.main(["parameters", "--scale", "smoke"]) == 1
    assert "parameters needs one notebook: --only NAME" in capsys.readouterr().err
    assert json.dumps(printed)  # plain YAML types, as papermill -f reads them


def test_same_class_share_weighs_each_band_by_its_count():
    record = {"run": "r", "epochs": [{"negatives": {}}, {"negatives": {
        "band_counts": [10, 30, 0], "same_class_fraction": [1.0, 0.2, None]}}]}
    assert analysis.same_class_share(record) == pytest.approx((10 * 1.0 + 30 * 0.2) / 40)
    with pytest.raises(ValueError, match="recorded no negatives"):
        analysis.same_class_share({"run": "r", "epochs": [{"negatives": None}]})


def test_per_epoch_rows_become_tables_and_results_as_they_stood_after_an_epoch():
    run = lambda seed, values: {"config": {"seed": seed}, "final": {"knn_top1": values[-1]},
                                "epochs": [{"epoch": e + 1, "knn_top1": v} for e, v in enumerate(values)]}
    results = {"a": [run(0, [50.0, 60.0, 70.0]), run(1, [52.0, 61.0, 72.0])], "b": [run(0, [40.0, 45.0])]}
    table = analysis.per_epoch(results["a"])
    assert list(table.columns) == [0, 1] and table.loc[2, 1] == 61.0
    second = analysis.at_epoch(results, 2)
    assert [r["final"]["knn_top1"] for r in second["a"]] == [60.0, 61.0]
    assert second["b"][0]["final"]["knn_top1"] == 45.0
    assert analysis.at_epoch(results, 3)["b"] == []  # b trained two epochs only
    assert stats.paired_difference(second, "a", "b").mean == 15.0


def test_the_probe_sets_controls_embed_its_images_as_the_untrained_run_and_the_pixels_would(trained):
    record = analysis.load_probe_set(trained)
    inputs = analysis.probe_set_controls(record)
    assert set(inputs) == {"raw pixels (centred)", "untrained encoder"}
    assert inputs["untrained encoder"].shape == record.embeddings[1].shape
    assert inputs["raw pixels (centred)"].shape == (60, 784)
    fresh = train.Trainer(config.Config.from_dict({**record.config, "device": "cpu"})).embed_probe_set()
    assert torch.allclose(inputs["untrained encoder"], fresh)  # the seed's initial weights, no step taken
    assert not torch.allclose(inputs["untrained encoder"], record.embeddings[1])  # a trained epoch differs
    table = analysis.consistency(record, inputs={"itself": record.embeddings[3]})
    assert table["itself"].tolist() == pytest.approx([1.0, 1.0])  # the last epoch's own ranking
