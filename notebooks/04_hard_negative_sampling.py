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
# # 4 · Hard negative sampling, HCL (Robinson, Chuang, Sra, Jegelka 2021)
#
# Two principles: (1) only sample negatives whose label
# differs from the anchor's — DCL's debiasing; (2) the most useful negatives are the ones the
# embedding currently finds similar to the anchor. HCL tilts the negatives' distribution
# towards hard ones,
#
# $$q_\beta(x^-) \propto e^{\beta f(x)^\top f(x^-)}\, p(x^-),$$
#
# and keeps only its part of another class than the anchor's. That part is found as in DCL
# (notebook 03): the tilted distribution is a mixture of a same-class and an other-class part
# with weights $\tau^+$ and $1-\tau^+$, so the other-class mass is the whole mass minus the
# same-class share, rescaled by $1/(1-\tau^+)$. Samples come from $p$, not from $q_\beta$, so the
# mass under $q_\beta$ is estimated by self-normalised importance weights over the available
# negatives. The official code:
#
# $$\text{imp}_i = e^{\beta s_i/t},\quad
#   \text{reweight} = \frac{\sum_i \text{imp}_i\, e^{s_i/t}}{\frac1N\sum_i \text{imp}_i},\quad
#   N_g = \max\Big(\frac{\text{reweight} - \tau^+ N e^{\text{pos}/t}}{1-\tau^+},\; N e^{-1/t}\Big).$$
#
# reweight is $N$ times the importance-weighted mean of $e^{s_i/t}$: the negatives' mass as if
# they had been drawn from $q_\beta$. β = 0 is DCL; as β grows, the weight concentrates on the
# most similar negatives, and in the limit on the single hardest one. In short: *emphasise the
# hardest ~5 % (re-weighting), remove the hardest ~0.1 % (debiasing)*, the two findings of
# Cai et al. (notebook 02) turned into one loss.
#
# As in notebook 03, HCL runs in **the paper's setting** (SimCLR in-batch negatives, $t = 0.5$,
# Adam lr $10^{-3}$, weight decay $10^{-6}$, constant learning rate, batch 256, $\tau^+ = 0.1$,
# β ∈ {0.5, 1}; its baselines, InfoNCE and DCL in that setting, are notebook 03's runs) and in
# **the study's queue setting** ($K = 4096$, $t = 0.1$, SGD). β multiplies $s/t$, so the tilt
# $e^{\beta s/t}$ depends on β/t: β = 1 at t = 0.1 tilts as β = 5 would at t = 0.5. The queue
# setting's β sweep is therefore not the paper's.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (paired 95 % intervals)
beta_sweep = [0.5, 2.0]       # extra β values on the queue, one seed each (1.0 runs with every seed)
paper_betas = [0.5, 1.0]      # β in the paper's setting, every seed
paper_setting = {"source": "batch", "t": 0.5, "optimizer": "adam", "lr": 0.001, "weight_decay": 1.0e-6,
                 "lr_schedule": "constant", "batch_size": 256}  # the DCL/HCL official code (shared with 03)

# %% [markdown]
# The cell above is the notebook's only list of parameters. The next cell imports the study's
# modules and hands those parameters to `notebook.start`, which checks every one (a bad value
# stops the notebook with one line naming its fix), seeds torch, and returns the notebook's
# name, which each run trained here records.

# %% tags=["plan"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from cl import analysis, controls, losses, negatives, notebook, plots, stats, study
from cl.config import Config

this_notebook = notebook.start(globals())

# %% [markdown]
# ## The estimator in code
#
# `cl.losses.hard` computes the official estimator in log space. Only the negatives' mass
# differs from DCL's: the debiasing and the floor are the same code, so HCL's estimate can sit
# at the same floor $N e^{-1/t}$, where a row pushes no negative away.

# %%
notebook.show_source(losses.hard)

# %% [markdown]
# How β concentrates the weight: for one query's row of 4096 similarities, the share of the
# reweighted negative mass that falls on the hardest 5 %, as β grows (β = 0 is DCL's share).
# The row is synthetic, similarities drawn from a normal distribution of standard deviation
# 0.25, at t = 0.1; a negative's weight in the reweighted mass is
# $\text{imp}_i\, e^{s_i/t} = e^{(\beta+1) s_i/t}$.

# %%
g = torch.Generator().manual_seed(0)
row = (torch.randn(4096, generator=g) * 0.25).clamp(-1, 1)
hardest = row.argsort(descending=True)[:negatives.kept_count(len(row), "hardest", 0.05)]
t = 0.1
shares = {}
for beta in (0.0, 0.5, 1.0, 2.0, 6.0):
    w = torch.exp((beta + 1) * row / t)          # imp · e^{s/t}
    shares[beta] = (w[hardest].sum() / w.sum()).item()
display(pd.Series(shares, name="share of the hardest 5 %").rename_axis("β").round(3).to_frame().T)
assert pd.Series(shares).is_monotonic_increasing

# %% [markdown]
# Even at β = 0 the hardest 5 % hold more than 5 % of the mass: $e^{s/t}$ alone already weighs
# a similar negative more, the more so the lower $t$. β multiplies that preference by $\beta + 1$
# in the exponent, so the share rises with β towards the whole mass.
#
# And β = 0 gives back DCL exactly, checked on random similarities of 8 queries with 64
# negatives each:

# %%
pos, neg = torch.rand(8, generator=g), torch.rand(8, 64, generator=g) * 2 - 1
assert torch.allclose(losses.hard(pos, neg, 0.1, 0.1, 0.0), losses.debiased(pos, neg, 0.1, 0.1))

# %% [markdown]
# ## Training: HCL in the paper's setting and on MoCo's queue
#
# The key conditions run with every seed of `seeds`:
#
# * in the paper's setting, `simclr_paper` (InfoNCE) and `debiased_paper` (DCL, τ⁺ = 0.1), both
#   notebook 03's runs, reused by name and config, and HCL with each β of `paper_betas`;
# * on the queue, `moco` (InfoNCE) and `debiased_tau0.1` (DCL), again notebook 03's, and HCL
#   with β = 1.
#
# The β sweep on the queue adds HCL with each β of `beta_sweep`, trained with the first seed
# only: it is exploratory and claims nothing. `study.run_groups` trains whatever is not already
# finished and returns each condition's records, one per seed. A condition's name says its
# setting: the suffix `_paper` marks the paper's setting, no suffix the queue.

# %% tags=["plan"]
paper = {"simclr_paper": paper_setting,
         "debiased_paper": {**paper_setting, "loss": "debiased", "tau_plus": 0.1},
         **{f"hard_beta{b:g}_paper": {**paper_setting, "loss": "hard", "tau_plus": 0.1, "beta": b}
            for b in paper_betas}}
queue = {"moco": {}, "debiased_tau0.1": {"loss": "debiased", "tau_plus": 0.1},
         "hard_beta1.0": {"loss": "hard", "tau_plus": 0.1, "beta": 1.0}}
beta_runs = {f"hard_beta{b}": {"loss": "hard", "tau_plus": 0.1, "beta": b} for b in beta_sweep}
results = study.run_groups([({**paper, **queue}, base, seeds), (beta_runs, base, seeds[:1])], scale,
                           this_notebook)
results.update(controls.ensure(base, seeds, scale, this_notebook))

# %% [markdown]
# Each condition's final metrics, mean ± std over its seeds: kNN top-1 and linear-probe top-1
# on the test set (%), and the alignment and uniformity of the embedding (Wang & Isola 2020,
# both lower is better), with the setting each number comes from.

# %%
table, shown = stats.mean_std(results), analysis.condition_table(results)
setting = shown["setting"]
shown

# %% [markdown]
# How much each setting learns at all, against the untrained encoder (the controls of notebook
# 01, which train nothing; every comparison of this notebook is exploratory):

# %%
notebook.show(stats.bullets({f"{name} ({setting[name]}) − the untrained encoder":
                             stats.compared(results, name, "control_untrained")
                             for name in ("simclr_paper", "moco")}))

# %% [markdown]
# kNN top-1 against β, one panel per setting. β = 0 on each curve is DCL, and the dashed line is
# InfoNCE in the same setting. In the paper's setting, look for the paper's shape: a moderate β
# above DCL, itself above InfoNCE. On the queue, remember that β/t is five times the paper's
# for the same β, and that the points off β = 1 are one seed each.

# %%
betas = sorted([1.0, *beta_sweep])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
plots.sweep(table, {0.0: "debiased_paper", **{b: f"hard_beta{b:g}_paper" for b in paper_betas}},
            {"InfoNCE": "simclr_paper"}, label="HCL (β = 0: DCL)", xlabel="β", ax=axes[0],
            title=f"paper setting, {stats.plural(len(seeds), 'seed')}\n{setting['simclr_paper']}")
plots.sweep(table, {0.0: "debiased_tau0.1", **{b: f"hard_beta{b}" for b in betas}}, {"InfoNCE": "moco"},
            label="HCL (β = 0: DCL)", xlabel="β", ax=axes[1],
            title=f"queue setting, β ≠ 1: one seed\n{setting['moco']}");

# %% [markdown]
# ## Does HCL inherit DCL's clamp? Measured during training
#
# HCL debiases its reweighted mass as DCL does, with the same floor $N e^{-1/t}$. The tilt
# raises the mass (harder negatives weigh more), so the estimate may clear the floor where
# DCL's does not. The training loop records, every step, the share of rows at the floor
# (`cl.losses.clamp_binds`, shown in notebook 03); `analysis.clamp_rates` reads it back. The
# share in the last epoch, mean over seeds, for DCL and HCL in both settings. Read each HCL row
# against the DCL row of its setting: a lower share means the tilt lifted the estimate off the
# floor on more rows, so that more rows push their negatives away.

# %%
clamp = analysis.clamp_rates(results, ["debiased_paper", *[f"hard_beta{b:g}_paper" for b in paper_betas],
                                       "debiased_tau0.1", "hard_beta1.0"])
clamped = clamp.iloc[-1]
pd.DataFrame({"setting": setting[clamped.index], "rows at the floor (last epoch)": clamped}).round(3)

# %% [markdown]
# ## What we measured, against what the paper reported
#
# The paper (STL-10, ResNet-50, SimCLR, t = 0.5, τ⁺ = 0.1, 400 epochs): β = 0.5 86.38 %,
# β = 1 87.44 %, β = 2 87.09 %, β = 6 83.09 % (debiased 84.26 %, biased 80.15 %) — a moderate β
# helps, a large one hurts. Our absolute numbers come from a small CNN on Fashion-MNIST trained
# on the comparison schedule, so the levels do not carry over; the signs of the differences
# are what we can set against the paper's.
#
# We compare each HCL condition with both of its baselines, InfoNCE and DCL in the same
# setting, paired by seed with 95 % t intervals; the interval decides the word. The table gives
# each difference in kNN and linear-probe points; the figure draws the kNN intervals against
# zero (a gray point has too few seeds to claim anything).

# %%
pairs = [*[(f"hard_beta{b:g}_paper", "simclr_paper") for b in paper_betas],
         *[(f"hard_beta{b:g}_paper", "debiased_paper") for b in paper_betas],
         ("hard_beta1.0", "moco"), ("hard_beta1.0", "debiased_tau0.1")]
diffs = {pair: stats.paired_difference(results, *pair) for pair in pairs}
linear = {pair: stats.paired_difference(results, *pair, metric="linear_top1") for pair in pairs}
epochs = Config.from_dict(base).epochs
display(stats.differences(results, pairs))
plots.intervals(list(diffs.values()), title=f"kNN top-1, {stats.plural(epochs, 'epoch')}");

# %% [markdown]
# The same comparisons in words, as `cl.stats` words them (the kNN difference decides the
# verdict, the linear probe's difference stands beside it), with the share of rows at the floor
# in the last epoch. First the paper's setting:

# %%
baselines = {"InfoNCE": "simclr_paper", "DCL": "debiased_paper"}
words = {f"HCL β = {b:g} − {label}": stats.compared(results, f"hard_beta{b:g}_paper", name)
         for b in paper_betas for label, name in baselines.items()}
floor = {"DCL": clamped["debiased_paper"],
         **{f"HCL β = {b:g}": clamped[f"hard_beta{b:g}_paper"] for b in paper_betas}}
notebook.show(f"Paper setting ({setting['simclr_paper']}), {stats.plural(epochs, 'epoch')}, kNN points:\n\n"
              + stats.bullets({**words, "Rows at the floor, last epoch": stats.shares(floor)}))

# %% [markdown]
# Then the queue setting, where the question of notebook 03 returns: how often does the estimate
# sit at its floor? HCL *inherits* DCL's clamp when its share of rows at the floor is more than
# half of DCL's, and *escapes* it when less: per seed, the ratio of the two shares in the last
# epoch, minus one half, with its 95 % interval (exploratory). The β sweep closes the list.

# %%
hcl, dcl = clamped["hard_beta1.0"], clamped["debiased_tau0.1"]
last_rate = lambda name: [r["epochs"][-1]["clamp_rate"] for r in results[name]]
pairs_of_rates = zip(last_rate("hard_beta1.0"), last_rate("debiased_tau0.1"))
ratio = stats.t_interval([h / max(d, 1e-9) - 0.5 for h, d in pairs_of_rates])
inherits = ratio.word("inherits most of DCL’s clamp", "escapes most of DCL’s clamp",
                      "neither inherits nor escapes most of DCL’s clamp resolvably")
notebook.show(f"Queue setting ({setting['moco']}), kNN points:\n\n" + stats.bullets({
    "HCL β = 1 − InfoNCE": stats.compared(results, "hard_beta1.0", "moco"),
    "HCL β = 1 − DCL": stats.compared(results, "hard_beta1.0", "debiased_tau0.1"),
    "Rows at the floor, last epoch": f"{stats.shares({'HCL': hcl, 'DCL': dcl})}: HCL {inherits} here",
    "β sweep (one seed off β = 1, exploratory)":
        stats.listing(f"β = {b}: {stats.measured(table, f'hard_beta{b}')}" for b in betas)}))

# %% [markdown]
# How to read the two lists together: in the paper's setting the β of the paper and its
# temperature are used as published, so a difference there is a test of the paper's claim at
# our scale. On the queue, β = 1 at t = 0.1 is a much stronger tilt than the paper's β = 1, and
# the clamp decides how many rows still push negatives away at all; a difference there is a
# result about HCL in the study's shared setting, not a test of the paper.
#
# The last cell checks what the text states: every accuracy is finite, and the queue's
# temperature is lower than the paper's, which is why the same β tilts the weights more there
# (the weight $e^{\beta s/t}$ grows faster in $s$ at a smaller $t$).

# %%
assert np.isfinite(table["knn_top1"]).all()
assert Config.from_dict(base).t < Config.from_dict({**base, **paper_setting}).t
