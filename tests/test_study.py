"""The study runner: parameters per scale, the summary table, mean ± std over seeds."""
import json

import pandas as pd
import pytest

import cl
from cl import parameters, stats, summary


def fake_run(root, name, knn, seed=0, finished=True):
    d = root / "cpu" / name
    d.mkdir(parents=True)
    final = {"knn_top1": knn, "linear_top1": knn + 1, "alignment": 0.5, "uniformity": -3.0,
             "train_seconds": 100.0, "images_per_second": 2000.0}
    config = {"dataset": "fashion_mnist", "epochs": 5, "seed": seed, "t": 0.2, "precision": "fp32"}
    record = {"run": name, "notebook": "02_x", "method": name.rsplit("_s", 1)[0], "finished": finished,
              "config": config, "epochs": []}
    if finished:
        record["final"] = final
    (d / "metrics.json").write_text(json.dumps(record))
    return record


def test_summary_has_one_row_per_finished_run_with_the_promised_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "RUNS", tmp_path)
    fake_run(tmp_path, "moco_s0", 80.0)
    fake_run(tmp_path, "moco_s1", 82.0, seed=1)
    fake_run(tmp_path, "broken_s0", 10.0, finished=False)
    path = summary.write_summary("cpu")
    assert path == tmp_path / "summary.csv"
    table = pd.read_csv(path)
    assert list(table.columns)[:13] == ["run", "notebook", "method", "control", "dataset", "epochs", "seed",
                                        "knn_top1",
                                        "linear_top1", "alignment", "uniformity", "train_seconds",
                                        "images_per_second"]
    assert {"loss", "source", "t", "tau_plus", "beta", "select", "select_fraction", "mochi_n", "mochi_s",
            "mochi_s_prime", "queue", "batch_size", "optimizer", "lr"} <= set(table.columns)
    assert sorted(table["run"]) == ["moco_s0", "moco_s1"] and sorted(table["seed"]) == [0, 1]
    # the precision each run recorded, not the default
    assert set(table["precision"]) == {"fp32"} and table.loc[0, "t"] == 0.2


def test_mean_std_over_seeds():
    recs = {"a": [{"final": {"knn_top1": 80.0, "linear_top1": 1, "alignment": 1, "uniformity": 1}},
                  {"final": {"knn_top1": 84.0, "linear_top1": 1, "alignment": 1, "uniformity": 1}}],
            "b": [{"final": {"knn_top1": 70.0, "linear_top1": 1, "alignment": 1, "uniformity": 1}}]}
    table = stats.mean_std(recs)
    assert table.loc["a", "knn_top1"] == 82.0 and table.loc["a", "knn_top1 std"] == pytest.approx(2 ** 1.5)
    assert table.loc["a", "seeds"] == 2 and pd.isna(table.loc["b", "knn_top1 std"])
    shown = stats.formatted(table)
    assert shown.loc["a", "knn_top1"] == "82.00 ± 2.83" and shown.loc["b", "knn_top1"] == "70.00"


def test_parameters_name_the_missing_file_and_check_the_scale(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown scale"):
        parameters.parameters("huge", "01_moco_v2")
    assert parameters.parameters("smoke", "01_moco_v2")["check_claims"] is False
    monkeypatch.setattr(cl, "PARAMS", tmp_path)
    with pytest.raises(FileNotFoundError,
                       match=f"no shared parameters for scale smoke: write {tmp_path}/smoke/base.yaml"):
        parameters.parameters("smoke", "01_moco_v2")


def test_notebooks_are_in_the_study_order():
    names = [p.stem for p in parameters.notebooks()]
    assert names == sorted(names) and names[:2] == ["00_contrastive_learning", "01_moco_v2"]


def records(values: dict[int, float], metric: str = "knn_top1") -> list[dict]:
    return [{"config": {"seed": s}, "final": {metric: v}} for s, v in values.items()]


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    # differences 1, 2, 3: mean 2, sd 1, half-width t(0.975, 2)/√3 = 4.3027/1.7321 = 2.4841
    results = {"a": records({0: 81.0, 1: 82.0, 2: 83.0}), "b": records({2: 80.0, 0: 80.0, 1: 80.0})}
    d = stats.paired_difference(results, "a", "b")
    assert d.mean == pytest.approx(2.0) and d.seeds == 3
    assert (d.low, d.high) == (pytest.approx(2 - 2.48414, abs=1e-4), pytest.approx(2 + 2.48414, abs=1e-4))
    assert d.verdict() == "no difference resolved at this budget" and d.at_least(-1) and not d.at_least(0)
    assert str(d) == "+2.00 [-0.48, +4.48]"


def test_pairing_is_by_seed_not_by_order():
    # a beats b by exactly 0.5 at every seed, although both spread over 10 points across seeds
    results = {"a": records({0: 70.5, 1: 80.5, 2: 90.5}), "b": records({2: 90.0, 1: 80.0, 0: 70.0})}
    d = stats.paired_difference(results, "a", "b")
    assert d.mean == pytest.approx(0.5) and d.high - d.low == pytest.approx(0, abs=1e-9)
    assert d.verdict() == "better" and stats.paired_difference(results, "b", "a").verdict() == "worse"


def test_nearly_full_accuracy_needs_the_whole_interval_above_minus_one():
    close = {"a": records({0: 80.0, 1: 80.1, 2: 79.9}), "b": records({0: 80.3, 1: 80.4, 2: 80.3})}
    far = {"a": records({0: 78.0, 1: 80.0, 2: 79.5}), "b": records({0: 80.3, 1: 80.4, 2: 80.3})}
    assert stats.paired_difference(close, "a", "b").at_least(-1)
    assert not stats.paired_difference(far, "a", "b").at_least(-1)


def test_fewer_than_three_seeds_claim_nothing():
    results = {"a": records({0: 90.0, 1: 91.0}), "b": records({0: 80.0, 1: 80.0, 2: 80.0})}
    d = stats.paired_difference(results, "a", "b")
    assert d.seeds == 2 and not d.claims and d.verdict() == "2 seeds, no claim" and not d.at_least(-1)
    assert str(d) == "+10.50 (2 seeds, no claim)"
    with pytest.raises(ValueError, match="share no seed"):
        stats.paired_difference({"a": records({5: 1.0}), "b": records({0: 1.0})}, "a", "b")


def test_differences_table_gives_knn_and_linear_side_by_side():
    results = {"a": [{"config": {"seed": s}, "final": {"knn_top1": 80 + s + 1, "linear_top1": 85 + s}}
                     for s in range(3)],
               "b": [{"config": {"seed": s}, "final": {"knn_top1": 80 + s, "linear_top1": 85 + s}}
                     for s in range(3)]}
    table = stats.differences(results, [("a", "b")])
    assert table.loc["a − b", "knn_top1 verdict"] == "better"
    assert table.loc["a − b", "linear_top1 verdict"] == "no difference resolved at this budget"


def test_geometry_differences_are_worded_the_way_they_are_better():
    # alignment is a distance and uniformity a loss: a smaller value is the better one
    results = {name: [{"config": {"seed": s}, "final": {"alignment": 0.3 + shift + 0.01 * s,
                                                        "uniformity": -3.0 - shift + 0.01 * s}}
                      for s in range(3)] for name, shift in (("a", 0.0), ("b", 0.1))}
    table = stats.differences(results, [("a", "b"), ("b", "a")], metrics=("alignment", "uniformity"))
    assert table.loc["a − b", "alignment verdict"] == "lower (better)"
    assert table.loc["a − b", "uniformity verdict"] == "higher (worse)"
    assert table.loc["b − a", "alignment verdict"] == "higher (worse)"
    # a single Difference words itself by its metric too, unless the caller names the words
    d = stats.paired_difference(results, "a", "b", metric="uniformity")
    assert d.verdict() == "higher (worse)" and d.verdict(better="less uniform") == "less uniform"


def test_results_table_pools_seeds_per_condition_and_lists_the_minutes(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "RUNS", tmp_path)
    monkeypatch.setattr(cl, "PARAMS", tmp_path)
    fake_run(tmp_path, "moco_s0", 80.0)
    fake_run(tmp_path, "moco_s1", 82.0, seed=1)
    summary.record_minutes("cpu", "02_x", 12.5)
    (tmp_path / "cpu" / "minutes.yaml").write_text("minutes: {01_y: 20.0, 02_x: 40.0}\n")
    table = summary.results_table("cpu")
    assert "| 02_x | moco | queue K=4096, t=0.2, sgd lr 0.03, fp32 | 5 | 2 | 81.00 ± 1.41 |" in table
    assert "| 01_y | — | 20.0 |" in table and "| 02_x | 12.5 | 40.0 |" in table
    assert "| total | 12.5 | 60.0 |" in table


def test_the_setting_names_a_temperature_only_where_there_are_negatives():
    row = {"queue": 4096, "batch_size": 256, "t": 0.5, "optimizer": "adam", "lr": 0.001, "precision": "bf16"}
    queue = {**row, "source": "queue", "loss": "info_nce"}
    assert summary.setting(queue) == "queue K=4096, t=0.5, adam lr 0.001"
    assert summary.setting({**queue, "mined_queue": 256, "mine_every": 16, "mine_rule": "votes"}) == \
        "queue K=4096, 256 mined every 16 steps (votes), t=0.5, adam lr 0.001"
    assert summary.setting({**row, "source": "batch", "loss": "debiased"}) == \
        "in-batch 2B−2, B=256, t=0.5, adam lr 0.001"
    assert summary.setting({**row, "source": "none", "loss": "byol", "precision": "fp32"}) == \
        "no negatives (byol), adam lr 0.001, fp32"


def test_finished_results_group_every_finished_run_by_condition_in_seed_order(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "RUNS", tmp_path)
    for run, seed, finished in [("moco_s1", 1, True), ("moco_s0", 0, True), ("hard_beta1.0_s0", 0, True),
                                ("moco_s2", 2, False)]:
        (tmp_path / "cpu" / run).mkdir(parents=True)
        (tmp_path / "cpu" / run / "metrics.json").write_text(json.dumps(
            {"run": run, "config": {"seed": seed}, "finished": finished, "final": {"knn_top1": 80.0 + seed}}))
    results = summary.finished_results("cpu")
    assert list(results) == ["hard_beta1.0", "moco"]
    assert [r["run"] for r in results["moco"]] == ["moco_s0", "moco_s1"]  # the unfinished one is left out


def test_the_expected_time_comes_from_the_measured_minutes(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "PARAMS", tmp_path)
    (tmp_path / "cpu").mkdir()
    assert summary.expected_total("cpu", ["00_a"]) == "expected time: not measured at the cpu scale"
    (tmp_path / "cpu" / "minutes.yaml").write_text("minutes: {00_a: 10.4, 01_b: 20.2}\n")
    line = summary.expected_total("cpu", ["00_a", "01_b", "02_c"])
    assert line.startswith("expected time: about 31 minutes on a 2-core CPU for 2 notebook(s)")
    assert "1 notebook(s) not measured" in line


def test_each_condition_is_paired_with_the_plain_condition_of_its_own_setting():
    from cl.config import Config
    record = lambda **config: [{"config": {**Config().to_dict(), **config}}]  # runs keep their whole config
    paper = dict(source="batch", t=0.5, optimizer="adam", lr=0.001, lr_schedule="constant")
    results = {"moco": record(), "hardest_5pct": record(select="hardest", select_fraction=0.05),
               "moco_t0.2": record(t=0.2),
               "drop_t0.2": record(t=0.2, select="drop_hardest", select_fraction=0.001),
               "simclr_paper": record(**paper), "debiased_paper": record(**paper, loss="debiased"),
               "supcon": record(source="batch", loss="supcon"), "moco_fp32": record(precision="fp32"),
               "long": record(epochs=25)}
    assert summary.baselines(results) == {"hardest_5pct": "moco", "drop_t0.2": "moco_t0.2",
                                        "debiased_paper": "simclr_paper", "moco_fp32": "moco"}


def test_every_list_of_seeds_is_checked_as_seeds():
    with pytest.raises(parameters.ParameterError,
                       match=r"parameter primary_seeds: \[0, 0\] is not a non-empty list"):
        parameters._check_values({"primary_seeds": [0, 0]})
    parameters._check_values({"longer_seeds": [0, 1, 2]})


def test_a_cpu_without_native_bf16_is_told_apart(tmp_path):
    from cl import system
    flags = "flags\t\t: fpu vme sse avx2 avx512f"
    (tmp_path / "plain").write_text(f"processor\t: 0\n{flags}\n")
    (tmp_path / "bf16").write_text(f"processor\t: 0\n{flags} avx512_bf16\n")
    assert system.native_bf16(tmp_path / "plain") is False and system.native_bf16(tmp_path / "bf16") is True
    assert system.native_bf16(tmp_path / "absent") is None


def test_an_undefined_interval_is_said_in_words_not_as_nan():
    """A statistic undefined on some values (a correlation of a constant, say) has no interval."""
    undefined = stats.Interval(0.25, float("nan"), float("nan"), 45)
    assert undefined.text() == "+0.25 (no interval: undefined on some of the 45 values)"
    assert undefined.word("above", "below") == "no claim" and "nan" not in undefined.words("a", "b")
    assert stats.Interval(0.25, 0.1, 0.4, 45).text() == "+0.25 [+0.10, +0.40]"


def test_the_minutes_total_is_rounded_and_a_missing_column_is_a_dash(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "RUNS", tmp_path)
    monkeypatch.setattr(cl, "PARAMS", tmp_path)  # no minutes.yaml: nothing measured from scratch
    fake_run(tmp_path, "moco_s0", 80.0)
    summary.record_minutes("cpu", "01_y", 1.1)
    summary.record_minutes("cpu", "02_x", 2.2)
    assert "| total | 3.3 | — |" in summary.results_table("cpu")
