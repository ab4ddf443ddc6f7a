# ---
# jupyter:
#   jupytext:
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

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu: how big the runs are, and where they go (runs/<scale>/)
base = {"epochs": 4}          # cl.train.Config overrides shared by this notebook's runs
seeds = [0, 1, 2]             # seeds of the collapse comparison (paired 95 % intervals)
check_claims = True           # assert the claims about trained models (off at the smoke scale)

# %%
import pandas as pd
import torch
from IPython.display import display

from cl import augment, data, losses, metrics, negatives, notebook, plots, study, train
from cl.plots import source

NB = notebook.start(scale=scale, base=base, seeds=seeds, check_claims=check_claims)

# %% [markdown]
# ## 1 · Positives: two views of one image
#
# A positive pair is two random augmentations of the same image. For 28-pixel grayscale
# Fashion-MNIST the recipe is MoCo v2's without the colour operations: a random resized
# crop (area 40–100 % of the image in training, `crop_min`), a horizontal flip, and
# brightness/contrast jitter. `cl.augment` draws the parameters of every sample at once and
# applies them to the whole batch on the device.

# %%
test_set = data.load("fashion_mnist", "test")
aug_cfg = augment.default_config("fashion_mnist", test_set.size)
views = augment.TwoViews(aug_cfg, test_set.channels)
sample = test_set.images[:10]
g = torch.Generator().manual_seed(0)
v1, v2 = views(sample, g)
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
source(losses.info_nce)

# %% [markdown]
# The derivative of $\mathcal L$ with respect to the logit $s_j = q\cdot k^-_j/t$ of a negative
# is its softmax probability $p_j$. So **the hardest negatives — the most similar to the
# query — receive almost all of the push**, and the lower $t$, the more so. Below, one query
# with a positive at similarity 0.8 and 4096 random negatives: the share of the gradient that
# the hardest 5 % of negatives carry, as the temperature changes.

# %%
neg = torch.randn(1, 4096).mul(0.2).clamp(-1, 1)
neg[0, :5] = torch.tensor([0.75, 0.7, 0.65, 0.6, 0.55])  # a few hard negatives
pos = torch.tensor([0.8])
rows = []
for t in (0.05, 0.1, 0.2, 0.5, 1.0):
    logits = neg.clone().requires_grad_(True)
    losses.info_nce(pos, logits, t).backward()
    grad = logits.grad[0] * t                    # = softmax probability of each negative
    order = neg[0].argsort(descending=True)
    share = grad[order[:negatives.kept_count(len(order), "hardest", 0.05)]].sum() / grad.sum()  # hardest 5 %
    rows.append((t, losses.info_nce(pos, neg, t).item(), share.item()))
grad_table = pd.DataFrame(rows, columns=["t", "loss", "gradient share of the hardest 5%"]).set_index("t")
display(grad_table.round(3))
assert grad_table["gradient share of the hardest 5%"].is_monotonic_decreasing  # colder = harder-focused

# %% [markdown]
# ## 3 · Why negatives? Without them the encoder collapses
#
# Drop the negatives and the only objective left is to pull each query to its positive,
# $\mathcal L = -\mathbb E[q\cdot k^+]/t$ (`cl.losses.positives_only`). Mapping **every**
# image to the same point minimises it perfectly: the trivial solution. We train the same
# MoCo v2 encoder with both objectives, with the same seed, data and schedule.

# %%
source(losses.positives_only)

# %%
# `moco` is notebook 02's baseline (same name, same config): trained once, used by both
results = study.run_conditions({"moco": {}, "positives_only": {"loss": "positives_only"}},
                               base, seeds, scale, NB)
runs = {"InfoNCE (with negatives)": results["moco"][0], "positives only": results["positives_only"][0]}
plots.curves(runs, keys=("loss", "knn_top1", "uniformity", "alignment"), title="with and without negatives");

# %%
collapse = plots.table(runs)
display(collapse.round(3))

# %% [markdown]
# The positives-only encoder's alignment goes to zero (the two views map to the same point)
# and its uniformity to zero as well — $\log \mathbb E\, e^{-2\|f(x)-f(y)\|^2} = 0$ exactly
# when all points coincide: **the embedding has collapsed**. The kNN column above is measured,
# as everywhere in this study, on the *backbone* features, before the projection head; a
# barely trained convolutional backbone already separates Fashion-MNIST about as well as raw
# pixels do, so that column moves little. The collapse shows in the space the loss acts on,
# the head's normalised output: the same kNN protocol there —

# %%
def embedding_knn(run_name):
    """kNN top-1 on the head's normalised output (10k training images as the bank)."""
    trained, _ = train.load_model(study.run_dir(scale, run_name))
    prepare = lambda x: augment.to_float(x, trained.aug_cfg)
    bank = trained.train_set.subset(min(10000, len(trained.train_set)), 0)
    z_bank = metrics.embed(trained.encoder, bank.images, prepare)
    z_test = metrics.embed(trained.encoder, trained.test_set.images, prepare)
    return metrics.knn_accuracy(z_bank, bank.labels, z_test, trained.test_set.labels, 10)


for name in results:
    for record in results[name]:
        record["final"]["embedding_knn"] = embedding_knn(f"{name}_s{record['config']['seed']}")
collapse["kNN on the embedding (10k bank)"] = pd.Series(
    {label: sum(r["final"]["embedding_knn"] for r in results[name]) / len(seeds)
     for label, name in [("InfoNCE (with negatives)", "moco"), ("positives only", "positives_only")]})
display(collapse.round(3))
print(f"seed {seeds[0]} in the first columns; the last is the mean over {len(seeds)} seed(s)")

# %% [markdown]
# Positives only − InfoNCE, paired by seed, with 95 % t intervals:

# %%
diffs = {m: study.paired_difference(results, "positives_only", "moco", m)
         for m in ("uniformity", "alignment", "embedding_knn", "knn_top1")}
display(pd.DataFrame({m: {"difference": d.text(3), "verdict": d.verdict(better="higher", worse="lower")}
                      for m, d in diffs.items()}).T)
only_uniformity = [r["final"]["uniformity"] for r in results["positives_only"]]

# %%
assert all(torch.isfinite(torch.tensor(collapse.to_numpy(dtype=float))).flatten())
if check_claims:
    # "collapses": uniformity near 0 in every seed, resolved above InfoNCE's; the kNN on the
    # embedding falls by more than 5 points (the interval's upper end below −5)
    assert all(x.claims for x in diffs.values())
    assert max(only_uniformity) > -0.5 and min(only_uniformity) > -0.5 and diffs["uniformity"].low > 0
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
# negatives *increases* uniformity at some cost in alignment.

# %%
source(metrics.alignment)
source(metrics.uniformity)

# %% [markdown]
# ## What we measured
#
# * The gradient of InfoNCE concentrates on the hardest negatives, more so at low
#   temperature (table in §2) — which is why *which* negatives are in the queue matters.
# * Without negatives the embedding collapses at 4 epochs, in each of 3 seeds: uniformity
#   near 0 and, paired by seed, resolved above InfoNCE's; the kNN on the embedding falls by more
#   than 5 points (both asserted above on the 95 % intervals). The backbone features, which the
#   rest of the study evaluates, suffer less at 4 epochs (the `knn_top1` row of the interval
#   table): a collapsed head does not instantly erase what the convolutions learnt. Negatives
#   are what avoids the trivial solution, at the cost of comparing each query with K others.
