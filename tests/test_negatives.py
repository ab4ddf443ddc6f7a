"""Tests of cl.negatives: selection counts and contents, difficulty bands, MoCHi."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from cl import mochi
from cl.losses import debiased, hard, info_nce
from cl.negatives import (
    BAND_NAMES,
    DROP_MODES,
    KEEP_MODES,
    MODES,
    difficulty_bands,
    difficulty_rank,
    kept_count,
    mining_scores,
    select,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
COUNT_MODES = KEEP_MODES + DROP_MODES
LOSSES = {
    "info_nce": lambda pos, neg: info_nce(pos, neg, 0.2),
    "debiased": lambda pos, neg: debiased(pos, neg, 0.2, 0.1),
    "hard": lambda pos, neg: hard(pos, neg, 0.2, 0.1, 1.0),
}


def unit(n, dim, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=1).to(device)


def similarities(batch=5, n_neg=40, removed=0.0, seed=0, device="cpu"):
    """neg (B, K) from real unit vectors, with about `removed` of it already -inf
    (so the rows have different numbers of finite entries)."""
    neg = unit(batch, 8, seed) @ unit(n_neg, 8, seed + 1).T
    drop = torch.rand(batch, n_neg, generator=torch.Generator().manual_seed(seed + 2)) < removed
    return neg.masked_fill(drop, -math.inf).to(device)


def finite_counts(neg):
    return torch.isfinite(neg).sum(1)


# --- kept_count -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, mode, fraction, expected",
    [
        (4096, "hardest", 0.05, 205),  # ⌈204.8⌉
        (4096, "random", 0.05, 205),
        (4096, "easiest", 0.95, 3892),  # ⌈3891.2⌉
        (4096, "drop_hardest", 0.05, 3892),  # 4096 − ⌊204.8⌋
        (4096, "drop_hardest", 0.001, 4092),  # 4096 − ⌊4.096⌋
        (100, "drop_hardest", 0.001, 100),  # less than one entry: nothing removed
        (100, "hardest", 0.07, 7),  # 0.07·100 = 7.000000000000001 still keeps 7
        (90, "drop_hardest", 0.7, 27),  # 0.7·90 = 62.99999999999999 still removes 63
        (10, "hardest", 0.0, 1),  # at least one kept
        (10, "drop_hardest", 1.0, 1),  # never all removed
        (10, "all", None, 10),
        (0, "hardest", 0.5, 0),  # an empty row stays empty
    ],
)
def test_kept_count_rounding(n, mode, fraction, expected):
    assert kept_count(n, mode, fraction) == expected


def test_kept_count_of_a_tensor_is_per_row():
    counts = torch.tensor([0, 1, 7, 100])
    assert kept_count(counts, "hardest", 0.3).tolist() == [0, 1, 3, 30]
    assert kept_count(counts, "drop_hardest", 0.3).tolist() == [0, 1, 5, 70]


# --- select: counts and contents ---------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_neg", [1, 7, 100, 1000])
@pytest.mark.parametrize("removed", [0.0, 0.4])
@pytest.mark.parametrize("mode", COUNT_MODES)
def test_select_keeps_exactly_kept_count(mode, removed, n_neg, device):
    neg = similarities(n_neg=n_neg, removed=removed, device=device)
    for fraction in (0.0, 0.001, 0.05, 0.3, 0.95, 1.0):
        out = select(neg, mode, fraction, generator=torch.Generator(device).manual_seed(0))
        expected = kept_count(finite_counts(neg), mode, fraction)
        assert torch.equal(finite_counts(out), expected), (mode, fraction)
        assert (finite_counts(out) >= (finite_counts(neg) > 0).long()).all()  # one always remains
        kept = torch.isfinite(out)
        assert torch.equal(out[kept], neg[kept])  # kept entries are unchanged


def kept_and_dropped(neg, out, row):
    finite = torch.isfinite(neg[row])
    kept = torch.isfinite(out[row])
    return neg[row][kept], neg[row][finite & ~kept]


@pytest.mark.parametrize("removed", [0.0, 0.4])
def test_hardest_keeps_the_top_and_drop_hardest_removes_it(removed):
    neg = similarities(n_neg=200, removed=removed)
    hardest = select(neg, "hardest", 0.05)
    without_hardest = select(neg, "drop_hardest", 0.05)
    for row in range(len(neg)):
        kept, dropped = kept_and_dropped(neg, hardest, row)
        assert kept.min() >= dropped.max()
        kept, dropped = kept_and_dropped(neg, without_hardest, row)
        assert len(dropped) == math.floor(0.05 * torch.isfinite(neg[row]).sum().item())
        assert dropped.min() >= kept.max()


@pytest.mark.parametrize("removed", [0.0, 0.4])
def test_easiest_keeps_the_bottom(removed):
    neg = similarities(n_neg=200, removed=removed)
    easiest = select(neg, "easiest", 0.3)
    for row in range(len(neg)):
        kept, dropped = kept_and_dropped(neg, easiest, row)
        assert kept.max() <= dropped.min()


def test_ties_go_to_the_lower_index():
    neg = torch.zeros(2, 6)
    neg[1, 0] = -math.inf
    assert difficulty_rank(neg).tolist() == [[0, 1, 2, 3, 4, 5], [5, 0, 1, 2, 3, 4]]
    hardest_half = [[1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0]]
    easiest_half = [[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
    assert torch.isfinite(select(neg, "hardest", 0.5)).long().tolist() == hardest_half
    assert torch.isfinite(select(neg, "easiest", 0.5)).long().tolist() == easiest_half
    many_ties = torch.zeros(1, 5000)  # long enough for an unstable sort to reorder
    assert torch.equal(difficulty_rank(many_ties)[0], torch.arange(5000))


def test_select_all_returns_neg_unchanged():
    neg = similarities(removed=0.3)
    assert select(neg, "all") is neg


def test_random_is_reproducible_and_differs_across_rows():
    neg = similarities(batch=1, n_neg=100).expand(4, -1)  # four identical rows
    first = select(neg, "random", 0.2, generator=torch.Generator().manual_seed(1))
    again = select(neg, "random", 0.2, generator=torch.Generator().manual_seed(1))
    other = select(neg, "random", 0.2, generator=torch.Generator().manual_seed(2))
    kept = torch.isfinite(first)
    assert torch.equal(kept, torch.isfinite(again))
    assert not torch.equal(kept, torch.isfinite(other))
    assert len({tuple(row.tolist()) for row in kept}) == 4


@pytest.mark.parametrize("n_neg, fraction", [(4096, 0.05), (400, 0.3)])  # sampled by draws, by ranking
def test_random_keeps_every_negative_equally_often(n_neg, fraction):
    neg = similarities(batch=1, n_neg=n_neg).expand(2000, -1)
    kept = torch.isfinite(select(neg, "random", fraction, generator=torch.Generator().manual_seed(0)))
    p = kept_count(n_neg, "random", fraction) / n_neg  # each column's chance to be kept
    z = (kept.sum(0) - 2000 * p) / math.sqrt(2000 * p * (1 - p))  # binomial, standardised
    assert z.abs().max() < 6  # no column favoured or avoided
    assert 0.9 < z.pow(2).mean() < 1.1  # the spread of independent draws (chi-square / dof)


def test_random_keeps_only_finite_entries():
    neg = similarities(n_neg=50, removed=0.5)
    out = select(neg, "random", 0.9, generator=torch.Generator().manual_seed(0))
    assert not (torch.isfinite(out) & ~torch.isfinite(neg)).any()


def test_drop_same_class_removes_exactly_the_same_class():
    neg = similarities(batch=4, n_neg=30, removed=0.2)
    labels = torch.tensor([0, 1, 2, 3])
    queue_labels = torch.arange(30) % 3  # no queue entry has label 3
    out = select(neg, "drop_same_class", labels=labels, queue_labels=queue_labels)
    same = labels[:, None] == queue_labels[None, :]
    finite = torch.isfinite(neg)
    assert not (torch.isfinite(out) & same).any()
    assert torch.equal(torch.isfinite(out), finite & ~same)
    assert torch.equal(out[3], neg[3])


def test_drop_same_class_keeps_the_easiest_of_a_row_it_would_empty():
    neg = torch.tensor([[0.5, -0.2, -math.inf, 0.1], [0.5, -0.2, 0.3, 0.1]])
    labels = torch.tensor([7, 7])
    queue_labels = torch.tensor([7, 7, 7, 7])
    out = select(neg, "drop_same_class", labels=labels, queue_labels=queue_labels)
    assert torch.isfinite(out).tolist() == [[False, True, False, False], [False, True, False, False]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="hardest_5"), "valid modes: all, hardest, drop_hardest, easiest, random, drop_same_class"),
        (dict(mode="hardest"), "needs a fraction"),
        (dict(mode="random", fraction=1.5), "needs a fraction in"),
        (dict(mode="drop_hardest", fraction=-0.1), "needs a fraction in"),
        (dict(mode="drop_same_class"), "needs labels"),
        (dict(mode="drop_same_class", labels=torch.zeros(5), queue_labels=torch.zeros(3)), "queue_labels"),
    ],
)
def test_select_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select(similarities(), **kwargs)


def test_kept_count_has_no_count_for_drop_same_class():
    with pytest.raises(ValueError, match="label-dependent"):
        kept_count(10, "drop_same_class")


# --- gradients: to q, never to the queue ---------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", MODES)
def test_gradient_reaches_q_and_not_the_queue(mode, device):
    q = unit(6, 8, 0, device).requires_grad_(True)
    k = unit(6, 8, 1, device)
    queue = unit(50, 8, 2, device)
    labels, queue_labels = torch.arange(6, device=device) % 3, torch.arange(50, device=device) % 3
    synthetic = mochi.synthesize(q, queue, n_hard=10, s=4, s_prime=2)
    for loss in LOSSES.values():
        neg = select(q @ queue.T, mode, 0.3, labels=labels, queue_labels=queue_labels)
        neg = torch.cat([neg, mochi.logits(q, synthetic)], 1)
        q.grad = None
        loss((q * k).sum(1), neg).backward()
        assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    assert queue.grad is None and not queue.requires_grad


def test_select_passes_gradient_only_through_kept_entries():
    neg = similarities(n_neg=30, removed=0.2).requires_grad_(True)
    out = select(neg, "hardest", 0.3)
    torch.where(torch.isfinite(out), out, 0.0).sum().backward()
    assert torch.equal(neg.grad, torch.isfinite(out).float())


# --- difficulty bands ---------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_band_shares_sum_to_one_and_are_json(device):
    neg = similarities(batch=8, n_neg=1000, removed=0.3, device=device)
    pos = torch.full((8,), 0.5, device=device)
    stats = difficulty_bands(pos, neg, 0.1)
    assert sum(stats["gradient_share"]) == pytest.approx(1.0)
    assert stats["band_names"] == list(BAND_NAMES)
    assert sum(stats["band_counts"]) == finite_counts(neg).sum().item()
    assert sum(stats["histogram_counts"]) == finite_counts(neg).sum().item()
    assert len(stats["histogram_edges"]) == len(stats["histogram_counts"]) + 1
    assert stats["same_class_fraction"] == [None] * len(BAND_NAMES)
    json.dumps(stats)


def test_hardest_band_is_what_drop_hardest_removes():
    neg = similarities(batch=8, n_neg=3000, removed=0.3)
    stats = difficulty_bands(torch.zeros(8), neg, 0.1)
    removed = (finite_counts(neg) - finite_counts(select(neg, "drop_hardest", 0.001))).sum().item()
    assert stats["band_counts"][0] == removed > 0


def test_the_hardest_band_carries_the_gradient_when_it_dominates():
    neg = torch.full((3, 1000), -0.5)
    neg[:, 0] = 0.9  # rank 0 of each row: the hardest 0.1% band
    stats = difficulty_bands(torch.full((3,), 0.8), neg, 0.05)
    shares = stats["gradient_share"]
    assert max(range(len(shares)), key=shares.__getitem__) == 0
    assert shares[0] > 0.99


def test_band_same_class_fraction():
    neg = torch.linspace(0.99, -0.99, 1000).expand(2, -1)  # rank = index
    same_class = torch.zeros(2, 1000, dtype=torch.bool)
    same_class[:, [0, 5, 20, 600]] = True
    stats = difficulty_bands(torch.ones(2), neg, 0.1, same_class)
    # ranks 0 | 1-9 | 10-49 | 50-499 | 500-999, two rows
    assert stats["band_counts"] == [2, 18, 80, 900, 1000]
    assert stats["same_class_fraction"] == pytest.approx([1.0, 1 / 9, 1 / 40, 0.0, 1 / 500])


def test_band_edges_round_down_to_whole_entries():
    stats = difficulty_bands(torch.zeros(1), similarities(batch=1, n_neg=4096), 0.2)
    # edges ⌊4.096⌋ = 4, ⌊40.96⌋ = 40, ⌊204.8⌋ = 204, 2048
    assert stats["band_counts"] == [4, 36, 164, 1844, 2048]


def test_bands_of_a_small_queue_can_be_empty():
    neg = similarities(batch=4, n_neg=100)
    stats = difficulty_bands(torch.zeros(4), neg, 0.2, torch.ones(4, 100, dtype=torch.bool))
    assert stats["band_counts"] == [0, 4, 16, 180, 200]
    assert stats["gradient_share"][0] == 0.0
    assert stats["same_class_fraction"][0] is None
    assert sum(stats["gradient_share"]) == pytest.approx(1.0)
    json.dumps(stats)


def test_drop_same_class_accepts_per_row_labels_for_in_batch_negatives():
    neg = torch.tensor([[0.9, 0.5, 0.1], [0.8, 0.7, 0.2]])
    labels = torch.tensor([0, 1])
    per_row = torch.tensor([[0, 1, 2], [1, 1, 0]])  # each anchor has its own negatives (SimCLR source)
    out = select(neg, "drop_same_class", labels=labels, queue_labels=per_row)
    assert torch.isinf(out).tolist() == [[True, False, False], [True, True, False]]


def test_mining_ranks_by_the_nearest_query_or_by_the_votes_of_every_querys_hardest():
    sim = torch.tensor([[0.9, 0.8, 0.1, 0.0, 0.2, 0.3],
                        [0.1, 0.85, 0.9, 0.0, 0.2, 0.3],
                        [0.1, 0.8, 0.2, 0.0, 0.95, 0.3]])
    # nearest: key 4 is the closest to one query; key 1 is hard for all three but nearest to none
    nearest = mining_scores(sim, "nearest")
    assert nearest.argmax() == 4 and nearest[1] < nearest[0]
    # votes, each query's hardest 2 of 6: key 1 has three votes; keys 4, 2, 0 one each, in the order of
    # their mean similarity; then key 5 (no vote, mean 0.3) before key 3
    votes = mining_scores(sim, "votes", share=2 / 6)
    assert votes.argsort(descending=True).tolist() == [1, 4, 2, 0, 5, 3]
    with pytest.raises(ValueError, match="mining rule must be one of"):
        mining_scores(sim, "furthest")


def test_random_mining_is_the_seeded_control():
    sim = torch.randn(4, 50)
    draw = lambda seed: mining_scores(sim, "random", generator=torch.Generator().manual_seed(seed))
    assert draw(0).shape == (50,) and torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))
