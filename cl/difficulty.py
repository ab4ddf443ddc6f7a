"""What makes a negative hard: difficulty over a probe set, by class pair, by semantic level, over training.

The setting of Cai, Frankle, Schwab and Morcos (2020), "Are all negatives created equal in
contrastive instance discrimination?": a fixed probe set of P images embedded by an encoder,
``z`` (P, d) unit vectors with class ``labels`` (P,) in [0, C). Every probe-set image is a query and
every other one its negative; the difficulty of negative j for query i is their cosine similarity
z_i · z_j (higher = harder).

- ``percentiles``: that difficulty as a percentile among each query's own negatives,
  (P, P) with a NaN diagonal (a query is not its own negative). Every other function takes such a
  matrix, or any (P, P) matrix whose missing entries are NaN.
- ``class_pair_difficulty``, ``semantic_levels``, ``semantic_correlation`` and
  ``ranked_class_pairs``: difficulty by class pair, against the semantic similarity S (C, C) of the
  classes (``cl.semantics.similarity_matrix``). The C(C − 1)/2 unordered class pairs (45 for
  Fashion-MNIST) are the unit of analysis for semantic questions.
- ``pair_consistency`` with its controls ``shuffled_within_class_pairs`` and ``shuffled_globally``:
  is a (query, negative) pair that is hard at one epoch hard at another, beyond what its classes
  explain?
- ``negative_share`` and ``negative_vs_pair``: does difficulty belong to the negative (hard for
  many queries) or to the pair?

The functions take tensors and know nothing of models or training.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from cl.stats import Interval

SAME_CLASS = "same class"  # the level of same-class negatives in semantic_levels
CORRELATED, ANTI_CORRELATED, NEITHER = "correlated", "anti-correlated", "—"  # ranked_class_pairs labels


class Correlation(NamedTuple):
    """Spearman's rank correlation, its two-sided p-value and the number of pairs it used."""
    rho: float
    p_value: float
    n_pairs: int


def percentiles(z: torch.Tensor) -> torch.Tensor:
    """Percentile of each probe-set image among each query's negatives, (P, P) float64, diagonal NaN.

    With s_ij = z_i · z_j and the n = P − 1 negatives j ≠ i of query i:

        pct[i, j] = r_ij / (n − 1),   r_ij = #{k ≠ i: s_ik < s_ij} + #{k ≠ i, j: s_ik = s_ij} / 2

    r_ij is j's rank from the easiest, counted from 0, with ties (equal computed similarities) at
    their average rank. A row without ties holds 0, 1/(n − 1), 2/(n − 1), …, 1 (1 = the hardest
    negative, 0 = the easiest), and every row averages 1/2 with or without ties. Ranking within
    each row makes queries with different similarity scales comparable. Needs P ≥ 3.
    """
    if z.dim() != 2 or z.shape[0] < 3:
        raise ValueError(f"z must be (P, d) with P >= 3 (two negatives per query), got {tuple(z.shape)}")
    z = z.double()
    n_images = z.shape[0]
    off_diagonal = ~torch.eye(n_images, dtype=torch.bool, device=z.device)
    similarity = (z @ z.T)[off_diagonal].view(n_images, n_images - 1)  # (P, n): row i without s_ii
    ordered = similarity.sort(dim=1).values
    below = torch.searchsorted(ordered, similarity, side="left")  # #{k: s_ik < s_ij}
    up_to = torch.searchsorted(ordered, similarity, side="right")  # #{k: s_ik <= s_ij}, j itself included
    rank = (below + up_to - 1).double() / 2
    percentiles = torch.full((n_images, n_images), math.nan, dtype=torch.float64, device=z.device)
    percentiles[off_diagonal] = (rank / (n_images - 2)).flatten()
    return percentiles


def class_pair_difficulty(percentiles: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                          symmetric: bool = False) -> torch.Tensor:
    """Mean difficulty of class-b negatives for class-a queries, (C, C) float64:

        D[a, b] = mean of pct[i, j] over the finite entries with labels[i] = a, labels[j] = b (so i ≠ j)

    The diagonal is kept: D[a, a] is the difficulty of same-class negatives, the false negatives of
    instance discrimination. NaN where no entry exists (a class absent from the probe set; D[a, a]
    of a class with one image). ``symmetric=True`` gives (D[a, b] + D[b, a]) / 2, the difficulty
    of the unordered pair {a, b}; when only the diagonal of pct is missing this is also the mean
    over both directions pooled, as each direction holds n_a·n_b entries.
    """
    _check_square(percentiles, labels)
    one_hot = F.one_hot(labels.long(), num_classes).double()  # (P, C)
    finite = torch.isfinite(percentiles)
    sums = one_hot.T @ torch.where(finite, percentiles.double(), 0.0) @ one_hot
    counts = one_hot.T @ finite.double() @ one_hot
    difficulty = sums / counts  # 0 / 0 = NaN where no entry exists
    return (difficulty + difficulty.T) / 2 if symmetric else difficulty


def semantic_levels(percentiles: torch.Tensor, labels: torch.Tensor,
                    class_similarity: torch.Tensor) -> dict[float | str, torch.Tensor]:
    """The difficulty of the negatives at each semantic level of their class against the query's:

        level(i, j) = S[labels[i], labels[j]]   when labels[i] ≠ labels[j],   SAME_CLASS otherwise

    Returns {level: 1-D tensor of the finite pct[i, j] at that level, in row-major order of (i, j)}
    over the distinct off-diagonal values of S in increasing order (as floats), then SAME_CLASS
    ("same class"), whatever S[a, a] is. Levels that no entry reaches are left out. The values are
    what a box or violin plot per level draws; their means, one per seed, give a table of
    mean ± interval per level.
    """
    _check_square(percentiles, labels)
    n_classes = class_similarity.shape[0]
    off_diagonal = ~torch.eye(n_classes, dtype=torch.bool, device=class_similarity.device)
    values, level_index = torch.unique(class_similarity[off_diagonal], return_inverse=True)
    pair_level = torch.full((n_classes, n_classes), len(values), dtype=torch.long,
                            device=class_similarity.device)  # the diagonal: SAME_CLASS, the last level
    pair_level[off_diagonal] = level_index
    names = [*values.tolist(), SAME_CLASS]
    labels = labels.long().to(pair_level.device)
    entry_level = pair_level[labels[:, None], labels[None, :]].to(percentiles.device)  # (P, P)
    finite = torch.isfinite(percentiles)
    level, difficulty = entry_level[finite], percentiles[finite]
    counts = torch.bincount(level, minlength=len(names)).tolist()
    parts = difficulty[level.argsort(stable=True)].split(counts)
    return {name: part for name, part in zip(names, parts) if part.numel()}


def semantic_correlation(pair_difficulty: torch.Tensor,
                                    class_similarity: torch.Tensor) -> Correlation:
    """Spearman's ρ between difficulty and semantic similarity over the unordered class pairs a < b:

        ρ = spearman( (D[a, b] + D[b, a]) / 2,  S[a, b] ),   a < b  (45 pairs for 10 classes)

    ``pair_difficulty`` D is ``class_pair_difficulty``'s (ordered or symmetric: symmetrising twice
    changes nothing). Pairs with a NaN difficulty are left out; n_pairs counts those used. The
    p-value is scipy.stats.spearmanr's two-sided one for ρ = 0; it treats the pairs as independent,
    which they are not (each class is in C − 1 of them), so read it as descriptive.
    """
    _, _, difficulty, similarity = _unordered_pairs(pair_difficulty, class_similarity)
    used = torch.isfinite(difficulty)
    result = stats.spearmanr(difficulty[used].cpu().numpy(), similarity[used].cpu().numpy())
    return Correlation(float(result.statistic), float(result.pvalue), int(used.sum()))


def jackknife_correlation(pair_difficulty: torch.Tensor, class_similarity: torch.Tensor,
                          level: float = 0.95) -> Interval:
    """``semantic_correlation``'s ρ with a class-level jackknife interval: the class pairs share
    classes, so the class, not the pair, is the unit that varies. For each of the C classes, ρ_(c)
    leaves out the C − 1 pairs that contain c; with ρ̄ their mean,

        SE = √( (C − 1)/C · Σ_c (ρ_(c) − ρ̄)² ),   ρ ± t_{(1+level)/2, C−1} · SE.

    Returns ρ and that interval (``n``: the C classes), centred on the full-sample ρ (not
    bias-corrected) and clipped to [−1, 1]. It treats the C classes as a sample of classes, which ten
    classes of one data set are only loosely."""
    classes = pair_difficulty.shape[0]
    rho = semantic_correlation(pair_difficulty, class_similarity).rho
    kept = lambda c: [k for k in range(classes) if k != c]
    without = lambda m, c: m[kept(c)][:, kept(c)]
    left_out = [semantic_correlation(without(pair_difficulty, c), without(class_similarity, c)).rho
                for c in range(classes)]
    mean = sum(left_out) / classes
    se = math.sqrt((classes - 1) / classes * sum((r - mean) ** 2 for r in left_out))
    half = float(stats.t.ppf((1 + level) / 2, classes - 1)) * se
    return Interval(rho, max(-1.0, rho - half), min(1.0, rho + half), classes, level)


def ranked_class_pairs(pair_difficulty: torch.Tensor, class_similarity: torch.Tensor,
                       class_names: list[str]) -> pd.DataFrame:
    """The n = C(C − 1)/2 unordered class pairs a < b, one row each, with their ranks and a label.

        class_a, class_b   class_names[a], class_names[b]
        difficulty         (D[a, b] + D[b, a]) / 2, D = ``class_pair_difficulty``
        similarity         S[a, b]
        difficulty_rank    1 = the hardest pair, ties at their average rank
        similarity_rank    1 = the most similar pair, ties at their average rank
        label              "correlated"       similarity_rank ≤ n/3 and difficulty_rank ≤ n/3
                           "anti-correlated"  similarity_rank ≤ n/3 and difficulty_rank > 2n/3
                           "—"                otherwise

    For 10 classes, n = 45: the top third is ranks ≤ 15 and the easiest third ranks > 30. An
    anti-correlated pair is semantically close yet among the easiest, the puzzle Cai et al. (2020)
    point out. Rows are sorted by similarity, then difficulty, both descending. Every pair needs a
    finite difficulty (all C classes in the probe set).
    """
    first, second, difficulty, similarity = _unordered_pairs(pair_difficulty, class_similarity)
    if not bool(torch.isfinite(difficulty).all()):
        raise ValueError("a class pair has no difficulty (NaN): every class must be in the probe set")
    n_pairs = len(difficulty)
    table = pd.DataFrame({
        "class_a": [class_names[a] for a in first.tolist()],
        "class_b": [class_names[b] for b in second.tolist()],
        "difficulty": difficulty.cpu().numpy(),
        "similarity": similarity.cpu().numpy(),
    })
    table["difficulty_rank"] = stats.rankdata(-table["difficulty"])
    table["similarity_rank"] = stats.rankdata(-table["similarity"])
    close = table["similarity_rank"] <= n_pairs / 3
    table["label"] = NEITHER
    table.loc[close & (table["difficulty_rank"] <= n_pairs / 3), "label"] = CORRELATED
    table.loc[close & (table["difficulty_rank"] > 2 * n_pairs / 3), "label"] = ANTI_CORRELATED
    return table.sort_values(["similarity", "difficulty"], ascending=False, kind="stable", ignore_index=True)


def similarity_by_band(percentiles: torch.Tensor, labels: torch.Tensor, class_similarity: torch.Tensor,
                       edges: tuple[float, ...] = (0.0, 0.05, 0.95, 1.0)) -> pd.DataFrame:
    """What the negatives of each difficulty band are, semantically, one row per band:

        band           the percentile interval (edges[k], edges[k + 1]]; the first band includes 0
        same class     the share of the band's negatives of the query's own class
        similarity     the mean S[y_i, y_j] of its negatives of other classes

    Cai et al. (2020) report that the easiest negatives, like the hardest, are often
    semantically similar to the query: a U over the bands, not a monotone rise. Notebook 07.
    """
    _check_square(percentiles, labels)
    labels = labels.long().to(percentiles.device)
    pair_similarity = class_similarity.double().to(percentiles.device)[labels[:, None], labels[None, :]]
    same = labels[:, None] == labels[None, :]
    finite = torch.isfinite(percentiles)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        band = finite & (percentiles <= high) & ((percentiles > low) | (low == edges[0]))
        other = band & ~same
        rows.append({"band": f"{low:g}–{high:g}",
                     "same class": float((band & same).sum() / band.sum().clamp(min=1)),
                     "similarity": float(pair_similarity[other].mean()) if other.any() else math.nan})
    return pd.DataFrame(rows).set_index("band")


class Detection(NamedTuple):
    """``hardest_same_class``'s result: how well the hardest share finds the query's class, and what
    a random ranking would score on each."""
    precision: float
    recall: float
    precision_chance: float  # the share of same-class negatives: mean_i |S_i| / (P − 1)
    recall_chance: float     # the share of negatives taken: n / (P − 1)


def hardest_same_class(z: torch.Tensor, labels: torch.Tensor, share: float) -> Detection:
    """How well "the hardest ``share`` of a query's negatives" finds the query's own class (the false
    negatives of instance discrimination), over the probe set: for each query i, H_i its n =
    ⌊share · (P − 1)⌋ most similar other images and S_i those of its class,

        precision = mean_i |H_i ∩ S_i| / n,      recall = mean_i |H_i ∩ S_i| / |S_i|

    (recall over the queries with a classmate). A random ranking scores mean_i |S_i| / (P − 1) in
    precision and n / (P − 1) in recall; with ``share`` = 1/C and C balanced classes the two are
    about 1/C, |S_i| ≈ n, and a perfect detector scores 1 on both."""
    sim = z.float() @ z.float().T
    sim.fill_diagonal_(-math.inf)
    n = max(1, int(share * (len(z) - 1)))
    same = labels[sim.topk(n, dim=1).indices] == labels[:, None]
    hits = same.sum(1).float()
    classmates = (labels[:, None] == labels[None, :]).sum(1).float() - 1
    has = classmates > 0
    return Detection(float((hits / n).mean()), float((hits[has] / classmates[has]).mean()),
                     float((classmates / (len(z) - 1)).mean()), n / (len(z) - 1))


def labelled_pairs(ranked: pd.DataFrame, label: str) -> set[tuple[str, str]]:
    """The (class_a, class_b) pairs of a ``ranked_class_pairs`` table that carry ``label``."""
    return set(map(tuple, ranked.loc[ranked["label"] == label, ["class_a", "class_b"]].values))


def pair_consistency(percentiles_a: torch.Tensor, percentiles_b: torch.Tensor) -> float:
    """Spearman's ρ between two difficulty matrices of the same probe set (two epochs, say):

        ρ = spearman( pct_a[i, j], pct_b[i, j] )   over the entries i ≠ j finite in both

    1 when every (query, negative) pair keeps its rank; near 0 when the ranks are unrelated (for
    a random permutation of the pairs, ρ has mean 0 and standard deviation 1/√(N − 1) over N
    pairs). Compare it with ``shuffled_within_class_pairs``, not only ``shuffled_globally``.
    """
    if percentiles_a.shape != percentiles_b.shape:
        raise ValueError(f"the matrices differ in shape: {tuple(percentiles_a.shape)} and "
                         f"{tuple(percentiles_b.shape)}")
    both = torch.isfinite(percentiles_a) & torch.isfinite(percentiles_b)
    result = stats.spearmanr(percentiles_a[both].cpu().numpy(), percentiles_b[both].cpu().numpy())
    return float(result.statistic)


def shuffled_within_class_pairs(percentiles: torch.Tensor, labels: torch.Tensor,
                                generator: torch.Generator | None = None) -> torch.Tensor:
    """The control for ``pair_consistency``: pct with its finite entries permuted uniformly at
    random among the entries of the same ordered class pair (labels[i], labels[j]), independently
    per class pair; missing entries (the NaN diagonal) stay where they are.

    It keeps what class membership explains and destroys the rest: over the draws, the expected
    ``pair_consistency`` of a matrix with its shuffle is the share of the variance of its ranks
    that lies between class pairs, Σ_g n_g (m_g − m)² / Σ (r − m)² over the ranks r, their mean m
    and their mean m_g in class pair g of n_g entries (1 when class pairs determine difficulty,
    about (G − 1)/(N − 1) for G class pairs and N entries when they explain nothing). Class
    membership alone thus beats a global shuffle; a real consistency must beat this control.
    ``generator`` (on percentiles' device), when given, draws the permutations.
    """
    _check_square(percentiles, labels)
    labels = labels.long().to(percentiles.device)
    n_classes = int(labels.max()) + 1
    class_pair = labels[:, None] * n_classes + labels[None, :]  # (P, P): index of (labels[i], labels[j])
    return _permute_within_groups(percentiles, class_pair, generator)


def shuffled_globally(percentiles: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """pct with its finite entries permuted uniformly at random among all of them (the NaN diagonal
    stays): the chance level of ``pair_consistency``, ρ ≈ 0, which class membership alone beats.
    ``generator`` (on percentiles' device), when given, draws the permutation."""
    _check_square(percentiles)
    return _permute_within_groups(percentiles, torch.zeros_like(percentiles, dtype=torch.long), generator)


def negative_share(percentiles: torch.Tensor) -> float:
    """Share of the variance of the finite entries x_ij explained by the negative j (one-way ANOVA R²):

        R² = Σ_j n_j (m_j − m)² / Σ_{i, j} (x_ij − m)²

    m_j the mean of column j over its n_j finite entries, m the mean of all finite entries. 1 when
    each negative is equally hard for every query (difficulty belongs to the negative); for i.i.d.
    Gaussian entries R² ~ Beta((P − 1)/2, (N − P)/2) over N entries, mean (P − 1)/(N − 1) ≈ 1/P.
    Rows of a percentile matrix all average 1/2, so the query explains none of the variance.
    """
    _check_square(percentiles)
    finite = torch.isfinite(percentiles)
    values = torch.where(finite, percentiles.double(), 0.0)
    n_column = finite.sum(dim=0)
    mean = values.sum() / finite.sum()
    column_mean = values.sum(dim=0) / n_column.clamp(min=1)
    between = (n_column * (column_mean - mean) ** 2).sum()
    total = torch.where(finite, values - mean, 0.0).pow(2).sum()
    return float(between / total)


def negative_vs_pair(percentiles: torch.Tensor, generator: torch.Generator | None = None,
                     n_shuffles: int = 10) -> dict[str, float]:
    """Does difficulty belong to the negative (hard for many queries) or to the (query, negative) pair?

        share           negative_share(pct): the variance explained by the negative; 1 − share
                        belongs to the pair (and to noise)
        shuffled_share  the mean of negative_share over ``n_shuffles`` copies of pct with each row's
                        finite entries permuted at random among that row's finite positions

    The within-row shuffle keeps every query's values (so its mean and spread) and breaks which
    negative holds which value: its share is what a matrix with no negative effect reaches by
    chance at this P (about 1/P). Difficulty belongs to the negative as far as share exceeds it.
    ``generator`` (on percentiles' device), when given, draws the shuffles.
    """
    _check_square(percentiles)
    if n_shuffles < 1:
        raise ValueError(f"n_shuffles must be >= 1, got {n_shuffles}")
    rows = torch.arange(percentiles.shape[0], device=percentiles.device)[:, None].expand(percentiles.shape)
    shuffled = [negative_share(_permute_within_groups(percentiles, rows, generator))
                for _ in range(n_shuffles)]
    return {"share": negative_share(percentiles), "shuffled_share": sum(shuffled) / n_shuffles}


def _unordered_pairs(pair_difficulty: torch.Tensor, class_similarity: torch.Tensor):
    """(a, b, (D[a, b] + D[b, a]) / 2, S[a, b]) over the unordered class pairs a < b, in row-major order."""
    if pair_difficulty.shape != class_similarity.shape or pair_difficulty.dim() != 2:
        raise ValueError(f"pair_difficulty and class_similarity must both be (C, C), got "
                         f"{tuple(pair_difficulty.shape)} and {tuple(class_similarity.shape)}")
    first, second = torch.triu_indices(*pair_difficulty.shape, offset=1, device=pair_difficulty.device)
    symmetric = (pair_difficulty.double() + pair_difficulty.double().T) / 2
    similarity = class_similarity.double().to(symmetric.device)
    return first, second, symmetric[first, second], similarity[first, second]


def _permute_within_groups(values: torch.Tensor, group: torch.Tensor,
                           generator: torch.Generator | None) -> torch.Tensor:
    """``values`` with its finite entries permuted uniformly at random among the finite entries of
    the same ``group`` (a long tensor of values' shape); the other entries stay."""
    finite = torch.isfinite(values)
    kept, kept_group = values[finite], group[finite]
    order = torch.randperm(len(kept), generator=generator, device=values.device)
    sources = order[kept_group[order].argsort(stable=True)]  # grouped, random order within each group
    targets = kept_group.argsort(stable=True)  # grouped, original order within each group
    permuted = torch.empty_like(kept)
    permuted[targets] = kept[sources]
    shuffled = values.clone()
    shuffled[finite] = permuted
    return shuffled


def _check_square(percentiles: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    """Raise ValueError unless percentiles is (P, P) and labels, when given, is (P,)."""
    if percentiles.dim() != 2 or percentiles.shape[0] != percentiles.shape[1]:
        raise ValueError(f"percentiles must be (P, P), got {tuple(percentiles.shape)}")
    if labels is not None and labels.shape != percentiles.shape[:1]:
        raise ValueError(f"labels must be (P,) = ({percentiles.shape[0]},), got {tuple(labels.shape)}")
