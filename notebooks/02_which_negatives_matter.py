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
# Cai et al. train MoCo v2 on ImageNet with only a chosen
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
# label. ImageNet has 1000 classes, so ~0.1 % of a random queue is same-class; the question is
# whether "the hardest 0.1 %" is simply "the false negatives". Fashion-MNIST has 10 classes:
# 10 % of the queue shares the query's class, so the analogue of the 0.1 % here is the
# hardest **10 %**, which we run beside the oracle.
#
# "Remove the hardest 5 %" and "only the easiest 95 %" are one experiment: a row of $N$
# keeps $N - \lfloor 0.05N \rfloor = \lceil 0.95N \rceil$ entries either way, the same ones (checked
# below), so it is reported once. Cai et al. also plot accuracy against the share kept, for the
# hardest and for the easiest subsets, and repeat the 0.1 % removal at several temperatures:
# so do we.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule shared by notebooks 02–06
seeds = [0, 1, 2]             # seeds of the key comparisons (paired 95 % intervals)
temperatures = [0.2, 0.5]     # besides the base's t: "remove the hardest 0.1 %" against its own baseline
keep_shares = [0.01, 0.05, 0.1, 0.25, 0.5]       # curve: only the hardest share f (one seed)
drop_shares = [0.01, 0.05, 0.1, 0.25, 0.5]       # curve: remove the hardest f (only the easiest 1 − f)
random_shares = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.95]  # curve: a random share, the control of both
check_claims = True           # assert the claims about trained models (off at the smoke scale)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from cl import analysis, negatives, notebook, plots, study, train
from cl.plots import source

NB = notebook.start(scale=scale, base=base, seeds=seeds, temperatures=temperatures, keep_shares=keep_shares,
                    drop_shares=drop_shares, random_shares=random_shares, check_claims=check_claims)


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
         "random 5%": ("random", 0.05), "drop hardest 1%": ("drop_hardest", 0.01),
         "drop same class": ("drop_same_class", None)}
fig, ax = plt.subplots(figsize=(9, 2.6))
for i, (name, (mode, f)) in enumerate(modes.items()):
    kept = torch.isfinite(negatives.select(row, mode, f, labels=labels, queue_labels=row_labels,
                                           generator=g))[0]
    ax.scatter(np.arange(400)[kept.numpy()], np.full(int(kept.sum()), i), s=2)
    if mode != "drop_same_class":
        assert kept.sum() == negatives.kept_count(400, mode, f)
ax.set(yticks=range(len(modes)), yticklabels=list(modes), xlabel="rank in the row (0 = hardest)")
fig.tight_layout()

# %% [markdown]
# "Remove the hardest $f$" and "only the easiest $1-f$" select the same entries, for every row
# length up to the queue's and every share of the curves below:

# %%
rows = torch.randn(1, 4096, generator=g)
for n in range(1, 4097, 7):
    for f in drop_shares + [0.001]:
        easiest = negatives.select(rows[:, :n], "easiest", 1 - f)
        assert torch.equal(torch.isfinite(easiest),
                           torch.isfinite(negatives.select(rows[:, :n], "drop_hardest", f)))

# %% [markdown]
# ## The experiment
#
# Every condition is the MoCo v2 baseline of notebook 01 on the comparison schedule (`base`:
# the queue of $K = 4096$ keys, $t = 0.1$, SGD), with one change: the selection applied to each
# query's row of the queue before InfoNCE. The **key conditions** run with every seed and decide
# the claims; the **curves** are one seed per point: exploratory, they claim nothing by themselves.

# %%
pct = lambda f: f"{f * 100:g}pct"
keep = lambda mode, f: {"select": mode, "select_fraction": f}
key = {"moco": {}, "hardest_5pct": keep("hardest", 0.05), "random_5pct": keep("random", 0.05),
       "drop_hardest_5pct": keep("drop_hardest", 0.05), "drop_hardest_0.1pct": keep("drop_hardest", 0.001),
       "drop_hardest_10pct": keep("drop_hardest", 0.1), "drop_same_class": {"select": "drop_same_class"}}
by_temperature = {}
for t in temperatures:
    by_temperature[f"moco_t{t:g}"] = {"t": t}
    by_temperature[f"drop_hardest_0.1pct_t{t:g}"] = {"t": t, **keep("drop_hardest", 0.001)}
families = {"only the hardest": [(f, f"hardest_{pct(f)}", keep("hardest", f)) for f in keep_shares],
            "only the easiest (= remove the hardest)":
                [(1 - f, f"drop_hardest_{pct(f)}", keep("drop_hardest", f)) for f in drop_shares],
            "random (control)": [(f, f"random_{pct(f)}", keep("random", f)) for f in random_shares]}
curve = {name: overrides for points in families.values() for _, name, overrides in points}
keyed = {**key, **by_temperature}
results = study.run_groups([(keyed, base, seeds),
                            ({k: v for k, v in curve.items() if k not in keyed}, base, seeds[:1])],
                           scale, NB)
table = study.mean_std(results)
display(study.formatted(table.loc[list(key) + list(by_temperature)]))

# %% [markdown]
# ### The curves: accuracy against the share kept
#
# One seed per point (exploratory); at the shares of the key conditions the point is seed 0
# of those runs. The dashed line is all negatives (mean over seeds).

# %%
seed0 = study.mean_std({name: [r for r in results[name] if r["config"]["seed"] == seeds[0]]
                        for name in curve})
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
for ax, metric in zip(axes, ("knn_top1", "linear_top1")):
    plots.share_curves(seed0,
                       {fam: [(share, name) for share, name, _ in pts] for fam, pts in families.items()},
                       table.loc["moco", metric], metric=metric, ax=ax)
    ax.set_title(f"{metric.replace('_', ' ')} at {base.get('epochs')} epochs, seed {seeds[0]} (exploratory)")
fig.tight_layout()

# %%
plots.curves({name: results[name][0] for name in key}, keys=("loss", "knn_top1"),
             title=f"seed {seeds[0]} of each key condition");

# %% [markdown]
# ## Where the gradient goes, and what the hardest negatives are
#
# During training the loop logs, for the last step of each epoch, the distribution of the
# negatives' similarities and, per difficulty band, the share of InfoNCE's gradient the band
# carries (a negative's share is its softmax probability over $[\text{pos}, \text{neg}]/t$) and
# the fraction of its negatives that share the query's class. Chance is 1/10 for Fashion-MNIST.

# %%
stats = results["moco"][0]["epochs"]
bands = stats[-1]["negatives"]["band_names"]
share = pd.DataFrame([e["negatives"]["gradient_share"] for e in stats], columns=bands,
                     index=pd.Index([e["epoch"] for e in stats], name="epoch"))
same = pd.DataFrame([e["negatives"]["same_class_fraction"] for e in stats], columns=bands, index=share.index)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
edges = np.array(stats[-1]["negatives"]["histogram_edges"])
for e in stats:
    axes[0].plot((edges[1:] + edges[:-1]) / 2, e["negatives"]["histogram_counts"],
                 label=f"epoch {e['epoch']}")
axes[0].set(xlabel="similarity q·k⁻", ylabel="count", title="negative similarities (last step)")
axes[0].legend(fontsize=7)
share.iloc[-1].plot.bar(ax=axes[1], title="share of the gradient per band (last epoch)", rot=20)
same.iloc[-1].plot.bar(ax=axes[2], title="same-class fraction per band (last epoch)", rot=20)
axes[2].axhline(0.1, color="k", ls="--", lw=1, label="chance (1/10)")
axes[2].legend()
fig.tight_layout()

# %% [markdown]
# The numbers above come from one batch. For firmer estimates we take each seed's trained
# baseline, draw 1024 training images, and contrast $q = f_q(\text{view}_1)$ with its real
# positive $k = f_k(\text{view}_2)$ and with the model's whole final queue (4096 keys, with
# their labels and data-set indices), as in training; an image's own key is excluded. The
# gradient shares are pooled over rows, so they depend on the positives' logits too.

# %%
def probe(run_name):
    trained, _ = train.load_model(study.run_dir(scale, run_name))
    p = analysis.probe_queue(trained, n=1024)
    bands = negatives.difficulty_bands(p.pos, p.neg, trained.cfg.t, same_class=p.same_class)
    finite = torch.isfinite(p.neg)
    chance = (p.same_class & finite).sum().item() / finite.sum().item()
    return trained, p, bands, chance


probes = {seed: probe(f"moco_s{seed}") for seed in seeds}
trained, first, final_bands, chance = probes[seeds[0]]
idx, neg = first.idx, first.neg
hardest = pd.DataFrame({"same-class fraction": final_bands["same_class_fraction"],
                        "gradient share": final_bands["gradient_share"],
                        "negatives per query": np.array(final_bands["band_counts"]) / len(idx)},
                       index=final_bands["band_names"])
display(hardest.round(3))
# the hardest band that no seed leaves empty (the 0.1 % of a queue under 1000 keys holds no key)
band = next(b for b in range(len(bands))
            if all(p[2]["same_class_fraction"][b] is not None for p in probes.values()))
same_hardest = [p[2]["same_class_fraction"][band] for p in probes.values()]
print(f"same-class fraction of the hardest band ({bands[band]}), per seed: "
      f"{', '.join(f'{x:.3f}' for x in same_hardest)}; whole queue: {chance:.3f}")

# %% [markdown]
# The hardest negatives of a few queries, from the queue (its stored data-set indices give
# back the images):

# %%
rank = negatives.difficulty_rank(neg[:6])
moco, names = trained.moco, trained.train_set.classes
fig, axes = plt.subplots(6, 7, figsize=(8, 7.5))
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
# Each key comparison is condition − all negatives (or − its control), paired by seed, with a
# 95 % t interval over the seeds; the interval decides the word (*better*, *worse*, or *no
# difference resolved at this budget*). kNN decides; the linear probe stands beside it. Every
# conclusion holds for this schedule only (`base`), and short schedules favour what learns fast.

# %%
pairs = [("hardest_5pct", "moco"), ("hardest_5pct", "random_5pct"), ("random_5pct", "moco"),
         ("drop_hardest_5pct", "moco"), ("drop_hardest_0.1pct", "moco"),
         *[(f"drop_hardest_0.1pct_t{t:g}", f"moco_t{t:g}") for t in temperatures],
         ("drop_hardest_10pct", "moco"), ("drop_same_class", "moco"),
         ("drop_same_class", "drop_hardest_10pct")]
diffs = {pair: study.paired_difference(results, *pair) for pair in pairs}
linear = {pair: study.paired_difference(results, *pair, metric="linear_top1") for pair in pairs}
display(study.differences(results, pairs))
plots.intervals(list(diffs.values()), title=f"kNN top-1, {base.get('epochs')} epochs");

# %%
schedule = f"at {train.Config.from_dict(base).epochs} epochs"
d = lambda a, b="moco": diffs[(a, b)]
lin = lambda a, b="moco": linear[(a, b)]
nearly_full = d("hardest_5pct").at_least(-1)
same_mean, same_low, same_high = study.t_interval(same_hardest)
display(Markdown(f"""
Conclusions {schedule} (differences in kNN points, 95 % interval; linear probe beside it):

* **Only the hardest 5 %** against all negatives: {d('hardest_5pct')} ({d('hardest_5pct').verdict()};
  linear {lin('hardest_5pct')}). "Nearly full accuracy" (the interval's lower end above −1 point):
  **{'yes' if nearly_full else 'not shown'}**. Against a **random 5 %** of the same size:
  {d('hardest_5pct', 'random_5pct')} ({d('hardest_5pct', 'random_5pct').verdict()}).
* **Remove the hardest 5 %** (= only the easiest 95 %): {d('drop_hardest_5pct')}
  ({d('drop_hardest_5pct').verdict(worse='worse: the hardest 5 % are necessary')}).
* **Remove the hardest 0.1 %**: at t = {train.Config.from_dict(base).t:g}, {d('drop_hardest_0.1pct')}
  ({d('drop_hardest_0.1pct').verdict()}); """ + "; ".join(
    f"at t = {t:g}, {d(f'drop_hardest_0.1pct_t{t:g}', f'moco_t{t:g}')} "
    f"({d(f'drop_hardest_0.1pct_t{t:g}', f'moco_t{t:g}').verdict()})" for t in temperatures) + f""".
* The hardest negatives ({bands[band]} band) of each trained baseline's queue are same-class in \
{same_mean:.0%} of cases
  ({f"95 % interval over {len(same_hardest)} seeds: [{same_low:.0%}, {same_high:.0%}]"
     if len(same_hardest) >= study.MIN_SEEDS
     else f"{len(same_hardest)} seed, no interval"}), against {chance:.0%} for the whole
  queue. With 10 classes the 0.1 % (4 of 4096) are a small part of the ~10 % same-class keys, so
  the analogue of ImageNet's 0.1 % is the class prior: **removing the hardest 10 %**
  {d('drop_hardest_10pct')} ({d('drop_hardest_10pct').verdict()}), against **the same-class oracle**
  {d('drop_same_class')} ({d('drop_same_class').verdict()}); oracle − hardest 10 %:
  {d('drop_same_class', 'drop_hardest_10pct')} ({d('drop_same_class', 'drop_hardest_10pct').verdict()}).
"""))

# %%
assert set(key) | set(by_temperature) <= set(table.index) and np.isfinite(table["knn_top1"]).all()
assert abs(sum(final_bands["gradient_share"]) - 1) < 1e-4
if check_claims:
    # every comparison above that carries a word has the seeds a claim needs
    assert all(x.claims for x in diffs.values()) and all(x.claims for x in linear.values())
    # the text reads the hardest 0.1 % as mostly same-class: its interval must clear chance
    assert bands[band] == "hardest 0.1%" and same_low > chance
