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
# # 6 · Supervised contrastive learning, SupCon (Khosla et al. 2020)
#
# With labels, the false-negative problem disappears: every
# sample of the anchor's class becomes a **positive**, the rest of the batch the negatives.
#
# $$\mathcal L^{out} = \sum_i \frac{-1}{|P(i)|} \sum_{p \in P(i)}
#   \log \frac{e^{z_i\cdot z_p/t}}{\sum_{a \ne i} e^{z_i\cdot z_a/t}}$$
#
# with $P(i)$ the other views in the batch (all views) that share $i$'s label. With all
# labels distinct it is SimCLR's loss. It goes one step past the "same-class oracle" of
# notebook 02, which only *removes* same-class negatives; SupCon also *pulls* them in.
#
# **Where the average sits.** The paper compares $\mathcal L^{out}$, the mean over positives
# *outside* the log, with $\mathcal L^{in}$, the mean *inside* it,
# $-\log \frac{1}{|P(i)|}\sum_{p} \frac{e^{z_i\cdot z_p/t}}{\sum_{a\ne i} e^{z_i\cdot z_a/t}}$.
# The log is concave, so by Jensen's inequality $\mathcal L^{in} \le \mathcal L^{out}$. The
# paper trains better with $\mathcal L^{out}$ (its Section 3.2). One way to see the difference:
# inside the log, the mean over positives is dominated by its largest term, so one easy
# positive can lower the loss while the others stay far; outside it, every positive has its
# own term, so each one is pulled in.
#
# **Hard positives and negatives.** The paper also shows (same section) that, with normalised
# embeddings, the gradient of each term is large for hard positives (dissimilar views of the
# class) and hard negatives (similar samples of other classes), and small for easy ones: the
# loss mines them without an explicit selection step.
#
# The parameters: the comparison schedule `base` shared with notebooks 02–06 and the `seeds` of
# the comparisons.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (mean ± std)

# %% tags=["plan"]
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import display

from cl import config, controls, losses, notebook, plots, stats, study

this_notebook = notebook.start(globals())
cfg = config.Config.from_dict(base)

# %% [markdown]
# The loss as `cl/losses.py` computes it: a mask of each anchor's positives (same label, itself
# excluded), the log-softmax of its row over every other view, and the mean of that log-softmax
# over the positives, outside the log as in $\mathcal L^{out}$.

# %%
notebook.show_source(losses.supcon)

# %% [markdown]
# With every label distinct, the only positive of a view is the other view of its own image,
# and SupCon is SimCLR's NT-Xent. The next cell checks it on 8 random images × 2 views: NT-Xent
# written out by hand (the log-sum-exp of each row, self excluded, minus the partner's logit)
# against `losses.supcon` with distinct labels. `tests/test_losses.py` checks the same identity.

# %%
g = torch.Generator().manual_seed(0)
z = F.normalize(torch.randn(16, 8, generator=g), dim=1)      # 2 views × 8 images
distinct = torch.arange(8).repeat(2)
sim = z @ z.T / 0.1
sim.fill_diagonal_(-float("inf"))
partner = torch.arange(16).roll(8)
nt_xent = (torch.logsumexp(sim, 1) - sim[torch.arange(16), partner]).mean()
assert torch.allclose(losses.supcon(z, distinct, 0.1), nt_xent)
print(f"SupCon with distinct labels {losses.supcon(z, distinct, 0.1):.4f} = NT-Xent {nt_xent:.4f}")

# %% [markdown]
# ## Training
#
# SupCon is an in-batch loss (`source: batch`, both views through the query encoder). We put
# it beside MoCo v2, the same-class oracle of notebook 02 (reused), and **SimCLR's InfoNCE on
# the same source in the same setting** (`simclr`: the same batch, temperature and SGD schedule
# as SupCon, labels unused; not notebook 03's `simclr_paper`, which runs the DCL paper's $t = 0.5$
# with Adam), all on the comparison schedule and every seed. SimCLR is SupCon's own control: the
# two differ only in which views count as positives. In SupCon's batch of $2B$ views, an
# anchor's positives are all the other views of its class: with Fashion-MNIST's ten balanced
# classes, about a tenth of the batch. The controls of notebook 01 (the untrained encoder and
# the raw pixels) stand beside them. The table gives each condition's final metrics, the mean ±
# the standard deviation over its seeds.

# %% tags=["plan"]
conditions = {"moco": {}, "supcon": {"loss": "supcon", "source": "batch"}, "simclr": {"source": "batch"},
              "drop_same_class": {"select": "drop_same_class"}}
results = study.run_conditions(conditions, base, seeds, scale, this_notebook)
results.update(controls.ensure(base, seeds, scale, this_notebook))
table = stats.mean_std(results)
display(stats.formatted(table))

# %% [markdown]
# kNN top-1 of each condition, the mean ± the standard deviation over its seeds.
# The order of the bars is the first reading; the paired intervals below say which gaps the
# seeds resolve.

# %%
plots.means(table, "knn_top1", title=f"{stats.plural(cfg.epochs, 'epoch')}");

# %% [markdown]
# ## What we measured, against what the paper reported
#
# The paper (ResNet-50): CIFAR-10 96.0 %, CIFAR-100 76.5 %, above cross-entropy and
# SimCLR. Labels are used in training here, so SupCon is not a self-supervised method: it shows
# what knowing every sample's class buys at this schedule, whatever the comparisons below find;
# it is not shown to be an upper bound of the self-supervised methods.
#
# First, how much each learns at all: each against the untrained encoder. Then four paired
# comparisons, each alone (exploratory; the study's primary contrasts are notebook 02's): SupCon
# against SimCLR on the same source (what labels buy when only the positives change), SupCon
# against MoCo v2 (what labels buy against the study's baseline), SupCon against the oracle (what
# pulling same-class samples in adds to no longer pushing them away), and the oracle against MoCo
# v2 (what removing the false negatives alone buys). The table gives each difference in kNN and
# linear-probe top-1, paired by seed, with its 95 % t interval.

# %%
learnt = {f"{name} − the untrained encoder": stats.compared(results, name, "control_untrained")
          for name in ("moco", "simclr", "supcon")}
notebook.show(stats.bullets(learnt))

# %%
pairs = [("supcon", "simclr"), ("supcon", "moco"), ("supcon", "drop_same_class"), ("drop_same_class", "moco")]
display(stats.differences(results, pairs))

# %% [markdown]
# The conclusions in words: each line is the kNN difference in points with the verdict its
# interval allows, the linear-probe difference beside it.

# %%
conclusions = {"SupCon − SimCLR, the same source and setting":
                   stats.compared(results, "supcon", "simclr"),
               "SupCon − MoCo v2": stats.compared(results, "supcon", "moco"),
               "SupCon − the same-class oracle": stats.compared(results, "supcon", "drop_same_class"),
               "The oracle − MoCo v2": stats.compared(results, "drop_same_class", "moco")}
notebook.show(f"Conclusions at {stats.plural(cfg.epochs, 'epoch')} (kNN points, 95 % intervals over seeds):"
              "\n\n" + stats.bullets(conclusions))

# %% [markdown]
# The checks of what the text states: every condition's final kNN accuracy is a finite number,
# and SimCLR is SupCon's control in the same setting: their configs differ in the loss alone.

# %%
assert np.isfinite(table["knn_top1"]).all()
supcon, simclr = results["supcon"][0]["config"], results["simclr"][0]["config"]
assert {k for k, v in supcon.items() if simclr[k] != v} == {"loss"}
