"""Tests of cl.difficulty on tiny probe sets whose answers are known by construction."""

import math

import pytest
import torch
import torch.nn.functional as F

from cl import difficulty
from cl.difficulty import (
    ANTI_CORRELATED,
    CORRELATED,
    NEITHER,
    SAME_CLASS,
    class_pair_difficulty,
    negative_share,
    negative_vs_pair,
    pair_consistency,
    percentiles,
    ranked_class_pairs,
    semantic_correlation,
    semantic_levels,
    shuffled_globally,
    shuffled_within_class_pairs,
)

NAN = math.nan


def generator(seed):
    return torch.Generator().manual_seed(seed)


def at_angles(degrees):
    """Unit vectors in the plane at these angles: z_i · z_j = cos(θ_i − θ_j)."""
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1)


def random_percentiles(n_probe=40, dim=8, seed=0):
    return percentiles(F.normalize(torch.randn(n_probe, dim, generator=generator(seed)), dim=1))


def class_determined(labels, seed=0):
    """pct[i, j] = v[labels[i], labels[j]] (distinct random values per ordered class pair), NaN diagonal."""
    n_classes = int(labels.max()) + 1
    values = torch.rand(n_classes, n_classes, generator=generator(seed), dtype=torch.float64)
    return values[labels[:, None], labels[None, :]].fill_diagonal_(NAN)


def chance_bound(n_pairs, n_sd=4):
    """|ρ| bound for a random permutation of n_pairs entries: ρ has mean 0 and sd 1/√(n − 1)."""
    return n_sd / math.sqrt(n_pairs - 1)


# --- percentiles -------------------------------------------------------------------------

def test_percentiles_of_a_hand_made_probe_set():
    # A = (1, 0), B = (0, 1), C = (−1, 0), D = (0.6, 0.8); every similarity is exact, so B's row
    # has an exact tie: B·A = B·C = 0 below B·D = 0.8, ranks 0 and 1 averaged to 0.5, / (n − 1) = 2.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    expected = torch.tensor([
        [NAN, 0.5, 0.0, 1.0],  # A: D (0.6) > B (0) > C (−1)
        [0.25, NAN, 0.25, 1.0],  # B: D (0.8) > A = C (0)
        [0.0, 1.0, NAN, 0.5],  # C: B (0) > D (−0.6) > A (−1)
        [0.5, 1.0, 0.0, NAN],  # D: B (0.8) > A (0.6) > C (−0.6)
    ], dtype=torch.float64)
    torch.testing.assert_close(percentiles(z), expected, equal_nan=True)


def test_every_row_without_ties_holds_k_over_n_minus_1_and_the_diagonal_is_nan():
    percentiles = random_percentiles(n_probe=7)
    assert percentiles.diagonal().isnan().all()
    off_diagonal = percentiles[~torch.eye(7, dtype=torch.bool)].view(7, 6)
    expected = torch.arange(6, dtype=torch.float64) / 5  # 0, 1/5, ..., 1
    torch.testing.assert_close(off_diagonal.sort(dim=1).values, expected.expand(7, 6))


def test_percentiles_need_two_negatives_per_query():
    with pytest.raises(ValueError, match="P >= 3"):
        percentiles(torch.eye(2))


# --- class_pair_difficulty -------------------------------------------------------------------------

def test_class_pair_difficulty_finds_the_class_built_to_be_hardest():
    # class 0 at 0° and 100°, class 1 at 45° and 55° (between them), class 2 at 230° and 250° (far).
    # Query 0°:   45° (cos 45°) > 55° > 100° (cos 100°) > 250° (cos 110°) > 230° (cos 130°)
    # Query 100°: 55° (cos 45°) > 45° > 0° (cos 100°) > 230° (cos 130°) > 250° (cos 150°)
    # so each class-0 query gives class 1 the percentiles 1 and 3/4, its own class 1/2, class 2 1/4 and 0.
    z = at_angles([0.0, 100.0, 45.0, 55.0, 230.0, 250.0])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    difficulty = class_pair_difficulty(percentiles(z), labels, 3)
    torch.testing.assert_close(difficulty[0], torch.tensor([0.5, 0.875, 0.125], dtype=torch.float64))
    assert int(difficulty[0].argmax()) == 1


def test_class_pair_difficulty_keeps_same_class_pairs_and_symmetrises():
    # pct[i, j] = 10·labels[i] + labels[j] off the diagonal: every class pair's mean is that value,
    # including (a, a) over the i ≠ j of class a; a class with one image has no same-class pair (NaN).
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    percentiles = (10.0 * labels[:, None] + labels[None, :]).double().fill_diagonal_(NAN)
    difficulty = class_pair_difficulty(percentiles, labels, 4)
    expected = 10.0 * torch.arange(4.0)[:, None] + torch.arange(4.0)[None, :]
    expected[2, 2] = NAN  # class 2 has one image
    expected[3, :] = expected[:, 3] = NAN  # class 3 has none
    torch.testing.assert_close(difficulty, expected.double(), equal_nan=True)
    torch.testing.assert_close(class_pair_difficulty(percentiles, labels, 4, symmetric=True),
                               (expected + expected.T).double() / 2, equal_nan=True)


# --- semantic_levels and semantic_correlation -------------------------------------------

def test_difficulty_rising_with_semantic_similarity_gives_ordered_levels_and_rho_one():
    # Two images per class, classes 0 and 1 close (pair A), 2 and 3 close (pair B):
    #   class 0: a0 = (0.6, 0.8, 0, 0)   class 1: a1 = (0.6, −0.8, 0, 0)      a0·a1 = 0.36 − 0.64 = −0.28
    #   class 2: b0 = (−0.6, 0, 0.8, 0)   class 3: b1 = (−0.6, 0, −0.8, 0)    across A and B: −0.36
    # S (an lca depth): 3 on the diagonal, 2 within A or B, 1 across. Each query's 7 negatives: its twin
    # (hardest, 1), the 2 images of its sibling class (ranks 4, 5 → 0.75), the 4 across (ranks 0..3 → 0.25).
    a0, a1, b0, b1 = [0.6, 0.8, 0, 0], [0.6, -0.8, 0, 0], [-0.6, 0, 0.8, 0], [-0.6, 0, -0.8, 0]
    z = torch.tensor([a0, a0, a1, a1, b0, b0, b1, b1], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    similarity = torch.tensor([[3, 2, 1, 1], [2, 3, 1, 1], [1, 1, 3, 2], [1, 1, 2, 3]], dtype=torch.float64)
    ranks = percentiles(z)

    levels = semantic_levels(ranks, labels, similarity)
    assert list(levels) == [1.0, 2.0, SAME_CLASS]
    # ordered class pairs × 2 × 2 images: 8 across, 4 within A or B; same class: 4 classes × 2 ordered twins
    assert [len(v) for v in levels.values()] == [32, 16, 8]
    for values, expected in zip(levels.values(), [0.25, 0.75, 1.0]):
        torch.testing.assert_close(values, torch.full_like(values, expected))

    correlation = semantic_correlation(class_pair_difficulty(ranks, labels, 4), similarity)
    assert correlation.rho == pytest.approx(1.0)
    assert correlation.n_pairs == 6
    assert correlation.p_value < 0.05


def test_semantic_levels_leave_out_levels_without_negatives_and_missing_entries():
    labels = torch.tensor([0, 0, 1])
    similarity = torch.tensor([[1.0, 0.5, 0.2], [0.5, 1.0, 0.2], [0.2, 0.2, 1.0]])  # class 2 absent
    percentiles = torch.tensor([[NAN, 0.9, 0.1], [0.8, NAN, NAN], [0.3, 0.4, NAN]], dtype=torch.float64)
    levels = semantic_levels(percentiles, labels, similarity)
    assert list(levels) == [0.5, SAME_CLASS]
    torch.testing.assert_close(levels[0.5], torch.tensor([0.1, 0.3, 0.4], dtype=torch.float64))
    torch.testing.assert_close(levels[SAME_CLASS], torch.tensor([0.9, 0.8], dtype=torch.float64))


# --- ranked_class_pairs ----------------------------------------------------------------------------

def ten_class_similarity(seed=0):
    """(10, 10) symmetric S whose 45 off-diagonal values are distinct, assigned to the pairs at random."""
    first, second = torch.triu_indices(10, 10, offset=1)
    similarity = torch.ones(10, 10, dtype=torch.float64)
    values = torch.randperm(45, generator=generator(seed)).double() / 45  # 0, 1/45, ..., 44/45
    similarity[first, second] = similarity[second, first] = values
    return similarity


def test_ranked_class_pairs_labels_constructed_pairs_at_the_thirds():
    # The pairs in order of similarity p_1, ..., p_45 get these difficulty ranks (1 = hardest); n/3 = 15.
    difficulty_ranks = ([45, 31, 30, 16, 15] + list(range(1, 11))  # p_1..p_15, the semantically close third
                        + [11, 12, 13, 14] + list(range(17, 30)) + list(range(32, 45)))  # p_16..p_45
    expected_labels = ([ANTI_CORRELATED] * 2  # p_1: closest yet easiest; p_2 at rank 31 > 30
                       + [NEITHER] * 2  # ranks 30 and 16: neither among the easiest nor the hardest third
                       + [CORRELATED] * 11  # p_5 at rank 15, p_6..p_15 at ranks 1..10
                       + [NEITHER] * 30)  # p_16..p_45 are not close, whatever their difficulty
    similarity = ten_class_similarity()
    by_similarity = sorted(((similarity[a, b].item(), a, b) for a in range(10) for b in range(a + 1, 10)),
                           reverse=True)
    difficulty = torch.zeros(10, 10, dtype=torch.float64)
    for (_, a, b), rank in zip(by_similarity, difficulty_ranks):
        difficulty[a, b] = difficulty[b, a] = 1 - rank / 45
    names = [f"c{k}" for k in range(10)]

    table = ranked_class_pairs(difficulty, similarity, names)
    assert len(table) == 45
    assert list(zip(table.class_a, table.class_b)) == [(f"c{a}", f"c{b}") for _, a, b in by_similarity]
    assert list(table.similarity_rank) == list(range(1, 46))
    assert list(table.difficulty_rank) == difficulty_ranks
    assert list(table.label) == expected_labels
    # an ordered matrix with the same pair means gives the same table: D[a, b] = 2 d, D[b, a] = 0
    assert ranked_class_pairs(2 * difficulty.triu(1), similarity, names).equals(table)


def test_correlation_over_the_45_pairs_is_plus_or_minus_one_for_monotone_difficulty():
    similarity = ten_class_similarity(seed=1)
    rising = semantic_correlation(similarity ** 3, similarity)
    falling = semantic_correlation(-similarity, similarity)
    assert (rising.rho, rising.n_pairs) == (pytest.approx(1.0), 45)
    assert falling.rho == pytest.approx(-1.0)


# --- pair_consistency and its controls -------------------------------------------------------------

def test_a_fixed_ranking_is_fully_consistent():
    percentiles = random_percentiles()
    assert pair_consistency(percentiles, percentiles) == pytest.approx(1.0)
    assert pair_consistency(percentiles, percentiles ** 3) == pytest.approx(1.0)  # ranks, not values
    assert pair_consistency(percentiles, 1 - percentiles) == pytest.approx(-1.0)


def test_a_global_shuffle_has_consistency_near_zero():
    percentiles = random_percentiles(n_probe=40)
    n_pairs = 40 * 39
    for seed in range(3):
        shuffled = shuffled_globally(percentiles, generator(seed))
        assert abs(pair_consistency(percentiles, shuffled)) < chance_bound(n_pairs)
    assert shuffled.diagonal().isnan().all()
    off_diagonal = ~torch.eye(40, dtype=torch.bool)
    torch.testing.assert_close(shuffled[off_diagonal].sort().values, percentiles[off_diagonal].sort().values)


def test_within_class_pair_shuffle_keeps_each_class_pairs_values():
    labels = torch.arange(12) % 3
    percentiles = random_percentiles(n_probe=12)
    shuffled = shuffled_within_class_pairs(percentiles, labels, generator(0))
    assert shuffled.diagonal().isnan().all()
    assert not torch.equal(shuffled.nan_to_num(), percentiles.nan_to_num())
    for a in range(3):
        for b in range(3):
            block = (labels[:, None] == a) & (labels[None, :] == b) & ~torch.eye(12, dtype=torch.bool)
            torch.testing.assert_close(shuffled[block].sort().values, percentiles[block].sort().values)


def test_class_membership_explains_all_when_class_pairs_determine_difficulty():
    labels = torch.arange(40) % 4
    percentiles = class_determined(labels)
    within = shuffled_within_class_pairs(percentiles, labels, generator(0))
    assert pair_consistency(percentiles, within) == pytest.approx(1.0)  # nothing left to destroy
    # the global shuffle destroys the class structure too: class membership alone beats it
    globally = shuffled_globally(percentiles, generator(0))
    assert abs(pair_consistency(percentiles, globally)) < chance_bound(40 * 39)


def test_class_membership_explains_nothing_when_difficulty_is_random_within_class_pairs():
    # Labels unrelated to z. The expected consistency of the control is the share of rank variance
    # between the G = 16 class pairs, about (G − 1)/(N − 1) here, and its spread about 1/√(N − 1).
    labels = torch.arange(40) % 4
    percentiles = random_percentiles(n_probe=40, seed=1)
    n_pairs = 40 * 39
    for seed in range(3):
        within = shuffled_within_class_pairs(percentiles, labels, generator(seed))
        assert abs(pair_consistency(percentiles, within)) < 15 / (n_pairs - 1) + chance_bound(n_pairs)


# --- negative_vs_pair ------------------------------------------------------------------------------

def test_difficulty_that_belongs_to_the_negative_has_share_one():
    n_probe = 40
    column = torch.randn(n_probe, generator=generator(0), dtype=torch.float64)
    percentiles = column.expand(n_probe, n_probe).clone().fill_diagonal_(NAN)  # pct[i, j] = c_j
    result = negative_vs_pair(percentiles, generator(1))
    assert result["share"] == pytest.approx(1.0)
    # the within-row shuffle leaves no negative effect: its share is at chance, about 1/P
    assert result["shuffled_share"] < 4 / n_probe


def test_iid_noise_sits_at_chance_like_its_within_row_shuffle():
    # For i.i.d. Gaussian entries R² ~ Beta((P − 1)/2, (N − P)/2): mean (P − 1)/(N − 1), sd ≈ √(2·mean/N).
    n_probe = 40
    n_entries = n_probe * (n_probe - 1)
    chance = (n_probe - 1) / (n_entries - 1)
    sd = math.sqrt(2 * chance / n_entries)
    noise = torch.randn(n_probe, n_probe, generator=generator(0), dtype=torch.float64).fill_diagonal_(NAN)
    result = negative_vs_pair(noise, generator(1))
    assert result["share"] == pytest.approx(chance, abs=4 * sd)
    assert result["shuffled_share"] == pytest.approx(chance, abs=4 * sd)


def test_negative_share_of_an_exact_half_and_half_matrix():
    # x_ij = c_j + e_ij with every column of e summing to 0 over i ≠ j and Σ e² = Σ_j n_j (c_j − c̄)²:
    # between-negative and within-negative sums of squares are equal, so R² = 1/2 exactly.
    n_probe = 9
    off_diagonal = ~torch.eye(n_probe, dtype=torch.bool)
    column = torch.randn(n_probe, generator=generator(0), dtype=torch.float64)
    noise = torch.randn(n_probe, n_probe, generator=generator(1), dtype=torch.float64) * off_diagonal
    noise = (noise - noise.sum(dim=0) / (n_probe - 1)) * off_diagonal  # column sums 0 over i ≠ j
    between = ((n_probe - 1) * (column - column.mean()) ** 2).sum()
    noise = noise * (between / noise.pow(2).sum()).sqrt()
    percentiles = (column + noise).masked_fill(~off_diagonal, NAN)
    assert negative_share(percentiles) == pytest.approx(0.5)


def test_the_hardest_share_finds_the_class_of_clustered_embeddings_and_only_chance_in_random_ones():
    labels = torch.arange(10).repeat_interleave(20)  # 10 balanced classes of 20
    clustered = F.normalize(F.one_hot(labels, 16).float() + 0.01 * torch.randn(200, 16), dim=1)
    found = difficulty.hardest_same_class(clustered, labels, share=0.1)
    assert found.precision == pytest.approx(1.0) and found.recall == pytest.approx(19 / 19)
    assert found.precision_chance == pytest.approx(19 / 199)
    assert found.recall_chance == pytest.approx(19 / 199)
    spread = F.normalize(torch.randn(200, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    random = difficulty.hardest_same_class(spread, labels, share=0.1)
    assert abs(random.precision - random.precision_chance) < 0.05
    assert abs(random.recall - random.recall_chance) < 0.05


def test_the_class_level_jackknife_is_exact_for_a_perfect_ranking_and_covers_rho_otherwise():
    similarity = torch.rand(10, 10, generator=torch.Generator().manual_seed(1))
    similarity = (similarity + similarity.T) / 2
    exact = difficulty.jackknife_correlation(similarity.clone(), similarity)
    assert exact.mean == pytest.approx(1.0) and exact.low == pytest.approx(1.0) and exact.n == 10
    noisy = similarity + 0.3 * torch.rand(10, 10, generator=torch.Generator().manual_seed(2))
    interval = difficulty.jackknife_correlation(noisy, similarity)
    assert interval.low < interval.mean < interval.high and interval.high - interval.low > 0.01
