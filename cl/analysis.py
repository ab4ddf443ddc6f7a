"""What notebooks compute on trained runs, written once.

:func:`contrast_with_queue` contrasts fresh queries with a trained model's final queue, as in
training (notebooks 02 and 03 read the difficulty of its negatives and DCL's estimator on it);
:func:`load_probe_set` reads the embeddings of the probe set that every run records after each
epoch (notebook 07 ranks its negatives).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F

from cl import augment, cli, controls, difficulty, metrics, negatives, stats, summary
from cl import run_folder as folder
from cl.config import Config
from cl.train import Trainer


class QueueContrast(NamedTuple):
    """n training images as queries against a trained model's queue of K keys."""
    idx: torch.Tensor         # (n,) the queries' indices in the training set
    labels: torch.Tensor      # (n,) their labels
    q: torch.Tensor           # (n, d) normalised queries f_q(view 1)
    pos: torch.Tensor         # (n,) q·k with the real positive k = f_k(view 2)
    neg: torch.Tensor         # (n, K) q·queueᵀ; -inf where the key is of the query's own image
    same_class: torch.Tensor  # (n, K) bool: the key shares the query's label


@torch.no_grad()
def contrast_with_queue(trainer, n: int = 1024, seed: int = 1) -> QueueContrast:
    """Draw ``n`` training images (``seed``), and contrast ``q = f_q(view 1)`` with its positive
    ``k = f_k(view 2)`` and with the model's whole final queue, with its labels and data-set
    indices (an image's own key is excluded), as training did; ``trainer`` from
    :func:`cl.train.load_model` of a queue run."""
    moco, images = trainer.model, trainer.train_set
    if trainer.cfg.source != "queue":
        raise ValueError(f"a run with source={trainer.cfg.source!r} keeps no queue: give a queue run")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[:n]
    x1, x2 = trainer.views(images.images[idx], g)
    q, k = F.normalize(moco.encoder_q(x1), dim=1), F.normalize(moco.encoder_k(x2), dim=1)
    neg = (q @ moco.queue.T).masked_fill(moco.queue_index[None, :] == idx[:, None], -float("inf"))
    labels = images.labels[idx]
    return QueueContrast(idx, labels, q, (q * k).sum(1), neg, moco.queue_labels[None, :] == labels[:, None])


class ProbeSet(NamedTuple):
    """What a run kept of the probe set (``probe.pt``): the same training images for every run."""
    indices: torch.Tensor              # (P,) their indices in the training set
    labels: torch.Tensor               # (P,) their labels
    embeddings: dict[int, torch.Tensor]  # epoch → (P, d) normalised z after that epoch
    config: dict                       # the run's config


def load_probe_set(run_dir) -> ProbeSet:
    """The probe set's embeddings a finished run kept, epoch by epoch; one line naming the fix when it
    has none."""
    run_dir = Path(run_dir)
    metrics = run_dir / folder.METRICS
    if not metrics.exists() or not json.loads(metrics.read_text()).get("finished"):
        raise cli.UserError(f"{run_dir.name} is not a finished run in {run_dir.parent}: run the notebook "
                            f"that trains it first (make run trains every notebook in order)")
    if not (run_dir / folder.PROBE_SET).exists():
        raise cli.UserError(f"{run_dir} has no probe.pt (it was trained with probe: 0): train it with "
                            f"a probe set, e.g. the default probe: 1000")
    stored = folder.read_probe_set(run_dir / folder.PROBE_SET)
    return ProbeSet(stored["indices"], stored["labels"], dict(sorted(stored["embeddings"].items())),
                    json.loads(metrics.read_text())["config"])


def semantic_difficulty(z: torch.Tensor, labels: torch.Tensor, similarities: dict[str, torch.Tensor]) -> dict:
    """What makes a negative hard after training, from one epoch's embeddings ``z`` (P, d) of the probe set:

        percentiles   (P, P) each negative's difficulty percentile among its query's negatives
        pairs         (C, C) mean difficulty of class-b negatives for class-a queries
        rho           {measure: Spearman's ρ of difficulty and semantic similarity over the class pairs}
        same_class    mean difficulty of same-class negatives (the diagonal of ``pairs``)
        other_class   mean difficulty of the others (the off-diagonal class pairs, each weighted alike)
        same_minus_other   their difference
    """
    classes = next(iter(similarities.values())).shape[0]
    percentiles = difficulty.percentiles(z)
    pairs = difficulty.class_pair_difficulty(percentiles, labels, classes)
    off_diagonal = ~torch.eye(classes, dtype=torch.bool)
    rho = {m: difficulty.semantic_correlation(pairs, s).rho for m, s in similarities.items()}
    same, other = float(pairs.diagonal().nanmean()), float(pairs[off_diagonal].nanmean())
    return {"percentiles": percentiles, "pairs": pairs, "rho": rho, "same_class": same, "other_class": other,
            "same_minus_other": same - other}


def consistency(record: ProbeSet, seed: int = 0,
                inputs: dict[str, torch.Tensor] | None = None) -> pd.DataFrame:
    """Is a (query, negative) pair that is hard after epoch e still hard at the end (Cai et al. 2020)?

    One row per epoch e before the last: Spearman's ρ between the difficulty percentiles after e and
    after the last epoch (``observed``), the same with epoch e's matrix shuffled within each class
    pair (``within_class_pairs``: what class membership alone explains) and shuffled globally
    (``global``: chance, ρ ≈ 0). A pair's difficulty persists beyond its classes when observed
    exceeds the within-class-pair control. ``inputs`` (name → (P, d) embeddings of the same probe
    images by a representation that never trained: ``probe_set_controls``) adds a column per name,
    its ρ with the last epoch: how much of the final ranking the input's own similarity already
    gives, which persists under any encoder; "persists through training" must beat it too.
    """
    g = torch.Generator().manual_seed(seed)
    epochs = list(record.embeddings)
    final = difficulty.percentiles(record.embeddings[epochs[-1]])
    fixed = {name: difficulty.pair_consistency(difficulty.percentiles(z), final)
             for name, z in (inputs or {}).items()}
    rows = []
    for epoch in epochs[:-1]:
        pct = difficulty.percentiles(record.embeddings[epoch])
        rows.append({"epoch": epoch, "observed": difficulty.pair_consistency(pct, final),
                     "within_class_pairs": difficulty.pair_consistency(
                         difficulty.shuffled_within_class_pairs(pct, record.labels, g), final),
                     "global": difficulty.pair_consistency(difficulty.shuffled_globally(pct, g), final),
                     **fixed})
    return pd.DataFrame(rows).set_index("epoch")


def probe_set_controls(record: ProbeSet) -> dict[str, torch.Tensor]:
    """The probe set's images embedded by the controls (:mod:`cl.controls`) for ``consistency``: the
    raw pixels, mean-centred (the training set's mean image), and the run's encoder at its random
    initialisation (its seed's), each normalised, as the run's own probe embeddings are."""
    cfg = Config.from_dict({**record.config, "device": "cpu"})
    trainer = Trainer(cfg)  # the seed's initial weights, before any step
    pixels = controls.Pixels(controls.mean_image(trainer))
    centred = F.normalize(pixels.features(trainer.prepare(trainer.probe_set_images)), dim=1)
    return {"raw pixels (centred)": centred, "untrained encoder": trainer.embed_probe_set()}


def collapse_diagnostics(run_dirs: list, records: list[dict]) -> pd.DataFrame:
    """How far each run's embedding is from collapse, from the probe set's embeddings after the last
    epoch, one row a run:

        spread          the per-coordinate std of the unit embeddings over images, times √d: about 1
                        when they spread over the sphere, 0 when they collapse to a point (Chen & He
                        2021 read collapse this way)
        effective rank  ``cl.metrics.effective_rank``: how many directions the embedding uses
        uniformity      the run's final uniformity (lower: more uniform)
    """
    rows = []
    for run_dir, record in zip(run_dirs, records):
        probe_set = load_probe_set(run_dir)
        z = probe_set.embeddings[max(probe_set.embeddings)]
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


def pairs_across_measures(ranked: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``cl.difficulty.ranked_class_pairs`` tables of one pair difficulty under several similarity
    measures (measure → table) as one row per class pair: its difficulty and difficulty rank, each
    measure's similarity rank (``<measure> rank``) and label (``<measure> label``), and the mean of
    the similarity ranks, by which the rows are sorted (the closest pairs first)."""
    key = ["class_a", "class_b"]
    table = next(iter(ranked.values()))[key + ["difficulty", "difficulty_rank"]].copy()
    for measure, pairs in ranked.items():
        table = table.merge(pairs[key + ["similarity_rank", "label"]].rename(
            columns={"similarity_rank": f"{measure} rank", "label": f"{measure} label"}), on=key)
    table["mean similarity rank"] = table[[f"{measure} rank" for measure in ranked]].mean(axis=1)
    return table.sort_values("mean similarity rank").reset_index(drop=True)


def labelled_everywhere(ranked: dict[str, pd.DataFrame], label: str) -> set[tuple[str, str]]:
    """The class pairs that carry ``label`` (``cl.difficulty.CORRELATED``, say) under every measure
    of ``ranked`` (measure → ``cl.difficulty.ranked_class_pairs`` table)."""
    return set.intersection(*(difficulty.labelled_pairs(pairs, label) for pairs in ranked.values()))


def semantic_quantities(final: dict, methods: list[str], seeds: list[int],
                        measures: list[str]) -> dict[tuple[str, str], list[float]]:
    """Per method, the per-seed values (in ``seeds``' order) of what :func:`semantic_difficulty`
    measured (``final``: (method, seed) → its result): ``ρ <measure>`` for each measure, then
    ``same − other classes``; keyed (method, quantity), methods in their order."""
    values = {}
    for method in methods:
        for measure in measures:
            values[(method, f"ρ {measure}")] = [final[(method, s)]["rho"][measure] for s in seeds]
        values[(method, "same − other classes")] = [final[(method, s)]["same_minus_other"] for s in seeds]
    return values


def condition_table(results: dict[str, list[dict]]) -> pd.DataFrame:
    """Each condition's final metrics as ``mean ± std`` over its seeds (``cl.stats.formatted``), with
    the training setting its numbers come from (``cl.summary.setting`` of its config) as a last column."""
    table = stats.formatted(stats.mean_std(results))
    return table.assign(setting=[summary.condition_setting(results[name]) for name in table.index])


def clamp_rates(results: dict[str, list[dict]], names) -> pd.DataFrame:
    """How often a debiased estimate of the negatives' mass sat at its floor N e^{-1/t} during training
    (``cl.losses.clamp_binds``; each epoch's ``clamp_rate``, the share of rows clamped, averaged over its
    steps): one row per epoch (from 1), one column per condition of ``names``, mean over its seeds."""
    rates = {name: pd.DataFrame([[e["clamp_rate"] for e in r["epochs"]] for r in results[name]]).mean()
             for name in names}
    table = pd.DataFrame(rates)
    table.index = pd.RangeIndex(1, len(table) + 1, name="epoch")
    return table


def embedding_knn(trainer, bank_size: int = 10_000) -> float:
    """kNN top-1 (%) of a trained model on the head's normalised output z (the space the loss acts
    on), where the runs' own kNN reads the backbone's features: the first ``bank_size`` of a fixed
    random draw (seed 0) of the training images as the bank, the whole test set as queries, the kNN
    monitor's defaults (``cl.metrics.knn_accuracy``: k = 200, votes e^{s/0.1})."""
    prepare = lambda x: augment.to_float(x, trainer.aug_cfg)
    bank = trainer.train_set.subset(min(bank_size, len(trainer.train_set)), 0)
    z_bank = metrics.embed(trainer.encoder, bank.images, prepare)
    z_test = metrics.embed(trainer.encoder, trainer.test_set.images, prepare)
    classes = len(trainer.train_set.classes)
    return metrics.knn_accuracy(z_bank, bank.labels, z_test, trainer.test_set.labels, classes)


def confusion_matrix(true: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The (C, C) counts of a classifier's answers: row = true class, column = predicted class, so
    that row c's diagonal entry over its sum is the recall of class c."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.long)
    counts.index_put_((true.cpu().long(), predicted.cpu().long()), torch.ones(len(true), dtype=torch.long),
                      accumulate=True)
    return counts


def band_table(contrast: QueueContrast, t: float) -> pd.DataFrame:
    """What each difficulty band of a contrast with the queue holds (``cl.negatives.difficulty_bands``
    at temperature ``t``), one row per band, hardest first: the fraction of its negatives that share
    the query's class (NaN for an empty band), its share of InfoNCE's gradient (pooled over the
    queries; the shares sum to 1), and its negatives per query."""

    bands = negatives.difficulty_bands(contrast.pos, contrast.neg, t, same_class=contrast.same_class)
    return pd.DataFrame({"same-class fraction": [float("nan") if f is None else f
                                                 for f in bands["same_class_fraction"]],
                         "gradient share": bands["gradient_share"],
                         "negatives per query": [c / len(contrast.idx) for c in bands["band_counts"]]},
                        index=pd.Index(bands["band_names"], name="band"))


def same_class_rate(contrast: QueueContrast) -> float:
    """The share of a contrast's negatives (its finite entries) that share their query's class: the
    same-class fraction every band would have if difficulty ignored the class."""
    finite = torch.isfinite(contrast.neg)
    return (contrast.same_class & finite).sum().item() / finite.sum().item()


def hardest_filled_band(tables: list[pd.DataFrame]) -> str:
    """The hardest band that holds negatives in every one of ``tables`` (:func:`band_table` of
    several runs): a row of fewer than 1000 negatives leaves the hardest 0.1 % empty."""
    filled = pd.concat([table["same-class fraction"] for table in tables], axis=1).notna().all(axis=1)
    if not filled.any():
        raise ValueError("no band holds negatives in every table")
    return str(filled[filled].index[0])


def mean_of_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The entry-by-entry mean of tables with the same rows and columns (one per seed, say), the rows
    in the first table's order."""
    return pd.concat(tables).groupby(level=0, sort=False).mean()


def diagnostic_difference(diagnostics: dict[str, pd.DataFrame], a: str, b: str,
                          column: str = "effective rank") -> stats.Interval:
    """Condition ``a``'s collapse diagnostic minus condition ``b``'s (``collapse_diagnostics`` tables by
    condition, one row a seed), paired by seed, with its t interval over the seeds."""
    return stats.t_interval((diagnostics[a][column] - diagnostics[b][column]).tolist())


def per_epoch(records: list[dict], key: str = "knn_top1") -> pd.DataFrame:
    """One metric of a condition's per-epoch rows (``metrics.json``'s ``epochs``), epoch × seed."""
    return pd.DataFrame({r["config"]["seed"]: {row["epoch"]: row[key] for row in r["epochs"]}
                         for r in records})


def at_epoch(results: dict[str, list[dict]], epoch: int) -> dict[str, list[dict]]:
    """``results`` as they stood after ``epoch``: each run's per-epoch row at that epoch as its
    ``final`` (the monitor's metrics), for the runs that trained that long; for paired differences
    over training (``cl.stats.paired_difference``)."""
    return {name: [{"config": r["config"], "final": r["epochs"][epoch - 1]} for r in records
                   if len(r["epochs"]) >= epoch] for name, records in results.items()}


def refill_same_class(record: dict) -> float | None:
    """A mined queue's same-class share at its refills (``refill_same_class``), from the last epoch
    that had a refill; None when no epoch recorded one (no refill, or a run trained before the share
    was recorded)."""
    recorded = [row["refill_same_class"] for row in record["epochs"] if "refill_same_class" in row]
    return recorded[-1] if recorded else None


def hardest_same_class_over_training(run_dirs: dict[int, Path], share: float) -> pd.DataFrame:
    """``difficulty.hardest_same_class`` of each run's probe set after every epoch (``run_dirs``: seed →
    run folder): one row per (seed, epoch) with its precision, recall and chance level."""
    rows = []
    for seed, run_dir in run_dirs.items():
        record = load_probe_set(run_dir)
        for epoch, z in record.embeddings.items():
            rows.append({"seed": seed, "epoch": epoch,
                         **difficulty.hardest_same_class(z, record.labels, share)._asdict()})
    return pd.DataFrame(rows)


def overview(results: dict[str, list[dict]]) -> pd.DataFrame:
    """Every condition of ``results`` (``summary.finished_results``) in one table to read: the final
    metrics as mean ± std over its seeds (``stats.formatted``), the setting its runs trained in
    (``summary.setting``), their epochs and mean training minutes; the best kNN top-1 first."""
    table = stats.mean_std(results)
    shown = stats.formatted(table)
    shown["setting"] = [summary.condition_setting(records) for records in results.values()]
    shown["epochs"] = [0 if records[0].get("control") else summary.trained_config(records)["epochs"]
                       for records in results.values()]
    shown["train minutes"] = [round(sum(r["final"]["train_seconds"] for r in records) / len(records) / 60, 1)
                              for records in results.values()]
    return shown.loc[table["knn_top1"].sort_values(ascending=False, kind="stable").index]
