"""What notebooks compute on trained runs, written once.

:func:`probe_queue` contrasts fresh queries with a trained model's final queue, as in
training (notebooks 02 and 03 read the difficulty of its negatives and DCL's estimator on it).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class QueueProbe(NamedTuple):
    """n training images as queries against a trained model's queue of K keys."""
    idx: torch.Tensor         # (n,) the queries' indices in the training set
    labels: torch.Tensor      # (n,) their labels
    q: torch.Tensor           # (n, d) normalised queries f_q(view 1)
    pos: torch.Tensor         # (n,) q·k with the real positive k = f_k(view 2)
    neg: torch.Tensor         # (n, K) q·queueᵀ; -inf where the key is of the query's own image
    same_class: torch.Tensor  # (n, K) bool: the key shares the query's label


@torch.no_grad()
def probe_queue(trainer, n: int = 1024, seed: int = 1) -> QueueProbe:
    """Draw ``n`` training images (``seed``), and contrast ``q = f_q(view 1)`` with its positive
    ``k = f_k(view 2)`` and with the model's whole final queue, with its labels and data-set
    indices (an image's own key is excluded), as training did; ``trainer`` from
    :func:`cl.train.load_model` of a queue run."""
    moco, images = trainer.moco, trainer.train_set
    if moco is None:
        raise ValueError(f"a run with source={trainer.cfg.source!r} keeps no queue: probe a queue run")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[:n]
    x1, x2 = trainer.views(images.images[idx], g)
    q, k = F.normalize(moco.encoder_q(x1), dim=1), F.normalize(moco.encoder_k(x2), dim=1)
    neg = (q @ moco.queue.T).masked_fill(moco.queue_index[None, :] == idx[:, None], -float("inf"))
    labels = images.labels[idx]
    return QueueProbe(idx, labels, q, (q * k).sum(1), neg, moco.queue_labels[None, :] == labels[:, None])
