"""Notebook 00's helper: the kNN on the head's output (cl.analysis.embedding_knn)."""
import math
from types import SimpleNamespace

import torch

from cl import analysis, augment
from cl.data import Dataset

CLASSES = ["a", "b", "c", "d"]
LEVELS = [10, 50, 90, 130]  # the pixel value of every image of each class


def images_of_classes(per_class: int) -> Dataset:
    """Constant grey images whose grey level says their class."""
    labels = torch.arange(len(CLASSES)).repeat_interleave(per_class)
    images = torch.tensor(LEVELS, dtype=torch.uint8)[labels].view(-1, 1, 1, 1).expand(-1, 1, 28, 28).clone()
    return Dataset(images, labels, CLASSES, None, "grey levels")


def trainer_with(encoder) -> SimpleNamespace:
    """What embedding_knn reads of a trainer: its data sets, their evaluation transform and its encoder."""
    return SimpleNamespace(train_set=images_of_classes(30), test_set=images_of_classes(5), encoder=encoder,
                           aug_cfg=augment.default_config("fashion_mnist", 28))


def angle_encoder(cfg):
    """Each grey level to a point of the unit circle, a quarter turn from the next level's."""
    step = (LEVELS[1] - LEVELS[0]) / 255 / cfg.std[0]

    def encoder(x):
        angle = x.mean((1, 2, 3)) * (math.pi / 2) / step
        return torch.stack([angle.cos(), angle.sin()], dim=1)
    return encoder


def test_an_embedding_that_separates_the_classes_votes_every_test_image_right():
    trainer = trainer_with(None)
    trainer.encoder = angle_encoder(trainer.aug_cfg)
    assert analysis.embedding_knn(trainer) == 100.0


def test_a_collapsed_embedding_votes_one_class_for_every_image():
    # every similarity is 1: the whole bank votes alike, 30 images a class, and the tie goes to class 0
    trainer = trainer_with(lambda x: torch.ones(len(x), 2))
    assert analysis.embedding_knn(trainer) == 25.0


def test_the_bank_is_at_most_bank_size_training_images():
    seen = []
    trainer = trainer_with(None)
    encoder = angle_encoder(trainer.aug_cfg)
    trainer.encoder = lambda x: (seen.append(len(x)), encoder(x))[1]
    analysis.embedding_knn(trainer, bank_size=8)
    assert seen == [8, 20]  # the bank, then the test set
