"""Which negatives matter: per-query difficulty, subsets of the queue, the in-batch source.

- ``difficulty_rank`` and ``select``: Cai et al. (2020) rank the negatives of each query
  over the queue by difficulty (the query-negative cosine similarity) and train on a
  subset of them. A dropped negative becomes ``-inf`` in ``neg`` (see ``cl.losses``).
- ``difficulty_bands``: what the difficulty bands hold and how much of the gradient
  they carry, for logging.
- ``batch_pairs``: the other source of negatives, the other views of the batch (SimCLR).
- ``mining_scores``: how a mined queue (``cl.moco.MoCo``) ranks its bank.

Hard negative mixing (MoCHi), which adds negatives rather than choosing among them, is
``cl.mochi``.

Notebook 02 explains the selections and the bands.

Ranks are per row and over finite entries only, so every function accepts rows that
already contain removed (``-inf``) entries: an unfilled queue, an earlier selection.
Ties in similarity go to the lower queue index (it counts as the harder one).
"""

from __future__ import annotations

import math

import torch
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
