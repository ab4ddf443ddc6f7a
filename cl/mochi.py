"""Hard negative mixing, MoCHi (Kalantidis, Sariyildiz, Pion, Weinzaepfel, Larlus 2020): every
piece of it in one place (notebook 05).

- ``synthesize`` and ``logits``: the synthetic negatives as the paper defines them, built as
  vectors, and their similarities with the query;
- ``draw_mixes`` and ``mixed_logits``: the same logits as training computes them, from
  similarities already at hand, without building the vectors;
- ``Mochi``: that synthesis during training, with the queue's key–key similarity table;
- ``config_problem``: what a run's config must hold for MoCHi, checked with the config.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

_NORM_EPS = 1e-12  # as F.normalize


def config_problem(n_hard: int, s: int, s_prime: int, source: str, queue: int) -> str | None:
    """What keeps a config's MoCHi settings (``mochi_n``, ``mochi_s``, ``mochi_s_prime``) from running,
    if anything: mixing needs two hardest negatives at least, from MoCo's queue, no more than it holds."""
    if s + s_prime == 0:
        return None
    if n_hard < 2:
        return "MoCHi needs mochi_n ≥ 2 hardest negatives to mix"
    if source != "queue":
        return "MoCHi mixes negatives of the queue: use source='queue'"
    if n_hard > queue:
        return f"mochi_n={n_hard} exceeds the queue size {queue}"
    return None


class Mixes(NamedTuple):
    """The random part of MoCHi for a batch: which queue entries mix, and how much.

    ``first``, ``second`` (B, s): queue indices of the two hard negatives of each h_k (i ≠ j),
    ``alpha`` (B, s) in [0, 1); ``partner`` (B, s′): the hard negative of each h′_k,
    ``beta`` (B, s′) in [0, 0.5).
    """
    first: torch.Tensor
    second: torch.Tensor
    alpha: torch.Tensor
    partner: torch.Tensor
    beta: torch.Tensor


def draw_mixes(neg: Tensor, n_hard: int, s: int, s_prime: int,
                generator: torch.Generator | None = None) -> Mixes:
    """Draw MoCHi's mixes for each query from its similarities ``neg`` (B, K) to the whole queue:

        Q̃ = the n_hard most similar queue entries;  for k ≤ s: n_i, n_j ∈ Q̃, i ≠ j, α_k ~ U[0, 1);
        for k ≤ s′: n_j ∈ Q̃, β_k ~ U[0, 0.5)

    (see ``synthesize``). The draws use ``generator`` (on neg's device) when given.
    """
    if neg.dim() != 2:
        raise ValueError(f"neg must be (B, K), got shape {tuple(neg.shape)}")
    if not 2 <= n_hard <= neg.shape[1]:
        raise ValueError(f"n_hard must be in [2, K = {neg.shape[1]}] (a pair needs two), got {n_hard}")
    if s < 0 or s_prime < 0:
        raise ValueError(f"s and s_prime count synthetic negatives and must be >= 0, got {s} and {s_prime}")
    with torch.no_grad():
        hardest = neg.topk(n_hard, dim=1, sorted=False).indices  # (B, n_hard): Q̃ as queue indices
        draw = dict(generator=generator, device=neg.device)
        batch = neg.shape[0]
        first = torch.randint(n_hard, (batch, s), **draw)
        second = (first + torch.randint(1, n_hard, (batch, s), **draw)) % n_hard  # any other one of Q̃
        alpha = torch.rand(batch, s, **draw)
        partner = torch.randint(n_hard, (batch, s_prime), **draw)
        beta = 0.5 * torch.rand(batch, s_prime, **draw)
        return Mixes(hardest.gather(1, first), hardest.gather(1, second), alpha,
                         hardest.gather(1, partner), beta)


def synthesize(q: Tensor, queue: Tensor, n_hard: int, s: int, s_prime: int,
          generator: torch.Generator | None = None, *, return_coefficients: bool = False):
    """Synthetic hard negatives by mixing, MoCHi (Kalantidis et al. 2020), per query:

        Q̃   = the n_hard negatives of ``queue`` most similar to q
        h_k  = normalize(α_k·n_i + (1 − α_k)·n_j),  n_i, n_j ∈ Q̃, i ≠ j,  α_k ~ U[0, 1),  k ≤ s
        h′_k = normalize(β_k·q + (1 − β_k)·n_j),    n_j ∈ Q̃,  β_k ~ U[0, 0.5),            k ≤ s′

    q (B, d) and queue (K, d) are L2-normalised. Returns (B, s + s′, d) unit vectors,
    the s mixes of two hard negatives then the s′ mixes with the query (query share
    below one half), in q's dtype and without gradient (computed under no_grad: the
    query is detached inside the mixing, as in the paper). Append them to the query's
    row with ``logits``; s = s′ = 0 gives (B, 0, d). The random draws
    (``draw_mixes``) use ``generator`` (on q's device) when given.

    With ``return_coefficients=True`` returns ``(synthetic, alpha, beta)``, alpha (B, s)
    and beta (B, s′). The caller skips synthesis during the warm-up epochs. Training
    does not build these vectors: ``mixed_logits`` gives their logits directly.
    """
    if q.dim() != 2 or queue.dim() != 2 or q.shape[1] != queue.shape[1]:
        raise ValueError(f"synthesize needs q (B, d) and queue (K, d); "
                         f"got {tuple(q.shape)} and {tuple(queue.shape)}")
    with torch.no_grad():
        query, keys = q.float(), queue.float()
        d = draw_mixes(query @ keys.T, n_hard, s, s_prime, generator)
        alpha, beta = d.alpha[..., None], d.beta[..., None]
        pair_mixes = alpha * keys[d.first] + (1 - alpha) * keys[d.second]
        query_mixes = beta * query[:, None] + (1 - beta) * keys[d.partner]
        synthetic = F.normalize(torch.cat([pair_mixes, query_mixes], dim=1), dim=-1).to(q.dtype)
    if return_coefficients:
        return synthetic, d.alpha, d.beta
    return synthetic


def logits(q: Tensor, synthetic: Tensor) -> Tensor:
    """Similarity of each query with its own synthetic negatives, (B, s + s′):
    ``logits[b, k] = q_b · synthetic[b, k]``. Append to the row: ``torch.cat([neg, extra], 1)``.
    The gradient reaches q, never the synthetic negatives."""
    if synthetic.dim() != 3 or synthetic.shape[0] != q.shape[0] or synthetic.shape[2] != q.shape[1]:
        raise ValueError(f"synthetic must be (B, s + s', d) for q {tuple(q.shape)}, "
                         f"got {tuple(synthetic.shape)}")
    return torch.einsum("bd,bnd->bn", q, synthetic.to(q.dtype))


def mixed_logits(q: Tensor, neg: Tensor, draw: Mixes, pair_similarity: Tensor) -> Tensor:
    """``logits(q, synthesize(...))`` for the mixes of ``draw_mixes``, without building the vectors.

    q (B, d) and the queue's keys n are unit vectors (MoCo normalises both); neg = q·queueᵀ
    (B, K) and ``pair_similarity`` (B, s) = n_first·n_second for each pair of ``draw_mixes``
    (``Mochi.pair_similarity``). Each logit is then a ratio of numbers already at hand, and
    MoCHi costs about what s + s′ more columns cost:

        q·h_k  = (α·neg_i + (1 − α)·neg_j) / ‖α·n_i + (1 − α)·n_j‖
        q·h′_k = (β·q·sg(q) + (1 − β)·neg_j) / ‖β·q + (1 − β)·n_j‖
        ‖a·x + b·y‖² = a² + b² + 2ab·x·y   for unit x, y

    The norms are constants (sg = stop-gradient) and the numerators are linear in q, so the
    gradient with respect to q is h_k, resp. h′_k: the synthetic negatives get no gradient,
    as in the paper. (B, s + s′), in at least float32.
    """
    a, b = draw.alpha, draw.beta  # (B, s) mixing weights of the pairs, (B, s′) query shares
    s = a.shape[1]
    # q·n for the three index sets, in one gather (one scatter in the backward pass):
    # n_i, n_j (B, s) the two keys of each pair, n_p (B, s′) the key mixed with the query
    n_i, n_j, n_p = neg.gather(1, torch.cat([draw.first, draw.second, draw.partner], 1)).float().split(
        [s, s, b.shape[1]], dim=1)
    with torch.no_grad():
        pair_norm = (a ** 2 + (1 - a) ** 2 + 2 * a * (1 - a) * pair_similarity.float()).clamp_min(0).sqrt()
        query_norm = (b ** 2 + (1 - b) ** 2 + 2 * b * (1 - b) * n_p).clamp_min(0).sqrt()
    q_self = (q.float() * q.detach().float()).sum(1, keepdim=True)  # (B, 1): value q·q = 1, gradient sg(q)
    pair_logits = (a * n_i + (1 - a) * n_j) / pair_norm.clamp_min(_NORM_EPS)
    query_logits = (b * q_self + (1 - b) * n_p) / query_norm.clamp_min(_NORM_EPS)
    return torch.cat([pair_logits, query_logits], dim=1)  # (B, s + s′)


class Mochi:
    """MoCHi's synthesis during training: ``logits`` draws the mixes of each query's row and
    returns their s + s′ logits (:func:`mixed_logits`), and the key–key similarities of the
    queue they need come from a table kept here, updated as keys are enqueued."""

    def __init__(self, n_hard: int, s: int, s_prime: int):
        self.n_hard, self.s, self.s_prime = n_hard, s, s_prime
        self._rows = None

    def logits(self, q: torch.Tensor, neg: torch.Tensor, moco, generator=None) -> torch.Tensor:
        """(B, s + s′) logits of the synthetic negatives of queries ``q`` (B, d), mixed from the hardest
        of the whole queue of ``moco`` (``neg`` = q·queueᵀ (B, K), before any selection)."""
        draw = draw_mixes(neg, self.n_hard, self.s, self.s_prime, generator)
        pairs = self.pair_similarity(moco.queue, moco.queue_ptr, draw.first, draw.second)  # (B, s)
        return mixed_logits(q, neg, draw, pairs)

    @torch.no_grad()
    def pair_similarity(self, queue: torch.Tensor, queue_ptr: torch.Tensor, i: torch.Tensor,
                        j: torch.Tensor) -> torch.Tensor:
        """queue[i]·queue[j] for index tensors i, j of one shape, ``queue_ptr`` the next slot to write.

        Read from a (K, K) table whose row r holds queue[r]·queueᵀ as the queue stood just
        after key r was enqueued: exact against every key enqueued before r or with it, so
        the pair is read from the row of its later key. :meth:`enqueued` then only writes the
        new keys' rows (n·K·d per step). Built on first use (K²·d), rebuilt after loading.
        """
        if self._rows is None or self._rows.device != queue.device:
            self._rows = queue @ queue.T  # (K, K), float32: only the encoder runs under autocast
        age = lambda index: (queue_ptr - 1 - index) % len(queue)  # 0 = the newest key
        i_is_later = age(i) <= age(j)
        return self._rows[torch.where(i_is_later, i, j), torch.where(i_is_later, j, i)]

    @torch.no_grad()
    def enqueued(self, queue: torch.Tensor, slots: torch.Tensor) -> None:
        """Keys were written to ``slots`` (n,) of ``queue`` (K, d): their rows of the table."""
        if self._rows is not None:
            self._rows[slots] = queue[slots] @ queue.T

    def forget(self) -> None:
        """The queue was replaced (a checkpoint was loaded): rebuild the table on next use."""
        self._rows = None
