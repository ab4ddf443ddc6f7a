"""Which negatives matter: per-query difficulty, subsets of the queue, mixing.

- ``difficulty_rank`` and ``select``: Cai et al. (2020) rank the negatives of each query
  over the queue by difficulty (the query-negative cosine similarity) and train on a
  subset of them. A dropped negative becomes ``-inf`` in ``neg`` (see ``cl.losses``).
- ``difficulty_bands``: what the difficulty bands hold and how much of the gradient
  they carry, for logging.
- ``mochi`` and ``mochi_logits``: hard negative mixing (Kalantidis et al. 2020), as the
  paper defines it; ``mochi_draw`` and ``mixed_logits``: the same logits as training
  computes them, from similarities already at hand; ``Mochi``: that synthesis during
  training, with the queue's key-key similarity table (notebook 05).
- ``batch_pairs``: the other source of negatives, the other views of the batch (SimCLR).

Notebook 02 explains the selections and the bands.

Ranks are per row and over finite entries only, so every function accepts rows that
already contain removed (``-inf``) entries: an unfilled queue, an earlier selection.
Ties in similarity go to the lower queue index (it counts as the harder one).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

MODES = ("all", "hardest", "drop_hardest", "easiest", "random", "drop_same_class")
KEEP_MODES = ("hardest", "easiest", "random")  # fraction = the share of the row kept
DROP_MODES = ("drop_hardest",)  # fraction = the share of the row removed

# Band edges on r / N, r = 0 the hardest of a row's N finite negatives (see difficulty_bands).
BAND_EDGES = (0.0, 0.001, 0.01, 0.05, 0.5, 1.0)
BAND_NAMES = ("hardest 0.1%", "0.1-1%", "1-5%", "5-50%", "easiest 50%")
HISTOGRAM_BINS = 40  # over [-1, 1]

# f·N within this of an integer counts as that integer: 0.07·100 = 7.000000000000001 is 7.
_INTEGER_SLACK = 1e-9
_NORM_EPS = 1e-12  # as F.normalize


def kept_count(n_finite: int | Tensor, mode: str, fraction: float | None = None) -> int | Tensor:
    """How many of a row's ``n_finite`` (N) finite negatives ``select`` keeps.

    The rounding always errs towards keeping, and a non-empty row keeps at least one:

        all                        N
        hardest, easiest, random   min(N, max(1, ⌈f·N⌉))    at least the fraction f is kept
        drop_hardest               max(1, N − ⌊f·N⌋)         at most the fraction f is removed

    and a row with N = 0 keeps 0; f·N within 1e-9 of an integer counts as that integer.
    ``n_finite`` is an int (returns an int) or an integer tensor of per-row counts
    (returns a long tensor). ``drop_same_class`` keeps a label-dependent number and has
    no count here.
    """
    _check_mode(mode, fraction)
    n = torch.as_tensor(n_finite, dtype=torch.float64)
    if mode == "all":
        keep = n
    elif mode in KEEP_MODES:
        keep = torch.ceil(fraction * n - _INTEGER_SLACK)
    elif mode in DROP_MODES:
        keep = n - torch.floor(fraction * n + _INTEGER_SLACK)
    else:
        raise ValueError(f"mode {mode!r} keeps a label-dependent number of negatives; "
                         "kept_count covers the others")
    keep = torch.minimum(keep.clamp(min=1), n).long()
    return keep if isinstance(n_finite, torch.Tensor) else int(keep)


def difficulty_rank(neg: Tensor) -> Tensor:
    """Rank of each negative within its row, 0 = hardest (most similar to the query).

    Finite entries of a row with N of them get the ranks 0..N−1; removed entries
    (−inf) rank after them. Ties go to the lower index. (B, K) long, no gradient.
    """
    return _rank_within_rows(neg, torch.isfinite(neg))


def select(neg: Tensor, mode: str, fraction: float | None = None, *, labels: Tensor | None = None,
           queue_labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """The subset of each query's negatives that the loss sees (Cai et al. 2020); notebook 02.

    Returns ``neg`` with the dropped entries set to −inf; the kept entries keep their
    gradient. Per row, over its N finite entries, ranked by ``difficulty_rank``:

        all              keep everything (returns ``neg`` itself)
        hardest          keep the kept_count hardest              (fraction = share kept)
        drop_hardest     remove the ⌊f·N⌋ hardest                 (fraction = share removed)
        easiest          keep the kept_count easiest              (fraction = share kept)
        random           keep kept_count uniformly at random      (fraction = share kept; the control)
        drop_same_class  remove every negative whose ``queue_labels`` entry equals the query's
                         ``labels`` entry (the oracle); a row that would be emptied keeps its
                         easiest same-class negative, the one that pushes the query least.

    Counts follow ``kept_count``. ``random`` draws from ``generator`` (on neg's device)
    when one is given.
    """
    _check_mode(mode, fraction)
    if mode == "all":
        return neg
    if neg.dim() != 2:
        raise ValueError(f"neg must be (B, K), got shape {tuple(neg.shape)}")
    with torch.no_grad():
        finite = neg > -math.inf  # not removed (one comparison: isfinite is four)
        n_finite = finite.sum(dim=1, keepdim=True)
        if mode == "drop_same_class":
            keep = _keep_other_classes(neg, finite, n_finite, labels, queue_labels)
        else:
            n_keep = kept_count(n_finite, mode, fraction)
            if mode == "random":
                keep = _random_subset(finite, n_finite, n_keep, generator)
            elif mode == "hardest":
                keep = _largest(neg, n_keep)
            else:  # easiest, drop_hardest: everything finite but the N − n_keep hardest
                keep = finite & ~_largest(neg, n_finite - n_keep)
    return torch.where(keep, neg, -math.inf)


MINE_RULES = ("nearest", "votes", "random")  # how a mined queue (cl.moco.MoCo.mine) ranks its bank


def mining_scores(sim: Tensor, rule: str, share: float = 0.05,
                  generator: torch.Generator | None = None) -> Tensor:
    """How hard each key of a bank is for a batch of queries, from sim (B, K) = q·bankᵀ; a mined
    queue takes the keys of highest score (K,):

        nearest  max_i sim_ik: the keys closest to some query, each query's very hardest
        votes    #{i : k is among query i's hardest ``share`` of the bank} + mean_i sim_ik / 4:
                 the keys in the most queries' hardest 5 % (the share Cai et al. find
                 sufficient), ties broken by the mean similarity (|mean| / 4 < 1 never
                 outweighs a vote)
        random   uniform draws (``generator``, on the CPU): the control, keys of the same number,
                 age and refill period as the others, chosen without regard to difficulty
    """
    if rule == "nearest":
        return sim.amax(0)
    if rule == "votes":
        hardest = sim.topk(kept_count(sim.shape[1], "hardest", share), dim=1).values[:, -1:]  # (B, 1)
        return (sim >= hardest).sum(0) + sim.mean(0) / 4
    if rule == "random":
        return torch.rand(sim.shape[1], generator=generator).to(sim.device)
    raise ValueError(f"mining rule must be one of {MINE_RULES}, not {rule!r}")


@torch.no_grad()
def difficulty_bands(pos: Tensor, neg: Tensor, t: float, same_class: Tensor | None = None) -> dict:
    """Statistics of the negatives by difficulty, for logging (no gradient).

    Bands: a row with N finite negatives, ranked r = 0 (hardest) .. N−1, puts rank r in
    band b when ⌊e_b·N⌋ ≤ r < ⌊e_{b+1}·N⌋ for e = BAND_EDGES = 0, 0.1%, 1%, 5%, 50%, 100%
    (names in BAND_NAMES). A band holds whole entries only, so it can be empty: with
    N = 100 the hardest 0.1% is empty and the 0.1-1% band is the single hardest. The
    hardest band is exactly what ``select(neg, "drop_hardest", 0.001)`` removes.

    Gradient share: for InfoNCE, ∂L/∂(neg_k/t) = p_k, the softmax probability of
    negative k over ``[pos, neg] / t``. The share of band b is Σ_{rows, k∈b} p_k over
    Σ_{rows, k} p_k, pooled over the batch; the shares sum to 1 (empty band: 0).

    Returns a JSON-serialisable dict:
        histogram_edges (41 floats), histogram_counts (40 ints): finite similarities over [-1, 1]
        band_names, band_counts (entries over the batch), gradient_share
        same_class_fraction: per band, the fraction of its entries that are same-class
            according to the (B, K) bool mask ``same_class``; None for an empty band or
            when no mask is given.
    """
    pos, neg = pos.float(), neg.float()
    finite = torch.isfinite(neg)
    band = _band_index(difficulty_rank(neg), finite.sum(dim=1, keepdim=True))[finite]
    n_bands = len(BAND_NAMES)

    probabilities = torch.softmax(torch.cat([pos[:, None], neg], dim=1) / t, dim=1)[:, 1:]
    mass = torch.bincount(band, weights=probabilities[finite].double(), minlength=n_bands)
    counts = torch.bincount(band, minlength=n_bands)

    if same_class is None:
        same_class_fraction = [None] * n_bands
    else:
        same = torch.bincount(band, weights=same_class[finite].double(), minlength=n_bands)
        same_class_fraction = [s / c if c else None for s, c in zip(same.tolist(), counts.tolist())]

    similarities = neg[finite].clamp(-1.0, 1.0)
    histogram = torch.histc(similarities, bins=HISTOGRAM_BINS, min=-1.0, max=1.0)
    return {
        "histogram_edges": torch.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1).tolist(),
        "histogram_counts": [int(c) for c in histogram.tolist()],
        "band_names": list(BAND_NAMES),
        "band_counts": counts.tolist(),
        "gradient_share": (mass / mass.sum()).tolist(),
        "same_class_fraction": same_class_fraction,
    }


class MochiDraw(NamedTuple):
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


def mochi_draw(neg: Tensor, n_hard: int, s: int, s_prime: int,
               generator: torch.Generator | None = None) -> MochiDraw:
    """Draw MoCHi's mixes for each query from its similarities ``neg`` (B, K) to the whole queue:

        Q̃ = the n_hard most similar queue entries;  for k ≤ s: n_i, n_j ∈ Q̃, i ≠ j, α_k ~ U[0, 1);
        for k ≤ s′: n_j ∈ Q̃, β_k ~ U[0, 0.5)

    (see ``mochi``). The draws use ``generator`` (on neg's device) when given.
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
        return MochiDraw(hardest.gather(1, first), hardest.gather(1, second), alpha,
                         hardest.gather(1, partner), beta)


def mochi(q: Tensor, queue: Tensor, n_hard: int, s: int, s_prime: int,
          generator: torch.Generator | None = None, *, return_coefficients: bool = False):
    """Synthetic hard negatives by mixing, MoCHi (Kalantidis et al. 2020), per query:

        Q̃   = the n_hard negatives of ``queue`` most similar to q
        h_k  = normalize(α_k·n_i + (1 − α_k)·n_j),  n_i, n_j ∈ Q̃, i ≠ j,  α_k ~ U[0, 1),  k ≤ s
        h′_k = normalize(β_k·q + (1 − β_k)·n_j),    n_j ∈ Q̃,  β_k ~ U[0, 0.5),            k ≤ s′

    q (B, d) and queue (K, d) are L2-normalised. Returns (B, s + s′, d) unit vectors,
    the s mixes of two hard negatives then the s′ mixes with the query (query share
    below one half), in q's dtype and without gradient (computed under no_grad: the
    query is detached inside the mixing, as in the paper). Append them to the query's
    row with ``mochi_logits``; s = s′ = 0 gives (B, 0, d). The random draws
    (``mochi_draw``) use ``generator`` (on q's device) when given.

    With ``return_coefficients=True`` returns ``(synthetic, alpha, beta)``, alpha (B, s)
    and beta (B, s′). The caller skips synthesis during the warm-up epochs. Training
    does not build these vectors: ``mixed_logits`` gives their logits directly.
    """
    if q.dim() != 2 or queue.dim() != 2 or q.shape[1] != queue.shape[1]:
        raise ValueError(f"mochi needs q (B, d) and queue (K, d); "
                         f"got {tuple(q.shape)} and {tuple(queue.shape)}")
    with torch.no_grad():
        query, keys = q.float(), queue.float()
        d = mochi_draw(query @ keys.T, n_hard, s, s_prime, generator)
        alpha, beta = d.alpha[..., None], d.beta[..., None]
        pair_mixes = alpha * keys[d.first] + (1 - alpha) * keys[d.second]
        query_mixes = beta * query[:, None] + (1 - beta) * keys[d.partner]
        synthetic = F.normalize(torch.cat([pair_mixes, query_mixes], dim=1), dim=-1).to(q.dtype)
    if return_coefficients:
        return synthetic, d.alpha, d.beta
    return synthetic


def mochi_logits(q: Tensor, synthetic: Tensor) -> Tensor:
    """Similarity of each query with its own synthetic negatives, (B, s + s′):
    ``logits[b, k] = q_b · synthetic[b, k]``. Append to the row: ``torch.cat([neg, extra], 1)``.
    The gradient reaches q, never the synthetic negatives."""
    if synthetic.dim() != 3 or synthetic.shape[0] != q.shape[0] or synthetic.shape[2] != q.shape[1]:
        raise ValueError(f"synthetic must be (B, s + s', d) for q {tuple(q.shape)}, "
                         f"got {tuple(synthetic.shape)}")
    return torch.einsum("bd,bnd->bn", q, synthetic.to(q.dtype))


def mixed_logits(q: Tensor, neg: Tensor, draw: MochiDraw, pair_similarity: Tensor) -> Tensor:
    """``mochi_logits(q, mochi(...))`` for the mixes of ``draw``, without building the vectors.

    q (B, d) and the queue's keys n are unit vectors (MoCo normalises both); neg = q·queueᵀ
    (B, K) and ``pair_similarity`` (B, s) = n_first·n_second for each pair of ``draw``
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



def batch_pairs(z: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The SimCLR source of negatives, as DCL and HCL were published: in-batch views.

    ``z`` (2B, d) holds the normalised embeddings of view 1 then view 2 of B images, and
    ``labels`` (2B,) their labels. Each of the 2B anchors has its other view as positive and
    the remaining 2B−2 views as negatives. Returns pos (2B,), neg (2B, 2B−2) and the labels
    of those negatives (2B, 2B−2), for the same-class oracle.
    """
    n = z.shape[0]
    b = n // 2
    partner = torch.arange(n, device=z.device).roll(b)
    sim = z @ z.T
    pos = sim[torch.arange(n, device=z.device), partner]
    others = torch.ones(n, n, dtype=torch.bool, device=z.device)
    others.fill_diagonal_(False)
    others[torch.arange(n, device=z.device), partner] = False
    neg = sim[others].view(n, n - 2)
    neg_labels = labels[None, :].expand(n, n)[others].view(n, n - 2)
    return pos, neg, neg_labels


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
        draw = mochi_draw(neg, self.n_hard, self.s, self.s_prime, generator)
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


def _largest(key, count):
    """Mask of the ``count`` (B, 1) largest finite entries of each row of ``key``, ties to the lower index.

    The same set as the first ``count`` ranks of ``_rank_within_rows``, found with ``topk``
    (cheaper than a full sort when count ≪ K): an entry is kept when it is at least the
    row's count-th largest value; only when that threshold is tied do the ties go in index
    order until the row has its count.
    """
    k_min, k_max = (int(count.min()), int(count.max())) if count.numel() else (0, 0)
    if k_max == 0:
        return torch.zeros_like(key, dtype=torch.bool)
    if k_min == k_max:  # the usual case, one count for every row: no need to sort the top
        threshold = key.topk(k_max, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    else:
        threshold = key.topk(k_max, dim=1).values.gather(1, (count - 1).clamp(min=0))
    keep = key >= threshold
    if bool((keep.sum(dim=1, keepdim=True) > count).any()):  # tied at the threshold
        above, ties = key > threshold, key == threshold
        needed = count - above.sum(dim=1, keepdim=True)
        keep = above | (ties & (ties.cumsum(dim=1) <= needed))
    return keep if k_min > 0 else keep & (count > 0)


def _random_subset(finite, n_finite, n_keep, generator):
    """Mask of ``n_keep`` (B, 1) entries per row, drawn uniformly without replacement from the
    row's finite ones, independently across rows.

    Full rows keeping at most 1/8 of K (the random control at 5%): the first n_keep distinct
    values of a sequence of 2·n_keep uniform draws from 0..K−1, a uniformly random subset (by
    symmetry), for the price of sorting 2·n_keep numbers per row. Otherwise, or when those
    draws hold fewer than n_keep distinct values: the n_keep largest of uniform random scores
    (Gumbel-top-k), which ranks the whole row.
    """
    batch, width = finite.shape  # (B, K)
    draw = dict(generator=generator, device=finite.device)
    k = int(n_keep.max()) if n_keep.numel() else 0
    if k and int(n_finite.min()) == width and 8 * k <= width:
        draws = torch.randint(width, (batch, 2 * k), **draw)  # (B, 2k) column indices, with repeats
        ordered, order = draws.sort(dim=1, stable=True)  # (B, 2k) each: sorted values, their positions
        first_in_order = torch.ones_like(ordered, dtype=torch.bool)
        first_in_order[:, 1:] = ordered[:, 1:] != ordered[:, :-1]  # (B, 2k): first occurrence of its value
        is_new = torch.empty_like(first_in_order).scatter_(1, order, first_in_order)  # (B, 2k), in draw order
        take = is_new & (is_new.cumsum(dim=1) <= n_keep)  # (B, 2k): the first n_keep distinct draws
        if bool((take.sum(dim=1, keepdim=True) == n_keep).all()):
            return torch.zeros(batch, width, dtype=torch.uint8, device=finite.device).scatter_add_(
                1, draws, take.to(torch.uint8)).bool()  # (B, K) mask
    return _largest(torch.rand(finite.shape, **draw).masked_fill(~finite, -math.inf), n_keep)


def _rank_within_rows(scores, valid):
    """Rank of each entry in its row by descending score, valid entries first; ties to
    the lower index (stable sort). (B, K) long."""
    with torch.no_grad():
        key = scores.masked_fill(~valid, -math.inf)
        order = torch.sort(key, dim=1, descending=True, stable=True).indices
        positions = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
        return torch.empty_like(order).scatter_(1, order, positions)


def _band_index(rank, n_finite):
    """Band of each rank: the number of inner edges ⌊e·N⌋ (e in BAND_EDGES[1:-1]) at or below it."""
    inner_edges = torch.tensor(BAND_EDGES[1:-1], dtype=torch.float64, device=rank.device)
    starts = torch.floor(inner_edges * n_finite + _INTEGER_SLACK).long()  # (B, 4), sorted per row
    return torch.searchsorted(starts, rank, right=True)


def _keep_other_classes(neg, finite, n_finite, labels, queue_labels):
    """drop_same_class: keep the finite negatives of another class; a row left empty keeps its easiest."""
    if labels is None or queue_labels is None:
        raise ValueError("mode 'drop_same_class' needs labels (B,) and queue_labels (K,) or (B, K)")
    if queue_labels.dim() == 1:  # one queue shared by every query (MoCo); (B, K) for in-batch negatives
        queue_labels = queue_labels[None, :]
    if (labels.shape != neg.shape[:1] or queue_labels.shape[1:] != neg.shape[1:]
            or queue_labels.shape[0] not in (1, len(neg))):
        raise ValueError(
            f"labels must be (B,) = {tuple(neg.shape[:1])} and queue_labels (K,) = {tuple(neg.shape[1:])} "
            f"or (B, K) = {tuple(neg.shape)}; got {tuple(labels.shape)} and {tuple(queue_labels.shape)}"
        )
    keep = finite & (labels[:, None] != queue_labels)
    emptied = ~keep.any(dim=1, keepdim=True)
    if not bool(emptied.any()):  # the usual case: no ranking needed
        return keep
    return keep | (emptied & (difficulty_rank(neg) == n_finite - 1))


def _check_mode(mode, fraction):
    if mode not in MODES:
        raise ValueError(f"unknown selection mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode in KEEP_MODES + DROP_MODES and (fraction is None or not 0 <= fraction <= 1):
        raise ValueError(f"mode {mode!r} needs a fraction in [0, 1], got {fraction}")
