"""The training steps: one short function per source of negatives, each the whole step of its
source read top to bottom, and taking only the parts it uses: the model, the config, the
objective, ``optimize`` (one gradient step on a finite loss) and the generators of its random
draws. ``epoch``: epochs into the run, counted in steps. :class:`cl.train.Trainer` binds each to
its parts; :class:`StepSimilarities` is what a step hands back for the per-epoch statistics.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cl import negatives
from cl.config import Config
from cl.mochi import Mochi
from cl.moco import MoCo
from cl.objectives import Similarities


def queue_step(moco: MoCo, mochi: Mochi | None, generator: torch.Generator, x1, x2, labels, idx, epoch: float,
               *, cfg: Config, objective, optimize, device_generator) -> tuple[float, StepSimilarities]:
    """MoCo v2's step (He et al. 2020, Algorithm 1), with the study's pieces in their places.

    x1, x2 (B, C, H, W): two views of the images ``idx`` (B,) with ``labels`` (B,).
    """
    pairs = moco(x1, x2, cfg.symmetric, generator)  # θk ← m·θk + (1−m)·θq; pos (B,), neg (B, K)
    loss = 0.0
    for pair in pairs:  # one pair, or two when symmetric
        # Cai et al.: keep a share of each query's row by difficulty (-inf = removed)
        neg = negatives.select(pair.neg, cfg.select, cfg.select_fraction, labels=labels,
                               queue_labels=moco.negative_labels, generator=device_generator)
        if mochi and epoch >= cfg.mochi_warmup:  # MoCHi: s + s′ columns mixed from the whole queue
            neg = torch.cat([neg, mochi.logits(pair.q, pair.neg, moco, device_generator)], dim=1)
        loss = loss + objective.loss(cfg, Similarities(pair.pos, neg, pair.q, labels))
    last = StepSimilarities(pair.pos.detach(), neg.detach(), labels, moco.negative_labels.clone(),
                            refilled=moco.refilled)
    if optimize(loss):
        copies = len(pairs)
        slots = moco.enqueue(torch.cat([p.k for p in pairs]), labels.repeat(copies), idx.repeat(copies))
        if mochi:
            mochi.enqueued(moco.queue, slots)
    return loss.item(), last


def batch_step(net, x1, x2, labels, idx, epoch: float,
               *, cfg: Config, objective, optimize, device_generator,
               extra=()) -> tuple[float, StepSimilarities]:
    """The in-batch (SimCLR) step, as DCL's and HCL's official code train: every view of the
    batch is an anchor, its other view the positive, the other 2B − 2 views its negatives.

    One forward per view, as that code does (batch norm per view; SupCon's code concatenates
    the views instead). ``extra``: M − 1 more views of each image (``positives: M``), each anchor's
    further positives (DCL's M positives, Chuang et al. 2020, eq. 6), pos (2B, M); the negatives
    stay the 2B − 2 first two views of the other images, so that only the positives change.
    """
    z = F.normalize(torch.cat([net(x1), net(x2)]), dim=1)  # (2B, d): view 1, then view 2
    labels = labels.repeat(2)
    pos, neg, neg_labels = negatives.batch_pairs(z, labels)  # (2B,), (2B, 2B − 2), (2B, 2B − 2)
    if extra:  # anchor n's similarity to the extra views of its image n mod B: (2B, M − 1)
        others = torch.stack([F.normalize(net(x), dim=1) for x in extra])  # (M − 1, B, d)
        pos = torch.cat([pos[:, None], torch.einsum("nd,mnd->nm", z, others.repeat(1, 2, 1))], dim=1)
    neg = negatives.select(neg, cfg.select, cfg.select_fraction, labels=labels, queue_labels=neg_labels,
                           generator=device_generator)
    loss = objective.loss(cfg, Similarities(pos, neg, z, labels))
    optimize(loss)
    return loss.item(), StepSimilarities(pos.detach(), neg.detach(), labels, neg_labels)


def siamese_step(net, x1, x2, labels, idx, epoch: float,
                 *, cfg: Config, objective, optimize, device_generator) -> tuple[float, StepSimilarities]:
    """The step of SimSiam and BYOL (``cl.siamese``): both views through the online encoder and
    the predictor, the other branch under stop-gradient (SimSiam) or the momentum target (BYOL,
    its momentum set by ``target_momentum``); no negatives at all."""
    pos, z = net(x1, x2)  # (2B,) cos(p, sg(t)) of both views, (2B, d) online embeddings
    labels = labels.repeat(2)
    none = pos.new_empty(len(pos), 0)  # (2B, 0): nothing to contrast with
    loss = objective.loss(cfg, Similarities(pos, none, z, labels))
    optimize(loss)
    return loss.item(), StepSimilarities(pos.detach(), none, labels, labels.new_empty(len(pos), 0))


class StepSimilarities:
    """The similarities of a step, as the loss saw them, for the difficulty statistics.

    The same-class mask is built only when asked for (once per epoch, and at a mined queue's
    refills), not every step.
    """

    def __init__(self, pos, neg, labels, neg_labels, refilled: bool = False):
        self.refilled = refilled  # the step refilled a mined queue: these negatives are freshly mined
        self.pos, self.neg, self.labels, self.neg_labels = pos, neg, labels, neg_labels

    def same_class(self) -> torch.Tensor:
        """(B, columns of neg): True where a negative shares the query's label (MoCHi's columns: False)."""
        same = self.neg_labels.expand(len(self.labels), -1) == self.labels[:, None]
        return torch.cat([same, same.new_zeros(len(same), self.neg.shape[1] - same.shape[1])], 1)
