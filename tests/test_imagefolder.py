"""An ImageNet-style image folder (train/ and val/, one folder per class) through the config, end to end."""
import numpy as np
import pytest
import torch
from PIL import Image

from cl import augment, train
from cl.config import Config, ConfigError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Two classes told apart by colour, 40 training and 10 validation images each, 20 × 20 px."""
    root = tmp_path_factory.mktemp("imagenet_like")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("val", 10)):
        for name, colour in (("reds", (200, 30, 30)), ("blues", (30, 30, 200))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_an_image_folder_trains_one_epoch_and_is_evaluated(tree, tmp_path):
    cfg = dict(dataset=f"imagefolder:{tree}", image_size=16, test_split="val", width=4, hidden=16, dim=8,
               queue=64, batch_size=16, epochs=1, monitor_bank=0, linear_epochs=20, probe=8, device="cpu")
    record = train.run(cfg, tmp_path / "run", progress=False)
    final = record["final"]
    assert record["finished"] and set(final) >= {"knn_top1", "linear_top1", "alignment", "uniformity"}
    assert final["knn_top1"] > 90  # the colours separate the classes even for an untrained-ish encoder
    trainer, _ = train.load_model(tmp_path / "run")
    assert trainer.train_set.images.shape == (80, 3, 16, 16) and len(trainer.test_set) == 20
    assert trainer.train_set.classes == ["blues", "reds"]


def test_an_image_folder_is_normalised_with_its_own_statistics(tree):
    trainer = train.Trainer(Config.from_dict(dict(dataset=f"imagefolder:{tree}", image_size=16,
                                                  test_split="val", batch_size=16, queue=64, device="cpu",
                                                  probe=0)))
    x = trainer.train_set.images.double() / 255
    torch.testing.assert_close(torch.tensor(trainer.aug_cfg.mean, dtype=torch.float64), x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(trainer.aug_cfg.std, dtype=torch.float64),
                               x.std(dim=(0, 2, 3), correction=0), rtol=1e-4, atol=1e-6)
    assert trainer.aug_cfg.mean[2] > trainer.aug_cfg.mean[1]  # blue images: more blue than green


@pytest.mark.parametrize("overrides, message", [
    (dict(), r"has no test/ folder .*set train_split and test_split to their names, e.g. test_split: val"),
    (dict(test_split="val"), r"set image_size \(e.g. 64 or 224\)"),
    (dict(test_split="val", image_size=-1), r"image_size must be in \[0, inf\)"),
])
def test_an_image_folder_config_says_what_it_lacks(tree, overrides, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"dataset": f"imagefolder:{tree}", **overrides})


def test_splits_are_an_image_folders_only():
    with pytest.raises(ConfigError, match="train_split and test_split name an image folder's splits"):
        Config.from_dict({"test_split": "val"})


def test_statistics_of_a_grey_folder_give_the_grayscale_recipe():
    images = torch.full((4, 1, 8, 8), 51, dtype=torch.uint8)
    cfg = augment.default_config("imagefolder:/x", 8, images)
    assert cfg.mean == pytest.approx((0.2,)) and cfg.grayscale_p == 0.0 and cfg.blur_p == 0.0
