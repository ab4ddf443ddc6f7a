"""One training loop for every method of the study, driven by a validated config.

``run(config, run_dir)`` trains (or resumes, or reuses a finished run with the same config)
and returns the run's metrics, also written to ``run_dir/metrics.json``:

* per epoch: loss, kNN top-1 (monitor bank), alignment, uniformity, images/s, and the
  difficulty statistics of the negatives (``cl.negatives.difficulty_bands``);
* at the end: kNN top-1 on the full training bank, linear-probe top-1, alignment,
  uniformity, training seconds and images/s.

A checkpoint is written atomically after every epoch; an interrupted run resumes from it
and ends with the same weights as an uninterrupted one. ``python -m cl.train CONFIG.yaml``
does the same from the command line, also under ``torchrun`` (keys of every rank enter
the queue, BN is shuffled across ranks, gradients are averaged by DDP).

A run fails early and leaves its folder usable: the config is checked before anything is
loaded or written, ``config.yaml`` is written with the first checkpoint, the folder is
locked while a process trains in it, a non-finite model or metric is never checkpointed
nor marked finished, and the previous checkpoint is kept for when the latest is unreadable.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import errno
import fcntl
import io
import json
import math
import os
import pickle
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml

from cl import augment, cli, data, metrics, models, negatives, objectives, system
from cl.cli import Interrupted, UserError
from cl.moco import MoCo, distributed
from cl.objectives import Similarities
from cl.progress import RunProgress, say
from cl.siamese import Siamese


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message says which key and why."""


class TrainingDiverged(UserError, RuntimeError):
    """The loss, the model's parameters or buffers, or the metrics became NaN or infinite."""


class RunLocked(UserError, RuntimeError):
    """Another process is training in the run folder."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file cannot be read: truncated, corrupt, or not written by this code."""


class DiskFull(UserError, RuntimeError):
    """No space left for a file of the run; nothing half-written is left behind."""


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
# Keys added after runs were made, with the value that reproduces those runs: before
# ``precision`` existed the CPU trained in float32 (no run was ever made on a GPU here).
LEGACY = {"precision": "fp32"}


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
    probe: int = 1000              # training images embedded after every epoch into probe.pt (0 = none)
    linear_epochs: int = 100
    # run
    precision: str = "bf16"        # bf16: the encoder under bf16 autocast, the rest float32 | fp32
    seed: int = 0
    device: str = "auto"           # auto | cpu | cuda | cuda:N

    @classmethod
    def from_stored(cls, d: dict) -> "Config":
        """A config saved by a run (config.yaml, a checkpoint): keys it predates take the value
        that reproduces how it was trained (``LEGACY``), so finished runs stay readable."""
        return cls.from_dict({**LEGACY, **d})

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
        world = dist.get_world_size() if distributed() else 1
        keys_per_step = self.batch_size * (2 if self.symmetric else 1)
        need(self.batch_size % world == 0, f"batch_size {self.batch_size} must divide over {world} processes")
        need((self.batch_size // world) % self.bn_splits == 0,
             f"the per-process batch {self.batch_size // world} must split into bn_splits={self.bn_splits} "
             "equal BN groups")
        if self.source == "queue":
            need(self.queue >= keys_per_step,
                 f"queue={self.queue} is smaller than the {keys_per_step} keys enqueued per step "
                 f"(batch_size{' × 2 views (symmetric)' if self.symmetric else ''}): "
                 "a step would overwrite its own keys")
        mochi = self.mochi_s + self.mochi_s_prime > 0
        need(not mochi or self.mochi_n >= 2, "MoCHi needs mochi_n ≥ 2 hardest negatives to mix")
        need(not mochi or self.source == "queue", "MoCHi mixes negatives of the queue: use source='queue'")
        need(not mochi or self.mochi_n <= self.queue,
             f"mochi_n={self.mochi_n} exceeds the queue size {self.queue}")
        need(not self.mined_queue or (self.source == "queue" and not mochi),
             "a mined queue refills MoCo's negatives: use source='queue' and no MoCHi")
        unmined = (type(self).mine_every, type(self).mine_rule)  # the defaults: no part of a plain run
        need(self.mined_queue or (self.mine_every, self.mine_rule) == unmined,
             "mine_every and mine_rule apply to a mined queue only: set mined_queue, or leave them out")
        need(self.mined_queue <= self.queue,
             f"mined_queue={self.mined_queue} exceeds the bank it is mined from (queue={self.queue})")
        objective = objectives.get(self.loss)
        need(self.source in objective.sources,
             f"{self.loss} takes its negatives from {' or '.join(objective.sources)}: "
             f"use source='{objective.sources[0]}'")
        need(objective.row or (self.select == "all" and not mochi),
             f"{self.loss} has no row of negatives to select from or append to: "
             "use select='all' and no MoCHi")
        need(self.source == "queue" or not self.symmetric,
             "symmetric applies to the queue source (batch is symmetric already)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """What defines the run's result: every parameter but the device it runs on and the probe
        it records (neither changes the training)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("device", "probe")}


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


def datasets(cfg: Config, device="cpu",
             train_set: data.Dataset | None = None) -> tuple[data.Dataset, data.Dataset]:
    """The training and test sets a run of ``cfg`` trains and evaluates on (its subsets drawn with its
    seed), checked against the config; ``train_set``: the whole training set, when already loaded.
    Training keeps ``train_classes``; the test set keeps ``eval_classes``."""
    size = cfg.image_size or None
    if train_set is None:
        train_set = data.load(cfg.dataset, cfg.train_split, device=device, image_size=size)
    test_set = data.load(cfg.dataset, cfg.test_split, device=device, image_size=size)
    train_set = of_classes(train_set, cfg, "train_classes")
    test_set = of_classes(test_set, cfg, "eval_classes")
    if cfg.train_subset:
        train_set = train_set.subset(cfg.train_subset, cfg.seed)
    if cfg.test_subset:
        test_set = test_set.subset(cfg.test_subset, cfg.seed)
    check_data(cfg, train_set)
    return train_set, test_set


def of_classes(dataset: data.Dataset, cfg: Config, key: str) -> data.Dataset:
    """``dataset`` reduced to the classes that ``cfg``'s ``key`` (train_classes, eval_classes) names."""
    if getattr(cfg, key) == "all":
        return dataset
    try:
        return dataset.of_classes(class_labels(getattr(cfg, key), len(dataset.classes)))
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None


def load_config(path) -> Config:
    """A YAML file of parameters, read with the safe loader (5e-4 is a number); ``{}`` is the defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file {path}: give the path of a YAML file of cl.train.Config's "
                          f"parameters")
    d = cli.load_yaml(path.read_text())
    if d is None:
        raise ConfigError(f"{path} is empty: write the parameters to change, or {{}} for the defaults "
                          f"(the full cpu-scale run: all training images, {Config.epochs} epochs)")
    return Config.from_dict(d)


# --------------------------------------------------------------------------- the run

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


def learning_rate(cfg: Config, progress: float) -> float:
    """Linear warm-up for ``warmup_epochs``, then lr·½(1 + cos(π·progress)) (``cosine``) or lr
    (``constant``); progress in epochs / epochs."""
    epoch = progress * cfg.epochs
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1e-3) / cfg.warmup_epochs
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(cfg: Config, parameters) -> torch.optim.Optimizer:
    """SGD with momentum (MoCo), or Adam with L2 weight decay (the DCL and HCL papers' code)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(parameters, lr=cfg.lr, momentum=cfg.sgd_momentum, weight_decay=cfg.weight_decay)


CHECKPOINT, PREVIOUS, PROBE = "checkpoint.pt", "checkpoint.prev.pt", "probe.pt"
PROBE_SEED = 20_200_610  # the probe images: the same for every run on a data set, whatever its seed
CHECKPOINT_KEYS = {"config", "epoch", "model", "optimizer", "generator", "device_generator", "history"}


def _atomic_write(path: Path, content: bytes, keep: Path | None = None):
    """Write ``content`` to ``path`` through a temporary file: a reader finds the old file or the new
    one, never part of one. ``keep``: where the file it replaces goes. A full disk raises DiskFull,
    and no temporary file is left, whatever stops the write."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(content)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise DiskFull(f"no space left on the device of {path.parent} for {path.name} "
                           f"({len(content) / 1e6:.1f} MB): free some space, then run again "
                           f"(a run resumes from its last checkpoint)") from error
        raise
    if keep is not None and path.exists():
        os.replace(path, keep)
    os.replace(tmp, path)


def _write_json(path: Path, obj):
    _atomic_write(path, json.dumps(obj, indent=1).encode())


def read_checkpoint(path: Path, device="cpu") -> dict:
    """The state a checkpoint holds; CheckpointError when the file is truncated, corrupt or not a checkpoint
    of this code (tensors only: pickled code is refused)."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files that are not its own
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # garbage makes the unpickler fail in any way (IndexError, KeyError, ...)
        raise CheckpointError(f"checkpoint {path} cannot be read ({_unreadable(error)})") from error
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        raise CheckpointError(f"checkpoint {path} cannot be read (it is not a checkpoint of cl.train)")
    return state


def _unreadable(error: Exception) -> str:
    """Why torch.load failed, in a few words (without torch's advice to load it unsafely)."""
    if isinstance(error, pickle.UnpicklingError):
        return "it holds something other than tensors"
    if isinstance(error, EOFError):
        return "it ends early"
    if isinstance(error, (RuntimeError, OSError)):
        return str(error).split(". ")[0]
    return f"it is corrupt: {type(error).__name__}"


def _is_main() -> bool:
    return not distributed() or dist.get_rank() == 0


class RunLock:
    """An exclusive lock on a run folder, held while a process trains in it.

    ``flock`` on ``<run>/.lock``: the OS releases it when the process ends, however it ends, so a
    killed run never leaves its folder locked. The file names the holder (process id, host),
    for the message another process gets. It is removed on release, and so is the folder when
    the lock made it and nothing else was written to it (a failed start leaves nothing behind).
    """

    NAME = ".lock"

    def __init__(self, run_dir: Path):
        self.run_dir, self.path = Path(run_dir), Path(run_dir) / self.NAME
        self.made_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = ""
                with contextlib.suppress(OSError):
                    holder = self.path.read_text().strip()
                raise RunLocked(f"{self.run_dir} is in use by {holder or 'another process'}: wait until it "
                                f"ends, or stop it (the run resumes from its last checkpoint)") from None
            # the holder before us may have removed the file after we opened it: lock the file that is there
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)
        self.fd = fd
        with contextlib.suppress(OSError):  # on a full disk the lock holds all the same, unnamed
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()} "
                         f"(since {time.strftime('%Y-%m-%d %H:%M')})".encode())

    def release(self):
        self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing releases the lock
        if self.made_dir:
            with contextlib.suppress(OSError):  # not empty: the run wrote something
                self.run_dir.rmdir()


@contextlib.contextmanager
def locked(run_dir: Path):
    """Hold the run folder's lock for the body. Under torchrun, rank 0 holds it and the other ranks
    wait until it has it (or share its RunLocked)."""
    lock, problem = None, None
    if _is_main():
        try:
            lock = RunLock(run_dir)
        except RunLocked as error:
            problem = str(error)
    if distributed():
        shared = [problem]
        dist.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem:
        raise RunLocked(problem)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


class Trainer:
    """A run: its data, augmentation, model, optimiser, checkpoints and evaluation, built from a Config.

    The model is what the source of negatives needs: MoCo (query encoder, momentum key
    encoder, queue) for ``queue``, the encoder alone for ``batch``, the encoder with a predictor
    (and BYOL's momentum target) for ``none``. Each step is one function per source,
    :func:`queue_step`, :func:`batch_step` and :func:`siamese_step`.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            system.keep_freed_memory()
        # host draws (data order, BN shuffle) and on-device draws (augmentation, random
        # selection, MoCHi): both are seeded and checkpointed, so a resumed run is identical
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.device_generator = torch.Generator(self.device).manual_seed(cfg.seed + 1)
        whole = data.load(cfg.dataset, cfg.train_split, device=self.device, image_size=cfg.image_size or None)
        # the probe: images of the whole training set (before any subset), the same for every run
        self.probe_index = (torch.randperm(len(whole), generator=torch.Generator().manual_seed(PROBE_SEED))
                            [:cfg.probe].sort().values)
        self.probe_images = whole.images[self.probe_index.to(self.device)]
        self.probe_labels = whole.labels[self.probe_index.to(self.device)].cpu()
        self.train_set, self.test_set = datasets(cfg, self.device, whole)
        # the kNN bank and the linear probe's training set: the training images of the evaluated
        # classes (the training set itself, unless a transfer run evaluates other classes)
        self.bank_set = (self.train_set if cfg.eval_classes == cfg.train_classes
                         else of_classes(whole, cfg, "eval_classes"))
        size = self.train_set.size
        self.aug_cfg = dataclasses.replace(augment.default_config(cfg.dataset, size, whole.images),
                                           crop_scale=(cfg.crop_min, 1.0))
        self.views = augment.TwoViews(self.aug_cfg, self.train_set.channels)
        encoder = models.build_encoder(cfg.arch, self.train_set.channels, cfg.width, cfg.head,
                                       cfg.dim, cfg.hidden, cfg.bn_splits)
        encoder.bf16 = cfg.precision == "bf16"
        # channels_last is faster on CUDA and, measured here, 2× faster on CPU for the small CNN
        self.encoder = encoder.to(self.device, memory_format=torch.channels_last)  # unwrapped: evaluation
        self.objective = objectives.get(cfg.loss)
        ddp = torch.nn.parallel.DistributedDataParallel if distributed() else lambda module: module
        self.moco = None
        if cfg.source == "queue":
            self.moco = MoCo(encoder, cfg.dim, cfg.queue, cfg.moco_m, cfg.shuffle_bn, cfg.mined_queue,
                             cfg.mine_every, cfg.mine_rule).to(
                self.device, memory_format=torch.channels_last)
            self.moco.encoder_q = ddp(self.moco.encoder_q)
            self.model, self.step = self.moco, queue_step
        elif cfg.source == "batch":
            self.model, self.net, self.step = self.encoder, ddp(self.encoder), batch_step
        else:  # no negatives: SimSiam's stop-gradient, or BYOL's momentum target
            target = cfg.moco_m if "momentum_target" in self.objective.parts else None
            self.model = Siamese(self.encoder, cfg.dim, cfg.predictor_hidden, target).to(self.device)
            self.net, self.step = ddp(self.model), siamese_step
        self.mochi = (negatives.Mochi(cfg.mochi_n, cfg.mochi_s, cfg.mochi_s_prime)
                      if cfg.mochi_s + cfg.mochi_s_prime else None)
        self.optimizer = build_optimizer(cfg, self.parameter_groups())
        self.start_epoch, self.history = 0, []
        self.latest_unreadable = False  # resumed from the previous checkpoint: replace the latest, keep that

    # -- checkpoints -------------------------------------------------------------------
    def model_state(self) -> dict:
        """The model's state with the keys of an unwrapped model, whether or not DDP wraps f_q."""
        return {k.replace("encoder_q.module.", "encoder_q."): v for k, v in self.model.state_dict().items()}

    def save(self, path: Path, epoch: int):
        """Checkpoint after ``epoch`` epochs; the checkpoint it replaces is kept (checkpoint.prev.pt)."""
        state = {"config": self.cfg.identity(), "epoch": epoch, "model": self.model_state(),
                 "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                 "device_generator": self.device_generator.get_state().cpu(),
                 "history": json.dumps(self.history)}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        keep = None if self.latest_unreadable else path.with_name(PREVIOUS)
        _atomic_write(path, buffer.getvalue(), keep=keep)
        self.latest_unreadable = False

    def load(self, path: Path):
        state = read_checkpoint(path, self.device)
        stored = Config.from_stored(state["config"]).identity()
        if stored != self.cfg.identity():
            raise ConfigError(f"checkpoint {path} was written by a different config "
                              f"({_diff(stored, self.cfg.identity())}); delete the run "
                              f"directory or give this config another run name")
        stored = _encoder_only(state["model"]) if self.cfg.source == "batch" else state["model"]
        self.model.load_state_dict(_wrapped_keys(stored))
        if self.mochi:
            self.mochi.forget()  # its similarity table was of the queue before loading
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.device_generator.set_state(state["device_generator"].cpu())
        self.start_epoch, self.history = state["epoch"], json.loads(state["history"])

    def resume(self, run_dir: Path):
        """Load the run's latest checkpoint, if any; when it cannot be read, the previous one (and say so)."""
        latest, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
        if latest.exists():
            try:
                return self.load(latest)
            except CheckpointError as error:
                if not previous.exists():
                    raise CheckpointError(f"{error}, and there is no previous one: delete it to train "
                                          f"the run from the start") from error
                say(f"{error}: resuming from the previous one, {previous.name}")
                self.latest_unreadable = True
        if previous.exists():  # also when a crash came between setting the latest aside and its replacement
            self.load(previous)

    def non_finite(self) -> list[str]:
        """The names of the model's parameters and buffers that hold inf or NaN."""
        return [name for name, value in self.model_state().items()
                if value.is_floating_point() and not torch.isfinite(value).all()]

    # -- one epoch ---------------------------------------------------------------------
    def train_epoch(self, epoch: int, bar) -> dict:
        """Train one epoch; returns its row of metrics.json (difficulty statistics of its last step)."""
        cfg = self.cfg
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed() else (1, 0)
        n = len(self.train_set)
        steps = n // cfg.batch_size
        perm = torch.randperm(n, generator=self.generator).to(self.device)
        self.model.train()
        total, seen, stats, clamped, start = 0.0, 0, None, 0.0, time.perf_counter()
        for step in range(steps):
            progress = epoch + step / steps  # in epochs
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr if group.get("fixed_lr") else learning_rate(cfg, progress / cfg.epochs)
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size].view(world, -1)[rank]
            try:
                loss, last = self.train_step(idx, progress)
            except ValueError:  # a loss refuses a row of neg with no finite entry: NaN queries, say
                if not self.non_finite():
                    raise
                raise TrainingDiverged(f"the model holds inf or NaN at epoch {epoch + 1}, step {step + 1} "
                                       f"({_names(self.non_finite())})") from None
            if not math.isfinite(loss):
                raise TrainingDiverged(f"the loss is {loss} at epoch {epoch + 1}, step {step + 1}")
            total += loss
            seen += cfg.batch_size
            if self.objective.clamp:  # summed on the device, read once per epoch: no extra sync per step
                clamped += self.objective.clamp(cfg, last.pos, last.neg).float().mean()
            if step == steps - 1 and last.neg.shape[1]:
                stats = negatives.difficulty_bands(last.pos.float(), last.neg.float(), cfg.t,
                                                   same_class=last.same_class())
            bar.step(epoch, loss)
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "loss": total / steps, "lr": self.optimizer.param_groups[0]["lr"],
               "train_seconds": seconds, "images_per_second": seen / seconds, "negatives": stats}
        if self.objective.clamp:
            row["clamp_rate"] = float(clamped) / steps  # share of rows whose Ng sat at its floor
        return row

    def train_step(self, idx: torch.Tensor, progress: float) -> tuple[float, Last]:
        """One optimisation step on the training images ``idx`` at ``progress`` epochs into the run."""
        images, labels = self.train_set.images[idx], self.train_set.labels[idx]
        views = self.views(images, self.device_generator)
        x1, x2 = (v.contiguous(memory_format=torch.channels_last) for v in views)
        return self.step(self, x1, x2, labels, idx, progress)

    def parameter_groups(self) -> list[dict]:
        """What the optimiser trains: every parameter that takes a gradient, with SimSiam's predictor
        in a group of its own when its learning rate stays fixed (``predictor_lr: fixed``)."""
        trained = [p for p in self.model.parameters() if p.requires_grad]
        if self.cfg.source != "none" or self.cfg.predictor_lr == "schedule":
            return [{"params": trained}]
        fixed = {id(p) for p in self.model.predictor.parameters()}
        return [{"params": [p for p in trained if id(p) not in fixed]},
                {"params": [p for p in trained if id(p) in fixed], "fixed_lr": True}]

    def optimize(self, loss: torch.Tensor) -> bool:
        """One gradient step on ``loss``; False (and no step) when it is not finite."""
        if not torch.isfinite(loss):
            return False
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return True

    # -- evaluation --------------------------------------------------------------------
    @torch.no_grad()
    def embed_probe(self) -> torch.Tensor:
        """The normalised embeddings z (the space the loss compares) of the probe images, unaugmented,
        with the query encoder in eval mode: nothing of the training (batch-norm statistics, random
        draws) changes. Notebook 07 ranks every probe negative for every probe query with them."""
        enc = self.encoder
        enc.eval()
        prepare = lambda x: augment.to_float(x, self.aug_cfg).contiguous(memory_format=torch.channels_last)
        z = metrics.embed(enc, self.probe_images, prepare)
        enc.train()
        return z.cpu()

    def save_probe(self, run_dir: Path, epoch: int, z: torch.Tensor) -> None:
        """Add the probe embeddings after ``epoch`` to the run's probe.pt (indices, labels, epochs, z)."""
        path = run_dir / PROBE
        record = {"indices": self.probe_index, "labels": self.probe_labels, "embeddings": {}}
        if path.exists():
            try:
                record = read_probe(path)
            except UserError as error:  # the training goes on; only the earlier epochs' probe is lost
                say(f"{error}; starting it anew at epoch {epoch}")
        record["embeddings"][epoch] = z
        buffer = io.BytesIO()
        torch.save(record, buffer)
        _atomic_write(path, buffer.getvalue())

    @torch.no_grad()
    def evaluate(self, final: bool) -> dict:
        """kNN top-1 (monitor bank, or the whole training set when final), alignment, uniformity."""
        cfg, enc = self.cfg, self.encoder
        enc.eval()
        prepare = lambda x: augment.to_float(x, self.aug_cfg).contiguous(memory_format=torch.channels_last)
        bank_set = self.bank_set
        if not final and cfg.monitor_bank and cfg.monitor_bank < len(bank_set):
            bank_set = bank_set.subset(cfg.monitor_bank, cfg.seed)
        bank = metrics.embed(enc.features, bank_set.images, prepare)
        test = metrics.embed(enc.features, self.test_set.images, prepare)
        classes = len(self.train_set.classes)
        out = {"knn_top1": metrics.knn_accuracy(bank, bank_set.labels, test, self.test_set.labels,
                                                classes, cfg.knn_k, cfg.knn_t)}
        sample = self.test_set.images[: min(2048, len(self.test_set))]
        g = torch.Generator().manual_seed(12345)
        v1, v2 = self.views(sample, g)
        z1, z2 = F.normalize(enc(v1).float(), dim=1), F.normalize(enc(v2).float(), dim=1)
        out["alignment"] = metrics.alignment(z1, z2)
        out["uniformity"] = metrics.uniformity(z1)
        if final:
            out["linear_top1"] = metrics.linear_probe(bank, bank_set.labels, test, self.test_set.labels,
                                                      classes, epochs=cfg.linear_epochs, seed=cfg.seed)
        enc.train()
        return out


# --------------------------------------------------------------------------- the steps

def queue_step(tr: Trainer, x1, x2, labels, idx, progress: float) -> tuple[float, Last]:
    """MoCo v2's step (He et al. 2020, Algorithm 1), with the study's pieces in their places.

    x1, x2 (B, C, H, W): two views of the images ``idx`` (B,) with ``labels`` (B,);
    ``progress``: epochs into the run, counted in steps (MoCHi's warm-up reads it).
    """
    cfg, moco = tr.cfg, tr.moco
    pairs = moco(x1, x2, cfg.symmetric, tr.generator)  # θk ← m·θk + (1−m)·θq; pos (B,), neg (B, K)
    loss = 0.0
    for pair in pairs:  # one pair, or two when symmetric
        # Cai et al.: keep a share of each query's row by difficulty (-inf = removed)
        neg = negatives.select(pair.neg, cfg.select, cfg.select_fraction, labels=labels,
                               queue_labels=moco.negative_labels, generator=tr.device_generator)
        if tr.mochi and progress >= cfg.mochi_warmup:  # MoCHi: s + s′ columns mixed from the whole queue
            neg = torch.cat([neg, tr.mochi.logits(pair.q, pair.neg, moco, tr.device_generator)], dim=1)
        loss = loss + tr.objective.loss(cfg, Similarities(pair.pos, neg, pair.q, labels))
    last = Last(pair.pos.detach(), neg.detach(), labels, moco.negative_labels.clone())
    if tr.optimize(loss):
        copies = len(pairs)
        slots = moco.enqueue(torch.cat([p.k for p in pairs]), labels.repeat(copies), idx.repeat(copies))
        if tr.mochi:
            tr.mochi.enqueued(moco.queue, slots)
    return loss.item(), last


def batch_step(tr: Trainer, x1, x2, labels, idx, progress: float) -> tuple[float, Last]:
    """The in-batch (SimCLR) step, as DCL's and HCL's official code train: every view of the
    batch is an anchor, its other view the positive, the other 2B − 2 views its negatives.

    One forward per view, as that code does (batch norm per view; SupCon's code concatenates
    the views instead); on CPU it is also 1.3× faster.
    """
    cfg = tr.cfg
    z = F.normalize(torch.cat([tr.net(x1), tr.net(x2)]), dim=1)  # (2B, d): view 1, then view 2
    labels = labels.repeat(2)
    pos, neg, neg_labels = negatives.batch_pairs(z, labels)  # (2B,), (2B, 2B − 2), (2B, 2B − 2)
    neg = negatives.select(neg, cfg.select, cfg.select_fraction, labels=labels, queue_labels=neg_labels,
                           generator=tr.device_generator)
    loss = tr.objective.loss(cfg, Similarities(pos, neg, z, labels))
    tr.optimize(loss)
    return loss.item(), Last(pos.detach(), neg.detach(), labels, neg_labels)


def siamese_step(tr: Trainer, x1, x2, labels, idx, progress: float) -> tuple[float, Last]:
    """The step of SimSiam and BYOL (``cl.siamese``): both views through the online encoder and
    the predictor, the other branch under stop-gradient (SimSiam) or the momentum target (BYOL);
    no negatives at all."""
    if tr.cfg.target_schedule == "cosine":  # BYOL: τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2, k of K steps
        tr.model.momentum = 1 - (1 - tr.cfg.moco_m) * (math.cos(math.pi * progress / tr.cfg.epochs) + 1) / 2
    pos, z = tr.net(x1, x2)  # (2B,) cos(p, sg(t)) of both views, (2B, d) online embeddings
    labels = labels.repeat(2)
    none = pos.new_empty(len(pos), 0)  # (2B, 0): nothing to contrast with
    loss = tr.objective.loss(tr.cfg, Similarities(pos, none, z, labels))
    tr.optimize(loss)
    return loss.item(), Last(pos.detach(), none, labels, labels.new_empty(len(pos), 0))


def read_probe(path: Path) -> dict:
    """A run's probe.pt: ``indices`` and ``labels`` of the probe images in the training set, and
    ``embeddings``: {epoch: (P, dim) normalised z after that epoch}."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or not a tensor file: only this record is lost
        raise UserError(f"{path} cannot be read ({cli.one_line(error)}): delete it; a run that trains "
                        f"again writes it anew") from None


def _wrapped_keys(state: dict) -> dict:
    """Checkpoint keys as this process's model names them (``encoder_q.module.`` under DDP)."""
    if not distributed():
        return state
    return {k.replace("encoder_q.", "encoder_q.module.", 1) if k.startswith("encoder_q.") else k: v
            for k, v in state.items()}


def _encoder_only(state: dict) -> dict:
    """A batch-source run's weights: checkpoints written before such runs stopped building MoCo
    hold them under ``encoder_q.`` beside an unused key encoder and queue."""
    if not any(k.startswith("encoder_q.") for k in state):
        return state
    return {k.removeprefix("encoder_q."): v for k, v in state.items() if k.startswith("encoder_q.")}


class Last:
    """The similarities of a step, as the loss saw them, for the difficulty statistics.

    The same-class mask is built only when asked for (once per epoch), not every step.
    """

    def __init__(self, pos, neg, labels, neg_labels):
        self.pos, self.neg, self.labels, self.neg_labels = pos, neg, labels, neg_labels

    def same_class(self) -> torch.Tensor:
        """(B, columns of neg): True where a negative shares the query's label (MoCHi's columns: False)."""
        same = self.neg_labels.expand(len(self.labels), -1) == self.labels[:, None]
        return torch.cat([same, same.new_zeros(len(same), self.neg.shape[1] - same.shape[1])], 1)


def _diff(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in keys)


def _names(names: list[str], shown: int = 3) -> str:
    """The first few of a list of names, and how many more there are."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def non_finite_metrics(row: dict) -> list[str]:
    """The numbers of a row of metrics (an epoch's, or the final one) that are NaN or infinite."""
    return [key for key, value in row.items() if isinstance(value, float) and not math.isfinite(value)]


def _check_finite(trainer: Trainer, row: dict, when: str):
    """TrainingDiverged unless the model's parameters and buffers and the row's metrics are all finite."""
    tensors, values = trainer.non_finite(), non_finite_metrics(row)
    problems = ([f"the model's {_names(tensors)} {'holds' if len(tensors) == 1 else 'hold'} inf or NaN"]
                if tensors else []) + ([f"{_names(values)} {'is' if len(values) == 1 else 'are'} not finite"]
                                       if values else [])
    if problems:
        raise TrainingDiverged(f"{' and '.join(problems)} {when}")


def _stored_identity(cfg_path: Path) -> dict:
    """The identity of the config in a run folder (its device is not checked: it may be another machine's)."""
    try:
        return Config.from_stored({**cli.load_yaml(cfg_path.read_text()), "device": "auto"}).identity()
    except ConfigError as error:
        raise ConfigError(f"{cfg_path} is not a valid config ({error}): delete its run folder") from None


def finished_run(cfg: Config, run_dir: Path) -> dict | None:
    """The metrics of the finished run of ``cfg`` in ``run_dir``; None when it has not finished there.

    ConfigError when the folder holds a run of another config.
    """
    cfg_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.json"
    if not cfg_path.exists():
        return None
    old = _stored_identity(cfg_path)
    if old != cfg.identity():
        raise ConfigError(f"{run_dir} holds a run of a different config ({_diff(old, cfg.identity())}); "
                          f"delete that directory or give this config another run name")
    done = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if not done.get("finished"):
        return None
    if non_finite_metrics(done["final"]):  # marked finished by a version without the divergence guard
        raise TrainingDiverged(f"{run_dir} holds a diverged run ({_names(non_finite_metrics(done['final']))} "
                               f"not finite) marked finished: delete it, then lower lr or raise t")
    return done


def _diverged(error: TrainingDiverged, cfg: Config, run_dir: Path, saved: int) -> TrainingDiverged:
    """The message of a divergence: where, what to change, and what the run folder keeps."""
    change = f"lower lr (now {cfg.lr}) or raise t (now {cfg.t})"
    kept = (f"nothing was kept in {run_dir}, so a changed config can use it" if saved == 0 else
            f"{run_dir} keeps the last good checkpoint (epoch {saved}): delete the folder, or name the run "
            f"anew, to train a changed config")
    return TrainingDiverged(f"training diverged: {error}: {change}; {kept}")


def _interrupted(cfg: Config, run_dir: Path, saved: int) -> str:
    """What Ctrl-C left: which epoch the run resumes at, and how."""
    again = f"running it again with the same config and run folder ({run_dir})"
    if saved == 0:
        return f"no epoch had ended, so {again} starts it anew"
    if saved < cfg.epochs:
        return f"{again} resumes at epoch {saved + 1} of {cfg.epochs}, from the checkpoint of epoch {saved}"
    return f"{again} does only its final evaluation"


def run(config, run_dir, notebook: str | None = None, method: str | None = None,
        progress: bool = True) -> dict:
    """Train (or resume, or reuse) the run in ``run_dir``; returns its metrics.json content.

    The run folder is locked while this process trains in it; ``progress=False`` shows no
    progress (the line saying what trains is always shown).
    """
    cfg = config if isinstance(config, Config) else Config.from_dict(dict(config))
    cfg.validate()
    run_dir, method = Path(run_dir), method or cfg.loss
    done = finished_run(cfg, run_dir)
    if done is None:
        with locked(run_dir):
            done = finished_run(cfg, run_dir)  # finished by another process in the meantime
            if done is None:
                return _train(cfg, run_dir, notebook, method, progress)
    if _is_main():
        say(f"{run_dir.name}: reusing the finished run in {run_dir} ({method}, {cfg.dataset}, "
            f"{_epochs(cfg.epochs)}; kNN top-1 {done['final']['knn_top1']:.1f} %)")
    return done


def _train(cfg: Config, run_dir: Path, notebook: str | None, method: str, progress: bool) -> dict:
    """Build the run, resume it from its checkpoint if there is one, train the epochs left, evaluate.

    Nothing is written before the first epoch has trained and proved finite: config.yaml comes
    with the first checkpoint, so a run that fails before leaves its folder free.
    """
    metrics_path, cfg_path = run_dir / "metrics.json", run_dir / "config.yaml"
    trainer = Trainer(cfg)
    trainer.resume(run_dir)
    saved = trainer.start_epoch
    if _is_main():
        state = ("new run" if saved == 0 else f"resuming at epoch {saved + 1}" if saved < cfg.epochs
                 else "resuming at its final evaluation")
        say(f"{run_dir.name}: {state}: {method} on {cfg.dataset} "
            f"({len(trainer.train_set):,} training images), "
            f"{_epochs(cfg.epochs)}, in {run_dir}")
    record = {"run": run_dir.name, "notebook": notebook, "method": method,
              "config": cfg.to_dict(), "epochs": trainer.history, "finished": False}
    steps = len(trainer.train_set) // cfg.batch_size
    bar = RunProgress(run_dir.name, cfg.epochs, steps, trainer.start_epoch, enabled=progress and _is_main())
    try:
        for epoch in range(trainer.start_epoch, cfg.epochs):
            row = trainer.train_epoch(epoch, bar)
            row.update(trainer.evaluate(final=False))
            _check_finite(trainer, row, f"after epoch {epoch + 1}")
            trainer.history.append(row)
            if _is_main():
                trainer.save(run_dir / CHECKPOINT, epoch + 1)
            saved = epoch + 1
            if _is_main():  # config.yaml after the checkpoint: a folder never holds a config and no epoch
                if not cfg_path.exists():
                    _atomic_write(cfg_path, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
                _write_json(metrics_path, record)
            if _is_main() and cfg.probe:  # after the checkpoint: nothing comes before the first epoch
                trainer.save_probe(run_dir, epoch + 1, trainer.embed_probe())
            bar.epoch(row)
        final = trainer.evaluate(final=True)
        _check_finite(trainer, final, "in the final evaluation")
    except TrainingDiverged as error:
        raise _diverged(error, cfg, run_dir, saved) from error
    except KeyboardInterrupt as error:
        raise Interrupted(_interrupted(cfg, run_dir, saved)) from error
    finally:
        bar.close()
    seconds = sum(r["train_seconds"] for r in trainer.history)
    images = sum(r["train_seconds"] * r["images_per_second"] for r in trainer.history)
    final.update(train_seconds=seconds, images_per_second=images / seconds)
    record.update(final=final, finished=True)
    if _is_main():
        _write_json(metrics_path, record)
    return record


def load_model(run_dir, device: str = "cpu") -> tuple[Trainer, dict]:
    """The ``Trainer`` of a finished run (weights from its last checkpoint) and its metrics."""
    run_dir = Path(run_dir)
    cfg = Config.from_stored({**cli.load_yaml((run_dir / "config.yaml").read_text()), "device": device})
    trainer = Trainer(cfg)
    trainer.load(run_dir / CHECKPOINT)
    trainer.model.eval()
    return trainer, json.loads((run_dir / "metrics.json").read_text())


def main(argv=None) -> int:
    """``python -m cl.train CONFIG.yaml [--run-dir DIR]``; an expected failure is one line, exit status 1."""
    return cli.run_main(_main, argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description="Train one run of the negatives trainer.")
    parser.add_argument("config", help="YAML file of parameters (see cl.train.Config)")
    parser.add_argument("--run-dir", help="where checkpoints and metrics go (default runs/cli/<config name>)")
    parser.add_argument("--method", help="the method's name in metrics.json and the summary "
                                         "(default: the loss)")
    parser.add_argument("--notebook", help="the notebook the run belongs to, for metrics.json")
    args = parser.parse_args(argv)
    if "WORLD_SIZE" in os.environ and not distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        cfg = load_config(args.config)
        result = run(cfg, args.run_dir or Path("runs") / "cli" / Path(args.config).stem,
                     notebook=args.notebook, method=args.method)
        if _is_main():
            print(json.dumps(result["final"], indent=1))
    finally:
        if distributed():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
