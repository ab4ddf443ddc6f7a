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
# # 5 · Hard negative mixing, MoCHi (Kalantidis, Sariyildiz, Pion, Weinzaepfel, Larlus 2020)
#
# If the hardest negatives carry the gradient (notebooks 00
# and 02), make more of them: **synthesise hard negatives in feature space by mixing** the
# hardest ones, at almost no cost.
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

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (paired 95 % intervals)
# the paper's ratios, for our queue of 4096
mochi = {"mochi_n": 256, "mochi_s": 128, "mochi_s_prime": 64, "mochi_warmup": 0.2}
# our earlier setting
mochi_large = {"mochi_n": 1024, "mochi_s": 256, "mochi_s_prime": 256, "mochi_warmup": 1}
variants = {                  # one seed each, exploratory: the paper's ratios with only s, or only s′
    "mochi_paper_s_only": {"mochi_n": 256, "mochi_s": 128, "mochi_s_prime": 0, "mochi_warmup": 0.2},
    "mochi_paper_sp_only": {"mochi_n": 256, "mochi_s": 0, "mochi_s_prime": 64, "mochi_warmup": 0.2},
}
check_claims = True           # assert the claims about trained models (off at the smoke scale)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from cl import data, negatives, notebook, plots, study, train
from cl.plots import source

NB = notebook.start(scale=scale, base=base, seeds=seeds, mochi=mochi, mochi_large=mochi_large,
                    variants=variants, check_claims=check_claims)


# %% [markdown]
# mixup on two Fashion-MNIST images, λ ~ Beta(0.4, 0.4) (the input space; MoCHi mixes
# embeddings instead):

# %%
images = data.load("fashion_mnist", "test")
a, b = images.images[0, 0].float(), images.images[2, 0].float()
lams = torch.distributions.Beta(0.4, 0.4).sample((5,)).sort().values
fig, axes = plt.subplots(1, 7, figsize=(9, 1.7))
axes[0].imshow(a, cmap="gray")
axes[0].set_title(images.classes[images.labels[0]], fontsize=7)
axes[-1].imshow(b, cmap="gray")
axes[-1].set_title(images.classes[images.labels[2]], fontsize=7)
for ax, lam in zip(axes[1:-1], lams):
    ax.imshow(lam * a + (1 - lam) * b, cmap="gray")
    ax.set_title(f"λ = {lam:.2f}", fontsize=7)
for ax in axes:
    ax.axis("off")
fig.tight_layout()

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
# **At the paper's ratios.** On ImageNet-100 the paper mixes among the $N = 1024$ hardest of a
# 16k queue (6.25 %), with $s = 512$ and $s' = 256$ among its settings. With our $K = 4096$ the
# same ratios are $N = 256$, $s = 128$, $s' = 64$, and 5 % of a 4-epoch schedule is a warm-up of
# 0.2 epochs, counted in steps. The setting we ran before ($N = 1024$ of 4096, $s = s' = 256$,
# one epoch of warm-up: a quarter of the queue and of the schedule) stays as a variant.

# %%
source(negatives.mochi)

# %% [markdown]
# On a toy queue: where the synthetic negatives fall, by their similarity to the query,
# against the queue's and the N hardest's.

# %%
g = torch.Generator().manual_seed(0)
queue = F.normalize(torch.randn(4096, 16, generator=g), dim=1)
q = F.normalize(queue[:8].mean(0, keepdim=True) + 0.3 * torch.randn(1, 16, generator=g), dim=1)
syn, alpha, beta = negatives.mochi(q, queue, 256, 128, 128, generator=g, return_coefficients=True)
sims = negatives.mochi_logits(q, syn)[0]
fig, ax = plt.subplots(figsize=(7, 2.8))
neg = (q @ queue.T)[0]
ax.hist(neg, bins=60, alpha=0.5, density=True, label="queue")
ax.hist(neg.topk(256).values, bins=30, alpha=0.5, density=True, label="N = 256 hardest")
ax.hist(sims[:128], bins=30, alpha=0.6, density=True, label="s: negative–negative mixes")
ax.hist(sims[128:], bins=30, alpha=0.6, density=True, label="s′: query–negative mixes")
ax.set(xlabel="similarity to the query")
ax.legend(fontsize=7)
fig.tight_layout()
assert torch.allclose(syn.norm(dim=-1), torch.ones(1, 256)) and (beta < 0.5).all() and (alpha < 1).all()
assert sims[128:].mean() > sims[:128].mean()  # mixing in the query makes them harder
assert negatives.mochi(q, queue, 256, 0, 0).shape == (1, 0, 16)  # s = s′ = 0 adds nothing

# %% [markdown]
# ### The same logits, without the vectors
#
# Training never builds the $(B, s+s', d)$ synthetic vectors. Every logit is a ratio of
# numbers the step already has: $q\cdot h_k = (\alpha\, q\cdot n_i + (1-\alpha)\, q\cdot n_j)
# / \|\alpha n_i + (1-\alpha) n_j\|$, where the $q\cdot n$ are entries of the row `neg` and
# the norm needs only $n_i\cdot n_j$, read from a table of similarities between queued keys
# that `negatives.Mochi` keeps up to date (each step adds the new keys' rows). The norm
# is a constant and the numerator is linear in $q$, so the gradient on $q$ is $h_k$ itself:
# no gradient reaches the synthetic negatives. This is what brings MoCHi's cost to about that
# of $s + s'$ more columns (`make bench`).

# %%
source(negatives.mixed_logits)

# %%
draw = negatives.mochi_draw(q @ queue.T, 256, 128, 128, generator=torch.Generator().manual_seed(1))
syn = negatives.mochi(q, queue, 256, 128, 128, generator=torch.Generator().manual_seed(1))
closed_form = negatives.mixed_logits(q, q @ queue.T, draw, (queue[draw.first] * queue[draw.second]).sum(-1))
assert torch.allclose(closed_form, negatives.mochi_logits(q, syn), atol=1e-5)  # same draws, same logits

# %% [markdown]
# ## Training

# %%
results = study.run_groups([({"moco": {}, "mochi_paper": mochi, "mochi_large": mochi_large}, base, seeds),
                            (variants, base, seeds[:1])], scale, NB)
table = study.mean_std(results)
display(study.formatted(table))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
plots.curves({name: recs[0] for name, recs in results.items()}, keys=("knn_top1",), axes=axes[:1])
axes[0].set_title(f"seed {seeds[0]} (monitor bank)")
plots.alignment_uniformity(results, ax=axes[1])
fig.tight_layout()

# %% [markdown]
# ## What we measured, against what the paper reported
#
# The paper: better and faster transfer; on ImageNet-1k linear classification, similar to
# MoCo v2; mixing hard negatives **reduces alignment and increases uniformity** — the
# alignment distance grows and the uniformity loss falls. Each difference below is MoCHi − MoCo,
# paired by seed, with its 95 % t interval.

# %%
pairs = [("mochi_paper", "moco"), ("mochi_large", "moco"), ("mochi_paper", "mochi_large")]
diffs = {(a, b, m): study.paired_difference(results, a, b, m)
         for a, b in pairs for m in ("knn_top1", "linear_top1", "alignment", "uniformity")}
display(study.differences(results, pairs, metrics=("knn_top1", "linear_top1", "alignment", "uniformity")))
plots.intervals([diffs[(a, b, "knn_top1")] for a, b in pairs],
                title=f"kNN top-1, {train.Config.from_dict(base).epochs} epochs");

# %%
epochs = train.Config.from_dict(base).epochs
knn, al, un = table["knn_top1"], table["alignment"], table["uniformity"]
def geometry(name):
    a, u = diffs[(name, "moco", "alignment")], diffs[(name, "moco", "uniformity")]
    a_word = a.verdict(better="larger: less aligned, as the paper reports",
                       worse="smaller: better aligned, unlike the paper")
    u_word = u.verdict(better="higher: less uniform, unlike the paper",
                       worse="lower: more uniform, as the paper reports")
    return (f"alignment distance {al['moco']:.3f} → {al[name]:.3f}, {a.text(3)} ({a_word}); "
            f"uniformity loss {un['moco']:.3f} → {un[name]:.3f}, {u.text(3)} ({u_word})")
display(Markdown(f"""
Conclusions at {epochs} epochs:

* **MoCHi at the paper's ratios** (N={mochi['mochi_n']}, s={mochi['mochi_s']}, s′={mochi['mochi_s_prime']},
  warm-up {mochi['mochi_warmup']:g} epochs): kNN {diffs[('mochi_paper', 'moco', 'knn_top1')]}
  ({diffs[('mochi_paper', 'moco', 'knn_top1')].verdict()}); \
linear {diffs[('mochi_paper', 'moco', 'linear_top1')]}
  ({diffs[('mochi_paper', 'moco', 'linear_top1')].verdict()}). Geometry: {geometry('mochi_paper')}.
* **Our earlier setting** (N={mochi_large['mochi_n']}, s={mochi_large['mochi_s']}, \
s′={mochi_large['mochi_s_prime']},
  warm-up {mochi_large['mochi_warmup']:g} epoch): kNN {diffs[('mochi_large', 'moco', 'knn_top1')]}
  ({diffs[('mochi_large', 'moco', 'knn_top1')].verdict()}). Geometry: {geometry('mochi_large')}.
""" + "".join(
    f"""* {name} (N={v['mochi_n']}, s={v['mochi_s']}, s′={v['mochi_s_prime']}, one seed, exploratory):
  kNN {knn[name]:.2f}; alignment {al[name]:.3f}, uniformity {un[name]:.3f}.
""" for name, v in variants.items())))

# %%
assert np.isfinite(table[["knn_top1", "alignment", "uniformity"]].to_numpy()).all()
if check_claims:
    assert all(d.claims for d in diffs.values())
