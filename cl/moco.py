"""MoCo v2 (Chen, Fan, Girshick, He 2020): the framework the study is built on.

A query encoder f_q trained by gradient, a key encoder f_k that is its exponential moving
average (θk ← m·θk + (1−m)·θq, updated before the key forward, no gradient), and a FIFO
queue of K past keys that serve as negatives. The queue also remembers each key's label
and data-set index, which the same-class oracle (Cai et al.) and the WordNet analysis use.

A mined queue (``mined > 0``) contrasts with fewer keys per step than its queue holds: the
queue becomes a bank of older keys, and every ``mine_every`` steps the ``mined`` bank keys
hardest for the batch (``cl.negatives.mining_scores``: nearest to some query, or in the most
queries' hardest 5 %; or, as the control, drawn at random) are copied into a small queue, the
only negatives the loss sees until the next refill. It asks whether "the hardest 5 % suffice"
(Cai et al.) can save the similarity work of a large queue (notebook 08).

``MoCo.forward`` returns the similarities of the loss contract (docs/design.md): ``pos`` (B,)
and ``neg`` (B, K); the loss is computed outside, then ``enqueue`` is called, so any
objective of ``cl.objectives`` and any selection of ``cl.negatives`` plugs in between
(``cl.steps.queue_step`` is the whole step; notebook 01 walks through it).

Batch norm: the key batch is shuffled before f_k so that the query and its key never sit
in the same BN group (shuffle BN). Across ranks under ``torchrun`` the shuffle is global,
as in the official code; on one device it matters together with ``SplitBatchNorm``.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from cl import negatives


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0 (identity on one process)."""
    if not distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def shuffle_batch(x: torch.Tensor, generator: torch.Generator | None = None):
    """Shuffle a batch across all ranks (or within the device); returns (x_shuffled, undo index)."""
    gathered = concat_all_gather(x)
    n = x.shape[0]
    perm = torch.randperm(gathered.shape[0], generator=generator).to(x.device)
    if distributed():
        dist.broadcast(perm, src=0)
        rank = dist.get_rank()
    else:
        rank = 0
    undo = torch.argsort(perm)
    return gathered[perm[rank * n:(rank + 1) * n]], undo


@torch.no_grad()
def unshuffle_batch(x: torch.Tensor, undo: torch.Tensor) -> torch.Tensor:
    """Inverse of ``shuffle_batch`` for this rank's rows."""
    gathered = concat_all_gather(x)
    rank = dist.get_rank() if distributed() else 0
    n = x.shape[0]
    return gathered[undo[rank * n:(rank + 1) * n]]


class Pair(NamedTuple):
    """A query batch, its positive keys, and their similarities (pos (B,), neg (B,K))."""
    q: torch.Tensor
    k: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor


def queue_problem(queue: int, batch_size: int, symmetric: bool) -> str | None:
    """What keeps a queue of ``queue`` keys from running, if anything: a step must not overwrite its
    own keys (all processes' keys, ``batch_size`` in all, twice when ``symmetric``, enter it together)."""
    keys_per_step = batch_size * (2 if symmetric else 1)
    if queue < keys_per_step:
        return (f"queue={queue} is smaller than the {keys_per_step} keys enqueued per step "
                f"(batch_size{' × 2 views (symmetric)' if symmetric else ''}): "
                "a step would overwrite its own keys")
    return None


def mined_problem(mined: int, queue: int, source: str, mixing: bool) -> str | None:
    """What keeps a mined queue of ``mined`` keys (``MoCo.mine``) from running, if anything: it refills
    MoCo's negatives from the queue, so it needs the queue source, no MoCHi, and a bank at least its size."""
    if not mined:
        return None
    if source != "queue" or mixing:
        return "a mined queue refills MoCo's negatives: use source='queue' and no MoCHi"
    if mined > queue:
        return f"mined_queue={mined} exceeds the bank it is mined from (queue={queue})"
    return None


class MoCo(nn.Module):
    """Query encoder, momentum key encoder and a labelled FIFO queue of keys (notebook 01)."""

    def __init__(self, encoder: nn.Module, dim: int, K: int = 4096, m: float = 0.99,
                 shuffle_bn: bool = True, mined: int = 0, mine_every: int = 1, mine_rule: str = "nearest"):
        super().__init__()
        if not 0 <= mined <= K or mine_every < 1:
            raise ValueError(f"a mined queue needs 0 <= mined <= K={K} and mine_every >= 1; "
                             f"got mined={mined}, mine_every={mine_every}")
        self.K, self.m, self.shuffle_bn = K, m, shuffle_bn
        self.mined, self.mine_every, self.mine_rule = mined, mine_every, mine_rule
        self.encoder_q = encoder
        self.encoder_k = copy.deepcopy(encoder)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(K, dim), dim=1))
        self.register_buffer("queue_labels", torch.full((K,), -1, dtype=torch.long))
        self.register_buffer("queue_index", torch.full((K,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        if mined:  # the small queue the loss contrasts with, refilled from the bank; forward passes so far
            self.register_buffer("mined_keys", self.queue[:mined].clone())
            self.register_buffer("mined_labels", torch.full((mined,), -1, dtype=torch.long))
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def negative_labels(self) -> torch.Tensor:
        """The labels (K,) of the keys the loss contrasts with: the queue's, or the mined queue's."""
        return self.mined_labels if self.mined else self.queue_labels

    @torch.no_grad()
    def mine(self, q: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Refill the mined queue with the ``mined`` bank keys hardest for the queries q (B, d) of
        all ranks, as ``mine_rule`` ranks them (``cl.negatives.mining_scores``; the random rule
        draws from ``generator``). Returns the bank slots taken."""
        sim = concat_all_gather(q.detach()) @ self.queue.T
        scores = negatives.mining_scores(sim, self.mine_rule, generator=generator)
        slots = scores.topk(self.mined).indices
        self.mined_keys.copy_(self.queue[slots])
        self.mined_labels.copy_(self.queue_labels[slots])
        return slots

    @torch.no_grad()
    def momentum_update(self):
        """θk ← m·θk + (1−m)·θq; buffers (BN running statistics) are copied."""
        for pk, pq in zip(self.encoder_k.parameters(), self.encoder_q.parameters()):
            pk.mul_(self.m).add_(pq.detach(), alpha=1 - self.m)
        for bk, bq in zip(self.encoder_k.buffers(), self.encoder_q.buffers()):
            bk.copy_(bq)

    @torch.no_grad()
    def keys(self, x_k: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised keys of f_k, computed on a shuffled batch when ``shuffle_bn``."""
        if not self.shuffle_bn:
            return F.normalize(self.encoder_k(x_k), dim=1)
        x, undo = shuffle_batch(x_k, generator)
        return unshuffle_batch(F.normalize(self.encoder_k(x), dim=1), undo)

    def contrast(self, q: torch.Tensor, k: torch.Tensor):
        """pos (B,) = q·k and neg (B,K) = q·queueᵀ: the similarities of the loss contract
        (K = ``mined`` and the mined queue in its place when there is one)."""
        keys = self.mined_keys if self.mined else self.queue
        return (q * k).sum(1), q @ keys.clone().T

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, symmetric: bool = False,
                generator: torch.Generator | None = None) -> list[Pair]:
        """One momentum update, then the (query, key) pairs of the step.

        Asymmetric (MoCo): q = f_q(x1) against k = f_k(x2). Symmetric (the CIFAR demo's
        option): also q = f_q(x2) against k = f_k(x1); the loss is the sum over pairs.
        """
        self.momentum_update()
        views = [(x1, x2), (x2, x1)] if symmetric else [(x1, x2)]
        pairs = []
        self.refilled = False  # whether this step refilled the mined queue (the trainer reads it)
        for x_q, x_k in views:
            q = F.normalize(self.encoder_q(x_q), dim=1)
            k = self.keys(x_k, generator)
            if self.mined and not pairs and self.steps % self.mine_every == 0:
                self.mine(q, generator)
                self.refilled = True
            pairs.append(Pair(q, k, *self.contrast(q, k)))
        if self.mined:
            self.steps += 1
        return pairs

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Replace the oldest keys by this step's keys (of all ranks), with their labels and indices;
        returns the slots written (n,)."""
        k, labels, index = concat_all_gather(k), concat_all_gather(labels), concat_all_gather(index)
        n = k.shape[0]
        if n > self.K:
            raise ValueError(f"{n} keys per step do not fit in a queue of K={self.K}")
        slots = (self.queue_ptr + torch.arange(n, device=k.device)) % self.K
        self.queue[slots] = k.to(self.queue.dtype)
        self.queue_labels[slots] = labels
        self.queue_index[slots] = index
        self.queue_ptr.copy_((self.queue_ptr + n) % self.K)
        return slots

