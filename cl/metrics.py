"""Evaluation of a representation: kNN monitor, linear probe, alignment and uniformity.

Notebook 00 introduces alignment and uniformity (Wang & Isola 2020); notebook 01 the kNN and
linear-probe protocols and the raw-pixel bar they must clear.

Protocols as peers use them: the kNN monitor of InstDisc (Wu et al. 2018) (cosine
similarity, k=200 neighbours, votes weighted by e^{s/0.1}) and a linear classifier trained
on frozen features. Alignment and uniformity are Wang & Isola's (2020).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def embed(fn, images: torch.Tensor, prepare, batch_size: int = 256) -> torch.Tensor:
    """``fn(prepare(images[i:j]))`` over the whole set in batches, L2-normalised, float32.

    Batches of 256 keep the small CNN's activations in a CPU's cache."""
    out = [F.normalize(fn(prepare(images[i:i + batch_size])).float(), dim=1)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def knn_predict(query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
                num_classes: int, k: int = 200, t: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN: each of the k most cosine-similar bank entries votes e^{s/t} for its label.

    ``query`` (Q,d) and ``bank`` (N,d) are L2-normalised; returns predicted labels (Q,).
    """
    k = min(k, len(bank))
    preds = []
    for i in range(0, len(query), chunk):
        sim, idx = (query[i:i + chunk] @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes, device=query.device)
        # e^{s/t} relative to the nearest neighbour's: the same vote, without overflow at small t
        votes.scatter_add_(1, bank_labels[idx], ((sim - sim[:, :1]) / t).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(train_feat, train_labels, test_feat, test_labels, num_classes: int,
                 k: int = 200, t: float = 0.1) -> float:
    """Top-1 accuracy (%) of ``knn_predict`` with the training set as the bank."""
    pred = knn_predict(test_feat, train_feat, train_labels, num_classes, k, t)
    return 100.0 * (pred == test_labels).float().mean().item()


def linear_probe(train_feat, train_labels, test_feat, test_labels, num_classes: int,
                 epochs: int = 100, lr: float = 1e-3, batch_size: int = 1024,
                 weight_decay: float = 1e-6, seed: int = 0) -> float:
    """Top-1 accuracy (%) of a linear classifier trained with Adam on frozen features.

    Features are standardised with the training set's statistics first (the MoCo protocol's
    lr=30 on raw features plays the same role); the classifier sees no augmentation.
    """
    g = torch.Generator().manual_seed(seed)
    mean, std = train_feat.mean(0), train_feat.std(0) + 1e-6
    xtr, xte = (train_feat - mean) / std, (test_feat - mean) / std
    clf = torch.nn.Linear(xtr.shape[1], num_classes).to(xtr.device)
    opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(len(xtr), generator=g).to(xtr.device)
            for i in range(0, len(xtr), batch_size):
                j = perm[i:i + batch_size]
                loss = F.cross_entropy(clf(xtr[j]), train_labels[j])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
    with torch.no_grad():
        return 100.0 * (clf(xte).argmax(1) == test_labels).float().mean().item()


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> float:
    """align = E‖f(x) − f(x⁺)‖₂^α over positive pairs (rows of normalised z1, z2). Lower is better."""
    return (z1 - z2).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: torch.Tensor, t: float = 2) -> float:
    """uniform = log E_{x≠y} e^{−t‖f(x) − f(y)‖₂²} over distinct pairs of normalised z. Lower is better."""
    return torch.pdist(z.float(), p=2).pow(2).mul(-t).exp().mean().log().item()


def effective_rank(z: torch.Tensor) -> float:
    """exp of the entropy of z's normalised singular values (Roy & Vetterli 2007), z (N, d) centred
    first: d when every direction carries the same variance, 1 when the embedding lies on a line,
    0 when it collapses to a point. Notebook 08 reads collapse with it."""
    singular = torch.linalg.svdvals((z - z.mean(0)).double())
    if singular.sum() < 1e-9:  # every row the same point: no direction at all
        return 0.0
    p = singular / singular.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-300).log()).sum()))


UNIFORMITY_COLLAPSED = -0.1  # above it, the embeddings lie within a small cap of the sphere
RANK_COLLAPSED = 2.0  # below it, they lie on about a line (dimensional collapse)


def collapse(uniformity_loss: float, rank: float) -> str | None:
    """Whether a final embedding has collapsed, in words (None when it has not): its uniformity loss
    above UNIFORMITY_COLLAPSED (a spread embedding of the study's runs sits near −1 or below; the
    positives-only runs, which collapse by design, near 0), or its effective rank below
    RANK_COLLAPSED. The effective rank is scale-free: an embedding shrunk to a cap keeps the rank of
    its noise, so the uniformity loss is the test of a collapse to a point."""
    if uniformity_loss > UNIFORMITY_COLLAPSED:
        return f"uniformity loss {uniformity_loss:.3f} > {UNIFORMITY_COLLAPSED}: all embeddings near a point"
    if rank < RANK_COLLAPSED:
        return f"effective rank {rank:.2f} < {RANK_COLLAPSED:g}: the embeddings on about a line"
    return None
