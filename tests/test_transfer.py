"""Transfer: train on some classes, evaluate kNN and the linear probe on others."""
import pytest
import torch

from cl import config, train
from cl.config import Config, ConfigError

TINY = dict(train_subset=512, test_subset=128, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            epochs=1, monitor_bank=128, linear_epochs=5, probe=0, device="cpu")


def test_a_transfer_run_trains_on_some_classes_and_evaluates_on_the_others(tmp_path):
    cfg = Config.from_dict({**TINY, "train_classes": "0-4", "eval_classes": "5-9"})
    trainer = train.Trainer(cfg)
    assert set(trainer.train_set.labels.tolist()) == {0, 1, 2, 3, 4} and len(trainer.train_set) == 512
    assert set(trainer.test_set.labels.tolist()) == {5, 6, 7, 8, 9} and len(trainer.test_set) == 128
    assert set(trainer.bank_set.labels.tolist()) == {5, 6, 7, 8, 9} and len(trainer.bank_set) == 30000
    record = train.run(cfg, tmp_path / "transfer", progress=False)
    assert record["finished"] and 20 < record["final"]["knn_top1"] <= 100  # 5 classes: chance is 20 %


@pytest.mark.parametrize("value, labels", [("all", list(range(10))), ("0-4", [0, 1, 2, 3, 4]),
                                           ("0,2,5-7", [0, 2, 5, 6, 7]), ("9", [9])])
def test_class_sets_are_read_as_written(value, labels):
    assert config.class_labels(value, 10) == labels


@pytest.mark.parametrize("value, message", [
    ("0-", "is not 'all' or labels and ranges"), ("4-0", "is not 'all'"), ("cats", "is not 'all'"),
])
def test_a_bad_class_set_is_refused_before_anything_runs(value, message):
    with pytest.raises(ConfigError, match=f"eval_classes: '{value}' {message}"):
        Config.from_dict({"eval_classes": value})


def test_a_class_the_data_set_lacks_is_refused_on_loading():
    lacking = "train_classes: '0-10' names label 10, but the data set has labels 0-9"
    with pytest.raises(ConfigError, match=lacking):
        train.Trainer(Config.from_dict({**TINY, "train_classes": "0-10"}))
    assert torch.equal(torch.tensor(config.class_labels("all", 3)), torch.arange(3))
