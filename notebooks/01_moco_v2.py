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

# %% tags=["parameters"]
scale = "cpu"                  # smoke | cpu | gpu
base = {"epochs": 4}           # cl.train.Config overrides: the comparison schedule of notebooks 00–06
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

from cl import augment, metrics, notebook, plots, study, train
from cl.moco import MoCo
from cl.plots import source

NB = notebook.start(scale=scale, base=base, check_claims=check_claims, knn_target=knn_target,
                    baseline=baseline, seeds=seeds)


# %% [markdown]
# ## The method in code
#
# `cl.moco.MoCo` is the whole method in one short class, as in the official `builder.py`.
# The momentum update, applied once per step before the keys are computed:

# %%
source(MoCo.momentum_update)

# %% [markdown]
# The step: queries with gradient, keys without (on a shuffled batch, so that BN statistics
# cannot leak which key belongs to which query), and the two similarity arrays of the loss
# contract, `pos` (B,) and `neg` (B, K):

# %%
source(MoCo.forward)
source(MoCo.enqueue)

# %% [markdown]
# ## Evaluation protocol, and the raw-pixel baseline
#
# **kNN monitor** (InstDisc, as in the MoCo CIFAR demo): embed the training set with the
# backbone, and classify each test image by a vote of its $k=200$ most cosine-similar
# training images, each weighted by $e^{s/0.1}$. **Linear probe**: a linear classifier
# trained on the frozen backbone features. We report final-epoch numbers.
#
# The same kNN applied to raw pixels is the bar a representation must clear: anything
# below it has learnt less than the identity map.

# %%
cfg = train.Config.from_dict({**base, **baseline})
train_set, test_set = train.datasets(cfg)  # as the run sees them
classes = train_set.classes


def raw_pixels(images, centre=None):
    x = images.flatten(1).float() / 255
    return torch.nn.functional.normalize(x - centre if centre is not None else x, dim=1)


mean_image = (train_set.images.flatten(1).float() / 255).mean(0)
raw = {
    "raw pixels": metrics.knn_accuracy(raw_pixels(train_set.images), train_set.labels,
                                       raw_pixels(test_set.images), test_set.labels, len(classes),
                                       cfg.knn_k, cfg.knn_t),
    "raw pixels, mean-centred": metrics.knn_accuracy(
        raw_pixels(train_set.images, mean_image), train_set.labels,
        raw_pixels(test_set.images, mean_image), test_set.labels, len(classes), cfg.knn_k, cfg.knn_t),
}
display(pd.Series(raw, name="kNN top-1 (%)").round(2).to_frame())
assert 10 < min(raw.values()) and max(raw.values()) < 100

# %% [markdown]
# ## Training the baseline
#
# The cpu-scale recipe is `cl.train.Config`'s defaults (printed below from the config itself):
# a small 4-block CNN (0.39 M parameters, channels-last, which measured 2× faster than the
# default layout on two CPU cores) under bf16 autocast, a 2-layer MLP head to 128-d, queue
# $K=4096$, $m=0.99$, $t=0.1$, SGD with momentum and a cosine schedule. The run is
# checkpointed every epoch; re-running this cell reuses a finished run and resumes an
# interrupted one. It trains alone on the machine (the seeded runs below train two at a time,
# `cl.pool`), so that its training time is the recipe's own.

# %%
recipe = train.Config.from_dict({**base, **baseline})
print(f"lr {recipe.lr}, momentum {recipe.sgd_momentum}, weight decay {recipe.weight_decay}, "
      f"batch {recipe.batch_size}, crops of {recipe.crop_min:.0%}–100 % of the image, K {recipe.queue}, "
      f"m {recipe.moco_m}, t {recipe.t}, {recipe.epochs} epochs, precision {recipe.precision}")

# %%
long_run = train.run({**base, **baseline}, study.run_dir(scale, "01_moco_v2"), notebook=NB, method="moco_v2")
plots.curves({"MoCo v2": long_run}, keys=("loss", "knn_top1", "alignment", "uniformity"),
             title="MoCo v2 on Fashion-MNIST (kNN on a 10k-image monitor bank)");

# %%
final = long_run["final"]
results = pd.DataFrame({
    "kNN top-1 (%)": {**raw, "MoCo v2": final["knn_top1"]},
    "linear top-1 (%)": {"MoCo v2": final["linear_top1"]},
}).round(2)
display(results)
print(f"training: {final['train_seconds'] / 60:.1f} min at {final['images_per_second']:.0f} images/s "
      f"on {long_run['config']['device']} ({torch.get_num_threads()} threads)")

# %% [markdown]
# ## What the embedding looks like
#
# The first two principal components of the test set's backbone features, against the same
# picture for raw pixels. Footwear (sandal, sneaker, ankle boot), trousers and bags separate
# cleanly; the upper-body garments (T-shirt, pullover, coat, shirt) overlap — the classes a
# kNN vote confuses, and, in notebook 02, the source of most same-class hard negatives.

# %%
trained, _ = train.load_model(study.run_dir(scale, "01_moco_v2"))
prepare = lambda x: augment.to_float(x, trained.aug_cfg)
features = metrics.embed(trained.encoder.features, test_set.images, prepare)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
plots.embedding_2d(raw_pixels(test_set.images, mean_image), test_set.labels, classes, "raw pixels",
                   ax=axes[0])
plots.embedding_2d(features, test_set.labels, classes, "MoCo v2 backbone features", ax=axes[1])
fig.tight_layout()

# %%
pred = metrics.knn_predict(features, metrics.embed(trained.encoder.features, train_set.images, prepare),
                           train_set.labels, len(classes), cfg.knn_k, cfg.knn_t)
confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
confusion.index_put_((test_set.labels, pred), torch.ones_like(pred), accumulate=True)
per_class = pd.Series((confusion.diag() / confusion.sum(1).clamp(min=1) * 100).tolist(), index=classes)
display(per_class.round(1).to_frame("kNN recall (%)").T)
accuracy = (pred == test_set.labels).float().mean().item() * 100
assert abs(accuracy - final["knn_top1"]) < 0.5, "the same classifier as the run's final evaluation"

# %% [markdown]
# ## What we tried
#
# Tuning on this 2-core machine: each row is one 5-epoch run of `python -m cl.train` with
# `{epochs: 5, crop_min: 0.2, lr: 0.06}` plus the change (final kNN on the full training bank).
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
# Split BN and the symmetric loss gain (or lose) little per epoch at twice the cost per
# step, so under a fixed time budget the plain step wins (these rows predate bf16 autocast and
# were measured in float32). Channels-last memory format doubled
# the CPU step's speed (1,600 → 3,200 images/s for this CNN), the largest single gain. The
# machine's speed itself varies by about ±20 % from run to run (2,200–3,200 images/s for the
# same step). At 25 epochs the chosen recipe reached 83.4 % kNN and 87.8 % linear in 651 s of
# training (2,300 images/s that day); since glibc keeps freed memory for reuse (`cl.train.
# keep_freed_memory`, no more page faults every step) the same run takes 547 s (2,700
# images/s), with the same numbers: within 10 minutes, but the 85 % goal is not reached.
#
# ## bf16 on the CPU, and the claim against raw pixels, with seeds
#
# This processor runs bf16 natively, so the encoder computes under bf16 autocast (the
# embeddings return to float32 before normalisation, so similarities, selection and losses
# never tie at bf16's resolution). Kept only if the accuracy holds: the comparison schedule
# with and without it, paired by seed. The same runs carry this notebook's claim with seeds:
# the 25-epoch baseline above is **one seed** and claims nothing by itself; the claim that
# MoCo v2 beats raw pixels is tested on the comparison schedule's seeds.

# %%
checks = study.run_conditions({"moco": {}, "moco_fp32": {"precision": "fp32"}}, base, seeds, scale, NB)
precision = {m: study.paired_difference(checks, "moco", "moco_fp32", m) for m in ("knn_top1", "linear_top1")}
speed = study.t_interval([r["final"]["images_per_second"] / f["final"]["images_per_second"]
                          for r, f in zip(checks["moco"], checks["moco_fp32"])])
best_raw = max(raw.values())
vs_raw = study.t_interval([r["final"]["knn_top1"] - best_raw for r in checks["moco"]])
display(pd.DataFrame({"bf16 − fp32 (points)": {m: d.text() for m, d in precision.items()},
                      "verdict": {m: d.verdict() for m, d in precision.items()}}))
print(f"bf16/fp32 training images/s: {speed[0]:.2f}× (whole runs, which may share the processor with another "
      f"run (cl.pool): `make bench` times the step itself)")
raw_word = ("no claim (fewer than 3 seeds)" if len(seeds) < study.MIN_SEEDS else
            "above the raw pixels" if vs_raw[1] > 0 else "below the raw pixels" if vs_raw[2] < 0 else
            "no difference from the raw pixels resolved")
print(f"MoCo v2 at {train.Config.from_dict(base).epochs} epochs − best raw-pixel kNN: {vs_raw[0]:+.2f} "
      f"points (95 % interval [{vs_raw[1]:+.2f}, {vs_raw[2]:+.2f}] over {len(seeds)} seeds): {raw_word}")

# %% [markdown]
# ## What we measured
#
# The claim, checked below on the seeded runs: bf16 keeps the accuracy ("nearly the same":
# the interval of bf16 − fp32 above −1 point, in kNN and in the linear probe). Against the
# raw pixels the words above come from the interval at the comparison schedule (4 epochs is
# short: earlier float32 runs gave about 81 % there, against 82.4 % for mean-centred pixels);
# the one-seed 25-epoch run is reported beside it and claims nothing. The project's goal,
# 85 % kNN within 10 minutes of training on two cores, is reported, not assumed.

# %%
print(f"MoCo v2 ({recipe.epochs} epochs, one seed) kNN {final['knn_top1']:.2f}% "
      f"vs best raw-pixel kNN {best_raw:.2f}% "
      f"(target {knn_target}%: {'met' if final['knn_top1'] >= knn_target else 'not met'})")
print(f"training time {final['train_seconds']:.0f} s against a budget of 600 s "
      f"({'within' if final['train_seconds'] <= 600 else 'over'} budget)")
if check_claims:
    assert (precision["knn_top1"].at_least(-1)
            and precision["linear_top1"].at_least(-1)), "bf16 must keep the accuracy"
