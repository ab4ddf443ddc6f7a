"""What notebooks compute on trained runs, written once.

:func:`probe_queue` contrasts fresh queries with a trained model's final queue, as in
training (notebooks 02 and 03 read the difficulty of its negatives and DCL's estimator on it).
"""
from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F


class QueueProbe(NamedTuple):
    """n training images as queries against a trained model's queue of K keys."""
    idx: torch.Tensor         # (n,) the queries' indices in the training set
    labels: torch.Tensor      # (n,) their labels
    q: torch.Tensor           # (n, d) normalised queries f_q(view 1)
    pos: torch.Tensor         # (n,) q·k with the real positive k = f_k(view 2)
    neg: torch.Tensor         # (n, K) q·queueᵀ; -inf where the key is of the query's own image
    same_class: torch.Tensor  # (n, K) bool: the key shares the query's label


@torch.no_grad()
def probe_queue(trainer, n: int = 1024, seed: int = 1) -> QueueProbe:
    """Draw ``n`` training images (``seed``), and contrast ``q = f_q(view 1)`` with its positive
    ``k = f_k(view 2)`` and with the model's whole final queue, with its labels and data-set
    indices (an image's own key is excluded), as training did; ``trainer`` from
    :func:`cl.train.load_model` of a queue run."""
    moco, images = trainer.moco, trainer.train_set
    if moco is None:
        raise ValueError(f"a run with source={trainer.cfg.source!r} keeps no queue: probe a queue run")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[:n]
    x1, x2 = trainer.views(images.images[idx], g)
    q, k = F.normalize(moco.encoder_q(x1), dim=1), F.normalize(moco.encoder_k(x2), dim=1)
    neg = (q @ moco.queue.T).masked_fill(moco.queue_index[None, :] == idx[:, None], -float("inf"))
    labels = images.labels[idx]
    return QueueProbe(idx, labels, q, (q * k).sum(1), neg, moco.queue_labels[None, :] == labels[:, None])


class ProbeRecord(NamedTuple):
    """What a run kept of its probe (cl.train, ``probe.pt``): the same training images for every run."""
    indices: torch.Tensor              # (P,) their indices in the training set
    labels: torch.Tensor               # (P,) their labels
    embeddings: dict[int, torch.Tensor]  # epoch → (P, d) normalised z after that epoch
    config: dict                       # the run's config


def load_probe(run_dir) -> ProbeRecord:
    """The probe embeddings a finished run kept, epoch by epoch; one line naming the fix when it has none."""
    import json
    from pathlib import Path

    from cl import cli, train
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.json"
    if not metrics.exists() or not json.loads(metrics.read_text()).get("finished"):
        raise cli.UserError(f"{run_dir.name} is not a finished run in {run_dir.parent}: run the notebook "
                            f"that trains it first (make run trains every notebook in order)")
    if not (run_dir / train.PROBE).exists():
        raise cli.UserError(f"{run_dir} has no probe.pt (trained before runs embedded the probe, or with "
                            f"probe: 0): delete the folder and run its notebook again")
    probe = train.read_probe(run_dir / train.PROBE)
    return ProbeRecord(probe["indices"], probe["labels"], dict(sorted(probe["embeddings"].items())),
                       json.loads(metrics.read_text())["config"])


def semantic_difficulty(z: torch.Tensor, labels: torch.Tensor, similarities: dict[str, torch.Tensor]) -> dict:
    """What makes a probe negative hard after training, from one epoch's probe embeddings ``z`` (P, d):

        percentiles   (P, P) each negative's difficulty percentile among its query's negatives
        pairs         (C, C) mean difficulty of class-b negatives for class-a queries
        rho           {measure: Spearman's ρ of difficulty and semantic similarity over the class pairs}
        same_class    mean difficulty of same-class negatives (the diagonal of ``pairs``)
        other_class   mean difficulty of the others (the off-diagonal class pairs, each weighted alike)
        same_minus_other   their difference
    """
    from cl import difficulty
    classes = next(iter(similarities.values())).shape[0]
    percentiles = difficulty.difficulty_percentiles(z)
    pairs = difficulty.class_pair_difficulty(percentiles, labels, classes)
    off_diagonal = ~torch.eye(classes, dtype=torch.bool)
    rho = {m: difficulty.difficulty_semantic_correlation(pairs, s).rho for m, s in similarities.items()}
    same, other = float(pairs.diagonal().nanmean()), float(pairs[off_diagonal].nanmean())
    return {"percentiles": percentiles, "pairs": pairs, "rho": rho, "same_class": same, "other_class": other,
            "same_minus_other": same - other}


def consistency(record: ProbeRecord, seed: int = 0) -> pd.DataFrame:
    """Is a (query, negative) pair that is hard after epoch e still hard at the end (Cai et al. 2020)?

    One row per epoch e before the last: Spearman's ρ between the difficulty percentiles after e and
    after the last epoch (``observed``), the same with epoch e's matrix shuffled within each class
    pair (``within_class_pairs``: what class membership alone explains) and shuffled globally
    (``global``: chance, ρ ≈ 0). A pair's difficulty persists beyond its classes when observed
    exceeds the within-class-pair control.
    """
    from cl import difficulty
    g = torch.Generator().manual_seed(seed)
    epochs = list(record.embeddings)
    final = difficulty.difficulty_percentiles(record.embeddings[epochs[-1]])
    rows = []
    for epoch in epochs[:-1]:
        pct = difficulty.difficulty_percentiles(record.embeddings[epoch])
        rows.append({"epoch": epoch, "observed": difficulty.pair_consistency(pct, final),
                     "within_class_pairs": difficulty.pair_consistency(
                         difficulty.shuffled_within_class_pairs(pct, record.labels, g), final),
                     "global": difficulty.pair_consistency(difficulty.shuffled_globally(pct, g), final)})
    return pd.DataFrame(rows).set_index("epoch")


def collapse_diagnostics(run_dirs: list, records: list[dict]) -> pd.DataFrame:
    """How far each run's embedding is from collapse, from its probe after the last epoch, one row a run:

        spread          the per-coordinate std of the unit embeddings over images, times √d: about 1
                        when they spread over the sphere, 0 when they collapse to a point (Chen & He
                        2021 read collapse this way)
        effective rank  ``cl.metrics.effective_rank``: how many directions the embedding uses
        uniformity      the run's final uniformity (lower: more uniform)
    """
    from cl import metrics
    rows = []
    for run_dir, record in zip(run_dirs, records):
        probe = load_probe(run_dir)
        z = probe.embeddings[max(probe.embeddings)]
        rows.append({"seed": record["config"]["seed"],
                     "spread": float(z.std(dim=0).mean() * z.shape[1] ** 0.5),
                     "effective rank": metrics.effective_rank(z),
                     "uniformity": record["final"]["uniformity"]})
    return pd.DataFrame(rows).set_index("seed")


def same_class_share(record: dict) -> float:
    """The share of same-class entries among the negatives of a run's last recorded step (its
    last epoch's ``cl.negatives.difficulty_bands``): Σ_bands count · fraction / Σ_bands count."""
    bands = record["epochs"][-1]["negatives"]
    if not bands:
        raise ValueError(f"{record['run']} recorded no negatives (a run without negatives has no share)")
    pairs = [(n, f) for n, f in zip(bands["band_counts"], bands["same_class_fraction"]) if f is not None]
    return sum(n * f for n, f in pairs) / sum(n for n, _ in pairs)
