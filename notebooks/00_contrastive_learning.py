# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 0 · Contrastive learning: positives, negatives and InfoNCE
#
# Self-supervised contrastive learning trains an encoder
# so that an image is **similar to an augmented view of itself** (the *positive*) and
# **dissimilar to views of other images** (the *negatives*). No label is used: each image
# is its own class ("instance discrimination"). The representation is then transferred to
# a downstream task — here, classifying Fashion-MNIST with a kNN vote or a linear probe.
#
# This notebook sets up the vocabulary of the whole study:
#
# 1. what a positive pair is (the augmentations),
# 2. the InfoNCE loss and *where its gradient goes* — the question the rest of the study asks,
# 3. why negatives are needed at all: without them, the encoder collapses,
# 4. alignment and uniformity, the two numbers that say what the loss did to the embedding.
#
# The first cell holds the notebook's parameters (`cl.study` sets them per scale); the cell
# after it imports the package and checks them.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu: how big the runs are, and where they go (runs/<scale>/)
base = {"epochs": 4}          # cl.config.Config overrides shared by this notebook's runs
seeds = [0, 1, 2]             # seeds of the collapse comparison (paired 95 % intervals)
check_claims = True           # assert the claims about trained models (off at the smoke scale)

# %% tags=["plan"]
import pandas as pd
import torch
from IPython.display import display

from cl import analysis, augment, data, losses, metrics, notebook, plots, stats, study, summary, train
from cl.negatives import kept_count

this_notebook = notebook.start(globals())

# %% [markdown]
# ## 1 · Positives: two views of one image
#
# A positive pair is two random augmentations of the same image. For 28-pixel grayscale
# Fashion-MNIST the recipe is MoCo v2's without the colour operations: a random resized
# crop (area 40–100 % of the image in training, `crop_min`), a horizontal flip, and
# brightness/contrast jitter. `cl.augment` draws the parameters of every sample at once and
# applies them to the whole batch on the device.
#
# Below, ten test images in the first row and two views of each under them. Each column is
# one positive pair: the encoder is asked to map its two lower images close together, and
# away from every other column.

# %%
test_set = data.load("fashion_mnist", "test")
aug_cfg = augment.default_config("fashion_mnist", test_set.size)
views = augment.TwoViews(aug_cfg, test_set.channels)
sample = test_set.images[:10]
v1, v2 = views(sample, torch.Generator().manual_seed(0))
plots.views_grid(sample, [v1, v2], aug_cfg.mean, aug_cfg.std,
                 "two augmented views of each image = a positive pair");
assert v1.shape == v2.shape == (10, 1, 28, 28) and not torch.equal(v1, v2)

# %% [markdown]
# ## 2 · InfoNCE, and where its gradient goes
#
# With a query embedding $q$, its positive key $k^+$ and negatives $k^-_1..k^-_K$, all
# L2-normalised, and a temperature $t$:
#
# $$\mathcal L = -\log \frac{e^{q\cdot k^+/t}}{e^{q\cdot k^+/t} + \sum_{j=1}^{K} e^{q\cdot k^-_j/t}}$$
#
# It is a $(K{+}1)$-way softmax classification whose correct class is the positive. Every
# method in this study is a function of the same two arrays: `pos` (B,), the similarity of
# each query to its positive, and `neg` (B, K), its similarity to each negative (an entry at
# `-inf` is a removed negative). This is `cl.losses.info_nce`:

# %%
notebook.show_source(losses.info_nce)

# %% [markdown]
# Write the logits $s_+ = q\cdot k^+/t$ and $s_j = q\cdot k^-_j/t$, and $p_j$ for the softmax
# probability of negative $j$ among all $K{+}1$ logits. Then
#
# $$\mathcal L = -s_+ + \log\Big(e^{s_+} + \sum_j e^{s_j}\Big), \qquad
#   \frac{\partial \mathcal L}{\partial s_j} = p_j, \qquad
#   \frac{\partial \mathcal L}{\partial s_+} = p_+ - 1 = -\sum_j p_j .$$
#
# The push on negative $j$ is its softmax probability, and the pull on the positive is the sum
# of all the pushes. So **the hardest negatives — the most similar to the query — receive
# almost all of the push**, and the lower $t$, the more so: $p_j \propto e^{q\cdot k^-_j/t}$
# sharpens as $t$ falls.
#
# To see the size of the effect, one query with a positive at similarity 0.8, and 4096
# negatives drawn around 0 (similarity ~ 𝒩(0, 0.2²), clipped to [−1, 1]) of which five are
# made hard by hand:

# %%
neg = torch.randn(1, 4096).mul(0.2).clamp(-1, 1)
neg[0, :5] = torch.tensor([0.75, 0.7, 0.65, 0.6, 0.55])  # a few hard negatives
pos = torch.tensor([0.8])
hardest = neg[0].argsort(descending=True)[:kept_count(neg.shape[1], "hardest", 0.05)]

# %% [markdown]
# For each temperature the next cell computes the loss, lets autograd differentiate it with
# respect to the similarities `neg` (so the gradient is $p_j/t$, and times $t$ it is $p_j$),
# and reports the share of the total push that the hardest 5 % of negatives carry (`hardest`,
# as many as `cl.negatives` keeps when it selects the "hardest" 5 %).

# %%
rows = {}
for t in (0.05, 0.1, 0.2, 0.5, 1.0):
    logits = neg.clone().requires_grad_(True)
    loss = losses.info_nce(pos, logits, t)
    loss.backward()
    p = logits.grad[0] * t  # = the softmax probability of each negative
    rows[t] = {"loss": loss.item(), "gradient share of the hardest 5%": (p[hardest].sum() / p.sum()).item()}
grad_table = pd.DataFrame(rows).T.rename_axis("t")
display(grad_table.round(3))
assert grad_table["gradient share of the hardest 5%"].is_monotonic_decreasing  # colder = harder-focused

# %% [markdown]
# Read the last column from the top: at the coldest temperature nearly the whole gradient goes
# to the few hardest negatives, and as $t$ grows it spreads towards the share a uniform
# weighting would give (5 %). The assert checks that ordering. It follows from the
# derivative above for any set of similarities, so it is arithmetic on toy numbers, not a
# finding about trained encoders. It is why the study keeps asking *which* negatives are in
# the queue: at a low temperature a small share of them sets the direction of each step.

# %% [markdown]
# ## 3 · Why negatives? Without them the encoder collapses
#
# Drop the negatives and the only objective left is to pull each query to its positive,
# $\mathcal L = -\mathbb E[q\cdot k^+]/t$ (`cl.losses.positives_only`). Mapping **every**
# image to the same point minimises it perfectly: the trivial solution.

# %%
notebook.show_source(losses.positives_only)

# %% [markdown]
# We train the same MoCo v2 encoder with both objectives, with the same seeds, data and
# schedule (`base`), each seed once per objective. `cl.study.run_conditions` reuses any
# finished run of the same name and config. The figure follows the first seed of each
# through training: its loss, the kNN top-1 on the backbone features, and the two geometry
# numbers of §4 (lower is better for both).

# %% tags=["plan"]
# `moco` is notebook 02's baseline (same name, same config): trained once, used by both
results = study.run_conditions({"moco": {}, "positives_only": {"loss": "positives_only"}},
                               base, seeds, scale, this_notebook)
labels = {"InfoNCE (with negatives)": "moco", "positives only": "positives_only"}
runs = {label: results[name][0] for label, name in labels.items()}
plots.curves(runs, keys=("loss", "knn_top1", "uniformity", "alignment"), title="with and without negatives");

# %% [markdown]
# The final metrics of the same two runs (kNN and linear top-1 in %, alignment and
# uniformity, and the training time in seconds):

# %%
collapse = summary.final_metrics(runs)
display(collapse.round(3))

# %% [markdown]
# The positives-only encoder's alignment goes to zero (the two views map to the same point)
# and its uniformity towards zero as well — $\log \mathbb E\, e^{-2\|f(x)-f(y)\|^2} = 0$ exactly
# when all points coincide: **the embedding collapses**. The kNN column above is measured,
# as everywhere in this study, on the *backbone* features, before the projection head; a
# barely trained convolutional backbone already separates Fashion-MNIST about as well as raw
# pixels do (notebook 01 measures that bar), so that column moves little. The collapse shows
# in the space the loss acts on, the head's normalised output $z$.
#
# `cl.analysis.embedding_knn` runs the same kNN protocol there: a bank of (at most) 10,000
# training images embedded by the whole encoder, backbone and head, and the test set voted
# against it. The next cell loads every seed's trained model and adds that number to its
# record; the table gains its mean over seeds as a last column.

# %%
for name, records in results.items():
    for record in records:
        trained, _ = train.load_model(study.run_dir(scale, f"{name}_s{record['config']['seed']}"))
        record["final"]["embedding_knn"] = analysis.embedding_knn(trained)
by_label = {label: results[name] for label, name in labels.items()}
embedding_means = stats.mean_std(by_label, columns=("embedding_knn",))["embedding_knn"]
collapse["kNN on the embedding (10k bank)"] = embedding_means
display(collapse.round(3))
notebook.show(f"Seed {seeds[0]} in the first columns; the last is the mean over "
              f"{stats.plural(len(seeds), 'seed')}.")

# %% [markdown]
# One seed can show an effect; it cannot show that the effect is larger than what changing the
# seed does. So each metric is compared **paired by seed** — positives only − InfoNCE in the run
# of the same seed, which removes what a seed does to both (initialisation, data order,
# augmentations) — with the 95 % Student t interval of those differences
# (`cl.stats.paired_difference`). A difference whose interval excludes 0 is resolved, and
# the word in brackets says which way; with fewer than three seeds nothing is claimed. The
# words follow each metric's direction: lower alignment and uniformity count as better
# (Wang & Isola 2020), so a collapsed embedding's alignment reads "lower (better)": alignment means
# something only beside uniformity (§4).

# %%
diffs = {m: stats.paired_difference(results, "positives_only", "moco", m)
         for m in ("uniformity", "alignment", "embedding_knn", "knn_top1")}
display(pd.DataFrame({"positives only − InfoNCE": {m: d.sentence(digits=3) for m, d in diffs.items()}}))
only_uniformity = [r["final"]["uniformity"] for r in results["positives_only"]]

# %% [markdown]
# The claim of this section, checked on those intervals when `check_claims` is on (every
# scale but smoke): the positives-only embedding **collapses** — its uniformity is near 0
# (above −0.5) in every seed and, paired by seed, resolved above InfoNCE's, and the kNN on
# the embedding falls by more than 5 points (the interval's upper end below −5). Every
# metric must also be finite.

# %%
assert all(torch.isfinite(torch.tensor(collapse.to_numpy(dtype=float))).flatten())
if check_claims:
    # "collapses": uniformity near 0 in every seed, resolved above InfoNCE's; the kNN on the
    # embedding falls by more than 5 points (the interval's upper end below −5)
    assert all(x.claims for x in diffs.values())
    assert min(only_uniformity) > -0.5 and diffs["uniformity"].low > 0
    assert diffs["embedding_knn"].high < -5

# %% [markdown]
# ## 4 · Alignment and uniformity (Wang & Isola 2020)
#
# InfoNCE with many negatives optimises two properties of the normalised embedding $f$:
#
# $$\text{align} = \mathbb E_{(x,x^+)}\,\|f(x)-f(x^+)\|_2^2, \qquad
#   \text{uniform} = \log \mathbb E_{x,y}\, e^{-2\|f(x)-f(y)\|_2^2}.$$
#
# The positive term of the loss drives alignment; the negatives drive uniformity (spreading
# the points over the sphere). Lower is better for both. These are the numbers the later
# notebooks report next to accuracy, for instance to check MoCHi's claim that mixing hard
# negatives *increases* uniformity at some cost in alignment. Both are short functions of
# `cl.metrics`; each run computes them after every epoch on (at most) 2,048 test images, each
# seen in two views:

# %%
notebook.show_source(metrics.alignment)
notebook.show_source(metrics.uniformity)

# %% [markdown]
# §3 reads both numbers as a diagnosis: collapse is perfect alignment bought with no
# uniformity at all, which is why the study never reads alignment without uniformity.
#
# ## What we measured
#
# Positives only − InfoNCE, paired by seed, each with its 95 % interval and the word it
# allows (for kNN, the linear probe's difference beside it):

# %%
linear = stats.paired_difference(results, "positives_only", "moco", "linear_top1")
notebook.show(stats.bullets({
    "uniformity": diffs["uniformity"].sentence(digits=3),
    "alignment": diffs["alignment"].sentence(digits=3),
    "kNN on the embedding (points)": diffs["embedding_knn"].sentence(),
    "kNN on the backbone features (points)": diffs["knn_top1"].sentence(linear),
}))

# %% [markdown]
# Where those intervals resolve (at the cpu scale, asserted in §3), removing the negatives
# collapses the embedding: uniformity near 0 and the kNN on the embedding well below
# InfoNCE's. Compare the last two bullets for the backbone features, which the rest of the
# study evaluates: a collapsed head need not erase at once what the convolutions under it
# learnt. Negatives are what avoids the trivial solution, at the cost of comparing each query
# with $K$ others — and at a low temperature the most similar of those $K$ carry most of the
# gradient (§2), the starting point of notebook 02.
