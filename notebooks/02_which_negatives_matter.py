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
# # 2 · Which negatives matter? (Cai, Frankle, Schwab, Morcos 2020)
#
# *Slides 6–12 of the seed deck.* Cai et al. train MoCo v2 on ImageNet with only a chosen
# subset of the queue as negatives, and ask what is **necessary** and what is **sufficient**.
# The difficulty of a negative $k^-$ for a query $q$ is their dot product $q\cdot k^-$ (both
# normalised): the more similar, the harder. Negatives are ranked **per query over the whole
# queue**, and the loss sees only the selected ones. Their findings, which we test here on
# Fashion-MNIST:
#
# | condition | their finding |
# | --- | --- |
# | only the hardest 5 % | nearly full accuracy — *sufficient* |
# | remove the hardest 5 % | a large drop — *necessary* |
# | only the easiest 95 % | the same drop — the easy ones are *insufficient* |
# | remove the hardest 0.1 % | no loss, sometimes a gain — *unnecessary*, possibly harmful |
#
# We add the two controls the reading needs: a **random 5 %** (is "hardest 5 %" better than any
# 5 %?) and the **same-class oracle**, which removes the negatives that share the query's
# label. ImageNet has 1000 classes, so ~0.1 % of a random queue is same-class; the deck's
# question (slide 19) is whether "the hardest 0.1 %" is simply "the false negatives".
# Fashion-MNIST has 10 classes: 10 % of the queue shares the query's class.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (mean ± std)
check_claims = True           # assert the claims about trained models (off at the smoke scale)

# %%
import importlib.util
import sys

if importlib.util.find_spec("cl") is None:  # started outside `make lab`: the project root is ..
    sys.path.insert(0, "..")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from cl.plots import source
from cl import augment, negatives, plots, study, train

NB = "02_which_negatives_matter"

# %% [markdown]
# ## Selecting negatives, per query
#
# `cl.negatives.select` keeps the loss contract: it returns `neg` with the dropped entries at
# `-inf`, so every loss of `cl.losses` works on the selection unchanged. Counts are exact: with
# $N$ finite negatives in a row, the keep modes keep $\max(1, \lceil fN \rceil)$ and
# `drop_hardest` removes $\lfloor fN \rfloor$ — at $K=4096$, "hardest 5 %" keeps 205 and
# "remove the hardest 0.1 %" removes 4.

# %%
source(negatives.select)

# %% [markdown]
# What each mode keeps of one query's row (sorted from hardest to easiest; a toy row of 400
# similarities, fractions enlarged so that they are visible):

# %%
g = torch.Generator().manual_seed(0)
row = torch.randn(1, 400, generator=g).mul(0.25).clamp(-1, 1).sort(descending=True).values
labels, row_labels = torch.tensor([0]), torch.randint(0, 10, (400,), generator=g)
modes = {"hardest 5%": ("hardest", 0.05), "drop hardest 5%": ("drop_hardest", 0.05),
         "easiest 95%": ("easiest", 0.95), "random 5%": ("random", 0.05),
         "drop hardest 1%": ("drop_hardest", 0.01), "drop same class": ("drop_same_class", None)}
fig, ax = plt.subplots(figsize=(9, 2.8))
for i, (name, (mode, f)) in enumerate(modes.items()):
    kept = torch.isfinite(negatives.select(row, mode, f, labels=labels, queue_labels=row_labels, generator=g))[0]
    ax.scatter(np.arange(400)[kept.numpy()], np.full(int(kept.sum()), i), s=2)
    assert kept.sum() == negatives.kept_count(400, mode, f) if mode != "drop_same_class" else True
ax.set(yticks=range(len(modes)), yticklabels=list(modes), xlabel="rank in the row (0 = hardest)")
fig.tight_layout()

# %% [markdown]
# ## The experiment
#
# Every condition is the MoCo v2 baseline of notebook 01 on the comparison schedule (`base`),
# with one change: the selection applied to each query's row of the queue before InfoNCE.
# The key conditions run with several seeds.

# %%
key = {
    "moco": {},
    "hardest_5pct": {"select": "hardest", "select_fraction": 0.05},
    "easiest_95pct": {"select": "easiest", "select_fraction": 0.95},
    "drop_hardest_0.1pct": {"select": "drop_hardest", "select_fraction": 0.001},
}
controls = {
    "drop_hardest_5pct": {"select": "drop_hardest", "select_fraction": 0.05},
    "random_5pct": {"select": "random", "select_fraction": 0.05},
    "drop_same_class": {"select": "drop_same_class"},
}
results = study.run_conditions(key, base, seeds, scale, NB)
results.update(study.run_conditions(controls, base, seeds[:1], scale, NB))
table = study.mean_std(results)
display(study.formatted(table))

# %%
fig, ax = plt.subplots(figsize=(8, 3.2))
order = table["knn_top1"].sort_values().index
ax.barh(order, table.loc[order, "knn_top1"], xerr=table.loc[order, "knn_top1 std"].fillna(0), color="tab:blue")
ax.axvline(table.loc["moco", "knn_top1"], color="k", lw=1, ls="--", label="all negatives")
lo = table["knn_top1"].min()
ax.set(xlabel="kNN top-1 (%), mean ± std over seeds", xlim=(max(0, lo - 5), None))
ax.legend(loc="lower right")
fig.tight_layout()

# %%
plots.curves({name: recs[0] for name, recs in results.items()}, keys=("loss", "knn_top1"),
             title="seed 0 of each condition");

# %% [markdown]
# ## Where the gradient goes, and what the hardest negatives are
#
# During training the loop logs, for the last step of each epoch, the distribution of the
# negatives' similarities and, per difficulty band, the share of InfoNCE's gradient the band
# carries (a negative's share is its softmax probability) and the fraction of its negatives
# that share the query's class. Chance is 1/10 for Fashion-MNIST.

# %%
stats = results["moco"][0]["epochs"]
bands = stats[-1]["negatives"]["band_names"]
share = pd.DataFrame([e["negatives"]["gradient_share"] for e in stats], columns=bands,
                     index=pd.Index([e["epoch"] for e in stats], name="epoch"))
same = pd.DataFrame([e["negatives"]["same_class_fraction"] for e in stats], columns=bands, index=share.index)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
edges = np.array(stats[-1]["negatives"]["histogram_edges"])
for e in stats:
    axes[0].plot((edges[1:] + edges[:-1]) / 2, e["negatives"]["histogram_counts"], label=f"epoch {e['epoch']}")
axes[0].set(xlabel="similarity q·k⁻", ylabel="count", title="negative similarities (last step)")
axes[0].legend(fontsize=7)
share.iloc[-1].plot.bar(ax=axes[1], title="share of the gradient per band (last epoch)", rot=20)
same.iloc[-1].plot.bar(ax=axes[2], title="same-class fraction per band (last epoch)", rot=20)
axes[2].axhline(0.1, color="k", ls="--", lw=1, label="chance (1/10)")
axes[2].legend()
fig.tight_layout()
display(pd.concat({"gradient share": share.iloc[-1], "same-class fraction": same.iloc[-1]}, axis=1).round(3))

# %% [markdown]
# The numbers above come from one batch. For a firmer estimate, we take the trained baseline,
# embed 1024 training images as queries and rank its whole final queue (4096 keys, with their
# labels and data-set indices) for each; a query's own image is excluded.

# %%
trained, _ = train.load_model(study.run_dir(scale, "moco_s0"))
moco = trained.moco
g = torch.Generator().manual_seed(1)
idx = torch.randperm(len(trained.train_set), generator=g)[:1024]
with torch.no_grad():
    q = F.normalize(moco.encoder_q(augment.to_float(trained.train_set.images[idx], trained.aug_cfg)), dim=1)
    neg = q @ moco.queue.T
    neg[moco.queue_index[None, :] == idx[:, None]] = -float("inf")
    same_class = moco.queue_labels[None, :] == trained.train_set.labels[idx][:, None]
    pos = torch.ones(len(q))  # the share of the gradient among negatives does not depend on pos
    final_bands = negatives.difficulty_bands(pos, neg, trained.cfg.t, same_class=same_class)
hardest = pd.DataFrame({"same-class fraction": final_bands["same_class_fraction"],
                        "gradient share": final_bands["gradient_share"],
                        "negatives per query": np.array(final_bands["band_counts"]) / len(q)},
                       index=final_bands["band_names"])
display(hardest.round(3))
chance = (same_class & torch.isfinite(neg)).sum().item() / torch.isfinite(neg).sum().item()
print(f"same-class rate of the whole queue: {chance:.3f}")

# %% [markdown]
# The hardest negatives of a few queries, from the queue (its stored data-set indices give
# back the images):

# %%
rank = negatives.difficulty_rank(neg[:6])
fig, axes = plt.subplots(6, 7, figsize=(8, 7.5))
names = trained.train_set.classes
for r in range(6):
    axes[r][0].imshow(trained.train_set.images[idx[r], 0], cmap="gray")
    axes[r][0].set_title(f"query: {names[trained.train_set.labels[idx[r]]]}", fontsize=7)
    top = (rank[r] < 6).nonzero().squeeze(1)
    top = top[neg[r, top].argsort(descending=True)]
    for c, j in enumerate(top.tolist(), start=1):
        img = moco.queue_index[j].item()
        axes[r][c].imshow(trained.train_set.images[img, 0], cmap="gray")
        axes[r][c].set_title(f"{names[moco.queue_labels[j]]} {neg[r, j]:.2f}", fontsize=6)
for a in axes.flat:
    a.axis("off")
fig.suptitle("each row: a query, then its 6 hardest negatives (class, similarity)")
fig.tight_layout()

# %% [markdown]
# ## What we measured, against what the paper reported
#
# The next cell writes the comparison from this run's numbers; the asserts check each claim
# that the text makes.

# %%
knn = table["knn_top1"]
delta = (knn - knn["moco"]).round(2)
display(delta.to_frame("kNN top-1 − all negatives (points)"))
same_hardest = final_bands["same_class_fraction"][0]  # None when the band is empty (a queue under 1000)
pct = lambda x: "n/a (empty band)" if x is None else f"{x:.0%}"
summary = f"""
* **Hardest 5 % only**: {delta['hardest_5pct']:+.2f} points against all negatives; random 5 %: {delta['random_5pct']:+.2f}.
* **Remove the hardest 5 %**: {delta['drop_hardest_5pct']:+.2f}; **easiest 95 % only**: {delta['easiest_95pct']:+.2f}.
* **Remove the hardest 0.1 %**: {delta['drop_hardest_0.1pct']:+.2f}; **same-class oracle**: {delta['drop_same_class']:+.2f}.
* The hardest 0.1 % of the trained model's queue are same-class in {pct(same_hardest)} of cases,
  against {chance:.0%} for the whole queue: hard negatives are mostly false negatives here.
  With 10 classes, though, removing the hardest 0.1 % (4 of 4096) removes only a small part of
  the ~10 % same-class negatives: on Fashion-MNIST "0.1 %" and "the false negatives" are not
  the same set, which answers the deck's question — the 0.1 % threshold is tied to ImageNet's
  1000 classes and should not be expected to carry over unchanged.
"""
display(Markdown(summary))

# %%
assert set(table.index) == set(key) | set(controls) and np.isfinite(table["knn_top1"]).all()
assert abs(sum(final_bands["gradient_share"]) - 1) < 1e-4
if check_claims:
    # The hardest negatives are same-class well above chance
    assert same_hardest > 2 * chance
    # Necessary: removing the hardest 5 % or keeping only the easiest 95 % costs accuracy
    assert delta["drop_hardest_5pct"] < 0 and delta["easiest_95pct"] < 0
    # Sufficient: the hardest 5 % beat a random 5 % of the same size
    assert knn["hardest_5pct"] > knn["random_5pct"]
