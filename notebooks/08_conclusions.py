# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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
# encoder never trained on. In between, one practical question: can the observation that the
# hardest 5 % of the negatives suffice be turned into a cheaper or a better training step?
# Finally the discussion questions, answered one by one from our numbers, each linking the
# notebook that measured it.
#
# **How to read the numbers.** A comparison is a paired difference a − b over the seeds both
# conditions ran (`cl.stats.paired_difference`): kNN top-1 in points with its 95 % Student t
# interval, the linear probe's difference beside it. It earns a word (better, worse) only when
# its interval excludes 0 and rests on at least `cl.stats.MIN_SEEDS` seeds; with fewer seeds
# (the smoke scale) the sentences say that they claim nothing.
#
# Every conclusion holds for the schedule it names: short schedules favour methods that learn
# fast early, and the cpu scale is short.

# %% tags=["parameters"]
scale = "cpu"                 # smoke | cpu | gpu
base = {"epochs": 4}          # the comparison schedule of notebooks 00–07
seeds = [0, 1, 2]             # every claim: 3 seeds, paired 95 % t intervals
# SimSiam and BYOL on our encoder and loop, with their own heads and updates
positives = {"simsiam": {"loss": "simsiam", "source": "none", "head": "mlp_bn_out", "predictor_hidden": 32,
                         "predictor_lr": "fixed"},
             "byol": {"loss": "byol", "source": "none", "head": "mlp_bn", "predictor_hidden": 512,
                      "target_schedule": "cosine"}}
control = {"loss": "positives_only", "head": "mlp_bn_out"}  # collapse control: SimSiam's head, no predictor
transfer = {"train_classes": "5-9", "eval_classes": "0-4"}  # pretrain on 5 classes, evaluate on the other 5
larger_bank = {"queue": 16384, "select": "hardest", "select_fraction": 0.05}  # hardest 5 % of a 4× bank
small_queue = {"queue": 256}  # 16× fewer negatives: what a step on few negatives costs
# 256 keys mined from a 4× bank every 16 steps: nearest to some query, or in most queries' hardest 5 %
mined_nearest = {"queue": 16384, "mined_queue": 256, "mine_every": 16, "mine_rule": "nearest"}
mined_votes = {"queue": 16384, "mined_queue": 256, "mine_every": 16, "mine_rule": "votes"}
mined_random = {"queue": 16384, "mined_queue": 256, "mine_every": 16, "mine_rule": "random"}  # their control
cost_rounds = 6               # interleaved blocks of mine_every steps timed per design (cl.bench.step_costs)
check_claims = True           # assert the claims (off at the smoke scale)

# %% [markdown]
# `notebook.start` checks every parameter above (a bad one stops the notebook with one line
# naming it and its fix) and seeds torch. `plain` is the config of the comparison condition,
# plain MoCo v2 on the queue: the yardstick of every section below.

# %% tags=["plan"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from cl import analysis, bench, controls, negatives, notebook, plots, stats, steps, study, summary, train
from cl.config import Config

this_notebook = notebook.start(globals())
plain = Config.from_dict(base)  # the comparison condition's config
epochs = plain.epochs
schedule = f"at {stats.plural(epochs, 'epoch')}"

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
# with $\mathcal L = \lVert \bar p_1 - \bar z'_2\rVert^2 + \lVert \bar p_2 - \bar z'_1\rVert^2$.
#
# **What of the official recipes is kept**: SimSiam's projector with batch norm after both
# layers (the last without affine parameters, `head: mlp_bn_out`), its bottleneck predictor
# (here 128 → 32 → 128, the paper's 2048 → 512 → 2048 ratio) and its fixed predictor learning
# rate (`predictor_lr: fixed`); BYOL's projector and predictor with batch norm on the hidden
# layer (`head: mlp_bn`, 128 → 512 → 128) and its target momentum raised from τ = 0.99 (our key
# encoder's, `moco_m`) to 1 by a cosine (`target_schedule: cosine`; the paper starts at 0.996
# for its far longer schedules). **What is not**: their optimisers (SimSiam's SGD at
# lr 0.05·B/256, BYOL's LARS at 0.2·B/256 with weight decay 1.5e-6 and no decay on biases and
# batch norm), their wide projectors (2048 and 4096 units) and their schedules (hundreds of
# epochs). The rest, the encoder, augmentation, SGD at lr 0.03, the schedule and the
# evaluation, is the study's, and so is MoCo's head (`mlp`, no batch norm): the comparison
# with MoCo changes the head too.
#
# The whole step, `cl.steps.siamese_step` (the model, `cl.siamese.Siamese`, returns the cosine
# of each prediction with the other view's target; the loss reads it as the positives, with no
# negatives to contrast):

# %%
notebook.show_source(steps.siamese_step)

# %% [markdown]
# Four conditions, every seed: MoCo v2 as the reference, SimSiam, BYOL, and the positives-only
# control on SimSiam's head (`positives_only_bn`), beside the controls of notebook 01 (the
# untrained encoder and the raw pixels). The table gives each condition's final kNN and linear
# top-1 (%), alignment and uniformity (both lower is better) as the mean ± the standard
# deviation over its seeds.

# %% tags=["plan"]
results = study.run_groups([({"moco": {}, **positives, "positives_only_bn": control}, base, seeds)],
                           scale, this_notebook)
results.update(controls.ensure(base, seeds, scale, this_notebook))
display(stats.formatted(stats.mean_std(results)))

# %% [markdown]
# Whether a method without negatives learns at this schedule is read against the untrained
# encoder first: a method that does not clear it, or clears it no further than the collapsing
# positives-only control, has not answered "are negatives needed?" at this schedule, whatever
# its difference from MoCo.

# %%
learnt = {f"{name} − the untrained encoder": stats.compared(results, name, "control_untrained")
          for name in ("moco", *positives, "positives_only_bn")}
notebook.show(stats.bullets(learnt))

# %% [markdown]
# Collapse leaves a trace the accuracy may hide: the embedding's spread. For unit vectors in
# $d$ dimensions, the standard deviation of each coordinate over images is about $1/\sqrt d$
# when they spread over the sphere and 0 when they collapse to a point (Chen & He 2021), and
# the effective rank counts the directions used (`cl.analysis.collapse_diagnostics`, from each
# run's embedding of the probe set after its last epoch). Batch norm on the projector's output
# already keeps every coordinate spread, so the control is the positives-only objective of
# notebook 00 on SimSiam's own head (`positives_only_bn`): what the predictor and the
# stop-gradient or target add beyond the head is the difference from it.
#
# The effective rank (Roy & Vetterli 2007, `cl.metrics.effective_rank`) of the centred
# embeddings $Z$ of the probe set, with singular values $\sigma_i$, is
#
# $$\operatorname{erank}(Z) = \exp\Big(-\sum_i p_i \log p_i\Big), \qquad p_i = \sigma_i / \sum_j \sigma_j:$$
#
# $d$ when every direction carries the same variance, 1 when the embedding lies on a line, and
# 0 when it collapses to a point. The table below is the mean over seeds of each diagnostic.

# %%
diagnostics = {name: analysis.collapse_diagnostics([study.run_dir(scale, r["run"]) for r in records], records)
               for name, records in results.items() if not controls.is_control(name)}
display(pd.DataFrame({name: d.mean() for name, d in diagnostics.items()}).T.round(3))

# %% [markdown]
# The same seed's effective rank of SimSiam and of BYOL minus that of the control
# (`cl.analysis.diagnostic_difference`, paired by seed), worded by its interval; then each
# method against MoCo in kNN and linear top-1, which says what dropping the negatives costs or
# buys in accuracy on this schedule.

# %%
rank_gain = {name: analysis.diagnostic_difference(diagnostics, name, "positives_only_bn")
             for name in positives}
beyond_control = {name: gain.words("more directions than the control", "fewer directions than the control")
                  for name, gain in rank_gain.items()}
display(pd.Series(beyond_control, name=f"effective rank − positives-only control, {schedule}").to_frame())
display(stats.differences(results, [(name, "moco") for name in [*positives, "positives_only_bn"]]
                          + [(name, "positives_only_bn") for name in positives]))

# %% [markdown]
# ## Transfer: pretrain on five classes, evaluate on the other five
#
# Does what the negatives teach carry over to another task? A negative that is hard because it
# shares features with the query's class pushes the encoder towards the details that tell the
# pretraining classes apart; whether those details serve classes it never saw is an open
# question, and this section measures it rather than assumes it. We pretrain on Fashion-MNIST's
# classes 5–9 (sandal, shirt, sneaker, bag, ankle boot) and evaluate kNN and the linear probe on
# classes 0–4 (T-shirt, trouser, pullover, dress, coat), which the encoder never saw, for the
# baseline, the hardest-5 % subset (notebook 02), the same-class oracle (notebook 02; it only
# ever removes negatives of the pretraining classes), and one positives-only method. Half the
# images means twice the epochs for the **same number of steps** as the full-data runs. The
# kNN bank and the linear probe's training set are the training images of the evaluated
# classes (`cl.train.Trainer.bank_set`), the test images of those classes the test set.

# %% tags=["plan"]
transfer_base = {**base, **transfer, "epochs": 2 * epochs}
transfer_schedule = (f"{stats.plural(2 * epochs, 'epoch')} on classes {transfer['train_classes']} "
                     f"(the same steps)")
transfer_conditions = {"transfer59_moco": {},
                       "transfer59_hardest_5pct": {"select": "hardest", "select_fraction": 0.05},
                       "transfer59_oracle": {"select": "drop_same_class"},
                       "transfer59_simsiam": positives["simsiam"]}
moved = study.run_groups([(transfer_conditions, transfer_base, seeds)], scale, this_notebook)
display(stats.formatted(stats.mean_std(moved)))

# %% [markdown]
# The bar to clear is the same encoder untrained, and the raw pixels: the controls of notebook 01
# on the transfer split (`controls.ensure` with the transfer config: that seed's random
# initialisation and no step taken, evaluated exactly as the trained runs are, on the unseen
# classes). Their kNN and linear top-1 (%), the mean ± the standard deviation over the seeds:

# %% tags=["plan"]
bars = controls.ensure(transfer_base, seeds, scale, this_notebook, suffix="_transfer")
display(stats.formatted(stats.mean_std(bars)))
moved.update(bars)
untrained = controls.condition("untrained", "_transfer")

# %% [markdown]
# Each method's kNN top-1 minus the untrained encoder's on the same seed, then the methods
# against the baseline, and in one sentence (`cl.stats.clearing`) which clear the bar and which
# differences between them are resolved.

# %%
gains = {name: stats.paired_difference(moved, name, untrained).interval for name in transfer_conditions}
over_untrained = {name: gain.words("above the untrained encoder", "below the untrained encoder")
                  for name, gain in gains.items()}
display(pd.Series(over_untrained, name=f"kNN top-1 − untrained, {transfer_schedule}").to_frame())
transfer_pairs = [stats.paired_difference(moved, name, "transfer59_moco")
                  for name in transfer_conditions if name != "transfer59_moco"]
display(stats.differences(moved, [(d.a, d.b) for d in transfer_pairs]))
bar = stats.mean_std(bars).loc[untrained, "knn_top1"]
notebook.show(f"**{transfer_schedule}:** " + stats.clearing(
    gains, transfer_pairs, "the untrained encoder on the unseen classes", bar))

# %% [markdown]
# ## Can "the hardest 5 % suffice" buy compute or accuracy?
#
# Cai et al. (2020) find that the hardest 5 % of the negatives suffice for nearly full
# accuracy, and notebook 02 tests it on our queue. Keeping them saves nothing by
# itself: ranking the queue needs every similarity, and the step still contrasts with a full
# row. The designs below (sizes as the parameters cell sets them at the cpu scale) are each
# timed against the plain step in interleaved blocks of 16 steps, so that a mined queue's
# refill counts once a block (`cl.bench.step_costs`, also reported by `make bench`), and
# trained with the same seeds:
#
# * **mined queues** (`mined_nearest`, `mined_votes`; `cl.moco.MoCo.mine`): the queue grows into
#   a bank of 16,384 older keys, and every 16 steps 256 bank keys are copied into a small queue,
#   the only negatives the loss sees until the next refill. Which 256
#   (`cl.negatives.mining_scores`): the keys nearest to some query of the batch,
#   $\max_i q_i\cdot k$ (each query's very hardest), or the keys that the most queries count
#   among their own hardest 5 % of the bank (the share Cai et al. find sufficient; every query
#   of the next 16 steps shares them). A step contrasts with 256 keys and mines
#   16,384 / 16 = 1,024 similarities on average: hard candidates from a large, older pool for
#   about a third of the plain queue's similarity work;
# * **the same queue filled at random** (`mined_random`): 256 bank keys drawn at random every 16
#   steps, the control of the mined queues: the same number of keys, the same age, the same
#   refill period and mining cost, chosen without regard to difficulty. Mined − random is what
#   choosing by difficulty adds, **at equal step cost**;
# * **the hardest 5 % of a 4× larger bank** (`larger_bank`): the accuracy side, 4× more (and
#   older) candidates for the same share, at a higher step cost; set against the plain queue and
#   against notebook 02's hardest 5 % of the plain queue;
# * two references that use no mining: **a small queue** (`small_queue`, MoCo with 256 keys, the
#   previous batch's, fresh every step): 16× fewer similarities than the plain 4096, so the gap
#   to the plain step bounds what any design on 256 negatives can save; and notebook 02's
#   **hardest 5 % of the plain queue** (`hardest_5pct`).
#
# First, how many keys "the hardest 5 %" keeps of the plain queue and of the larger bank
# (`cl.negatives.kept_count`), and the designs grouped by whether they choose by difficulty:

# %% tags=["plan"]
kept = {k: negatives.kept_count(k, "hardest", 0.05) for k in (plain.queue, larger_bank["queue"])}
print(f"the hardest 5 %: {kept[plain.queue]} of {plain.queue} keys, "
      f"{kept[larger_bank['queue']]} of {larger_bank['queue']}")
mined_rules = {"mined_nearest": mined_nearest, "mined_votes": mined_votes}
mining = {**mined_rules, "larger_bank_hardest_5pct": larger_bank}  # the designs that use difficulty
references = {"mined_random": mined_random, "small_queue": small_queue,
              "hardest_5pct": {"select": "hardest", "select_fraction": 0.05}}
designs = {**mining, **references}

# %% [markdown]
# The timing: one trainer per design and one for the plain step, on a fixed subset of the
# training data (the runs' device, no probe set), each taking a block of `mine_every` steps in
# turn, `cost_rounds` times; a design's cost is the mean of its per-round time ratios to the
# plain step, with the 95 % t interval over rounds (`cl.stats.Interval`). Below 1 is cheaper.

# %%
timed = {"train_subset": 8192, "test_subset": 256, "probe": 0}  # the timing's data, on the runs' device
config = lambda overrides: Config.from_dict({**base, **overrides, **timed})
block = mined_nearest["mine_every"]
costs = bench.step_costs(train.Trainer(config({})),
                         {name: train.Trainer(config(overrides)) for name, overrides in designs.items()},
                         rounds=cost_rounds, steps=block)
blocks = f"{stats.plural(cost_rounds, 'interleaved block')} of {block} steps"
display(pd.DataFrame.from_dict({name: vars(cost) for name, cost in costs.items()}, orient="index")
        [["mean", "low", "high"]].round(3).rename_axis(f"step time / plain step: {blocks}, 95 % t interval"))

# %% [markdown]
# The small queue contrasts with the fewest keys and mines nothing, so the share of a step it
# saves is what the negatives cost here at least (its 256 keys still cost something), and the
# most any design on 256 negatives can save; `cl.stats.saved_share` words it from the cost
# interval (a share only when the interval lies below 1):

# %%
share = stats.saved_share(costs["small_queue"])
notebook.show(f"**What a step's negatives cost** ({blocks}): {share}")

# %% [markdown]
# Now every design trained with every seed, beside the plain queue: the final metrics, then
# the paired differences that matter: each design on few negatives against the plain queue,
# the mined queues against their randomly filled control, the random control against the small
# queue, and the larger bank against the plain queue and against the hardest 5 % of the plain
# queue.

# %% tags=["plan"]
leveraged = study.run_groups([({"moco": {}, **designs}, base, seeds)], scale, this_notebook)
display(stats.formatted(stats.mean_std(leveraged)))
display(stats.differences(leveraged, [
    *[(name, "moco") for name in ("small_queue", "mined_random", *mined_rules)],
    *[(name, "mined_random") for name in mined_rules], ("mined_random", "small_queue"),
    ("larger_bank_hardest_5pct", "moco"), ("larger_bank_hardest_5pct", "hardest_5pct")]))

# %% [markdown]
# What the loss contrasts with, in each run's last step: the share of its negatives that are of
# the query's own class (false negatives), from each run's difficulty statistics
# (`cl.negatives.difficulty_bands`, read by `cl.analysis.same_class_share`), mean over seeds. A
# queue of random images holds about one in ten. Beside it, how uniform each design leaves the
# embedding against the plain queue, paired by seed (the plain queue's own row has no
# difference): the uniformity loss of notebook 00 (Wang & Isola 2020, section 4.1),
#
# $$\mathcal L_{\text{uniform}} = \log \mathbb E_{x \neq y}\, e^{-2\lVert f(x) - f(y)\rVert_2^2},$$
#
# lower is more uniform; a queue with fewer or other negatives may spread the embedding less.

# %%
same_class = {name: np.mean([analysis.same_class_share(r) for r in records])
              for name, records in leveraged.items()}
uniformity = {name: stats.paired_difference(leveraged, name, "moco", metric="uniformity").sentence(digits=3)
              for name in designs}
display(pd.DataFrame({"same-class share, last step": same_class,
                      f"uniformity loss − plain queue, {schedule}": uniformity}).round(3))

# %% [markdown]
# For the mined queues that last step falls some steps after a refill, when the keys were mined
# for an earlier batch. The share that matters is the one **at the refill**, for the queries the
# keys were mined for: the training loop records it at every refill, averaged over the epoch's
# refills (`refill_same_class`). The mined queues and their random control, last epoch, over
# the seeds, against the one in ten of a queue of random images: a mined queue flooded with
# false negatives at its refills would sit far above it.

# %%
refills = {name: [s for s in map(analysis.refill_same_class, leveraged[name]) if s is not None]
           for name in ("mined_random", *mined_rules)}
at_refill = {name: stats.share_interval(shares, 0.1, "a random queue") if shares else "not recorded"
             for name, shares in refills.items()}
notebook.show(stats.bullets({f"{name}, same-class share at the refills": text
                             for name, text in at_refill.items()}))

# %% [markdown]
# The verdicts (`cl.stats.Leverage`) combine the two intervals of each design, its kNN
# difference from the plain queue and its step cost. A design **buys accuracy** when its
# accuracy interval lies above 0; it **saves work** when its cost interval lies below 1 and its
# accuracy interval's lower end lies above `cl.stats.NEARLY_FULL` points (nearly full
# accuracy); otherwise it **helps neither**.

# %%
leverages = {name: stats.Leverage(stats.paired_difference(leveraged, name, "moco"), costs[name])
             for name in designs}
display(pd.Series({name: lever.sentence() for name, lever in leverages.items()},
                  name=f"kNN top-1 − plain queue, {schedule}").to_frame())

# %% [markdown]
# What choosing by difficulty adds: the mined queues against the randomly filled queue. The
# three share the bank, the refill period and the number of keys, and each refill computes the
# batch's similarities to the whole bank whatever the rule, so their steps do about the same
# work (their measured costs come first); a difference in accuracy between them is then the
# choice of keys. Last, which designs help, with and without difficulty (`cl.stats.helping`).

# %%
notebook.show(f"**{schedule}:**\n\n" + stats.bullets({
    "step cost over the plain step": stats.listing(f"{name} {stats.cost_text(costs[name])}"
                                                   for name in ("mined_random", *mined_rules)),
    **{f"{name} − mined_random": stats.compared(leveraged, name, "mined_random") for name in mined_rules},
    "designs that use difficulty": stats.helping({name: leverages[name] for name in mining}, "them"),
    "references without difficulty": stats.helping({name: leverages[name] for name in references}, "them")}))

# %% [markdown]
# ## Every method side by side
#
# Every finished run of this scale, grouped by condition (`cl.analysis.overview`): mean ± std
# over its seeds (std is empty for one-seed points, which claim nothing), with its setting
# (`cl.summary.setting`: the source of negatives, temperature and optimiser) and the training
# minutes, best kNN top-1 first. Those minutes are each run's own clock while another run
# trained beside it (and, for some runs, while other work shared the machine): a rough cost.
# The step costs measured side by side in interleaved blocks are `make bench`'s and the table
# of the section above.

# %%
everything = summary.finished_results(scale)
display(analysis.overview(everything))

# %% [markdown]
# The alignment–uniformity plane (Wang & Isola 2020) of every condition run with enough seeds
# for a claim (the transfer runs left out: they are evaluated on other classes), one point per
# run. Both axes are lower-is-better, so a better embedding lies towards the lower left; a
# collapsed one sits at the lower right, perfectly aligned and not uniform at all.

# %%
enough = min(stats.MIN_SEEDS, len(seeds))  # a claim's seeds (one at the smoke scale, which claims nothing)
seeded = {name: records for name, records in everything.items()
          if len(records) >= enough and "transfer" not in name}
fig, ax = plt.subplots(figsize=(8, 5))
plots.alignment_uniformity(seeded, ax=ax, title=f"every condition with {enough}+ seeds, {schedule}")
ax.legend(fontsize=6, ncol=2)
fig.tight_layout()

# %% [markdown]
# Each condition against the plain InfoNCE condition of its own setting (`cl.summary.baselines`:
# the same config but for the method's keys, so the same source of negatives, temperature,
# optimiser and schedule), paired by seed. An interval clear of the dashed zero line is a
# resolved difference; grey points rest on too few seeds.

# %%
pairs = [(name, reference) for name, reference in summary.baselines(everything).items()
         if len(everything[name]) >= enough and len(everything[reference]) >= enough]
if pairs:
    plots.intervals([stats.paired_difference(everything, *pair) for pair in pairs],
                    title=f"kNN top-1 against the plain condition of the same setting, {schedule}");

# %% [markdown]
# ## The discussion questions, answered from our numbers
#
# Each answer is computed from the runs above and names the notebook that measured it: kNN
# top-1 differences a − b in points with their 95 % t interval over seeds and the verdict it
# allows, the linear probe's difference beside it (`cl.stats.answer`; a condition this scale
# did not run says so). The schedule is the comparison schedule unless the question names
# another.
#
# First, which negatives matter (notebook 02), and whether the hardest of them can buy compute
# or accuracy (this notebook):

# %%
answers = {"Which negatives are necessary, which sufficient? ([02](02_which_negatives_matter.ipynb))": {
               "only the hardest 5 % − all": ("hardest_5pct", "moco"),
               "removing the hardest 5 %": ("drop_hardest_5pct", "moco")},
           "Does the 0.1 % threshold carry over to 10 classes? ([02](02_which_negatives_matter.ipynb))": {
               "removing the hardest 0.1 %": ("drop_hardest_0.1pct", "moco"),
               "the class-prior analogue, the hardest 10 %": ("drop_hardest_10pct", "moco"),
               "the same-class oracle": ("drop_same_class", "moco")},
           "Can the hardest 5 % buy compute or accuracy? (this notebook)": {
               "what a step's negatives cost": share,
               "keeping the hardest 5 % costs": f"{stats.cost_text(costs['hardest_5pct'])} the plain step",
               **{f"against the plain queue, {name}": leverages[name].sentence()
                  for name in ("small_queue", *mined_rules, "mined_random", "larger_bank_hardest_5pct")}}}
notebook.show(f"**{schedule} unless named:**\n\n" + stats.answers(everything, answers))

# %% [markdown]
# Then the fixes the literature proposes for the negatives. DCL (Chuang et al. 2020) corrects
# the negatives' term of the loss for the share $\tau^+$ of same-class images expected among
# them (notebook 03); HCL (Robinson et al. 2021) weights each negative by $e^{\beta\, q\cdot k}$,
# so that the hard ones count more (notebook 04); MoCHi (Kalantidis et al. 2020) adds
# synthetic negatives mixed from the hardest ones (notebook 05); SupCon (Khosla et al. 2020)
# knows the labels outright and takes every same-class image as a positive (notebook 06).
# "The papers' setting" is the in-batch setting of the DCL and HCL papers' code
# (`paper_setting` of notebooks 03 and 04), compared with plain InfoNCE in that same setting:

# %%
answers = {"Is the false-negative problem resolved by debiasing? ([03](03_debiased.ipynb))": {
               "DCL in the papers' setting − its InfoNCE": ("debiased_paper", "simclr_paper"),
               "on the queue": ("debiased_tau0.1", "moco")},
           "How to emphasise hard negatives: sampling ([04](04_hard_negative_sampling.ipynb)) or mixing "
           "([05](05_hard_negative_mixing.ipynb))?": {
               "HCL β = 1 in the papers' setting": ("hard_beta1_paper", "simclr_paper"),
               "on the queue": ("hard_beta1.0", "moco"),
               "MoCHi at the paper's ratios": ("mochi_paper", "moco")},
           "What does knowing the labels buy? ([06](06_supervised_contrastive.ipynb))": {
               "SupCon − MoCo (another source of negatives, in-batch: notebook 06)": ("supcon", "moco")}}
notebook.show(f"**{schedule} unless named:**\n\n" + stats.answers(everything, answers))

# %% [markdown]
# Last, the two questions of this notebook: are negatives needed at all, and is what they teach
# good for transfer? (What makes a negative hard is answered in
# [notebook 07](07_semantic_similarity.ipynb), from the probe set every run embeds: difficulty
# against three WordNet measures, by class pair and by difficulty band, and its consistency
# over training.)

# %%
answers = {"The elephant in the room: are negatives needed at all? (this notebook)": {
               "MoCo − the untrained encoder": ("moco", "control_untrained"),
               "SimSiam − the untrained encoder": ("simsiam", "control_untrained"),
               "BYOL − the untrained encoder": ("byol", "control_untrained"),
               "SimSiam − MoCo": ("simsiam", "moco"), "BYOL − MoCo": ("byol", "moco"),
               "effective rank over the positives-only control, SimSiam": beyond_control["simsiam"],
               "BYOL": beyond_control["byol"]},
           f"Is it good for transfer? (this notebook, {transfer_schedule})": {
               "on unseen classes, hardest 5 % − all": ("transfer59_hardest_5pct", "transfer59_moco"),
               "oracle − all": ("transfer59_oracle", "transfer59_moco"),
               "SimSiam − MoCo": ("transfer59_simsiam", "transfer59_moco"),
               "MoCo − the untrained encoder": over_untrained["transfer59_moco"]}}
notebook.show(f"**{schedule} unless named:**\n\n" + stats.answers(everything, answers))

# %% [markdown]
# ## What we measured
#
# The claim this notebook makes before measuring, checked on the seeded runs: SimSiam and
# BYOL use more directions of the embedding than the positives-only objective on the same head
# (their predictor and stop-gradient or target do what the head alone does not), that is, the
# interval of their paired effective-rank difference from the control lies above 0. Whether
# pretraining on five classes beats the untrained encoder on the other five is not assumed:
# the transfer section words it from the intervals, whichever way they fall.

# %%
if check_claims and len(seeds) >= stats.MIN_SEEDS:
    for name in positives:
        assert rank_gain[name].low > 0, beyond_control[name]
