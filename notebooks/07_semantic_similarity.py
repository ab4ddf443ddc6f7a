# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · What makes a negative hard? Semantic similarity, consistency, and the method
#
# Cai, Frankle, Schwab and Morcos (2020, "Are all negatives created equal in contrastive
# instance discrimination?") ask *which* negatives are hard: are they the semantically similar
# ones (a sandal for a sneaker), is a hard pair hard throughout training, and is difficulty a
# property of the negative or of the (query, negative) pair? They find the hardest negatives
# semantically similar to the query, **and the easiest ones, whose embeddings point away from
# the query's (anti-correlated), often semantically similar too**, and difficulty consistent
# across training.
#
# This notebook trains nothing. Every run of the study embeds a fixed probe of training images
# (the same 1,000 for every run, with their labels and data-set indices) after each of its
# epochs (`cl.train`, `probe.pt`): every probe image is a query and every other one its
# negative, ranked by cosine similarity in the space the loss compares. We read the runs of
# notebooks 00–06: the InfoNCE baseline, and two methods that change what the loss sees
# (training on the hardest 5 % only, notebook 02; SupCon, notebook 06, which knows the classes).
#
# Class similarity comes from WordNet 3.0 (`cl.semantics`): each class is an explicit synset
# (never a word's first sense), and three measures of how close two classes are: the depth of
# their lowest common hypernym, Wu–Palmer, and path similarity. The measures disagree in
# detail, so no conclusion below hangs on one of them. The 45 class pairs of Fashion-MNIST
# are the unit of analysis for semantic questions.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu: whose runs to read (runs/<scale>/)
methods = ["moco", "hardest_5pct", "supcon"]  # trained conditions to read; the first is the baseline
seeds = [0, 1, 2]             # their seeds (every claim: 3 seeds, 95 % t intervals)
measures = ["lca_depth", "wu_palmer", "path"]  # cl.semantics.MEASURES
check_claims = True           # assert the claims (off at the smoke scale)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from cl import analysis, data, difficulty, notebook, semantics, study

NB = notebook.start(scale=scale, methods=methods, seeds=seeds, measures=measures, check_claims=check_claims)
if set(measures) - set(semantics.MEASURES) or not methods:
    raise study.ParameterError(f"measures must be among {', '.join(semantics.MEASURES)} and methods "
                               f"non-empty; got {measures} and {methods}")

# %% [markdown]
# ## The classes in WordNet
#
# The ten classes and their synsets; then, for each measure, the class-by-class similarity.
# Sandal and sneaker meet at *shoe*, deeper than sandal and ankle boot (at *footwear*), and
# far deeper than sandal and trouser (at *covering* or above).

# %%
probes = {(m, s): analysis.load_probe(study.run_dir(scale, f"{m}_s{s}")) for m in methods for s in seeds}
first = probes[(methods[0], seeds[0])]
dataset = first.config["dataset"]
train_set = data.load(dataset, "train")
classes = train_set.classes
synsets = semantics.class_synsets(dataset, classes)
display(pd.DataFrame({"class": classes, "synset": [s.name() for s in synsets],
                      "definition": [s.definition() for s in synsets]}))
similarity = {m: semantics.similarity_matrix(synsets, m) for m in measures}
fig, axes = plt.subplots(1, len(measures), figsize=(4.6 * len(measures), 4))
for ax, m in zip(np.atleast_1d(axes), measures):
    ax.imshow(similarity[m].numpy(), cmap="viridis")
    ax.set(title=m, xticks=range(len(classes)), yticks=range(len(classes)))
    ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
fig.tight_layout()
at = {name: i for i, name in enumerate(classes)}
if "lca_depth" in measures and {"Sandal", "Sneaker", "Ankle boot", "Trouser"} <= set(classes):
    depth = similarity["lca_depth"]
    assert (depth[at["Sandal"], at["Sneaker"]] > depth[at["Sandal"], at["Ankle boot"]]
            > depth[at["Sandal"], at["Trouser"]])

# %% [markdown]
# ## Difficulty against semantic similarity
#
# For each query, the difficulty of every negative is its percentile among the query's
# negatives (1 = the hardest; ranking within the row makes queries comparable,
# `cl.difficulty.difficulty_percentiles`). Grouped by the semantic level of the negative's
# class against the query's, the distribution per level (the baseline, after its last epoch,
# seed shown in the title):

# %%
final = {key: analysis.semantic_difficulty(p.embeddings[max(p.embeddings)], p.labels, similarity)
         for key, p in probes.items()}
base = final[(methods[0], seeds[0])]
fig, axes = plt.subplots(1, len(measures), figsize=(4.6 * len(measures), 3.4))
for ax, m in zip(np.atleast_1d(axes), measures):
    levels = difficulty.semantic_levels(base["percentiles"], first.labels, similarity[m])
    names = [f"{k:.2f}" if isinstance(k, float) else k for k in levels]
    ax.boxplot([v.numpy() for v in levels.values()], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=60, fontsize=7)
    ax.set(title=f"{m}", xlabel="semantic level of the negative's class", ylabel="difficulty percentile")
fig.suptitle(f"{methods[0]}, seed {seeds[0]}, after epoch {max(first.embeddings)}")
fig.tight_layout()

# %% [markdown]
# The mean difficulty of each class pair (rows: the query's class, columns: the negative's).
# The diagonal is the same-class negatives, the false negatives of instance discrimination:

# %%
pairs = torch.stack([final[(methods[0], s)]["pairs"] for s in seeds]).mean(0)
fig, ax = plt.subplots(figsize=(5.8, 4.8))
image = ax.imshow(pairs.numpy(), cmap="magma", vmin=0, vmax=1)
ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="negative's class",
       ylabel="query's class",
       title=f"mean difficulty percentile by class pair ({methods[0]}, mean of {len(seeds)} seed(s))")
ax.set_xticklabels(classes, rotation=90, fontsize=7)
ax.set_yticklabels(classes, fontsize=7)
fig.colorbar(image, ax=ax)
fig.tight_layout()

# %% [markdown]
# Spearman's ρ between a class pair's difficulty and its semantic similarity, over the 45
# pairs, for each measure and each seed; the 95 % t interval over the seeds decides whether
# difficulty rises with semantic similarity. Same-class negatives are set against the others
# in the same way.

# %%
rho = pd.DataFrame({m: [final[(methods[0], s)]["rho"][m] for s in seeds] for m in measures}, index=seeds)
rho.index.name = "seed"
display(rho.round(3))
same_minus_other = [final[(methods[0], s)]["same_minus_other"] for s in seeds]
words = {m: study.interval_words(rho[m].tolist(), "difficulty rises with similarity",
                                 "difficulty falls with similarity") for m in measures}
words["same class − other classes"] = study.interval_words(
    same_minus_other, "same-class negatives are harder", "same-class negatives are easier")
display(pd.Series(words, name=f"{methods[0]}: mean [95 % interval] over seeds").to_frame())

# %% [markdown]
# ## The easiest negatives: semantically far, or close?
#
# The paper's puzzle is about single negatives: the easiest ones, anti-correlated with the
# query, are often semantically similar to it. By difficulty band of each query's negatives,
# the share of the query's own class and the mean semantic similarity of the other classes'
# negatives (`cl.difficulty.similarity_by_band`); a U over the bands, high at both ends, is the
# paper's finding; a monotone rise is not:

# %%
per_seed = {m: [difficulty.similarity_by_band(final[(methods[0], s)]["percentiles"],
                                             probes[(methods[0], s)].labels, similarity[m]) for s in seeds]
            for m in measures}
mean_over_seeds = lambda tables: pd.concat(tables).groupby(level=0, sort=False).mean()
display(pd.concat({m: mean_over_seeds(tables) for m, tables in per_seed.items()}, axis=1).round(3))
easiest, middle = per_seed[measures[0]][0].index[:2]  # 0–0.05: the easiest 5 %; then the middle band
u_shape = {m: study.interval_words([t.loc[easiest, "similarity"] - t.loc[middle, "similarity"]
                                    for t in tables],
                                   "the easiest are closer than the middle (the paper's U)",
                                   "the easiest are farther than the middle")
           for m, tables in per_seed.items()}
display(pd.Series(u_shape, name=f"easiest − middle band, similarity ({methods[0]})").to_frame())

# %% [markdown]
# ## Close yet easy class pairs
#
# The same question for classes: ranking the 45 pairs by similarity and by difficulty, a pair
# in the top third of both is *correlated* (hard because close); a pair in the top third by
# similarity but the bottom third by difficulty is close yet easy (labelled *anti-correlated*
# in the tables). Ranked by the mean over measures of each pair's similarity rank, difficulty
# from the baseline (mean over seeds):

# %%
ranked = {m: difficulty.ranked_class_pairs(pairs, similarity[m], classes) for m in measures}
key = ["class_a", "class_b"]  # a pair's name in the tables
table = ranked[measures[0]][key + ["difficulty", "difficulty_rank"]].copy()
for m in measures:
    table = table.merge(ranked[m][key + ["similarity_rank", "label"]].rename(
        columns={"similarity_rank": f"{m} rank", "label": f"{m} label"}), on=key)
table["mean similarity rank"] = table[[f"{m} rank" for m in measures]].mean(axis=1)
table = table.sort_values("mean similarity rank").reset_index(drop=True)
display(table.head(15).round(3))
anti_everywhere = set.intersection(*(difficulty.labelled_pairs(ranked[m], difficulty.ANTI_CORRELATED)
                                     for m in measures))
correlated_everywhere = set.intersection(*(difficulty.labelled_pairs(ranked[m], difficulty.CORRELATED)
                                           for m in measures))
print(f"close yet easy under every measure: {sorted(anti_everywhere) or 'none'}")
print(f"correlated under every measure: {sorted(correlated_everywhere) or 'none'}")

# %% [markdown]
# Example images of correlated and close-yet-easy pairs (two probe images of each class):

# %%
examples = [("correlated", p) for p in sorted(correlated_everywhere)[:2]] + \
           [("close yet easy", p) for p in sorted(anti_everywhere)[:2]]
if examples:
    fig, axes = plt.subplots(len(examples), 4, figsize=(5.5, 1.6 * len(examples)), squeeze=False)
    for row, (kind, (a, b)) in zip(axes, examples):
        for col, name in enumerate((a, a, b, b)):
            members = first.indices[first.labels == classes.index(name)]
            row[col].imshow(train_set.images[members[col % 2], 0], cmap="gray")
            row[col].set_title(f"{name}" + (f"\n({kind})" if col == 0 else ""), fontsize=7)
            row[col].axis("off")
    fig.tight_layout()

# %% [markdown]
# ## Is a hard pair hard throughout training?
#
# For every epoch, the rank correlation of each (query, negative) pair's difficulty with its
# difficulty after the last epoch, against two controls: the same matrix shuffled within each
# class pair (what class membership alone explains: it already beats chance), and shuffled
# globally (chance, ρ ≈ 0). Difficulty persists beyond the classes as far as the observed
# correlation exceeds the within-class-pair control:

# %%
curves = {s: analysis.consistency(probes[(methods[0], s)], seed=s) for s in seeds}
fig, ax = plt.subplots(figsize=(6, 3.4))
for s, c in curves.items():
    ax.plot(c.index, c["observed"], marker="o", color="tab:blue", label="observed" if s == seeds[0] else None)
    ax.plot(c.index, c["within_class_pairs"], marker="s", color="tab:orange", ls="--",
            label="shuffled within class pairs" if s == seeds[0] else None)
    ax.plot(c.index, c["global"], color="gray", ls=":", label="shuffled globally" if s == seeds[0] else None)
ax.set(xlabel="epoch", ylabel="ρ with the last epoch's difficulty", title=f"{methods[0]}, every seed")
ax.legend(fontsize=8)
fig.tight_layout()
first_epoch = min(curves[seeds[0]].index) if len(curves[seeds[0]]) else None
if first_epoch is not None:
    beyond = [curves[s].loc[first_epoch, "observed"] - curves[s].loc[first_epoch, "within_class_pairs"]
              for s in seeds]
    consistency_words = study.interval_words(beyond, "difficulty persists beyond class membership",
                                       "less consistent than class membership alone")
    print(f"epoch {first_epoch} vs the last, observed − within-class-pair control: {consistency_words}")

# %% [markdown]
# **The negative or the pair?** The share of the variance of difficulty explained by the
# negative alone (hard for many queries), against what a within-row shuffle reaches by chance:

# %%
shares = pd.DataFrame([difficulty.negative_vs_pair(final[(methods[0], s)]["percentiles"],
                                                   torch.Generator().manual_seed(s))
                       for s in seeds], index=seeds)
display(shares.round(3))
share_words = study.interval_words((shares["share"] - shares["shuffled_share"]).tolist(),
                             "a share of difficulty belongs to the negative", "less than chance")
print(f"negative's share − chance: {share_words}")

# %% [markdown]
# ## Does the method change what is hard?
#
# The same ρ (difficulty against similarity, per measure) and the same-class difficulty for
# each method, and its difference from the baseline, paired by seed:

# %%
rows = {}
for m in methods:
    for measure in measures:
        values = [final[(m, s)]["rho"][measure] for s in seeds]
        rows[(m, f"ρ {measure}")] = values
    rows[(m, "same − other classes")] = [final[(m, s)]["same_minus_other"] for s in seeds]
per_method = pd.DataFrame({f"{m} · {q}": {"mean": np.mean(v)} for (m, q), v in rows.items()}).T
display(per_method.round(3))
changes = {}
for m in methods[1:]:
    for quantity in [f"ρ {measure}" for measure in measures] + ["same − other classes"]:
        diff = [a - b for a, b in zip(rows[(m, quantity)], rows[(methods[0], quantity)])]
        changes[f"{m} − {methods[0]}: {quantity}"] = study.interval_words(diff, "higher", "lower")
display(pd.Series(changes, name="paired by seed: mean [95 % interval]").to_frame())

# %% [markdown]
# ## What we measured
#
# The sentences below are computed from the intervals above; each holds for the runs'
# schedule (their epochs) and for Fashion-MNIST's ten classes only.

# %%
epochs = first.config["epochs"]
claims = [f"At {epochs} epochs, for the baseline ({methods[0]}):"]
for m in measures:
    claims.append(f"* difficulty against {m} similarity over the 45 class pairs: ρ = {words[m]}.")
claims.append(f"* same-class negatives against the other classes' (difficulty percentile): "
              f"{words['same class − other classes']}.")
claims.append(f"* close-yet-easy class pairs under every measure: {len(anti_everywhere)}; "
              f"correlated under every measure: {len(correlated_everywhere)}.")
for m in measures:
    claims.append(f"* the easiest 5 % of negatives against the middle band, {m} similarity: {u_shape[m]}.")
if first_epoch is not None:
    claims.append(f"* consistency from epoch {first_epoch} to the last: {consistency_words}.")
claims.append(f"* the negative's share of difficulty, beyond chance: {share_words}.")
display(Markdown("\n".join(claims)))
if check_claims and len(seeds) >= study.MIN_SEEDS:
    # the claims the text makes before measuring: same-class negatives are the hardest (the false
    # negatives of notebooks 02 and 03), and difficulty persists beyond what class membership
    # explains (Cai et al.)
    assert study.t_interval(same_minus_other)[1] > 0, words["same class − other classes"]
    assert first_epoch is None or study.t_interval(beyond)[1] > 0, consistency_words
