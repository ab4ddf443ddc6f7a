"""The study runner: parameters per scale, the summary table, mean ± std over seeds."""
import json

import pandas as pd
import pytest

from cl import study


def fake_run(root, name, knn, seed=0, finished=True):
    d = root / "cpu" / name
    d.mkdir(parents=True)
    final = {"knn_top1": knn, "linear_top1": knn + 1, "alignment": 0.5, "uniformity": -3.0,
             "train_seconds": 100.0, "images_per_second": 2000.0}
    record = {"run": name, "notebook": "02_x", "method": name.rsplit("_s", 1)[0], "finished": finished,
              "config": {"dataset": "fashion_mnist", "epochs": 5, "seed": seed}, "epochs": []}
    if finished:
        record["final"] = final
    (d / "metrics.json").write_text(json.dumps(record))
    return record


def test_summary_has_one_row_per_finished_run_with_the_promised_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "RUNS", tmp_path)
    fake_run(tmp_path, "moco_s0", 80.0)
    fake_run(tmp_path, "moco_s1", 82.0, seed=1)
    fake_run(tmp_path, "broken_s0", 10.0, finished=False)
    path = study.write_summary("cpu")
    assert path == tmp_path / "summary.csv"
    table = pd.read_csv(path)
    assert list(table.columns) == ["run", "notebook", "method", "dataset", "epochs", "seed", "knn_top1",
                                   "linear_top1", "alignment", "uniformity", "train_seconds", "images_per_second"]
    assert sorted(table["run"]) == ["moco_s0", "moco_s1"] and sorted(table["seed"]) == [0, 1]


def test_mean_std_over_seeds():
    recs = {"a": [{"final": {"knn_top1": 80.0, "linear_top1": 1, "alignment": 1, "uniformity": 1}},
                  {"final": {"knn_top1": 84.0, "linear_top1": 1, "alignment": 1, "uniformity": 1}}],
            "b": [{"final": {"knn_top1": 70.0, "linear_top1": 1, "alignment": 1, "uniformity": 1}}]}
    table = study.mean_std(recs)
    assert table.loc["a", "knn_top1"] == 82.0 and table.loc["a", "knn_top1 std"] == pytest.approx(2 ** 1.5)
    assert table.loc["a", "seeds"] == 2 and pd.isna(table.loc["b", "knn_top1 std"])
    shown = study.formatted(table)
    assert shown.loc["a", "knn_top1"] == "82.00 ± 2.83" and shown.loc["b", "knn_top1"] == "70.00"


def test_parameters_name_the_missing_file_and_check_the_scale():
    with pytest.raises(ValueError, match="unknown scale"):
        study.parameters("huge", "01_moco_v2")
    with pytest.raises(FileNotFoundError, match="params/cpu/99_nothing.yaml"):
        study.parameters("cpu", "99_nothing")
    assert study.parameters("smoke", "01_moco_v2")["check_claims"] is False


def test_notebooks_are_in_the_study_order():
    names = [p.stem for p in study.notebooks()]
    assert names == sorted(names) and names[:2] == ["00_contrastive_learning", "01_moco_v2"]
