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
# # 5 · Hard negative mixing, MoCHi (Kalantidis, Sariyildiz, Pion, Weinzaepfel, Larlus 2020)
#
# If the hardest negatives carry the gradient (notebooks 00
# and 02), make more of them: **synthesise hard negatives in feature space by mixing** the
# hardest ones, at almost no cost.
#
# Why the hardest carry it: for a query $q$ with positive key $k$ and negatives $n$ (all unit
# vectors), InfoNCE at temperature $t$ and its gradient are
#
# $$\mathcal L_q = -\log \frac{e^{q\cdot k/t}}{e^{q\cdot k/t} + \sum_n e^{q\cdot n/t}}, \qquad
#   \frac{\partial \mathcal L_q}{\partial q} = -\frac{1}{t}\Big((1-p_k)\,k - \sum_n p_n\, n\Big),$$
#
# with $p_z$ the softmax probability of $z$ in the query's row. A negative pushes the query in
# proportion to $p_n$, exponential in its similarity $q\cdot n$: the few most similar
# negatives get nearly all of the weight, and once the encoder separates most of them, few
# negatives are left to learn from. MoCHi adds negatives where the weight is.
#
# ## Background: mining and mixing
#
# * **Bootstrapping** (Sung & Poggio 1994): train a face detector on a small set of
#   non-faces, then add the background patches it wrongly calls faces — hard negative mining.
# * **Hard negative mining in detection** (OHEM): keep the negatives with the highest loss;
#   faster convergence under a heavy class imbalance. In **metric learning**: hardest or
#   semi-hard triplet mining.
# * **mixup** (Zhang et al. 2018): train on convex combinations of two inputs and their
#   targets, $\tilde x = \lambda x_i + (1-\lambda) x_j$, $\tilde y = \lambda y_i + (1-\lambda) y_j$,
#   $\lambda \sim \text{Beta}(\alpha, \alpha)$. **Manifold mixup** (Verma et al. 2019) mixes
#   hidden states at a random layer $k$ instead ($k=0$ is input mixup).
#
# MoCHi applies the mixing to the *negatives' embeddings*, per query.
#
# The parameters: the comparison schedule `base` shared with notebooks 02–06, the `seeds` of the
# paired comparisons, and three MoCHi settings as overrides of `base` — `mochi` at the paper's
# ratios, `mochi_large` mixing among a larger share of the queue, and two `variants` that keep
# only one kind of mix.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (paired 95 % intervals)
# the paper's ratios, for our queue of 4096
mochi = {"mochi_n": 256, "mochi_s": 128, "mochi_s_prime": 64, "mochi_warmup": 0.2}
# a larger setting: mixing among a quarter of the queue, one epoch of warm-up
mochi_large = {"mochi_n": 1024, "mochi_s": 256, "mochi_s_prime": 256, "mochi_warmup": 1}
variants = {                  # one seed each, exploratory: the paper's ratios with only s, or only s′
    "mochi_paper_s_only": {"mochi_n": 256, "mochi_s": 128, "mochi_s_prime": 0, "mochi_warmup": 0.2},
    "mochi_paper_sp_only": {"mochi_n": 256, "mochi_s": 0, "mochi_s_prime": 64, "mochi_warmup": 0.2},
}

# %% tags=["plan"]
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import display

import cl.mochi
from cl import config, controls, data, notebook, plots, stats, study

this_notebook = notebook.start(globals())
epochs = config.Config.from_dict(base).epochs

# %% [markdown]
# ### mixup, in the input space
#
# Two Fashion-MNIST test images and five mixes of them, $\lambda \sim \text{Beta}(0.4, 0.4)$.
# With $\alpha < 1$ the Beta density is U-shaped: $\lambda$ falls near 0 or 1 more often than
# near one half, so a typical mix is mostly one of the two images. MoCHi does not mix images: it
# mixes embeddings on the unit sphere and normalises the result back onto it.

# %%
images = data.load("fashion_mnist", "test")
lams = torch.distributions.Beta(0.4, 0.4).sample((5,))
plots.mixup_row(images.images[0, 0], images.images[2, 0], lams,
                names=(images.classes[images.labels[0]], images.classes[images.labels[2]]));

# %% [markdown]
# ## MoCHi
#
# For each query $q$, sort the queue by similarity and keep the $N$ hardest, $\tilde Q$. Then
#
# * $s$ mixes of two hard negatives: $h_k = \frac{\tilde h_k}{\|\tilde h_k\|}$,
#   $\tilde h_k = \alpha_k n_i + (1-\alpha_k) n_j$, $n_i, n_j \in \tilde Q$, $\alpha_k \in (0, 1)$;
# * $s'$ *harder* mixes with the query itself: $\tilde h'_k = \beta_k q + (1-\beta_k) n_j$,
#   $\beta_k \in (0, 0.5)$, so that the query's share stays below one half.
#
# The synthetic negatives are appended to that query's row only and carry no gradient; the
# cost is about that of growing the queue by $s + s'$. A warm-up runs without synthesis (the
# paper: 10 of 200 epochs on ImageNet-100, 5 % of the schedule).
#
# Why the mixes are hard: a mix of two unit vectors has norm at most 1, so normalising it can
# only raise a positive similarity. $q\cdot h_k$ is then at least the weighted mean of
# $q\cdot n_i$ and $q\cdot n_j$ whenever that mean is positive, and $q\cdot h'_k$ is at least
# $q\cdot n_j$, since $q\cdot q = 1$ is the largest similarity there is.
#
# **At the paper's ratios.** On ImageNet-100 the paper mixes among the $N = 1024$ hardest of a
# 16k queue (6.25 %), with $s = 512$ and $s' = 256$ among its settings. With our $K = 4096$ the
# same ratios are $N = 256$, $s = 128$, $s' = 64$, and 5 % of a 4-epoch schedule is a warm-up of
# 0.2 epochs, counted in steps. A larger setting ($N = 1024$ of 4096, $s = s' = 256$, one epoch
# of warm-up: a quarter of the queue and of the schedule) runs beside it.
#
# The synthesis as the paper defines it, building the vectors (`cl/mochi.py`):

# %%
notebook.show_source(cl.mochi.synthesize)

# %% [markdown]
# On a toy queue: 4,096 random unit vectors in 16 dimensions, and a query placed near the mean
# of eight of them, so that a few negatives are much more similar to it than the rest. The next
# cell draws $s = s' = 128$ mixes among the $N = 256$ hardest and plots where every set falls
# by its similarity to the query. Look at the two kinds of mixes against the $N$ hardest: the
# negative–negative mixes land among them, shifted right by the normalisation, and the
# query–negative mixes further right still.

# %%
g = torch.Generator().manual_seed(0)
queue = F.normalize(torch.randn(4096, 16, generator=g), dim=1)
q = F.normalize(queue[:8].mean(0, keepdim=True) + 0.3 * torch.randn(1, 16, generator=g), dim=1)
syn, alpha, beta = cl.mochi.synthesize(q, queue, 256, 128, 128, generator=g, return_coefficients=True)
sims, neg = cl.mochi.logits(q, syn)[0], (q @ queue.T)[0]
plots.similarity_histograms({"queue": neg, "N = 256 hardest": neg.topk(256).values,
                             "s: negative–negative mixes": sims[:128],
                             "s′: query–negative mixes": sims[128:]});

# %% [markdown]
# What the definition promises, checked on this draw: every synthetic negative is a unit vector,
# every $\beta < 0.5$ and $\alpha < 1$; mixing in the query makes the $s'$ mixes harder on
# average than the $s$ mixes; and $s = s' = 0$ adds nothing.

# %%
assert torch.allclose(syn.norm(dim=-1), torch.ones(1, 256)) and (beta < 0.5).all() and (alpha < 1).all()
assert sims[128:].mean() > sims[:128].mean()  # mixing in the query makes them harder
assert cl.mochi.synthesize(q, queue, 256, 0, 0).shape == (1, 0, 16)  # s = s′ = 0 adds nothing

# %% [markdown]
# ### The same logits, without the vectors
#
# Training never builds the $(B, s+s', d)$ synthetic vectors. Every logit is a ratio of
# numbers the step already has: $q\cdot h_k = (\alpha\, q\cdot n_i + (1-\alpha)\, q\cdot n_j)
# / \|\alpha n_i + (1-\alpha) n_j\|$, where the $q\cdot n$ are entries of the row `neg` and
# the norm needs only $n_i\cdot n_j$, read from a table of similarities between queued keys
# that `cl.mochi.Mochi` keeps up to date (each step adds the new keys' rows). The norm
# is a constant and the numerator is linear in $q$, so the gradient on $q$ is $h_k$ itself:
# no gradient reaches the synthetic negatives. This is what brings MoCHi's cost to about that
# of $s + s'$ more columns (`make bench`).

# %%
notebook.show_source(cl.mochi.mixed_logits)

# %% [markdown]
# The two routes must agree. The next cell draws the mixes once (`draw_mixes`, seed 1), builds
# the vectors from the same seed (`synthesize` draws the same way), and compares the closed
# form with the logits of the built vectors.

# %%
draw = cl.mochi.draw_mixes(q @ queue.T, 256, 128, 128, generator=torch.Generator().manual_seed(1))
syn = cl.mochi.synthesize(q, queue, 256, 128, 128, generator=torch.Generator().manual_seed(1))
closed_form = cl.mochi.mixed_logits(q, q @ queue.T, draw, (queue[draw.first] * queue[draw.second]).sum(-1))
assert torch.allclose(closed_form, cl.mochi.logits(q, syn), atol=1e-5)  # same draws, same logits

# %% [markdown]
# ## Training
#
# MoCo v2, MoCHi at the paper's ratios and the larger setting train on every seed; the two
# variants on the first seed only. The table gives each condition's final metrics, mean ± std
# over its seeds: kNN and linear-probe top-1 on the test set (%), the alignment distance and
# uniformity loss of Wang & Isola (2020), both lower-is-better.

# %% tags=["plan"]
results = study.run_groups([({"moco": {}, "mochi_paper": mochi, "mochi_large": mochi_large}, base, seeds),
                            (variants, base, seeds[:1])], scale, this_notebook)
results.update(controls.ensure(base, seeds, scale, this_notebook))
table = stats.mean_std(results)
display(stats.formatted(table))
notebook.show(stats.bullets({"MoCo v2 − the untrained encoder (how much the schedule learns at all)":
                             stats.compared(results, "moco", "control_untrained")}))

# %% [markdown]
# Left, kNN top-1 after every epoch (test images, their neighbours drawn from the monitor bank of
# training images), first seed of each condition: the
# MoCHi runs synthesise nothing until their warm-up ends. Right, every run's final embedding in
# the alignment–uniformity plane. The paper's finding (below) puts MoCHi above MoCo (a larger
# alignment distance) and to its left (a lower uniformity loss).

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
trained = {name: recs for name, recs in results.items() if not controls.is_control(name)}
plots.curves({name: recs[0] for name, recs in trained.items()}, keys=("knn_top1",), axes=axes[:1])
axes[0].set_title(f"seed {seeds[0]} (monitor bank)")
plots.alignment_uniformity(trained, ax=axes[1])
fig.tight_layout()

# %% [markdown]
# ## What we measured, against what the paper reported
#
# The paper: better and faster transfer; on ImageNet-1k linear classification, similar to
# MoCo v2; mixing hard negatives **reduces alignment and increases uniformity** — the
# alignment distance grows and the uniformity loss falls. Each difference below is MoCHi − MoCo
# (or the paper's ratios − the larger setting), paired by seed, with its 95 % t interval; the
# figure shows the kNN differences.

# %%
pairs = [("mochi_paper", "moco"), ("mochi_large", "moco"), ("mochi_paper", "mochi_large")]
metrics = ("knn_top1", "linear_top1", "alignment", "uniformity")
diffs = {(a, b, m): stats.paired_difference(results, a, b, m) for a, b in pairs for m in metrics}
display(stats.differences(results, pairs, metrics=metrics))
plots.intervals([diffs[(a, b, "knn_top1")] for a, b in pairs],
                title=f"kNN top-1, {stats.plural(epochs, 'epoch')}");

# %% [markdown]
# Accuracy first: each line is the kNN difference in points with the verdict its interval
# allows, the linear-probe difference beside it. The labels name each setting's $N$, $s$, $s'$
# and warm-up.

# %%
setting = lambda m: (f"N = {m['mochi_n']}, s = {m['mochi_s']}, s′ = {m['mochi_s_prime']}, "
                     f"warm-up {stats.plural(m['mochi_warmup'], 'epoch')}")
accuracy = {f"MoCHi at the paper's ratios ({setting(mochi)}) − MoCo v2": ("mochi_paper", "moco"),
            f"MoCHi, larger setting ({setting(mochi_large)}) − MoCo v2": ("mochi_large", "moco"),
            "The paper's ratios − the larger setting": ("mochi_paper", "mochi_large")}
notebook.show(f"Accuracy at {stats.plural(epochs, 'epoch')} (kNN points, 95 % intervals over seeds):\n\n"
              + stats.bullets({label: stats.compared(results, *pair) for label, pair in accuracy.items()}))

# %% [markdown]
# Then the geometry, against the direction the paper reports: for each setting, MoCo's mean
# → MoCHi's mean, the paired difference, and whether its interval resolves the paper's
# direction (a larger alignment distance, a lower uniformity loss), the opposite one, or none.

# %%
paper = {"alignment": ("alignment distance", ("higher", "larger: less aligned", "smaller: better aligned")),
         "uniformity": ("uniformity loss", ("lower", "higher: less uniform", "lower: more uniform"))}
notebook.show(stats.bullets({
    f"{name} − moco, {label}": stats.against_reported(diffs[(name, "moco", metric)], *words, table=table)
    for name in ("mochi_paper", "mochi_large") for metric, (label, words) in paper.items()}))

# %% [markdown]
# The two variants keep one kind of mix of the paper's ratios: only the $s$ negative–negative
# mixes, or only the $s'$ query–negative mixes. They ran on one seed, so they are read as
# values, not claims: a hint of which kind of mix moves the numbers, for a run with more seeds
# to test.

# %%
notebook.show(stats.bullets({f"{name} ({setting(overrides)}), exploratory":
                             stats.measured(table, name, ("knn_top1", "alignment", "uniformity"))
                             for name, overrides in variants.items()}))

# %% [markdown]
# Last, the check: every condition's final kNN accuracy and geometry are finite numbers. (Every
# sentence above is worded from its interval, and says so when its seeds are too few for a
# claim.)

# %%
assert np.isfinite(table[["knn_top1", "alignment", "uniformity"]].to_numpy()).all()
