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
positives = {                 # SimSiam and BYOL on our encoder and loop, with their own heads and updates
    "simsiam": {"loss": "simsiam", "source": "none", "head": "mlp_bn_out", "predictor_hidden": 32,
                "predictor_lr": "fixed"},
    "byol": {"loss": "byol", "source": "none", "head": "mlp_bn", "predictor_hidden": 512,
             "target_schedule": "cosine"},
}
control = {"loss": "positives_only", "head": "mlp_bn_out"}  # collapse control: SimSiam's head, no predictor
transfer = {"train_classes": "0-4", "eval_classes": "5-9"}  # pretrain on 5 classes, evaluate on the other 5
larger_bank = {"queue": 16384, "select": "hardest", "select_fraction": 0.05}  # hardest 5 % of a 4× bank
small_queue = {"queue": 256}  # 16× fewer negatives: what a step on few negatives costs
# 256 keys mined from a 4× bank every 16 steps: nearest to some query, or in most queries' hardest 5 %
mined_nearest = {"queue": 16384, "mined_queue": 256, "mine_every": 16, "mine_rule": "nearest"}
mined_votes = {"queue": 16384, "mined_queue": 256, "mine_every": 16, "mine_rule": "votes"}
mined_random = {"queue": 16384, "mined_queue": 256, "mine_every": 16, "mine_rule": "random"}  # their control
cost_rounds = 6               # interleaved blocks of mine_every steps timed per design (cl.bench.step_costs)
check_claims = True           # assert the claims (off at the smoke scale)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from cl import analysis, bench, negatives, notebook, plots, study, train

NB = notebook.start(scale=scale, base=base, seeds=seeds, positives=positives, control=control,
                    transfer=transfer, larger_bank=larger_bank, small_queue=small_queue,
                    mined_nearest=mined_nearest, mined_votes=mined_votes, mined_random=mined_random,
                    cost_rounds=cost_rounds,
                    check_claims=check_claims)
plain = train.Config.from_dict(base)  # the comparison condition's config
epochs = plain.epochs
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
# with MoCo changes the head too. `cl.siamese` and `cl.train.siamese_step`:

# %%
plots.source(train.siamese_step)

# %%
results = study.run_groups([({"moco": {}, **positives, "positives_only_bn": control}, base, seeds)],
                           scale, NB)
table = study.mean_std(results)
display(study.formatted(table))

# %% [markdown]
# Collapse leaves a trace the accuracy may hide: the embedding's spread. For unit vectors in
# $d$ dimensions, the standard deviation of each coordinate over images is about $1/\sqrt d$
# when they spread over the sphere and 0 when they collapse to a point (Chen & He 2021), and
# the effective rank counts the directions used (`cl.analysis.collapse_diagnostics`, from each
# run's probe after its last epoch). Batch norm on the projector's output already keeps every
# coordinate spread, so the control is the positives-only objective of notebook 00 on SimSiam's
# own head (`positives_only_bn`): what the predictor and the stop-gradient or target add
# beyond the head is the difference from it.

# %%
diagnostics = {name: analysis.collapse_diagnostics([study.run_dir(scale, r["run"]) for r in records], records)
               for name, records in results.items()}
display(pd.DataFrame({name: d.mean() for name, d in diagnostics.items()}).T.round(3))
beyond_control = {name: study.interval_words(
    (diagnostics[name]["effective rank"] - diagnostics["positives_only_bn"]["effective rank"]).tolist(),
    "more directions than the control", "fewer directions than the control") for name in positives}
display(pd.Series(beyond_control, name=f"effective rank − positives-only control, {schedule}").to_frame())
pairs = [(name, "moco") for name in [*positives, "positives_only_bn"]]
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
# steps** as the full-data runs. The bar to clear is the same encoder untrained, evaluated
# the same way on the same classes.

# %%
transfer_base = {**base, **transfer, "epochs": 2 * epochs}
transfer_schedule = f"{2 * epochs} epochs on classes {transfer['train_classes']} (the same steps)"
transfer_conditions = {"transfer_moco": {},
                       "transfer_hardest_5pct": {"select": "hardest", "select_fraction": 0.05},
                       "transfer_oracle": {"select": "drop_same_class"},
                       "transfer_simsiam": positives["simsiam"]}
moved = study.run_groups([(transfer_conditions, transfer_base, seeds)], scale, NB)
display(study.formatted(study.mean_std(moved)))
untrained = {seed: train.Trainer(train.Config.from_dict({**transfer_base, "seed": seed})).evaluate(final=True)
             for seed in seeds}
print(f"the untrained encoder on classes {transfer['eval_classes']}: kNN top-1 "
      f"{np.mean([u['knn_top1'] for u in untrained.values()]):.2f} %, linear "
      f"{np.mean([u['linear_top1'] for u in untrained.values()]):.2f} % (mean of {len(seeds)} seed(s))")
gain = lambda records: [r["final"]["knn_top1"] - untrained[r["config"]["seed"]]["knn_top1"] for r in records]
over_untrained = {name: study.interval_words(gain(records), "above the untrained encoder",
                                             "below the untrained encoder")
                  for name, records in moved.items()}
display(pd.Series(over_untrained, name=f"kNN top-1 − untrained, {transfer_schedule}").to_frame())
transfer_pairs = [(name, "transfer_moco") for name in transfer_conditions if name != "transfer_moco"]
display(study.differences(moved, transfer_pairs))
above = [name for name, words in over_untrained.items() if words.endswith(": above the untrained encoder")]
apart = [f"{a} − {b}" for a, b in transfer_pairs
         if study.paired_difference(moved, a, b).verdict() in ("better", "worse")]
bar = (f"{', '.join(above)} clear{'s' * (len(above) == 1)} the untrained encoder on the unseen classes"
       if above else "no method is resolved above the untrained encoder on the unseen classes (its own "
       f"kNN top-1 on them: {np.mean([u['knn_top1'] for u in untrained.values()]):.2f} %)")
between = ("; resolved between the methods: " + ", ".join(apart) + "." if apart else
           "; no difference between the methods is resolved either, so this transfer task does not tell "
           "them apart at this budget.")
display(Markdown(f"**{transfer_schedule}:** "
                 + (f"{len(seeds)} seed(s): no claim." if len(seeds) < study.MIN_SEEDS else bar + between)))

# %% [markdown]
# ## Can "the hardest 5 % suffice" buy compute or accuracy?
#
# Notebook 02 found that the hardest 5 % of the queue give nearly full accuracy. Keeping them
# saves nothing by itself: ranking the queue needs every similarity, and the step still
# contrasts with a full row. The designs below (sizes as the parameters cell sets them at the
# cpu scale) are each timed against the plain step in interleaved blocks of 16 steps, so that a
# mined queue's refill counts once a block (`cl.bench.step_costs`, also reported by
# `make bench`), and trained with the same seeds:
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
# A design **saves work** when its step is cheaper (the cost interval below 1) and its accuracy
# is nearly full (the accuracy interval's lower end above −1 point), and **buys accuracy** when
# it is better than the plain queue; the verdicts below are computed from the measurements.

# %%
kept = {k: negatives.kept_count(k, "hardest", 0.05) for k in (4096, larger_bank["queue"])}
print(f"the hardest 5 %: {kept[4096]} of 4096 keys, {kept[larger_bank['queue']]} of {larger_bank['queue']}")
mined_rules = {"mined_nearest": mined_nearest, "mined_votes": mined_votes}
mining = {**mined_rules, "larger_bank_hardest_5pct": larger_bank}  # the designs that use difficulty
references = {"mined_random": mined_random, "small_queue": small_queue,
              "hardest_5pct": {"select": "hardest", "select_fraction": 0.05}}
designs = {**mining, **references}
timed = {"train_subset": 8192, "test_subset": 256, "probe": 0}  # the timing's data, on the runs' device
config = lambda overrides: train.Config.from_dict({**base, **overrides, **timed})
block = mined_nearest["mine_every"]
costs = bench.step_costs(train.Trainer(config({})),
                         {name: train.Trainer(config(overrides)) for name, overrides in designs.items()},
                         rounds=cost_rounds, steps=block)
display(pd.DataFrame(costs, index=["mean", "low", "high"]).T.round(3).rename_axis(
    f"step time / plain step: {cost_rounds} interleaved blocks of {block} steps, 95 % t interval"))
small, fewer = costs["small_queue"], 1 - small_queue["queue"] / plain.queue
share = (f"at least {1 - small.ratio:.1%} [{1 - small.high:.1%}, {1 - small.low:.1%}] of a step"
         if small.high < 1 else f"no share of a step resolved (a {fewer:.0%} smaller queue: "
         f"{small.ratio:.3f} [{small.low:.3f}, {small.high:.3f}]× the plain step)")
print(f"the negatives cost {share} here, {cost_rounds} interleaved blocks of {block} steps")
leveraged = study.run_groups([({"moco": {}, **designs}, base, seeds)], scale, NB)
display(study.formatted(study.mean_std(leveraged)))
display(study.differences(leveraged, [*[(name, "moco") for name in ("small_queue", "mined_random",
                                                                     *mined_rules)],
                                      *[(name, "mined_random") for name in mined_rules],
                                      ("mined_random", "small_queue"),
                                      ("larger_bank_hardest_5pct", "moco"),
                                      ("larger_bank_hardest_5pct", "hardest_5pct")]))

# %% [markdown]
# What the loss contrasts with, in each run's last step: the share of its negatives that are of
# the query's own class (false negatives), from each run's difficulty statistics
# (`cl.negatives.difficulty_bands`), mean over seeds. A queue of random images holds about one
# in ten. For the mined queues that last step falls the number of steps printed below after a
# refill; unless it is 0, their share is that of keys mined for an earlier batch. Beside it,
# how uniform each design leaves the embedding (the uniformity loss of notebook 00, lower is
# more uniform), against the plain queue.

# %%
same_class = {name: np.mean([analysis.same_class_share(r) for r in records])
              for name, records in leveraged.items()}
display(pd.Series(same_class, name="same-class share of the negatives, last step").round(3).to_frame())
steps_per_epoch = len(train.datasets(plain)[0]) // plain.batch_size
last_step = plain.epochs * steps_per_epoch - 1  # counted from 0 as MoCo.steps is: refills where % block == 0
print(f"a run's last step is {last_step % block} steps after a mined queue's last refill "
      f"({plain.epochs} epochs of {steps_per_epoch} steps, a refill every {block})")
uniformity = {name: study.paired_difference(leveraged, name, "moco", metric="uniformity")
              for name in designs}
display(Markdown("**Against the plain queue (same-class share "
                 f"{same_class['moco']:.3f}), {schedule}:** " + "; ".join(
                     f"{name}: same-class share {same_class[name]:.3f}, uniformity loss {d.text(3)} "
                     f"({d.verdict()})" for name, d in uniformity.items())))

# %%
def leverage(name):
    """What a design buys against the plain queue, in words from its interval and its step cost."""
    d, c = study.paired_difference(leveraged, name, "moco"), costs[name]
    cost = f"{c.ratio:.2f}× [{c.low:.2f}, {c.high:.2f}] the plain step"
    if not d.claims:
        return f"{d.text()} at {cost}: {d.verdict()}"
    if d.low > 0:
        return f"buys accuracy: {d.text()} at {cost}"
    if c.high < 1 and d.at_least(-1):
        return (f"saves work: {1 - c.ratio:.1%} [{1 - c.high:.1%}, {1 - c.low:.1%}] of a step at nearly "
                f"full accuracy, {d.text()}")
    return f"helps neither: {d.text()} ({d.verdict()}) at {cost}"


verdicts = {name: leverage(name) for name in designs}
helps = lambda names: [name for name in names if verdicts[name].startswith(("buys", "saves"))]
display(pd.Series(verdicts, name=f"kNN top-1 − plain queue, {schedule}").to_frame())
difficulty = {name: study.paired_difference(leveraged, name, "mined_random") for name in mined_rules}
costs_said = ", ".join(f"{name} {costs[name].ratio:.2f}×" for name in ("mined_random", *mined_rules))
enough = len(seeds) >= study.MIN_SEEDS
display(Markdown(
    f"**{schedule}:** at equal step cost (measured: {costs_said} the plain step), mined − the randomly "
    "filled queue: " + "; ".join(f"{name} {d.text()} ({d.verdict()})" for name, d in difficulty.items())
    + ". "
    + (f"{len(seeds)} seed(s): no claim." if not enough else
       f"Of the designs that use difficulty, {', '.join(helps(mining))} "
       f"help{'s' * (len(helps(mining)) == 1)}."
       if helps(mining) else "None of the designs that use difficulty helps: none is both cheaper and nearly "
       "as accurate, and none is more accurate than the plain queue.")
    + ("" if not enough else f" Of the references without difficulty, {', '.join(helps(references))} "
       f"help{'s' * (len(helps(references)) == 1)}." if helps(references) else
       " No reference without difficulty helps either.")))

# %% [markdown]
# ## Every method side by side
#
# Every finished run of this scale, grouped by condition: mean ± std over its seeds (std is
# empty for one-seed points, which claim nothing), with its setting and the training minutes.
# Those minutes are each run's own clock while another run trained beside it (and, for some
# runs, while other work shared the machine): a rough cost. The step costs measured side by
# side in interleaved blocks are `make bench`'s and the table of the section above.

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
# Each condition against the plain InfoNCE condition of its own setting (`cl.study.baselines`:
# the same config but for the method's keys, so the same source of negatives, temperature,
# optimiser and schedule), paired by seed:

# %%
pairs = [(name, reference) for name, reference in study.baselines(everything).items()
         if len(everything[name]) >= enough and len(everything[reference]) >= enough]
if pairs:
    plots.intervals([study.paired_difference(everything, *pair) for pair in pairs],
                    title=f"kNN top-1 against the plain condition of the same setting, {schedule}");

# %% [markdown]
# ## The discussion questions, answered from our numbers
#
# Each answer is computed from the runs above and names the notebook that measured it.

# %%
def said(a, b):
    if a not in everything or b not in everything:
        return "not run at this scale"
    d = study.paired_difference(everything, a, b)
    return f"{d.text()} ({d.verdict()})"


answers = {
    "Which negatives are necessary, which sufficient? ([02](02_which_negatives_matter.ipynb))":
        f"only the hardest 5 % − all: {said('hardest_5pct', 'moco')}; "
        f"removing the hardest 5 %: {said('drop_hardest_5pct', 'moco')}.",
    "Can the hardest 5 % buy compute or accuracy? (this notebook)":
        f"the negatives cost {share}; keeping the hardest 5 % costs "
        f"{costs['hardest_5pct'].ratio:.2f}× the plain step; against the plain queue, the small queue "
        f"{verdicts['small_queue']}; the queue mined by nearest keys {verdicts['mined_nearest']}; "
        f"by votes {verdicts['mined_votes']}; filled at random (their control) {verdicts['mined_random']}; "
        f"the hardest 5 % of a 4× larger bank {verdicts['larger_bank_hardest_5pct']}.",
    "Does the 0.1 % threshold carry over to 10 classes? ([02](02_which_negatives_matter.ipynb))":
        f"removing the hardest 0.1 %: {said('drop_hardest_0.1pct', 'moco')}; the class-prior analogue, "
        f"the hardest 10 %: {said('drop_hardest_10pct', 'moco')}; the same-class oracle: "
        f"{said('drop_same_class', 'moco')}.",
    "Is the false-negative problem resolved by debiasing? ([03](03_debiased.ipynb))":
        f"DCL in the papers' setting − its InfoNCE: {said('debiased_paper', 'simclr_paper')}; "
        f"on the queue: {said('debiased_tau0.1', 'moco')}.",
    "How to emphasise hard negatives: sampling ([04](04_hard_negative_sampling.ipynb)) or mixing "
    "([05](05_hard_negative_mixing.ipynb))?":
        f"HCL β = 1 in the papers' setting: {said('hard_beta1_paper', 'simclr_paper')}; on the queue: "
        f"{said('hard_beta1.0', 'moco')}; MoCHi at the paper's ratios: {said('mochi_paper', 'moco')}.",
    "What does knowing the labels buy? ([06](06_supervised_contrastive.ipynb))":
        f"SupCon − MoCo (another source of negatives, in-batch: notebook 06): {said('supcon', 'moco')}.",
    "The elephant in the room: are negatives needed at all? (this notebook)":
        f"SimSiam − MoCo: {said('simsiam', 'moco')}; BYOL − MoCo: {said('byol', 'moco')}; their effective "
        f"rank against the positives-only control on the same head: SimSiam {beyond_control['simsiam']}, "
        f"BYOL {beyond_control['byol']}.",
    f"Is it good for transfer? (this notebook, {transfer_schedule})":
        f"on unseen classes, hardest 5 % − all: {said('transfer_hardest_5pct', 'transfer_moco')}; "
        f"oracle − all: {said('transfer_oracle', 'transfer_moco')}; SimSiam − MoCo: "
        f"{said('transfer_simsiam', 'transfer_moco')}; MoCo − the untrained encoder: "
        f"{over_untrained['transfer_moco']}.",
    "What makes a negative hard? ([07](07_semantic_similarity.ipynb))":
        "read there, from the probe every run embeds: difficulty against three WordNet measures, "
        "by class pair and by difficulty band, and its consistency over training.",
}
display(Markdown(f"**{schedule} unless named, kNN top-1 differences in points, "
                 "95 % t interval over seeds:**\n\n"
                 + "\n".join(f"* **{q}** {a}" for q, a in answers.items())))

# %% [markdown]
# ## What we measured
#
# The claim this notebook makes before measuring, checked on the seeded runs: SimSiam and
# BYOL use more directions of the embedding than the positives-only objective on the same head
# (their predictor and stop-gradient or target do what the head alone does not). Whether
# pretraining on five classes beats the untrained encoder on the other five is not assumed:
# the transfer section words it from the intervals, whichever way they fall.

# %%
if check_claims and len(seeds) >= study.MIN_SEEDS:
    for name in positives:
        difference = diagnostics[name]["effective rank"] - diagnostics["positives_only_bn"]["effective rank"]
        assert study.t_interval(difference.tolist())[1] > 0, beyond_control[name]
