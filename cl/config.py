"""The config of a training run: every key, its type, its range, and how the keys fit together.

``Config.from_dict`` builds and validates one; nothing is loaded or written before a config
is valid, so a bad value fails at once, with a message that names the key and the fix. Each
rule sits beside the piece it guards where that reads better: the queue's and the mined
queue's in :mod:`cl.moco`, MoCHi's in :mod:`cl.mochi`, an objective's sources and row in
:mod:`cl.objectives`. A run's identity (every key but ``device`` and ``probe``, the probe set's
size) decides whether a finished run is reused.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from cl import cli, data, mochi, moco, negatives, objectives
from cl.cli import UserError


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message says which key and why."""

CHOICES = {  # every string key but dataset and device: its allowed values
    "arch": ("small_cnn", "resnet18"),
    "head": ("mlp", "mlp_bn", "mlp_bn_out", "linear"),
    "target_schedule": ("constant", "cosine"),
    "predictor_lr": ("schedule", "fixed"),
    "loss": tuple(objectives.OBJECTIVES),
    "source": objectives.SOURCES,
    "select": negatives.MODES,
    "mine_rule": negatives.MINE_RULES,
    "optimizer": ("sgd", "adam"),
    "lr_schedule": ("cosine", "constant"),
    "precision": ("bf16", "fp32"),
}
RANGES = {  # every numeric key: the interval its value lies in, as the error message shows it
    "train_subset": "[0, inf)",
    "image_size": "[0, inf)",
    "test_subset": "[0, inf)",
    "width": "[1, inf)",
    "dim": "[1, inf)",
    "hidden": "[1, inf)",
    "predictor_hidden": "[1, inf)",
    "bn_splits": "[1, inf)",
    "queue": "[1, inf)",
    "moco_m": "[0, 1)",
    "t": "(0, inf)",
    "tau_plus": "[0, 1)",
    "beta": "[0, inf)",
    "select_fraction": "(0, 1]",
    "mochi_n": "[0, inf)",
    "mochi_s": "[0, inf)",
    "mochi_s_prime": "[0, inf)",
    "mochi_warmup": "[0, inf)",
    "mined_queue": "[0, inf)",
    "positives": "[1, inf)",
    "mine_every": "[1, inf)",
    "epochs": "[1, inf)",
    "batch_size": "[2, inf)",
    "lr": "(0, inf)",
    "sgd_momentum": "[0, 1)",
    "weight_decay": "[0, inf)",
    "warmup_epochs": "[0, inf)",
    "crop_min": "(0, 1]",
    "knn_k": "[1, inf)",
    "knn_t": "(0, inf)",
    "monitor_bank": "[0, inf)",
    "probe": "[0, inf)",
    "linear_epochs": "[1, inf)",
    "seed": "[0, inf)",
}


@dataclass
class Config:
    """Every knob of a training run. Defaults are the cpu-scale MoCo v2 baseline."""

    # data
    # fashion_mnist | cifar10 | cifar100 | stl10 | imagefolder:PATH (PATH/<split>/<class>/<image>)
    dataset: str = "fashion_mnist"
    image_size: int = 0            # resize to this many pixels (imagefolder needs it; 0 = the data set's own)
    train_split: str = "train"     # imagefolder: the training split's folder
    test_split: str = "test"       # imagefolder: the evaluation split's folder (ImageNet-style trees: val)
    train_classes: str = "all"     # the classes trained on: all, or labels such as "0-4" or "0,2,5"
    eval_classes: str = "all"      # the classes kNN and the linear probe evaluate (transfer: "5-9")
    train_subset: int = 0          # use this many training images (0 = all)
    test_subset: int = 0           # evaluate on this many test images (0 = all)
    # encoder
    arch: str = "small_cnn"        # small_cnn | resnet18
    width: int = 32                # small_cnn width
    head: str = "mlp"              # mlp (MoCo v2) | linear (MoCo v1) | mlp_bn (BYOL) | mlp_bn_out (SimSiam)
    dim: int = 128
    hidden: int = 512
    predictor_hidden: int = 512    # SimSiam's and BYOL's predictor: dim → this → dim
    predictor_lr: str = "schedule"  # fixed: the predictor keeps lr, the rest follows the schedule (SimSiam)
    target_schedule: str = "constant"  # cosine: BYOL's target momentum from moco_m up to 1 over training
    bn_splits: int = 1             # SplitBatchNorm groups (MoCo CIFAR demo: 8)
    shuffle_bn: bool = True
    # MoCo
    queue: int = 4096
    moco_m: float = 0.99
    t: float = 0.1
    symmetric: bool = False
    # objective and negatives
    loss: str = "info_nce"         # info_nce | debiased | hard | supcon | positives_only
    source: str = "queue"          # queue (MoCo) | batch (SimCLR: the other 2B-2 views)
    tau_plus: float = 0.1          # DCL / HCL class prior
    beta: float = 1.0              # HCL concentration
    select: str = "all"            # cl.negatives.select mode
    positives: int = 1             # M: positives per anchor, extra views of its image (DCL/HCL, batch)
    select_fraction: float = 1.0
    mochi_n: int = 0               # MoCHi: N hardest negatives to mix (0 = off)
    mochi_s: int = 0               # MoCHi: s negative-negative mixes
    mochi_s_prime: int = 0         # MoCHi: s' query-negative mixes
    mochi_warmup: float = 0.0      # MoCHi: epochs without synthesis (in steps: 0.2 of 4 epochs = 5 %)
    mined_queue: int = 0           # contrast with this many keys mined from the queue (then a bank; 0 = off)
    mine_every: int = 16           # steps between refills of the mined queue
    mine_rule: str = "nearest"     # nearest to some query | votes: in most queries' hardest 5 % | random
    # optimisation
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "sgd"         # sgd (MoCo) | adam (the DCL and HCL papers' code)
    lr: float = 0.03
    lr_schedule: str = "cosine"    # cosine (MoCo) | constant (the DCL and HCL papers' code)
    sgd_momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 0         # linear learning-rate warm-up before the cosine schedule
    # augmentation
    crop_min: float = 0.4          # RandomResizedCrop scale lower bound (MoCo v2: 0.2; 0.4 suits 28 px)
    # evaluation
    knn_k: int = 200
    knn_t: float = 0.1
    monitor_bank: int = 10000      # training images in the per-epoch kNN bank (0 = all)
    probe: int = 1000              # the probe set: training images embedded after every epoch into probe.pt
    linear_epochs: int = 100
    # run
    precision: str = "bf16"        # bf16: the encoder under bf16 autocast, the rest float32 | fp32
    seed: int = 0
    device: str = "auto"           # auto | cpu | cuda | cuda:N

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Build and validate; unknown keys, wrong types and impossible values raise ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config is a mapping of parameters, not {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in d.items():
            if key not in fields:
                near = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"unknown parameter {key!r}{hint}; valid parameters: {', '.join(fields)}")
            values[key] = _typed(key, value, fields[key].type)
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self):
        """Check every value that the config alone decides, before anything is loaded or written.

        First each value on its own (RANGES, CHOICES, the data set, the device), then how the
        values fit together. Checks that need the data run when it is loaded (``check_data``).
        """
        def need(ok, why):
            if not ok:
                raise ConfigError(why)
        for key, interval in RANGES.items():
            value = getattr(self, key)
            need(_within(value, interval), f"{key} must be in {interval}, got {value!r}")
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            need(value in allowed, f"{key} must be one of {allowed}, not {value!r}")
        need(not (problem := _dataset_problem(self)), problem)
        for key in ("train_classes", "eval_classes"):
            try:  # the form here; whether the data set has those labels is checked on loading
                class_labels(getattr(self, key), math.inf)
            except ValueError as error:
                raise ConfigError(f"{key}: {error}") from None
        need(not (problem := _device_problem(self.device)), problem)
        world = dist.get_world_size() if moco.distributed() else 1
        need(self.batch_size % world == 0, f"batch_size {self.batch_size} must divide over {world} processes")
        need((self.batch_size // world) % self.bn_splits == 0,
             f"the per-process batch {self.batch_size // world} must split into bn_splits={self.bn_splits} "
             "equal BN groups")
        if self.source == "queue":
            need(not (problem := moco.queue_problem(self.queue, self.batch_size, self.symmetric)), problem)
        mixing = self.mochi_s + self.mochi_s_prime > 0
        need(not (problem := mochi.config_problem(self.mochi_n, self.mochi_s, self.mochi_s_prime,
                                                   self.source, self.queue)), problem)
        need(not (problem := moco.mined_problem(self.mined_queue, self.queue, self.source, mixing)), problem)
        unmined = (type(self).mine_every, type(self).mine_rule)  # their defaults: no part of a plain run
        need(self.mined_queue or (self.mine_every, self.mine_rule) == unmined,
             "mine_every and mine_rule apply to a mined queue only: set mined_queue, or leave them out")
        need(not (problem := objectives.config_problem(self.loss, self.source, self.select, mixing,
                                                        self.positives)), problem)
        need(self.source == "queue" or not self.symmetric,
             "symmetric applies to the queue source (batch is symmetric already)")

    def to_dict(self) -> dict:
        """Every key and its value, but a key of ADDED_KEYS at its default, which every run recorded
        before the key existed ran with: left out, their config.yaml, metrics.json and identity stay
        what they were."""
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if not (k in ADDED_KEYS and v == getattr(type(self), k))}

    def identity(self) -> dict:
        """What defines the run's result: every parameter but the device it runs on and the probe set
        it records (neither changes the training)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("device", "probe")}

# keys added after runs were recorded, left out of to_dict at their default (see Config.to_dict)
ADDED_KEYS = ("positives",)

_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _typed(key, value, annotation):
    """``value`` as the field's type (an int for a float field becomes a float), or ConfigError.

    A float written ``5e-4`` or ``1e6`` is a string to YAML 1.1 readers (papermill's, say): it is
    read as the number it is.
    """
    if annotation == "float" and isinstance(value, str) and cli.EXPONENT_NUMBER.fullmatch(value):
        value = float(value)
    expected = _TYPES[annotation]
    if isinstance(value, bool) and annotation != "bool" or not isinstance(value, expected):
        raise ConfigError(f"parameter {key!r} must be {annotation}, got {value!r} ({type(value).__name__})")
    return float(value) if annotation == "float" else value


def _within(value, interval: str) -> bool:
    """Whether ``value`` lies in ``interval``, written "[0, 1)": brackets closed, parentheses open."""
    low, high = (float(bound) for bound in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def _dataset_problem(cfg: Config) -> str | None:
    """What is wrong with the data set a config names and the subsets it asks of it, if anything."""
    name = cfg.dataset
    if name.startswith("imagefolder:"):
        folder = Path(name.removeprefix("imagefolder:"))
        missing = [split for split in (cfg.train_split, cfg.test_split) if not (folder / split).is_dir()]
        if missing:
            return (f"dataset {name!r}: {folder} has no {' and no '.join(f'{m}/' for m in missing)} folder "
                    "(one per split, each with one folder per class; set train_split and test_split to "
                    "their names, e.g. test_split: val)")
        if not cfg.image_size:
            return f"dataset {name!r}: set image_size (e.g. 64 or 224) to resize its images to"
        return None
    if name not in data.SPLIT_SIZES:
        return f"dataset must be one of {', '.join(data.NAMES)}, not {name!r}"
    if (cfg.train_split, cfg.test_split) != ("train", "test"):
        return f"train_split and test_split name an image folder's splits; {name} has train and test"
    sizes = data.SPLIT_SIZES[name]
    for key, split in (("train_subset", "train"), ("test_subset", "test")):
        if getattr(cfg, key) > sizes[split]:
            return (f"{key} must be in [0, {sizes[split]}] ({name} has {sizes[split]:,} {split} images), "
                    f"got {getattr(cfg, key)}")
    images = cfg.train_subset or sizes["train"]
    return _batch_problem(cfg.batch_size, images, "of the run")


def _batch_problem(batch_size: int, images: int, whose: str) -> str | None:
    """A batch larger than the training set would make an epoch of no steps."""
    if batch_size > images:
        return (f"batch_size must be in [2, {images}] (the {images:,} training images {whose}), "
                f"got {batch_size}")
    return None


def _device_problem(name: str) -> str | None:
    """What is wrong with a config's device on this machine, if anything."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        return f"device must be auto, cpu, cuda or cuda:N, not {name!r}"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and not gpus:
        return (f"device {name!r}, but this machine has no CUDA GPU: "
                f"use device: auto (a GPU when there is one) or cpu")
    if device.type == "cuda" and (device.index or 0) >= gpus:
        return f"device {name!r}, but this machine has {gpus} GPU(s): use cuda:0 .. cuda:{gpus - 1}"
    return None


def check_data(cfg: Config, train_set: data.Dataset) -> None:
    """The checks that need the loaded data (an image folder's size): run before anything is written."""
    problem = _batch_problem(cfg.batch_size, len(train_set), f"of {train_set.name}")
    if problem:
        raise ConfigError(problem)


def class_labels(text: str, num_classes: int | float) -> list[int]:
    """The labels a ``train_classes`` or ``eval_classes`` value names: ``all``, or comma-separated
    labels and ranges, e.g. ``0-4`` or ``0,2,5-7``; ValueError names what is wrong."""
    if text == "all":
        return list(range(num_classes)) if math.isfinite(num_classes) else []
    labels = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or int(high or low) < int(low):
            raise ValueError(f"{text!r} is not 'all' or labels and ranges such as '0-4' or '0,2,5-7'")
        labels.extend(range(int(low), int(high or low) + 1))
    if max(labels) >= num_classes:
        raise ValueError(f"{text!r} names label {max(labels)}, but the data set has labels "
                         f"0-{num_classes - 1}")
    return sorted(set(labels))


def load_config(path) -> Config:
    """A YAML file of parameters, read with the safe loader (5e-4 is a number); ``{}`` is the defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file {path}: give the path of a YAML file of cl.config.Config's "
                          f"parameters")
    d = cli.load_yaml_file(path)
    if d is None:
        raise ConfigError(f"{path} is empty: write the parameters to change, or {{}} for the defaults "
                          f"(the full cpu-scale run: all training images, {Config.epochs} epochs)")
    return Config.from_dict(d)
