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
# # 3 · Debiased Contrastive Learning (Chuang, Robinson, Lin, Torralba, Jegelka 2020)
#
# *Slides 12–21 of the seed deck.* Without labels, some "negatives" share the query's class:
# they are **false negatives**, and InfoNCE pushes them away. DCL corrects the sum over
# negatives for them. If $\tau^+$ is the class prior — the probability that a random sample
# shares the anchor's class — then the negatives' distribution is a mixture
# $p = \tau^+ p^+ + (1-\tau^+) p^-$, and the sum over true negatives can be estimated from
# the $N$ negatives $u_i$ and $M$ positives $v_j$:
#
# $$N_g = \max\Big( \tfrac{1}{1-\tau^+}\big(\textstyle\sum_i e^{s(u_i)/t} - \tau^+ N \frac1M \sum_j e^{s(v_j)/t}\big),\; N e^{-1/t}\Big),
#   \qquad \mathcal L = -\log \frac{e^{\text{pos}/t}}{e^{\text{pos}/t} + N_g}.$$
#
# The clamp at $N e^{-1/t}$ (the smallest value the sum can take) keeps the estimate
# positive. $\tau^+=0$ is InfoNCE. On Fashion-MNIST the true class prior is exactly 1/10.
# Slide 12 puts DCL next to Cai et al.'s "remove the hardest 0.1 %": two answers to the same
# problem, one by reweighting, one by deletion.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (mean ± std)
tau_plus_sweep = [0.05, 0.2]  # extra τ⁺ values, one seed each (0.1 runs with every seed)
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
from cl import losses, study, train

NB = "03_debiased"

# %% [markdown]
# ## The estimator in code
#
# `cl.losses.debiased` computes the official estimator in log space; $N$ is counted per row
# (finite entries), so it composes with the selections of notebook 02.

# %%
source(losses.debiased)

# %% [markdown]
# Three properties the tests check exactly, shown here on random similarities: τ⁺ = 0 is
# InfoNCE; a row with removed (`-inf`) entries gives the loss of the row without them; and
# the loss *decreases* as τ⁺ grows, because part of the negatives' mass is attributed to
# same-class samples and discounted.

# %%
g = torch.Generator().manual_seed(0)
pos, neg = torch.rand(8, generator=g) * 0.5 + 0.5, torch.rand(8, 256, generator=g) * 2 - 1
assert torch.allclose(losses.debiased(pos, neg, 0.1, 0.0), losses.info_nce(pos, neg, 0.1))
cut = neg.clone()
cut[:, 128:] = -float("inf")
assert torch.allclose(losses.debiased(pos, cut, 0.1, 0.1), losses.debiased(pos, neg[:, :128], 0.1, 0.1))
sweep = pd.Series({tp: losses.debiased(pos, neg, 0.1, tp).item() for tp in (0, 0.05, 0.1, 0.2, 0.5)},
                  name="DCL loss").rename_axis("τ⁺")
display(sweep.round(4).to_frame().T)
assert sweep.is_monotonic_decreasing

# %% [markdown]
# ## Training: a τ⁺ sweep, and DCL against "remove the hardest 0.1 %"
#
# DCL runs on MoCo's queue here (negatives = the K queued keys), with the comparison
# schedule of notebook 02, whose baseline and "drop hardest 0.1 %" runs are reused.

# %%
results = study.run_conditions({"moco": {}, "drop_hardest_0.1pct": {"select": "drop_hardest", "select_fraction": 0.001},
                                 "debiased_tau0.1": {"loss": "debiased", "tau_plus": 0.1}}, base, seeds, scale, NB)
results.update(study.run_conditions({f"debiased_tau{tp}": {"loss": "debiased", "tau_plus": tp} for tp in tau_plus_sweep},
                                    base, seeds[:1], scale, NB))
table = study.mean_std(results)
display(study.formatted(table))

# %%
taus = sorted([0.1, *tau_plus_sweep])
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(taus, [table.loc[f"debiased_tau{tp}", "knn_top1"] for tp in taus], marker="o", label="DCL")
ax.axhline(table.loc["moco", "knn_top1"], color="k", ls="--", lw=1, label="InfoNCE (τ⁺ = 0)")
ax.axhline(table.loc["drop_hardest_0.1pct", "knn_top1"], color="tab:red", ls=":", lw=1, label="remove hardest 0.1 %")
ax.axvline(0.1, color="gray", lw=0.5)
ax.set(xlabel="τ⁺ (true class prior: 0.1)", ylabel="kNN top-1 (%)", title="DCL τ⁺ sweep")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## DCL as published: negatives from the batch (SimCLR)
#
# The paper's experiments are SimCLR-style: both views go through one encoder with gradient,
# and each of the 2B views has the other 2B−2 views of the batch as negatives
# (`source: batch`). One seed each, InfoNCE against DCL:

# %%
batch = study.run_conditions({"simclr": {"source": "batch"},
                              "simclr_debiased_tau0.1": {"source": "batch", "loss": "debiased", "tau_plus": 0.1}},
                             base, seeds[:1], scale, NB)
display(study.formatted(study.mean_std(batch)))

# %% [markdown]
# ## M > 1 positives: the semi-supervised form
#
# With labels, the τ⁺ term can be estimated from M same-class samples instead of the single
# augmented view (slide 16). We evaluate the estimator on the trained baseline: queries are
# training images, negatives the final queue, positives the augmented view plus M−1 queued
# keys of the same class. As M grows, the estimate of the same-class mass uses more samples:

# %%
trained, _ = train.load_model(study.run_dir(scale, "moco_s0"))
moco, ts = trained.moco, trained.train_set
g = torch.Generator().manual_seed(2)
idx = torch.randperm(len(ts), generator=g)[:512]
with torch.no_grad():
    x1, x2 = trained.views(ts.images[idx], g)
    q, k = F.normalize(moco.encoder_q(x1), dim=1), F.normalize(moco.encoder_k(x2), dim=1)
    neg = q @ moco.queue.T
    same = moco.queue_labels[None, :] == ts.labels[idx][:, None]
    rows = []
    for m in (1, 2, 4, 8, 16):
        # the M−1 extra positives: the first same-class keys of each row's queue
        extra = torch.where(same, neg, -float("inf")).topk(m - 1, dim=1).values if m > 1 else neg[:, :0]
        pos_m = torch.cat([(q * k).sum(1, keepdim=True), extra], dim=1)
        rows.append((m, losses.debiased(pos_m, neg, trained.cfg.t, 0.1).item(), torch.isfinite(pos_m).all().item()))
m_table = pd.DataFrame(rows, columns=["M", "DCL loss (τ⁺ = 0.1)", "all positives finite"]).set_index("M")
display(m_table.round(4))
assert m_table["all positives finite"].all()
assert torch.allclose(losses.debiased((q * k).sum(1, keepdim=True), neg, 0.1, 0.1), losses.debiased((q * k).sum(1), neg, 0.1, 0.1))

# %% [markdown]
# ## Why debiasing hurts here: the clamp binds
#
# The correction subtracts $\tau^+ N e^{\text{pos}/t}$ from the negatives' mass. At MoCo's
# $t = 0.1$ with $N = 4096$ queued negatives, a positive at similarity 0.9 contributes
# $e^{9} \approx 8100$ per negative slot, far more than a typical negative's $e^{s/t}$: the
# estimate goes below its floor $N e^{-1/t}$ and is clamped, and a clamped row no longer
# pushes any negative away. The paper used $t = 0.5$. On the trained baseline's similarities
# (the batch above), the fraction of rows where the clamp binds, by temperature:

# %%
with torch.no_grad():
    pos1 = (q * k).sum(1)
    n = neg.shape[1]
    rows = []
    for t in (0.1, 0.2, 0.5):
        for tp in (0.05, 0.1):
            raw = (torch.logsumexp(neg / t, 1).exp() - tp * n * (pos1 / t).exp()) / (1 - tp)
            rows.append((t, tp, (raw < n * torch.exp(torch.tensor(-1 / t))).float().mean().item()))
clamp = pd.DataFrame(rows, columns=["t", "τ⁺", "rows clamped"]).pivot(index="t", columns="τ⁺", values="rows clamped")
display(clamp.round(3))

# %% [markdown]
# ## What we measured, against what the paper reported
#
# The paper (STL-10, ResNet-50, SimCLR, t = 0.5): biased 80.15 %, τ⁺ = 0.05 81.85 %,
# τ⁺ = 0.1 84.26 % — debiasing helps, most at about the true prior.

# %%
knn = table["knn_top1"]
d = lambda a, b="moco": knn[a] - knn[b]
bt = study.mean_std(batch)["knn_top1"]
display(Markdown(f"""
* Queue source, {len(seeds)} seeds: DCL (τ⁺ = 0.1) {d('debiased_tau0.1'):+.2f} points against InfoNCE;
  removing the hardest 0.1 % {d('drop_hardest_0.1pct'):+.2f}.
* τ⁺ sweep (kNN): {', '.join(f'{tp}: {knn[f"debiased_tau{tp}"]:.2f}' for tp in taus)}.
* Batch source, as published: DCL {bt['simclr_debiased_tau0.1'] - bt['simclr']:+.2f} points against SimCLR's InfoNCE (one seed).
* At t = 0.1 the clamp binds for {clamp.loc[0.1, 0.1]:.0%} of the rows (τ⁺ = 0.1), at t = 0.5 for
  {clamp.loc[0.5, 0.1]:.0%}: with MoCo's temperature the official estimator mostly returns its floor,
  so DCL at the paper's τ⁺ removes most of the negatives' gradient instead of a false-negative
  share. Removing the hardest 0.1 % (slide 12's alternative) costs nothing here. The comparison at
  the paper's temperature is the gpu-scale run (`params/gpu/03_debiased.yaml`).
"""))

# %%
assert np.isfinite(table["knn_top1"]).all() and np.isfinite(bt).all()
assert clamp.loc[0.1, 0.1] >= clamp.loc[0.5, 0.1]  # a colder temperature clamps more rows
if check_claims:
    # measured: with MoCo's t = 0.1 the clamp binds and DCL falls below InfoNCE, unlike in the paper
    assert clamp.loc[0.1, 0.1] > clamp.loc[0.5, 0.1]
    assert knn["debiased_tau0.1"] < knn["moco"] and abs(d("drop_hardest_0.1pct")) < 1.0
