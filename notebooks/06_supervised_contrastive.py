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
# # 6 · Supervised contrastive learning, SupCon (Khosla et al. 2020)
#
# With labels, the false-negative problem disappears: every
# sample of the anchor's class becomes a **positive**, the rest of the batch the negatives.
#
# $$\mathcal L^{out} = \sum_i \frac{-1}{|P(i)|} \sum_{p \in P(i)}
#   \log \frac{e^{z_i\cdot z_p/t}}{\sum_{a \ne i} e^{z_i\cdot z_a/t}}$$
#
# with $P(i)$ the other views in the batch (all views) that share $i$'s label. With all
# labels distinct it is SimCLR's loss. It is the upper bound of the "same-class oracle" of
# notebook 02, which only *removes* same-class negatives; SupCon also *pulls* them in.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (mean ± std)
check_claims = True           # assert the claims about trained models (off at the smoke scale)

# %%
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from cl import losses, notebook, plots, study, train
from cl.plots import source

NB = notebook.start(scale=scale, base=base, seeds=seeds, check_claims=check_claims)

# %%
source(losses.supcon)

# %% [markdown]
# With every label distinct, SupCon is SimCLR's NT-Xent (the tests check it exactly):

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
# it beside MoCo v2, the same-class oracle of notebook 02 (reused), and SimCLR's InfoNCE on the
# same in-batch source (notebook 03), all on the comparison schedule.

# %%
results = study.run_groups([({"moco": {}, "supcon": {"loss": "supcon", "source": "batch"},
                              "drop_same_class": {"select": "drop_same_class"}}, base, seeds),
                            # simclr: one seed, context
                            ({"simclr": {"source": "batch"}}, base, seeds[:1])], scale, NB)
table = study.mean_std(results)
display(study.formatted(table))

# %%
plots.means(table, "knn_top1", title=f"{train.Config.from_dict(base).epochs} epochs");

# %% [markdown]
# ## What we measured, against what the paper reported
#
# The paper (ResNet-50): CIFAR-10 96.0 %, CIFAR-100 76.5 %, above cross-entropy and
# SimCLR. Labels are used in training here, so SupCon is not a self-supervised method: it is
# the ceiling of what "knowing which negatives are false" can buy.

# %%
pairs = [("supcon", "moco"), ("supcon", "drop_same_class"), ("drop_same_class", "moco")]
diffs = {pair: study.paired_difference(results, *pair) for pair in pairs}
linear = {pair: study.paired_difference(results, *pair, metric="linear_top1") for pair in pairs}
display(study.differences(results, pairs))
line = lambda a, b: f"{diffs[(a, b)]} ({diffs[(a, b)].verdict()}; linear {linear[(a, b)]})"
knn = table["knn_top1"]
display(Markdown(f"""
Conclusions at {train.Config.from_dict(base).epochs} epochs (kNN points, 95 % interval over seeds):

* SupCon − MoCo v2: {line('supcon', 'moco')}.
* SupCon − the same-class oracle (which only removes same-class negatives): \
{line('supcon', 'drop_same_class')}.
* The oracle − MoCo v2: {line('drop_same_class', 'moco')}.
* SimCLR's InfoNCE on the same in-batch source (t = {train.Config.from_dict(base).t:g}, one seed, \
context only): {knn['simclr']:.2f} %.
"""))
assert np.isfinite(table["knn_top1"]).all()
if check_claims:
    assert all(x.claims for x in diffs.values()) and all(x.claims for x in linear.values())
