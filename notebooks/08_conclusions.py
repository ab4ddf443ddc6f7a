# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · What the study adds up to
#
# Every method and setting of notebooks 00–07 side by side, read from the finished runs
# themselves; then the two questions the study has not yet asked: what happens **without
# negatives at all** (SimSiam, BYOL), and whether what is learnt **transfers** to classes the
# encoder never trained on. Finally the discussion questions, answered one by one from our
# numbers, each linking the notebook that measured it.
#
# Every conclusion holds for the schedule it names: short schedules favour methods that learn
# fast early, and the cpu scale is short.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule of notebooks 00–07
seeds = [0, 1, 2]             # every claim: 3 seeds, paired 95 % t intervals
positives = {                 # SimSiam and BYOL: the official recipes' key pieces on our encoder and loop
    "simsiam": {"loss": "simsiam", "source": "none", "head": "mlp_bn", "predictor_hidden": 32},
    "byol": {"loss": "byol", "source": "none", "head": "mlp_bn", "predictor_hidden": 512},
}
transfer = {"train_classes": "0-4", "eval_classes": "5-9"}  # pretrain on 5 classes, evaluate on the other 5
larger_bank = {"queue": 16384, "select": "hardest", "select_fraction": 0.05}  # hardest 5 % of a 4× bank
cost_rounds = 20              # interleaved steps timed per design (cl.bench.cost_ratios)
check_claims = True           # assert the claims (off at the smoke scale)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from cl import analysis, bench, notebook, plots, study, train

NB = notebook.start(scale=scale, base=base, seeds=seeds, positives=positives, transfer=transfer,
                    larger_bank=larger_bank, cost_rounds=cost_rounds, check_claims=check_claims)
epochs = train.Config.from_dict(base).epochs
schedule = f"at {epochs} epochs"

# %% [markdown]
# ## Positives only: SimSiam and BYOL
#
# Notebook 00 showed that pulling positives together with nothing else collapses the
# embedding. SimSiam (Chen & He 2021, section 3) and BYOL (Grill et al. 2020, section 3.1)
# train without negatives and do not collapse: both add a **predictor** $h$ on one branch and
# keep the other branch from the gradient, SimSiam by a stop-gradient on the same encoder,
#
# $$\mathcal L = \tfrac12 D\big(p_1, \mathrm{sg}(z_2)\big) + \tfrac12 D\big(p_2, \mathrm{sg}(z_1)\big),$$
#
# $$D(p, z) = -\frac{p}{\lVert p\rVert}\cdot\frac{z}{\lVert z\rVert},$$
#
# BYOL by a momentum average of the encoder as the target, $\xi \leftarrow \tau\xi + (1-\tau)\theta$,
# with $\mathcal L = 2 - 2\cos(p, z')$ on both views. The key settings of the official recipes
# are kept: batch norm in the projector and in the predictor, SimSiam's bottleneck predictor
# (here 128 → 32 → 128, the paper's 2048 → 512 → 2048 ratio), BYOL's expanding one (128 → 512 →
# 128) and a target momentum (τ = `moco_m`, 0.99, as our key encoder's). The rest, encoder,
# augmentation, optimiser, schedule and evaluation, is the study's. `cl.siamese` and
# `cl.train.siamese_step`:

# %%
plots.source(train.siamese_step)

# %%
results = study.run_groups([({"moco": {}, **positives}, base, seeds)], scale, NB)
table = study.mean_std(results)
display(study.formatted(table))

# %% [markdown]
# Collapse leaves a trace the accuracy may hide: the embedding's spread. For unit vectors in
# $d$ dimensions, the standard deviation of each coordinate over images is about $1/\sqrt d$
# when they spread over the sphere and 0 when they collapse to a point (Chen & He 2021,
# section 4.1). Read from each run's probe embeddings after its last epoch, with uniformity
# (lower: more uniform) beside it:

# %%
def collapse(name):
    rows = []
    for record in results[name]:
        probe = analysis.load_probe(study.run_dir(scale, record["run"]))
        z = probe.embeddings[max(probe.embeddings)]
        rows.append({"per-dimension std × √d": float(z.std(dim=0).mean() * z.shape[1] ** 0.5),
                     "uniformity": record["final"]["uniformity"]})
    return pd.DataFrame(rows).mean()


spread = pd.DataFrame({name: collapse(name) for name in results}).T
display(spread.round(3))
pairs = [(name, "moco") for name in positives]
positive_diffs = {pair: study.paired_difference(results, *pair) for pair in pairs}
display(study.differences(results, pairs))

# %% [markdown]
# ## Transfer: pretrain on five classes, evaluate on the other five
#
# The deck asks whether what negatives teach carries over to another task. We pretrain on
# Fashion-MNIST's classes 0–4 (T-shirt, trouser, pullover, dress, coat) and evaluate kNN and
# the linear probe on classes 5–9 (sandal, shirt, sneaker, bag, ankle boot), which the encoder
# never saw, for the baseline, the hardest-5 % subset (notebook 02), the same-class oracle
# (notebook 02; it only ever removes negatives of the pretraining classes), and one
# positives-only method. Half the images means twice the epochs for the **same number of
# steps** as the full-data runs:

# %%
transfer_base = {**base, **transfer, "epochs": 2 * epochs}
transfer_conditions = {"transfer_moco": {},
                       "transfer_hardest_5pct": {"select": "hardest", "select_fraction": 0.05},
                       "transfer_oracle": {"select": "drop_same_class"},
                       "transfer_simsiam": positives["simsiam"]}
moved = study.run_groups([(transfer_conditions, transfer_base, seeds)], scale, NB)
display(study.formatted(study.mean_std(moved)))
transfer_pairs = [(name, "transfer_moco") for name in transfer_conditions if name != "transfer_moco"]
transfer_diffs = {pair: study.paired_difference(moved, *pair) for pair in transfer_pairs}
display(study.differences(moved, transfer_pairs))

# %% [markdown]
# ## Can "the hardest 5 % suffice" buy compute or accuracy?
#
# Notebook 02 found how much of the queue a model needs. Two measured answers. **Compute**: on
# this encoder, what share of a training step do the negatives cost at all? The plain step
# against the same step with a queue of 256 keys (a 16× smaller similarity matrix and loss),
# and against keeping only the hardest 5 % (which still needs every similarity to rank them),
# timed step by step in turn (`cl.bench.cost_ratios`). No design on the negatives' side can
# save more than the first gap. **Accuracy**: the hardest 205 of a 4096-key queue come from
# recent keys only; a 4× larger, older bank offers 4× more candidates, and keeping its hardest
# 5 % (819 per query) tests whether mining a larger pool pays, at the step cost measured here.

# %%
timed = {"train_subset": 8192, "test_subset": 256, "device": "cpu", "probe": 0}  # data for the timing only
config = lambda overrides: train.Config.from_dict({**base, **overrides, **timed})
costs = bench.cost_ratios(train.Trainer(config({})), {
    "queue of 256": train.Trainer(config({"queue": 256})),
    "hardest 5 % of the queue": train.Trainer(config({"select": "hardest", "select_fraction": 0.05})),
    "hardest 5 % of a 4× larger bank": train.Trainer(config(larger_bank)),
}, rounds=cost_rounds)
display(pd.Series(costs, name="step time / plain step (medians, interleaved)").round(3).to_frame())
mined = study.run_groups([({"moco": {}, "larger_bank_hardest_5pct": larger_bank}, base, seeds)], scale, NB)
display(study.formatted(study.mean_std(mined)))
mined_pair = ("larger_bank_hardest_5pct", "moco")
mined_diff = {mined_pair: study.paired_difference(mined, *mined_pair)}
display(study.differences(mined, list(mined_diff)))
saving = 1 - costs["queue of 256"]
share = (f"at most {saving:.1%} of a step" if saving > 0 else
         "no measurable share of a step (a 16× smaller queue was not faster)")
print(f"the negatives cost {share} here, medians of {cost_rounds} interleaved steps")

# %% [markdown]
# ## Every method side by side
#
# Every finished run of this scale, grouped by condition: mean ± std over its seeds (std is
# empty for one-seed points, which claim nothing), with its setting and the training minutes.

# %%
everything = study.finished_results(scale)
overview = study.mean_std(everything)
overview["setting"] = [study.setting({**train.Config().to_dict(), **train.LEGACY, **records[0]["config"]})
                       for records in everything.values()]
overview["epochs"] = [records[0]["config"]["epochs"] for records in everything.values()]
overview["train minutes"] = [np.mean([r["final"]["train_seconds"] for r in records]) / 60
                             for records in everything.values()]
shown = study.formatted(overview)
shown[["setting", "epochs", "train minutes"]] = overview[["setting", "epochs", "train minutes"]].round(1)
display(shown.sort_values("knn_top1", key=lambda c: c.str.split(" ").str[0].astype(float), ascending=False))

# %%
enough = min(study.MIN_SEEDS, len(seeds))  # a claim's seeds (one at the smoke scale, which claims nothing)
seeded = {name: records for name, records in everything.items()
          if len(records) >= enough and not name.startswith("transfer_")}
fig, ax = plt.subplots(figsize=(8, 5))
plots.alignment_uniformity(seeded, ax=ax, title=f"every condition with {enough}+ seeds, {schedule}")
ax.legend(fontsize=6, ncol=2)
fig.tight_layout()

# %% [markdown]
# Each condition with 3 seeds against the baseline of its own setting (the MoCo queue's
# `moco`, the in-batch `simclr_paper`), paired by seed:

# %%
baseline_of = {}
for name, records in seeded.items():
    source = records[0]["config"].get("source", "queue")
    reference = "simclr_paper" if source == "batch" and "simclr_paper" in seeded else "moco"
    if name != reference and records[0]["config"]["epochs"] == epochs:
        baseline_of[name] = reference
all_pairs = list(baseline_of.items())
all_diffs = {pair: study.paired_difference(everything, *pair) for pair in all_pairs}
if all_diffs:
    plots.intervals(list(all_diffs.values()),
                    title=f"kNN top-1 against the baseline of the setting, {schedule}");

# %% [markdown]
# ## The discussion questions, answered from our numbers
#
# Each answer is computed from the runs above and names the notebook that measured it.

# %%
def said(pair, diffs=all_diffs):
    d = diffs.get(pair)
    return "not run at this scale" if d is None else f"{d.text()} ({d.verdict()})"


answers = {
    "Can the hardest 5 % buy compute or accuracy? (this notebook)":
        f"the negatives cost {share} (a queue of 256 against the plain one), and "
        f"keeping the hardest 5 % costs {costs['hardest 5 % of the queue']:.2f}× the plain step; "
        "the hardest "
        f"5 % of a 4× larger bank − the plain queue: {said(mined_pair, mined_diff)} "
        f"at {costs['hardest 5 % of a 4× larger bank']:.2f}× the step cost.",
    "Which negatives are necessary, which sufficient? ([02](02_which_negatives_matter.ipynb))":
        f"only the hardest 5 % − all: {said(('hardest_5pct', 'moco'))}; "
        f"removing the hardest 5 %: {said(('drop_hardest_5pct', 'moco'))}.",
    "Does the 0.1 % threshold carry over to 10 classes? ([02](02_which_negatives_matter.ipynb))":
        f"removing the hardest 0.1 %: {said(('drop_hardest_0.1pct', 'moco'))}; the class-prior analogue, "
        f"the hardest 10 %: {said(('drop_hardest_10pct', 'moco'))}; the same-class oracle: "
        f"{said(('drop_same_class', 'moco'))}.",
    "Is the false-negative problem resolved by debiasing? ([03](03_debiased.ipynb))":
        f"DCL in the papers' setting − its InfoNCE: {said(('debiased_paper', 'simclr_paper'))}; "
        "on the queue: "
        f"{said(('debiased_tau0.1', 'moco'))}.",
    "How to emphasise hard negatives: sampling ([04](04_hard_negative_sampling.ipynb)) or mixing "
    "([05](05_hard_negative_mixing.ipynb))?":
        f"HCL β = 1 in the papers' setting: {said(('hard_beta1_paper', 'simclr_paper'))}; on the queue: "
        f"{said(('hard_beta1.0', 'moco'))}; MoCHi at the paper's ratios: {said(('mochi_paper', 'moco'))}.",
    "What does knowing the labels buy? ([06](06_supervised_contrastive.ipynb))":
        f"SupCon − MoCo: {said(('supcon', 'moco'))}.",
    "The elephant in the room: are negatives needed at all? (this notebook)":
        f"SimSiam − MoCo: {said(('simsiam', 'moco'), positive_diffs)}; BYOL − MoCo: "
        f"{said(('byol', 'moco'), positive_diffs)}.",
    "Is it good for transfer? (this notebook)":
        "on unseen classes, hardest 5 % − all: "
        f"{said(('transfer_hardest_5pct', 'transfer_moco'), transfer_diffs)}; "
        f"oracle − all: {said(('transfer_oracle', 'transfer_moco'), transfer_diffs)}; SimSiam − MoCo: "
        f"{said(('transfer_simsiam', 'transfer_moco'), transfer_diffs)}.",
    "What makes a negative hard, and the anti-correlated pairs? ([07](07_semantic_similarity.ipynb))":
        "read there, from the probe every run embeds: difficulty against three WordNet measures, "
        "with and without same-class negatives, and its consistency over training.",
}
display(Markdown(f"**{schedule}, kNN top-1 differences in points, 95 % t interval over seeds:**\n\n" +
                 "\n".join(f"* **{q}** {a}" for q, a in answers.items())))

# %% [markdown]
# ## What we measured
#
# The claims this notebook makes before measuring, checked on the seeded runs: SimSiam and
# BYOL, with their predictors and their stop-gradient or momentum target, do not collapse as
# the positives-only objective of notebook 00 does (their embeddings keep a spread of at least
# a tenth of the uniform one); and pretraining on five classes teaches the other five
# something (kNN above chance, 20 %, for every method and seed).

# %%
if check_claims:
    for name in positives:
        assert spread.loc[name, "per-dimension std × √d"] > 0.1, f"{name} collapsed"
    assert all(r["final"]["knn_top1"] > 20 for records in moved.values() for r in records)
