# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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
# This notebook trains nothing. Every run of the study embeds a fixed **probe set** of training
# images after each of its epochs (`cl.train`, `probe.pt`): the same images for every run of a
# scale (config key `probe`, 1,000 by default), with their labels and data-set indices. Every
# probe-set image is a query and every other one its negative. The difficulty of negative j for
# query i is their cosine similarity in the space the loss compares,
#
# $$s_{ij} = z_i \cdot z_j, \qquad z_i = \frac{e(x_i)}{\lVert e(x_i) \rVert},$$
#
# e the trained query encoder (its output, as the loss sees it) and x_i the unaugmented image:
# higher is harder. We read the runs of notebooks 00–06: the InfoNCE baseline, and two methods
# that change what the loss sees (training on the hardest 5 % of each row's negatives only,
# notebook 02; SupCon, notebook 06, which knows the classes).
#
# Class similarity comes from WordNet 3.0 (`cl.semantics`): each class is an explicit synset
# (never a word's first sense), and three measures say how close two classes are. All three read
# the same tree, WordNet's hypernym hierarchy (the depth of the lowest common ancestor, Wu &
# Palmer's ratio of depths, the shortest path), so they are three readings of one source, not
# independent checks: agreement among them shows that a conclusion does not hang on the formula,
# not that it holds beyond WordNet. The 45 class pairs of
# Fashion-MNIST are the unit of analysis for semantic questions.
#
# The parameters: whose runs to read (the scale), which trained conditions and seeds, and which
# WordNet measures. Every claim below needs three seeds and carries a 95 % t interval over them.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu: whose runs to read (runs/<scale>/)
methods = ["moco", "hardest_5pct", "supcon"]  # trained conditions to read; the first is the baseline
seeds = [0, 1, 2]             # their seeds (every claim: 3 seeds, 95 % t intervals)
measures = ["lca_depth", "wu_palmer", "path"]  # cl.semantics.MEASURES
check_claims = True           # assert the claims (off at the smoke scale)

# %% [markdown]
# `notebook.start` checks the parameters the cell above declares and seeds torch; the measures
# must be among those `cl.semantics` knows, and there must be a baseline to read.

# %%
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from cl import analysis, data, difficulty, notebook, parameters, plots, semantics, stats, study

this_notebook = notebook.start(globals())
if set(measures) - set(semantics.MEASURES) or not methods:
    raise parameters.ParameterError(f"measures must be among {', '.join(semantics.MEASURES)} and methods "
                                    f"non-empty; got {measures} and {methods}")

# %% [markdown]
# ## The classes in WordNet
#
# `analysis.load_probe_set` reads what a finished run kept of the probe set: the images'
# indices and labels, and their embeddings after every epoch. We read one run per method and
# seed; the first run also tells us the data set, and so the classes and their synsets:

# %%
probe_sets = {(m, s): analysis.load_probe_set(study.run_dir(scale, f"{m}_s{s}"))
              for m in methods for s in seeds}
first = probe_sets[(methods[0], seeds[0])]
dataset = first.config["dataset"]
train_set = data.load(dataset, "train")
classes = train_set.classes
synsets = semantics.class_synsets(dataset, classes)
display(pd.DataFrame({"class": classes, "synset": [s.name() for s in synsets],
                      "definition": [s.definition() for s in synsets]}))

# %% [markdown]
# Two classes are close when they share a specific hypernym. Let H(a) be a synset with all its
# hypernyms, depth(h) the number of edges on the longest hypernym path from h up to
# `entity.n.01`, c the lowest common hypernym of a and b, and n(x, y) the fewest edges between
# x and y through the hierarchy. The three measures (`cl.semantics.MEASURES`):
#
# $$\text{lca\_depth}(a, b) = \max_{h \in H(a) \cap H(b)} \text{depth}(h), \qquad
# \text{wu\_palmer}(a, b) = \frac{2\,d(c)}{n(a, c) + n(b, c) + 2\,d(c)}, \qquad
# \text{path}(a, b) = \frac{1}{1 + n(a, b)},$$
#
# with d(c) = depth(c) + 1, c's depth counted in nodes (Wu & Palmer 1994). The first is a depth
# in edges and grows without bound down the hierarchy; the other two lie in (0, 1] and are 1 for
# a class with itself. In the heat maps below, look at the footwear block: sandal and sneaker
# meet at *shoe*, deeper than sandal and ankle boot (at *footwear*), and far deeper than sandal
# and trouser (at *covering* or above). The cell checks that order under `lca_depth`.

# %%
similarity = {m: semantics.similarity_matrix(synsets, m) for m in measures}
units = {"lca_depth": "depth of the common hypernym (edges)", "wu_palmer": "Wu–Palmer similarity, (0, 1]",
         "path": "path similarity, (0, 1]"}
plots.class_matrices(similarity, classes, colorbar=units, title="class similarity in WordNet 3.0");
at = {name: i for i, name in enumerate(classes)}
if "lca_depth" in measures and {"Sandal", "Sneaker", "Ankle boot", "Trouser"} <= set(classes):
    depth = similarity["lca_depth"]
    assert (depth[at["Sandal"], at["Sneaker"]] > depth[at["Sandal"], at["Ankle boot"]]
            > depth[at["Sandal"], at["Trouser"]])

# %% [markdown]
# ## Difficulty against semantic similarity
#
# Raw similarities are not comparable across queries: one query's negatives may all lie close,
# another's far. So the difficulty of each negative is its percentile among the query's own
# n = P − 1 negatives (`cl.difficulty.percentiles`),
#
# $$\text{pct}_{ij} = \frac{r_{ij}}{n - 1},$$
#
# r_ij being j's rank from the easiest among query i's negatives, counted from 0, ties at their
# average rank: 1 is the hardest negative, 0 the easiest, and every row averages 1/2.
# `analysis.semantic_difficulty` computes it from each run's embeddings after its last epoch,
# with the class-level summaries used below. Each negative then gets the semantic level of its
# class against the query's, S[y_i, y_j], or "same class". The next cell draws the distribution
# of difficulty per level, for the baseline's first seed. If semantically close negatives are
# harder, the boxes climb from left (far classes) to right (close classes); the last box is
# the same-class negatives.

# %%
final = {key: analysis.semantic_difficulty(p.embeddings[max(p.embeddings)], p.labels, similarity)
         for key, p in probe_sets.items()}
shown = final[(methods[0], seeds[0])]["percentiles"]
levels = {m: difficulty.semantic_levels(shown, first.labels, similarity[m]) for m in measures}
plots.boxes(levels, xlabel="semantic level of the negative's class",
            ylabel="difficulty percentile (1 = hardest)",
            title=f"{methods[0]}, seed {seeds[0]}, after epoch {max(first.embeddings)}");

# %% [markdown]
# Averaging over queries of one class and negatives of another gives the mean difficulty of each
# ordered class pair,
#
# $$D[a, b] = \operatorname{mean}\{\text{pct}_{ij} : y_i = a,\ y_j = b\}$$
#
# (`cl.difficulty.class_pair_difficulty`). The heat map shows it for the baseline, averaged over
# its seeds; rows are the query's class, columns the negative's. The diagonal holds the
# same-class negatives, the false negatives of instance discrimination: a bright diagonal means
# the encoder places images of one class near each other although the loss pushes them apart.

# %%
pairs = torch.stack([final[(methods[0], s)]["pairs"] for s in seeds]).mean(0)
plots.class_matrices({f"{methods[0]}, mean of {stats.plural(len(seeds), 'seed')}": pairs}, classes,
                     colorbar="mean difficulty percentile (1 = hardest)", xlabel="negative's class",
                     ylabel="query's class", cmap="magma", vmin=0, vmax=1);

# %% [markdown]
# Does difficulty rise with semantic similarity? Over the 45 unordered class pairs a < b, the
# rank correlation
#
# $$\rho = \operatorname{spearman}\Big(\tfrac{D[a, b] + D[b, a]}{2},\ S[a, b]\Big)$$
#
# for each measure and each seed (`cl.difficulty.semantic_correlation`). The pairs are not
# independent (each class is in nine of them), so a p-value would mislead; instead the 95 % t
# interval over the seeds decides: above 0, difficulty rises with similarity. The same-class
# negatives are set against the others in the same way, as the difference between the diagonal's
# mean and the off-diagonal's.

# %%
rho = pd.DataFrame({m: [final[(methods[0], s)]["rho"][m] for s in seeds] for m in measures}, index=seeds)
rho.index.name = "seed"
display(rho.round(3))
same_minus_other = [final[(methods[0], s)]["same_minus_other"] for s in seeds]
words = {m: stats.t_interval(rho[m].tolist()).words("difficulty rises with similarity",
                                                    "difficulty falls with similarity") for m in measures}
words["same class − other classes"] = stats.t_interval(same_minus_other).words(
    "same-class negatives are harder", "same-class negatives are easier")
display(pd.Series(words, name=f"{methods[0]}: mean [95 % interval] over seeds").to_frame())

# %% [markdown]
# The interval over seeds treats the 45 class pairs as fixed; they are not a sample of
# independent pairs, but ten classes, each in nine pairs. The honest unit is the class:
# `cl.difficulty.jackknife_correlation` leaves out one class (its nine pairs) at a time and turns
# the spread of the ten ρ's into a 95 % interval, on the difficulty averaged over the seeds.

# %%
jackknife = {m: difficulty.jackknife_correlation(pairs, similarity[m]) for m in measures}
display(pd.Series({m: j.words("difficulty rises with similarity", "difficulty falls with similarity")
                   for m, j in jackknife.items()}, name="ρ [95 % class-level jackknife interval]").to_frame())

# %% [markdown]
# ## The easiest negatives: semantically far, or close?
#
# The paper's puzzle is about single negatives: the easiest ones, anti-correlated with the
# query, are often semantically similar to it. `cl.difficulty.similarity_by_band` cuts each
# query's negatives into three difficulty bands, the easiest 5 % (percentile 0–0.05), the middle
# 90 % and the hardest 5 % (0.95–1), and reports for each band the share of the query's own class
# and the mean semantic similarity S[y_i, y_j] of the other classes' negatives. The table is the
# mean over the baseline's seeds, one column group per measure. Read the similarity column from
# top to bottom: a U over the bands, high at both ends, is the paper's finding; a monotone rise
# from the easiest to the hardest is not.

# %%
per_seed = {m: [difficulty.similarity_by_band(final[(methods[0], s)]["percentiles"],
                                             probe_sets[(methods[0], s)].labels, similarity[m])
                for s in seeds]
            for m in measures}
display(pd.concat({m: analysis.mean_of_tables(tables) for m, tables in per_seed.items()}, axis=1).round(3))

# %% [markdown]
# The left arm of the U, tested: for each seed, the easiest band's mean similarity minus the
# middle band's, and its interval over the seeds. Above 0, the easiest negatives are closer to
# the query's class than the ordinary ones, as Cai et al. report.

# %%
easiest, middle = per_seed[measures[0]][0].index[:2]  # 0–0.05: the easiest 5 %; then the middle band
gaps = {m: [t.loc[easiest, "similarity"] - t.loc[middle, "similarity"] for t in tables]
        for m, tables in per_seed.items()}
u_shape = {m: stats.t_interval(gap).words("the easiest are closer than the middle (the paper's U)",
                                          "the easiest are farther than the middle")
           for m, gap in gaps.items()}
display(pd.Series(u_shape, name=f"easiest − middle band, similarity ({methods[0]})").to_frame())

# %% [markdown]
# ## Close yet easy class pairs
#
# The same question for classes (`cl.difficulty.ranked_class_pairs`): rank the 45 pairs by
# similarity and by difficulty. A pair in the top third of both is *correlated* (hard because
# close); a pair in the top third by similarity but the bottom third by difficulty is close yet
# easy (labelled *anti-correlated* in the tables). `analysis.pairs_across_measures` sets the
# measures side by side, one row per pair, ordered by the mean over measures of the pair's
# similarity rank; difficulty is the baseline's mean over seeds. The table shows the 15 closest pairs;
# below it, the pairs that carry the same label under every measure, which no choice of measure
# explains away.

# %%
ranked = {m: difficulty.ranked_class_pairs(pairs, similarity[m], classes) for m in measures}
display(analysis.pairs_across_measures(ranked).head(15).round(3))
anti_everywhere = analysis.labelled_everywhere(ranked, difficulty.ANTI_CORRELATED)
correlated_everywhere = analysis.labelled_everywhere(ranked, difficulty.CORRELATED)
notebook.show(stats.bullets({
    "close yet easy under every measure": stats.listing(" · ".join(p) for p in sorted(anti_everywhere)),
    "correlated under every measure": stats.listing(" · ".join(p) for p in sorted(correlated_everywhere))}))

# %% [markdown]
# What such pairs look like: for up to two correlated and two close-yet-easy pairs, the first two
# probe-set images of each class. A close-yet-easy pair is one whose classes WordNet puts near
# each other but whose images the encoder separates; the pictures show whether they differ at a
# glance (shape, brightness) although their names are related.

# %%
examples = [("correlated", p) for p in sorted(correlated_everywhere)[:2]] + \
           [("close yet easy", p) for p in sorted(anti_everywhere)[:2]]
plots.class_pair_examples(examples, train_set.images[first.indices], first.labels, classes);

# %% [markdown]
# ## Is a hard pair hard throughout training?
#
# For every epoch e before the last, `analysis.consistency` computes the rank correlation of
# each (query, negative) pair's difficulty after e with its difficulty after the last epoch,
#
# $$\rho_e = \operatorname{spearman}\big(\text{pct}^{(e)}_{ij},\ \text{pct}^{(\text{last})}_{ij}\big)
# \quad\text{over all pairs } i \ne j,$$
#
# against two controls. Shuffled globally, epoch e's matrix gives chance, ρ ≈ 0. Shuffled within
# each class pair (y_i, y_j), it keeps what class membership explains and destroys the rest: its
# expected ρ is the share of the rank variance that lies between class pairs, which already beats
# chance when classes matter. A pair's difficulty persists beyond its classes as far as the
# observed curve lies above the within-class-pair control.
#
# Two more controls ask whether training has anything to do with it: the same images ranked by
# their **raw pixels** (mean-centred) and by the **untrained encoder** of the run's seed
# (`analysis.probe_set_controls`), each correlated with the last epoch's ranking. Input
# similarity persists under any encoder; if an untrained ranking already predicts the final
# one as well as epoch 1 does, "consistent across training" says nothing about training. The
# figure draws every curve for every seed of the baseline.

# %%
baseline_sets = {s: probe_sets[(methods[0], s)] for s in seeds}
curves = {s: analysis.consistency(p, seed=s, inputs=analysis.probe_set_controls(p))
          for s, p in baseline_sets.items()}
plots.consistency(curves, title=f"{methods[0]}, every seed");

# %% [markdown]
# The gap at the earliest recorded epoch is the strictest test (the longest span to the end):
# observed minus each control, per seed, and its interval.

# %%
first_epoch = min(curves[seeds[0]].index) if len(curves[seeds[0]]) else None
if first_epoch is not None:
    gap = lambda control: [curves[s].loc[first_epoch, "observed"] - curves[s].loc[first_epoch, control]
                           for s in seeds]
    beyond = gap("within_class_pairs")
    consistency_words = stats.t_interval(beyond).words("difficulty persists beyond class membership",
                                                       "less consistent than class membership alone")
    controls_words = {name: stats.t_interval(gap(name)).words("beyond it", "below it")
                      for name in ("raw pixels (centred)", "untrained encoder")}
    notebook.show(stats.bullets({
        f"epoch {first_epoch} against the last, observed − within-class-pair control": consistency_words,
        **{f"observed − the {name} ranking": words_ for name, words_ in controls_words.items()}}))

# %% [markdown]
# **The negative or the pair?** If difficulty belonged to the negative alone, a hard negative
# would be hard for every query. `cl.difficulty.negative_vs_pair` measures the share of the
# variance of the percentiles x_ij that the negative j explains (a one-way ANOVA R²),
#
# $$R^2 = \frac{\sum_j n_j (m_j - m)^2}{\sum_{i,j} (x_{ij} - m)^2},$$
#
# m_j the mean of column j over its n_j entries and m the mean of all; the rest belongs to the
# pair (and to noise). Every row of percentiles averages 1/2, so the query explains none of it.
# Against it stands the share that the same matrix reaches with each row shuffled, what a
# negative with no effect reaches by chance (about 1/P).

# %%
shares = pd.DataFrame([difficulty.negative_vs_pair(final[(methods[0], s)]["percentiles"],
                                                   torch.Generator().manual_seed(s))
                       for s in seeds], index=seeds)
display(shares.round(3))
share_words = stats.t_interval((shares["share"] - shares["shuffled_share"]).tolist()).words(
    "a share of difficulty belongs to the negative", "less than chance")
notebook.show(f"The negative's share − chance: {share_words}.")

# %% [markdown]
# ## Does the method change what is hard?
#
# Training on the hardest 5 % only and SupCon both change which negatives the loss pushes away;
# SupCon pulls same-class images together as positives, so its same-class "negatives" should
# come out hard. The same quantities per method (`analysis.semantic_quantities`: ρ of difficulty
# and similarity per measure, and same-class minus other-class difficulty), their means, and
# each method's difference from the baseline, paired by seed (the same seed gives both runs the
# same initialisation and data order):

# %%
quantities = analysis.semantic_quantities(final, methods, seeds, measures)
display(pd.DataFrame({f"{m} · {q}": {"mean": np.mean(v)} for (m, q), v in quantities.items()}).T.round(3))
changes = {f"{m} − {methods[0]}: {q}": stats.t_interval(np.subtract(v, quantities[(methods[0], q)])).words(
               "higher", "lower") for (m, q), v in quantities.items() if m != methods[0]}
display(pd.Series(changes, name="paired by seed: mean [95 % interval]").to_frame())

# %% [markdown]
# ## What we measured
#
# The sentences below are worded by `cl.stats` from the intervals above; each holds for the
# runs' schedule (their epochs) and for Fashion-MNIST's ten classes only.

# %%
n_pairs = stats.plural(len(ranked[measures[0]]), "class pair")
claims = {f"ρ of difficulty and {m} similarity over the {n_pairs}": words[m] for m in measures}
claims["same-class − other-class negatives, difficulty percentile"] = words["same class − other classes"]
claims["close yet easy under every measure"] = stats.plural(len(anti_everywhere), "class pair")
claims["correlated under every measure"] = stats.plural(len(correlated_everywhere), "class pair")
claims |= {f"the easiest 5 % against the middle band, {m} similarity": u_shape[m] for m in measures}
if first_epoch is not None:
    claims[f"consistency from epoch {first_epoch} to the last"] = consistency_words
    claims |= {f"consistency beyond the {name} ranking": w for name, w in controls_words.items()}
claims |= {f"ρ with {m} similarity, class-level jackknife (seed-mean difficulty)":
           j.words("difficulty rises with similarity", "difficulty falls with similarity")
           for m, j in jackknife.items()}
claims["the negative's share of difficulty, beyond chance"] = share_words
notebook.show(f"After {stats.plural(first.config['epochs'], 'epoch')}, the baseline ({methods[0]}):\n\n"
              + stats.bullets(claims))

# %% [markdown]
# Two of these are hypotheses the notebook states before measuring: same-class negatives are
# harder than the other classes' (the false negatives of notebooks 02 and 03), and difficulty
# persists beyond what class membership explains (Cai et al. 2020). With `check_claims` on and at
# least `stats.MIN_SEEDS` seeds, the next cell fails the notebook when either interval does not
# lie above 0.

# %%
if check_claims and len(seeds) >= stats.MIN_SEEDS:
    assert stats.t_interval(same_minus_other).low > 0, words["same class − other classes"]
    assert first_epoch is None or stats.t_interval(beyond).low > 0, consistency_words
