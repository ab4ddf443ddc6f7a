"""kNN monitor, linear probe, alignment and uniformity against hand-made cases."""
import math

import pytest
import torch
import torch.nn.functional as F

from cl import metrics


def test_knn_weights_votes_by_similarity():
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.45], [0.9, -0.45]]), dim=1)
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.0]])
    # two class-0 neighbours against one exact class-1 match: a cold vote favours the match
    assert metrics.knn_predict(query, bank, labels, 2, k=3, t=0.01).item() == 1
    # with a very hot vote every neighbour counts about the same: the majority wins
    assert metrics.knn_predict(query, bank, labels, 2, k=3, t=100.0).item() == 0


def test_knn_accuracy_on_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 16, generator=g), dim=1)
    labels = torch.arange(4).repeat(50)
    bank = F.normalize(centres[labels] + 0.05 * torch.randn(200, 16, generator=g), dim=1)
    query = F.normalize(centres[labels[:40]] + 0.05 * torch.randn(40, 16, generator=g), dim=1)
    assert metrics.knn_accuracy(bank, labels, query, labels[:40], 4, k=20) == 100.0
    shuffled = labels[torch.randperm(200, generator=g)]
    assert metrics.knn_accuracy(bank, shuffled, query, labels[:40], 4, k=20) < 60.0


def test_linear_probe_separates_separable_features():
    torch.manual_seed(0)  # the probe's initial weights come from the global generator, whatever ran before
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    x[:, :2] += 0.5 * x[:, :2].sign()  # quadrants with a margin
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    assert metrics.linear_probe(x[:500], y[:500], x[500:], y[500:], 4, epochs=200, lr=1e-2) > 95.0
    assert metrics.linear_probe(x[:500], y[:500].roll(1), x[500:], y[500:], 4, epochs=200, lr=1e-2) < 60.0


def test_alignment_is_the_mean_squared_distance_of_positive_pairs():
    z = F.normalize(torch.randn(10, 4), dim=1)
    assert metrics.alignment(z, z) == 0.0
    assert math.isclose(metrics.alignment(z, -z), 4.0, rel_tol=1e-5)


def test_uniformity_is_zero_when_collapsed_and_matches_the_formula():
    collapsed = F.normalize(torch.ones(8, 3), dim=1)
    assert abs(metrics.uniformity(collapsed)) < 1e-6
    z = F.normalize(torch.randn(12, 3), dim=1)
    brute = [math.exp(-2 * (z[i] - z[j]).pow(2).sum().item()) for i in range(12) for j in range(12) if i < j]
    assert math.isclose(metrics.uniformity(z), math.log(sum(brute) / len(brute)), rel_tol=1e-5)
    assert metrics.uniformity(z) < -0.5


def test_embed_batches_and_normalises():
    images = torch.arange(2 * 5 * 3, dtype=torch.float32).view(10, 3)
    out = metrics.embed(lambda x: x * 2, images, lambda x: x + 1, batch_size=3)
    torch.testing.assert_close(out, F.normalize((images + 1) * 2, dim=1))


def test_effective_rank_counts_the_directions_the_embedding_uses():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(4000, 8, generator=g)
    assert metrics.effective_rank(spread) == pytest.approx(8, rel=0.05)
    line = torch.randn(500, 1, generator=g) * torch.ones(1, 8)
    assert metrics.effective_rank(line) == pytest.approx(1, abs=1e-6)
    assert metrics.effective_rank(torch.ones(50, 8)) == 0.0
