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
# # 4 · Hard negative sampling, HCL (Robinson, Chuang, Sra, Jegelka 2021)
#
# *Slides 22–26 of the seed deck.* Two principles: (1) only sample negatives whose label
# differs from the anchor's — DCL's debiasing; (2) the most useful negatives are the ones the
# embedding currently finds similar to the anchor. HCL tilts the negatives' distribution
# towards hard ones,
#
# $$q_\beta(x^-) \propto e^{\beta f(x)^\top f(x^-)}\, p(x^-),$$
#
# estimated by self-normalised importance weights over the available negatives, then
# debiased as in DCL. The official code (which the author confirmed is the right version):
#
# $$\text{imp}_i = e^{\beta s_i/t},\quad
#   \text{reweight} = \frac{\sum_i \text{imp}_i\, e^{s_i/t}}{\frac1N\sum_i \text{imp}_i},\quad
#   N_g = \max\Big(\frac{\text{reweight} - \tau^+ N e^{\text{pos}/t}}{1-\tau^+},\; N e^{-1/t}\Big).$$
#
# β = 0 is DCL. The slides' summary: *emphasise the hardest ~5 % (re-weighting), remove the
# hardest ~0.1 % (debiasing)* — the two findings of Cai et al. turned into one loss.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (mean ± std)
beta_sweep = [0.5, 2.0]       # extra β values, one seed each (1.0 runs with every seed)
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
from IPython.display import Markdown, display

from cl.plots import source
from cl import losses, study

NB = "04_hard_negative_sampling"

# %%
source(losses.hard)

# %% [markdown]
# How β concentrates the weight: for one query's row of 4096 similarities, the share of the
# reweighted negative mass that falls on the hardest 5 %, as β grows (β = 0 is DCL's share).

# %%
g = torch.Generator().manual_seed(0)
row = (torch.randn(4096, generator=g) * 0.25).clamp(-1, 1)
hardest = row.argsort(descending=True)[:205]
t = 0.1
shares = {}
for beta in (0.0, 0.5, 1.0, 2.0, 6.0):
    w = torch.exp((beta + 1) * row / t)          # imp · e^{s/t}
    shares[beta] = (w[hardest].sum() / w.sum()).item()
display(pd.Series(shares, name="share of the hardest 5 %").rename_axis("β").round(3).to_frame().T)
assert pd.Series(shares).is_monotonic_increasing
pos, neg = torch.rand(8, generator=g), torch.rand(8, 64, generator=g) * 2 - 1
assert torch.allclose(losses.hard(pos, neg, 0.1, 0.1, 0.0), losses.debiased(pos, neg, 0.1, 0.1))

# %% [markdown]
# ## Training: a β sweep on MoCo's queue (τ⁺ = 0.1)

# %%
results = study.run_conditions({"moco": {}, "debiased_tau0.1": {"loss": "debiased", "tau_plus": 0.1},
                                "hard_beta1.0": {"loss": "hard", "tau_plus": 0.1, "beta": 1.0}}, base, seeds, scale, NB)
results.update(study.run_conditions({f"hard_beta{b}": {"loss": "hard", "tau_plus": 0.1, "beta": b} for b in beta_sweep},
                                    base, seeds[:1], scale, NB))
table = study.mean_std(results)
display(study.formatted(table))

# %%
betas = sorted([1.0, *beta_sweep])
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot([0.0, *betas], [table.loc["debiased_tau0.1", "knn_top1"], *[table.loc[f"hard_beta{b}", "knn_top1"] for b in betas]],
        marker="o", label="HCL (β = 0: DCL)")
ax.axhline(table.loc["moco", "knn_top1"], color="k", ls="--", lw=1, label="InfoNCE")
ax.set(xlabel="β", ylabel="kNN top-1 (%)", title="HCL β sweep, τ⁺ = 0.1")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## What we measured, against what the paper reported
#
# The paper (STL-10, ResNet-50, SimCLR, τ⁺ = 0.1): β = 0.5 86.38 %, β = 1 87.44 %,
# β = 2 87.09 %, β = 6 83.09 % — a moderate β helps, a large one hurts.

# %%
knn = table["knn_top1"]
display(Markdown(f"""
* HCL (β = 1, τ⁺ = 0.1, {len(seeds)} seeds): {knn['hard_beta1.0'] - knn['moco']:+.2f} points against InfoNCE,
  {knn['hard_beta1.0'] - knn['debiased_tau0.1']:+.2f} against DCL.
* β sweep (kNN): {', '.join(f'{b}: {knn[f"hard_beta{b}"]:.2f}' for b in betas)}.
* Unlike the paper, HCL stays below InfoNCE here: it inherits DCL's correction, whose clamp binds
  for most rows at MoCo's temperature t = 0.1 (notebook 03). Larger β puts the remaining weight
  on the hardest negatives — Cai et al.'s "sufficient" 5 % — and recovers part of the loss. The
  paper's regime (SimCLR, t = 0.5) is the gpu-scale run.
"""))
assert np.isfinite(table["knn_top1"]).all()
if check_claims:
    # measured: on top of DCL's clamped estimator (notebook 03) the tilt towards hard negatives
    # restores much of the push, but at MoCo's t = 0.1 it does not reach plain InfoNCE
    assert knn["hard_beta1.0"] > knn["debiased_tau0.1"]
