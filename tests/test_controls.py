"""The controls (cl.controls): the untrained encoder and raw pixels, evaluated as a run is, kept, labelled."""
import json

import pytest
import torch
import torch.nn.functional as F

import cl
from cl import controls, metrics, summary
from cl.config import Config
from cl.train import Trainer

SMALL = dict(train_subset=600, test_subset=200, width=4, hidden=16, dim=8, batch_size=64, linear_epochs=3,
             device="cpu")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "RUNS", tmp_path)
    return tmp_path


def test_raw_pixels_are_the_kNN_of_the_flattened_images_and_centring_removes_the_mean_image():
    cfg = Config.from_dict({**SMALL, "seed": 3})
    trainer = Trainer(cfg)
    flat = lambda images: F.normalize(trainer.prepare(images).flatten(1), dim=1)
    train_images, labels = trainer.train_set.images, trainer.train_set.labels
    direct = metrics.knn_accuracy(flat(train_images), labels, flat(trainer.test_set.images),
                                  trainer.test_set.labels, 10, cfg.knn_k, cfg.knn_t)
    assert controls.evaluate(cfg, "pixels")["knn_top1"] == pytest.approx(direct)
    mean = trainer.prepare(train_images).flatten(1).mean(0)
    centred = F.normalize(trainer.prepare(train_images).flatten(1) - mean, dim=1)
    by_hand = metrics.knn_accuracy(centred, labels, F.normalize(trainer.prepare(trainer.test_set.images)
                                                                .flatten(1) - mean, dim=1),
                                   trainer.test_set.labels, 10, cfg.knn_k, cfg.knn_t)
    assert controls.evaluate(cfg, "pixels_centred")["knn_top1"] == pytest.approx(by_hand)
    assert torch.allclose(controls.Pixels(mean).features(mean.view(1, 1, 28, 28)), torch.zeros(1, 784),
                          atol=1e-6)


def test_the_untrained_control_is_the_seeds_initial_encoder_and_differs_by_seed():
    cfg = Config.from_dict({**SMALL, "seed": 0})
    first, again = controls.evaluate(cfg, "untrained"), controls.evaluate(cfg, "untrained")
    other = controls.evaluate(Config.from_dict({**SMALL, "seed": 1}), "untrained")
    assert first == again and first["knn_top1"] != other["knn_top1"]
    assert set(first) == {"knn_top1", "linear_top1", "alignment", "uniformity", "effective_rank"}
    with pytest.raises(ValueError, match="no control 'trained'"):
        controls.evaluate(cfg, "trained")


def test_controls_are_kept_as_runs_reused_shared_across_settings_and_marked_in_the_summary(runs, monkeypatch):
    results = controls.ensure({**SMALL, "optimizer": "adam", "queue": 128}, [0, 1], "cpu", "01_x")
    assert list(results) == ["control_untrained", "control_pixels", "control_pixels_centred"]
    record = json.loads((runs / "cpu" / "control_pixels_s1" / "metrics.json").read_text())
    assert record["control"] == "pixels" and record["finished"] and record["notebook"] == "01_x"
    assert record["config"]["optimizer"] == "sgd"  # what trains is no part of a control
    monkeypatch.setattr(controls, "evaluate", lambda *args: pytest.fail("a finished control is recomputed"))
    assert controls.ensure({**SMALL, "t": 0.5}, [0, 1], "cpu", "02_y") == results  # another notebook's base
    rows = {row["run"]: row for row in summary.summary_rows("cpu")}
    untrained = rows["control_untrained_s0"]
    assert untrained["control"] == "untrained" and untrained["epochs"] == 0
    table = summary.results_table("cpu")
    assert "| 01_x | control_pixels | control: raw pixels | 0 | 2 |" in table
    assert "mean ± the standard deviation over seeds" in table
