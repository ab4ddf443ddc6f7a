"""The controls every verdict is read beside: how much an encoder learnt at all.

A comparison of two training methods says little until the reader sees how far either got
from where learning started. Three representations are evaluated exactly as a trained run is
(:meth:`cl.train.Trainer.evaluate`: kNN on the backbone's features against the training set,
the linear probe, alignment and uniformity of two augmented views), on the same data, test set
and seeds:

* ``untrained``: the study's encoder at its random initialisation, the weights a run of that
  seed starts from (its batch-norm statistics at their initial values);
* ``pixels``: the image as the encoder receives it (scaled to [0, 1] and normalised with the
  data set's channel statistics), flattened;
* ``pixels_centred``: the same minus the training set's mean image, so that cosine similarity
  compares how images deviate from the average one.

Each control of a seed is kept as a run folder, ``control_<kind>_s<seed>``, with the
``metrics.json`` of a run that trained for no epoch, so that the summary, the tables and the
paired differences read it as they read a run (``kind`` marks it as a control). Computing one
takes seconds; a finished one is reused like a run.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

import cl
from cl import plan
from cl import run_folder as folder
from cl.config import Config
from cl.progress import say
from cl.train import Trainer

KINDS = ("untrained", "pixels", "pixels_centred")
PREFIX = "control_"
# the words a table or a sentence uses for each control
LABELS = {"untrained": "untrained encoder (random init)", "pixels": "raw pixels",
          "pixels_centred": "raw pixels, mean-centred"}


class Pixels(torch.nn.Module):
    """The identity representation: the flattened image minus ``mean`` (a flattened image, or 0).
    ``features`` and ``forward`` are the same map, as kNN and alignment read them."""

    def __init__(self, mean: torch.Tensor | float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().flatten(1) - self.mean

    forward = features


# the keys a control depends on (the data, the encoder and the evaluation); the rest of a
# notebook's base (the optimiser, the negatives, the schedule) trains, which a control does not
EVALUATION_KEYS = ("dataset", "image_size", "train_split", "test_split", "train_classes", "eval_classes",
                   "train_subset", "test_subset", "arch", "width", "head", "dim", "hidden", "bn_splits",
                   "batch_size", "crop_min", "knn_k", "knn_t", "monitor_bank", "linear_epochs",
                   "precision", "device")


def condition(kind: str, suffix: str = "") -> str:
    """The name under which a control's runs are grouped: ``control_untrained`` (``suffix``: another
    split's controls, e.g. ``_transfer``)."""
    return PREFIX + kind + suffix


def is_control(name: str) -> bool:
    """Whether a condition (or run) name is one of the controls."""
    return name.startswith(PREFIX)


def evaluate(cfg: Config, kind: str) -> dict:
    """The final metrics of control ``kind`` under ``cfg`` (its data, test set, seed and evaluation)."""
    if kind not in KINDS:
        raise ValueError(f"no control {kind!r}: one of {', '.join(KINDS)}")
    trainer = Trainer(cfg)  # the seed's initial encoder: the untrained control as it is
    if kind != "untrained":
        mean = mean_image(trainer) if kind == "pixels_centred" else 0.0
        trainer.encoder = Pixels(mean).to(trainer.device)
    return trainer.evaluate(final=True)


def mean_image(trainer: Trainer) -> torch.Tensor:
    """The mean of the trainer's training images as the encoder receives them, flattened (what
    ``pixels_centred`` subtracts), summed in chunks so that the whole set is never prepared at once."""
    images = trainer.train_set.images
    return sum(trainer.prepare(images[i:i + 4096]).flatten(1).sum(0)
               for i in range(0, len(images), 4096)) / len(images)


def ensure(base: dict, seeds, scale: str, notebook: str | None = None,
           suffix: str = "") -> dict[str, list[dict]]:
    """Every control for every seed, of ``base``'s data, encoder and evaluation (EVALUATION_KEYS; the
    rest of ``base`` is left out, so every notebook of a scale shares them), computed where missing and
    reused where finished, as ``{condition: [record per seed]}`` like :func:`cl.study.run_groups`
    returns; the records sit in ``runs/<scale>/control_<kind><suffix>_s<seed>/``."""
    evaluated = {k: v for k, v in base.items() if k in EVALUATION_KEYS}
    results = {}
    for kind in KINDS:
        for seed in seeds:
            cfg = Config.from_dict({**evaluated, "seed": seed})
            run_dir = cl.RUNS / scale / f"{condition(kind, suffix)}_s{seed}"
            listed = plan.record([plan.Run(run_dir, cfg, condition(kind), [notebook], control=kind)])
            results.setdefault(condition(kind, suffix), []).append(
                {} if listed else computed(cfg, kind, run_dir, notebook))
    return results


def computed(cfg: Config, kind: str, run_dir: Path, notebook: str | None) -> dict:
    """The control's record in ``run_dir``: read when finished, else computed and written."""
    done = folder.finished_run(cfg, run_dir)
    if done is not None:
        return done
    with folder.locked(run_dir, wait=True):
        done = folder.finished_run(cfg, run_dir)
        if done is not None:
            return done
        say(f"{run_dir.name}: evaluating the control: {LABELS[kind]}, seed {cfg.seed}")
        final = evaluate(cfg, kind)
        final.update(train_seconds=0.0, images_per_second=None)
        record = {"run": run_dir.name, "notebook": notebook, "method": condition(kind), "control": kind,
                  "config": cfg.to_dict(), "threads": torch.get_num_threads(), "epochs": [],
                  "finished": True, "final": final}
        folder.atomic_write(run_dir / folder.CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
        folder.write_json(run_dir / folder.METRICS, record)
        return json.loads((run_dir / folder.METRICS).read_text())
