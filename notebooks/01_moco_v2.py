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
# # 1 · MoCo v2: the framework under study
#
# Cai et al. study negatives inside **MoCo v2** (Chen, Fan,
# Girshick, He 2020), so this is the baseline every later notebook changes one piece of.
#
# * a **query encoder** $f_q$ (backbone + 2-layer MLP head) trained by gradient;
# * a **key encoder** $f_k$, the exponential moving average of $f_q$:
#   $\theta_k \leftarrow m\,\theta_k + (1-m)\,\theta_q$, with no gradient;
# * a FIFO **queue** of the last $K$ keys, which serve as the negatives. Keys of the current
#   batch are enqueued *after* the loss, so a query never meets its own key as a negative.
#
# Our queue also remembers each key's **label and data-set index**. Training never looks at
# them; the same-class oracle of notebook 02 and the WordNet analysis of notebook 07 do.
#
# The parameters come first (`cl.study` sets them per scale); the cell after them imports the
# package and checks them.

# %% tags=["parameters"]
scale = "cpu"                  # smoke | cpu | gpu
base = {"epochs": 4}           # cl.config.Config overrides: the comparison schedule of notebooks 00–06
                               # (seeded checks)
check_claims = True            # assert the claims about the trained model (off at the smoke scale)
knn_target = 85.0              # the project's goal for the cpu-scale kNN top-1 (%), reported, not assumed
baseline = {"epochs": 25}      # the one long baseline run: base with these changes
seeds = [0, 1, 2]              # seeds of those checks (paired 95 % intervals)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from cl import analysis, augment, metrics, notebook, plots, stats, study, train
from cl.config import Config
from cl.moco import MoCo

this_notebook = notebook.start(globals())

# %% [markdown]
# ## The method in code
#
# `cl.moco.MoCo` is the whole method in one short class, as in the official `builder.py`.
# The momentum update, applied once per step before the keys are computed:

# %%
notebook.show_source(MoCo.momentum_update)

# %% [markdown]
# With $m$ close to 1 the key encoder changes slowly, so the keys in the queue, computed at
# different steps, stay comparable with each other and with the current keys (He et al.
# 2020, §3.2): that consistency is what lets the queue hold far more negatives than a batch.
#
# The step: queries with gradient, keys without (on a shuffled batch, so that BN statistics
# cannot leak which key belongs to which query), and the two similarity arrays of the loss
# contract, `pos` (B,) and `neg` (B, K). After the loss, `enqueue` overwrites the oldest keys
# with this step's, with their labels and data-set indices:

# %%
notebook.show_source(MoCo.forward)
notebook.show_source(MoCo.enqueue)

# %% [markdown]
# Two branches of `forward` are off in this recipe: `symmetric` (the CIFAR demo's option of
# also contrasting the views the other way round; the tuning table below says why it is off)
# and `mined` (notebook 08's queue of mined negatives). What is left is MoCo v2's step: one
# momentum update, one query batch, one key batch, and the queue as the negatives.

# %% [markdown]
# ## Evaluation protocol, and the raw-pixel baseline
#
# **kNN monitor** (InstDisc, as in the MoCo CIFAR demo): embed the training set with the
# backbone, and classify each test image by a vote of its $k=200$ most cosine-similar
# training images, each weighted by $e^{s/0.1}$. **Linear probe**: a linear classifier
# trained on the frozen backbone features. We report final-epoch numbers.
#
# The linear classifier (`cl.metrics.linear_probe`) is trained with Adam, without
# augmentation, on features standardised by the training set's statistics; the standardising
# plays the role of the large learning rate of MoCo's own linear protocol. The kNN needs no
# training at all, which is why every run reports it after each epoch, on a monitor bank of
# (at most) `monitor_bank` training images, and on the whole training set at the end.
#
# The same kNN applied to raw pixels is the bar a representation must clear: anything
# below it has learnt less than the identity map. The data sets first, exactly as the long
# run below sees them (`cl.train.datasets` applies the scale's subsets):

# %%
cfg = Config.from_dict({**base, **baseline})
train_set, test_set = train.datasets(cfg)  # as the run sees them
classes = train_set.classes

# %% [markdown]
# The raw-pixel representation of an image is the vector of its pixels in $[0, 1]$, as a unit
# vector, so that the kNN's cosine similarity compares patterns rather than overall
# brightness. Every pixel is non-negative, so every pair of images has a positive similarity,
# much of it the average garment they all share; a second version subtracts the mean
# training image first, which leaves what distinguishes them.

# %%
def raw_pixels(images, centre=0.0):
    """Each image as the unit vector of its pixels in [0, 1], ``centre`` subtracted first."""
    return torch.nn.functional.normalize(images.flatten(1).float() / 255 - centre, dim=1)


mean_image = (train_set.images.flatten(1).float() / 255).mean(0)

# %% [markdown]
# Both through the kNN monitor, with the run's own $k$ and vote temperature:

# %%
knn = lambda bank, test: metrics.knn_accuracy(bank, train_set.labels, test, test_set.labels, len(classes),
                                              cfg.knn_k, cfg.knn_t)
centres = {"raw pixels": 0.0, "raw pixels, mean-centred": mean_image}
raw = {name: knn(raw_pixels(train_set.images, centre), raw_pixels(test_set.images, centre))
       for name, centre in centres.items()}
display(pd.Series(raw, name="kNN top-1 (%)").round(2).to_frame())
assert 10 < min(raw.values()) and max(raw.values()) < 100

# %% [markdown]
# ## Training the baseline
#
# The cpu-scale recipe is `cl.config.Config`'s defaults: a small 4-block CNN (`small_cnn`,
# laid out channels-last, which suits convolutions on CPU and GPU) under bf16 autocast, a
# 2-layer MLP head, a queue of $K$ keys, key-encoder momentum $m$, temperature $t$, SGD with
# momentum and a cosine learning-rate schedule. The next cell prints the values from the
# config itself, at this scale.

# %%
print(f"{cfg.arch}, head {cfg.head} to {cfg.dim}-d, lr {cfg.lr} ({cfg.optimizer}, {cfg.lr_schedule}), "
      f"momentum {cfg.sgd_momentum}, weight decay {cfg.weight_decay}, batch {cfg.batch_size}, "
      f"crops of {cfg.crop_min:.0%}–100 % of the image, K {cfg.queue}, m {cfg.moco_m}, t {cfg.t}, "
      f"{cfg.epochs} epochs, precision {cfg.precision}")

# %% [markdown]
# The run is checkpointed every epoch; re-running the next cell reuses a finished run and
# resumes an interrupted one. It trains alone on the machine (the seeded runs further down
# train two at a time, `cl.pool`), so that its training time is the recipe's own. The
# figure: the loss, the kNN top-1 on the monitor bank, and the two geometry numbers of
# notebook 00, epoch by epoch.

# %%
long_run = train.run({**base, **baseline}, study.run_dir(scale, "01_moco_v2"), notebook=this_notebook,
                     method="moco_v2")
plots.curves({"MoCo v2": long_run}, keys=("loss", "knn_top1", "alignment", "uniformity"),
             title="MoCo v2 on Fashion-MNIST (kNN on the monitor bank)");

# %% [markdown]
# Its final numbers beside the raw-pixel bar (the kNN here on the whole training set as the
# bank), and how long it trained:

# %%
final = long_run["final"]
results = pd.DataFrame({"kNN top-1 (%)": {**raw, "MoCo v2": final["knn_top1"]},
                        "linear top-1 (%)": {"MoCo v2": final["linear_top1"]}})
display(results.round(2))
print(f"training: {final['train_seconds'] / 60:.1f} min at {final['images_per_second']:.0f} images/s "
      f"on {long_run['config']['device']} ({torch.get_num_threads()} threads)")

# %% [markdown]
# ## What the embedding looks like
#
# The first two principal components of the test set's backbone features, against the same
# picture for the mean-centred raw pixels (`cl.plots.embedding_2d`, at most 3,000 points
# each). Look for which classes form separate clouds and which share one: two classes that
# overlap here are close in the space the kNN votes in.

# %%
trained, _ = train.load_model(study.run_dir(scale, "01_moco_v2"))
prepare = lambda x: augment.to_float(x, trained.aug_cfg)
features = metrics.embed(trained.encoder.features, test_set.images, prepare)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
centred = raw_pixels(test_set.images, mean_image)
plots.embedding_2d(centred, test_set.labels, classes, "raw pixels, mean-centred", ax=axes[0])
plots.embedding_2d(features, test_set.labels, classes, "MoCo v2 backbone features", ax=axes[1])
fig.tight_layout()

# %% [markdown]
# Two principal components hide most of a 2-D picture's distances; the kNN vote sees all of
# them. Its mistakes, class by class: the next cell repeats the run's final kNN evaluation
# (the whole training set as the bank, the run's $k$ and $t$), counts its answers in a
# confusion matrix (`cl.analysis.confusion_matrix`; row = true class, column = predicted)
# and draws each row in % of its class (`cl.plots.confusion`). The diagonal is each
# class's recall; a row's other cells say which class took its errors.

# %%
bank = metrics.embed(trained.encoder.features, train_set.images, prepare)
pred = metrics.knn_predict(features, bank, train_set.labels, len(classes), cfg.knn_k, cfg.knn_t)
confusion = analysis.confusion_matrix(test_set.labels, pred, len(classes))
plots.confusion(confusion, classes, title="kNN on the MoCo v2 backbone features");

# %% [markdown]
# The diagonal as a table, the classes it serves worst named under it, and a check that this
# is the run's own classifier: its accuracy must match the run's final kNN top-1 within half
# a point.

# %%
recall = pd.Series((confusion.diag() / confusion.sum(1).clamp(min=1) * 100).tolist(), index=classes)
display(recall.round(1).to_frame("kNN recall (%)").T)
notebook.show(f"Lowest kNN recall: {stats.listing(recall.nsmallest(4).index)}.")
accuracy = (pred == test_set.labels).float().mean().item() * 100
assert abs(accuracy - final["knn_top1"]) < 0.5, "the same classifier as the run's final evaluation"

# %% [markdown]
# Classes that share a cloud in the picture above are the ones a kNN vote confuses. They come
# back in notebook 02, which looks at a query's hardest negatives in the queue: of its own
# class, or of a class that looks like it (notebook 07 measures how alike two classes are).
#
# ## What we tried
#
# The recipe comes from a tuning sweep on a two-core CPU: each row is one 5-epoch run of
# `python -m cl.train` with `{epochs: 5, crop_min: 0.2, lr: 0.06}` plus the change, trained in
# float32, with the final kNN on the full training bank. These runs are not among the
# study's run folders and the notebook does not recompute them; the table is their record.
#
# | change from the MoCo CIFAR demo's recipe (5 epochs each) | kNN top-1 | linear top-1 | step images/s |
# | --- | --- | --- | --- |
# | crop 0.2–1, lr 0.06, t 0.1, K 4096, m 0.99 (the demo's values) | 80.39 | 85.74 | 3,200 |
# | lr 0.2 | 77.01 | 83.58 | 2,600 |
# | t 0.2 | 79.76 | 85.64 | 2,800 |
# | crop 0.4–1 | 80.63 | 86.28 | 3,100 |
# | crop 0.6–1 | 80.64 | 85.73 | 2,700 |
# | **crop 0.4–1, lr 0.03 (chosen)** | **81.19** | **86.66** | 2,500 |
# | crop 0.4–1, K 1024 | 81.22 | 86.14 | 2,800 |
# | split BN, 8 groups | 81.38 | 86.39 | 1,600 |
# | symmetric loss | 78.90 | 85.63 | 1,400 |
#
# Split BN and the symmetric loss gain (or lose) little per epoch at about twice the cost per
# step, so under a fixed time budget the plain step wins. Each images/s entry is a single run
# on a machine whose speed varies from run to run, so only the twofold gaps in that column
# carry information. The trainer also asks glibc to keep freed memory for reuse
# (`cl.system.keep_freed_memory`), so that a step does not page-fault its activations back
# in from the operating system every time; `make bench` times the step.
#
# ## bf16, and the claim against raw pixels, with seeds
#
# The encoder computes under bf16 autocast (`precision: bf16`, fast on processors with native
# bf16 arithmetic); the embeddings return to float32 before normalisation, so similarities,
# selection and losses never tie at bf16's resolution. It is kept only if the accuracy holds:
# the comparison schedule (`base`) with and without it, paired by seed.

# %%
checks = study.run_conditions({"moco": {}, "moco_fp32": {"precision": "fp32"}}, base, seeds, scale,
                              this_notebook)
precision = {m: stats.paired_difference(checks, "moco", "moco_fp32", m) for m in ("knn_top1", "linear_top1")}
display(pd.DataFrame({"bf16 − fp32 (points)": {m: d.sentence() for m, d in precision.items()}}))

# %% [markdown]
# The speed of the two precisions, as the ratio of their whole runs' training images/s per
# seed. Whole runs may share the processor with another run (`cl.pool`), so this ratio is
# only indicative; `make bench` times the step itself.

# %%
speed = stats.t_interval([r["final"]["images_per_second"] / f["final"]["images_per_second"]
                          for r, f in zip(checks["moco"], checks["moco_fp32"])])
notebook.show(f"bf16/fp32 training images/s, mean over {stats.plural(speed.n, 'seed')}: {speed.mean:.2f}×")

# %% [markdown]
# The same runs carry this notebook's claim with seeds. The long baseline above is **one
# seed** and claims nothing by itself; the claim that MoCo v2 beats raw pixels is tested on
# the comparison schedule's seeds: per seed, MoCo v2's kNN top-1 minus the better of the two
# raw-pixel numbers, with its 95 % t interval.

# %%
best_raw = max(raw.values())
vs_raw = stats.t_interval([r["final"]["knn_top1"] - best_raw for r in checks["moco"]])
raw_words = vs_raw.words("above the raw pixels", "below the raw pixels", digits=2)
notebook.show(f"MoCo v2 at {stats.plural(Config.from_dict(base).epochs, 'epoch')} − best raw-pixel kNN "
              f"(points): {raw_words}")

# %% [markdown]
# ## What we measured
#
# The claim, checked below on the seeded runs: bf16 keeps the accuracy ("nearly the same":
# the interval of bf16 − fp32 above −1 point, in kNN and in the linear probe). Against the
# raw pixels the word comes from the interval at the comparison schedule; the one-seed long
# run is reported beside it and claims nothing. The project's goal, `knn_target` % kNN within
# ten minutes (600 s) of training on two cores, is reported, not assumed.

# %%
budget = 600  # seconds of training: the project's goal
notebook.show(stats.bullets({
    "bf16 − fp32, kNN points": precision["knn_top1"].sentence(precision["linear_top1"]),
    "MoCo v2 − best raw-pixel kNN, points": raw_words,
    f"the long run's kNN top-1 ({stats.plural(cfg.epochs, 'epoch')}, one seed)":
        stats.against_goal(final["knn_top1"], knn_target, " %"),
    "best raw-pixel kNN top-1": f"{best_raw:.2f} %",
    "its training time": stats.against_goal(final["train_seconds"], budget, " s", 0, lower_is_better=True),
}))
if check_claims:
    assert (precision["knn_top1"].at_least(-1)
            and precision["linear_top1"].at_least(-1)), "bf16 must keep the accuracy"
