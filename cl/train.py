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
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import difflib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from cl import augment, data, losses, metrics, models, negatives
from cl.moco import MoCo, Pair, batch_pairs, distributed


class ConfigError(ValueError):
    """A config that cannot run; the message says which key and why."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


LOSSES = ("info_nce", "debiased", "hard", "supcon", "positives_only")
SOURCES = ("queue", "batch")
CHOICES = {"optimizer": ("sgd", "adam"), "lr_schedule": ("cosine", "constant"), "precision": ("bf16", "fp32")}
# Keys added after runs were made, with the value that reproduces those runs: before
# ``precision`` existed the CPU trained in float32 (no run was ever made on a GPU here).
LEGACY = {"precision": "fp32"}


@dataclass
class Config:
    """Every knob of a training run. Defaults are the cpu-scale MoCo v2 baseline."""

    # data
    dataset: str = "fashion_mnist"
    train_subset: int = 0          # use this many training images (0 = all)
    test_subset: int = 0           # evaluate on this many test images (0 = all)
    # encoder
    arch: str = "small_cnn"        # small_cnn | resnet18
    width: int = 32                # small_cnn width
    head: str = "mlp"              # mlp (MoCo v2) | linear (MoCo v1)
    dim: int = 128
    hidden: int = 512
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
    mochi_warmup: float = 0.0      # MoCHi: epochs without synthesis (fractions count in steps: 0.2 of 4 = 5 %)
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
        for key, value in d.items():
            if key not in fields:
                near = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"unknown parameter {key!r}{hint}; valid parameters: {', '.join(fields)}")
            _check_type(key, value, fields[key].type)
        cfg = cls(**{k: float(v) if fields[k].type == "float" else v for k, v in d.items()})
        cfg.validate()
        return cfg

    def validate(self):
        def need(ok, why):
            if not ok:
                raise ConfigError(why)
        world = dist.get_world_size() if distributed() else 1
        keys_per_step = self.batch_size * (2 if self.symmetric else 1)
        need(self.arch in ("small_cnn", "resnet18"), f"arch must be small_cnn or resnet18, not {self.arch!r}")
        need(self.loss in LOSSES, f"loss must be one of {LOSSES}, not {self.loss!r}")
        need(self.source in SOURCES, f"source must be one of {SOURCES}, not {self.source!r}")
        need(self.select in negatives.MODES, f"select must be one of {negatives.MODES}, not {self.select!r}")
        for key, allowed in CHOICES.items():
            need(getattr(self, key) in allowed, f"{key} must be one of {allowed}, not {getattr(self, key)!r}")
        need(self.mochi_warmup >= 0, f"mochi_warmup counts epochs and must be ≥ 0, got {self.mochi_warmup}")
        need(self.epochs >= 1 and self.batch_size >= 2, "epochs must be ≥ 1 and batch_size ≥ 2")
        need(self.t > 0, f"temperature t must be positive, got {self.t}")
        need(0 <= self.tau_plus < 1, f"tau_plus is a class prior in [0, 1), got {self.tau_plus}")
        need(0 < self.select_fraction <= 1, f"select_fraction must be in (0, 1], got {self.select_fraction}")
        need(0 <= self.moco_m < 1, f"moco_m must be in [0, 1), got {self.moco_m}")
        need(0 < self.crop_min <= 1, f"crop_min must be in (0, 1], got {self.crop_min}")
        need(self.batch_size % world == 0, f"batch_size {self.batch_size} must divide over {world} processes")
        need((self.batch_size // world) % self.bn_splits == 0,
             f"the per-process batch {self.batch_size // world} must split into bn_splits={self.bn_splits} equal BN groups")
        if self.source == "queue":
            need(self.queue >= keys_per_step,
                 f"queue={self.queue} is smaller than the {keys_per_step} keys enqueued per step "
                 f"(batch_size{' × 2 views (symmetric)' if self.symmetric else ''}): a step would overwrite its own keys")
        mochi = self.mochi_s + self.mochi_s_prime > 0
        need(not mochi or self.mochi_n >= 2, "MoCHi needs mochi_n ≥ 2 hardest negatives to mix")
        need(not mochi or self.source == "queue", "MoCHi mixes negatives of the queue: use source='queue'")
        need(not mochi or self.mochi_n <= self.queue, f"mochi_n={self.mochi_n} exceeds the queue size {self.queue}")
        need(self.loss != "supcon" or self.source == "batch",
             "supcon contrasts every view of the batch with every other: use source='batch'")
        need(self.loss != "supcon" or (self.select == "all" and not mochi),
             "supcon has no negative row to select from or append to: use select='all' and no MoCHi")
        need(self.source == "queue" or not self.symmetric, "symmetric applies to the queue source (batch is symmetric already)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """What defines the run's result: every parameter but the device it runs on."""
        return {k: v for k, v in self.to_dict().items() if k != "device"}


_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _check_type(key, value, annotation):
    expected = _TYPES[annotation]
    if isinstance(value, bool) and annotation != "bool" or not isinstance(value, expected):
        raise ConfigError(f"parameter {key!r} must be {annotation}, got {value!r} ({type(value).__name__})")


def load_config(path) -> Config:
    """A YAML file of parameters, read with the safe loader."""
    with open(path) as f:
        return Config.from_dict(yaml.safe_load(f) or {})


# --------------------------------------------------------------------------- the objective

def objective(cfg: Config, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """The loss a config names, on the similarities of the loss contract."""
    if cfg.loss == "info_nce":
        return losses.info_nce(pos, neg, cfg.t)
    if cfg.loss == "debiased":
        return losses.debiased(pos, neg, cfg.t, cfg.tau_plus)
    if cfg.loss == "positives_only":
        return losses.positives_only(pos, cfg.t)
    return losses.hard(pos, neg, cfg.t, cfg.tau_plus, cfg.beta)


def negatives_for(cfg: Config, pair: Pair, moco: MoCo, labels: torch.Tensor, progress: float,
                  generator: torch.Generator) -> torch.Tensor:
    """The row of negatives each query is contrasted with: selection, then MoCHi's synthetic ones
    (mixed from the whole queue, as in the paper, whatever the selection kept) once ``progress``
    (epochs, counted in steps) has passed the warm-up."""
    neg = negatives.select(pair.neg, cfg.select, cfg.select_fraction, labels=labels,
                           queue_labels=moco.queue_labels, generator=generator)
    if cfg.mochi_s + cfg.mochi_s_prime and progress >= cfg.mochi_warmup:
        draw = negatives.mochi_draw(pair.neg, cfg.mochi_n, cfg.mochi_s, cfg.mochi_s_prime, generator)
        mixed = negatives.mixed_logits(pair.q, pair.neg, draw, moco.queue_similarity(draw.first, draw.second))
        neg = torch.cat([neg, mixed.to(neg.dtype)], dim=1)
    return neg


# --------------------------------------------------------------------------- the run

def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS.

    By default glibc hands large freed blocks (and the top of the heap) back to the OS, so
    every training step page-faults its activations back in. Measured on the small CNN's
    step at batch 256 (2 cores): 16,000 minor page faults a step before, 600 after, and
    108 → 90 ms a step. The process keeps its peak memory, which is what a training
    process holds anyway. Returns False where there is no glibc (macOS, musl), which
    changes nothing but speed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (m_mmap_threshold, 32 * 2**20),  # glibc's maximum: blocks below it come from the heap
        (m_trim_threshold, 2**31 - 1),  # never give the heap's top back
        (m_top_pad, 256 * 2**20)))


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


def _atomic_write(path: Path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_json(path: Path, obj):
    _atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=1)))


def _is_main() -> bool:
    return not distributed() or dist.get_rank() == 0


class Study:
    """Everything a run holds: data, augmentation, model, optimiser. Built from a Config."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        # host draws (data order, BN shuffle) and on-device draws (augmentation, random
        # selection, MoCHi): both are seeded and checkpointed, so a resumed run is identical
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.device_generator = torch.Generator(self.device).manual_seed(cfg.seed + 1)
        self.train_set = data.load(cfg.dataset, "train", device=self.device)
        self.test_set = data.load(cfg.dataset, "test", device=self.device)
        if cfg.train_subset:
            self.train_set = self.train_set.subset(cfg.train_subset, cfg.seed)
        if cfg.test_subset:
            self.test_set = self.test_set.subset(cfg.test_subset, cfg.seed)
        size = self.train_set.size
        self.aug_cfg = dataclasses.replace(augment.default_config(cfg.dataset, size),
                                           crop_scale=(cfg.crop_min, 1.0))
        self.views = augment.TwoViews(self.aug_cfg, self.train_set.channels)
        encoder = models.build_encoder(cfg.arch, self.train_set.channels, cfg.width, cfg.head,
                                       cfg.dim, cfg.hidden, cfg.bn_splits)
        encoder.bf16 = cfg.precision == "bf16"
        # channels_last is faster on CUDA and, measured here, 2× faster on CPU for the small CNN
        self.moco = MoCo(encoder, cfg.dim, cfg.queue, cfg.moco_m, cfg.shuffle_bn).to(
            self.device, memory_format=torch.channels_last)
        self.encoder = encoder  # unwrapped, for evaluation and checkpoints
        if distributed():
            self.moco.encoder_q = torch.nn.parallel.DistributedDataParallel(self.moco.encoder_q)
        self.optimizer = build_optimizer(cfg, self.encoder.parameters())
        self.start_epoch, self.history = 0, []

    # -- checkpoints -------------------------------------------------------------------
    def model_state(self) -> dict:
        """The MoCo state with the keys of an unwrapped model, whether or not DDP wraps f_q."""
        return {k.replace("encoder_q.module.", "encoder_q."): v for k, v in self.moco.state_dict().items()}

    def save(self, path: Path, epoch: int):
        state = {"config": self.cfg.identity(), "epoch": epoch, "model": self.model_state(),
                 "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                 "device_generator": self.device_generator.get_state().cpu(),
                 "history": json.dumps(self.history)}
        _atomic_write(path, lambda p: torch.save(state, p))

    def load(self, path: Path):
        state = torch.load(path, map_location=self.device, weights_only=True)
        stored = Config.from_stored(state["config"]).identity()
        if stored != self.cfg.identity():
            raise ConfigError(f"checkpoint {path} was written by a different config "
                              f"({_diff(stored, self.cfg.identity())}); delete the run "
                              f"directory or give this config another run name")
        self.moco.load_state_dict(_wrapped_keys(state["model"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.device_generator.set_state(state["device_generator"].cpu())
        self.start_epoch, self.history = state["epoch"], json.loads(state["history"])

    # -- one epoch ---------------------------------------------------------------------
    def train_epoch(self, epoch: int, bar) -> dict:
        """Train one epoch; returns its row of metrics.json (difficulty statistics of its last step)."""
        cfg, moco = self.cfg, self.moco
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed() else (1, 0)
        n = len(self.train_set)
        steps = n // cfg.batch_size
        perm = torch.randperm(n, generator=self.generator).to(self.device)
        moco.train()
        total, seen, stats, clamped, start = 0.0, 0, None, 0.0, time.perf_counter()
        for step in range(steps):
            progress = epoch + step / steps  # in epochs
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(cfg, progress / cfg.epochs)
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size].view(world, -1)[rank]
            loss, last = self.train_step(idx, progress)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss is {loss} at epoch {epoch + 1}, step {step + 1}: lower lr "
                    f"(now {cfg.lr}) or raise t (now {cfg.t}); the last good checkpoint is kept")
            total += loss
            seen += cfg.batch_size
            if cfg.loss in ("debiased", "hard"):
                beta = cfg.beta if cfg.loss == "hard" else None
                clamped += losses.clamp_binds(last.pos, last.neg, cfg.t, cfg.tau_plus, beta).float().mean().item()
            if step == steps - 1:
                stats = negatives.difficulty_bands(last.pos.float(), last.neg.float(), cfg.t, same_class=last.same_class())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}")
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "loss": total / steps, "lr": self.optimizer.param_groups[0]["lr"],
               "train_seconds": seconds, "images_per_second": seen / seconds, "negatives": stats}
        if cfg.loss in ("debiased", "hard"):
            row["clamp_rate"] = clamped / steps  # share of rows whose Ng sat at its floor, over the epoch
        return row

    def train_step(self, idx: torch.Tensor, progress: float):
        """One optimisation step on the training images ``idx`` at ``progress`` epochs into the
        run; returns (loss, similarities seen)."""
        images, labels = self.train_set.images[idx], self.train_set.labels[idx]
        x1, x2 = (v.contiguous(memory_format=torch.channels_last) for v in self.views(images, self.device_generator))
        return self.update(x1, x2, labels, idx, progress)

    def update(self, x1, x2, labels, idx, progress: float):
        """Loss on two views, gradient step, then the keys enter the queue (after the loss)."""
        loss, keys, last = self.step_loss(x1, x2, labels, progress)
        if not torch.isfinite(loss):
            return loss.item(), last
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if keys is not None:
            copies = len(keys) // len(idx)
            self.moco.enqueue(keys, labels.repeat(copies), idx.repeat(copies))
        return loss.item(), last

    def step_loss(self, x1, x2, labels, progress: float):
        """The step's loss, the keys to enqueue, and the last pair's final (pos, neg, same-class mask)."""
        cfg = self.cfg
        if cfg.source == "batch":
            # one forward per view, as DCL's and HCL's official code do (batch norm per view;
            # SupCon's code concatenates the views instead). On CPU it is also 1.3× faster.
            z = F.normalize(torch.cat([self.moco.encoder_q(x1), self.moco.encoder_q(x2)]), dim=1)
            labels2 = labels.repeat(2)
            pos, neg, neg_labels = batch_pairs(z, labels2)
            neg = negatives.select(neg, cfg.select, cfg.select_fraction, labels=labels2,
                                   queue_labels=neg_labels, generator=self.device_generator)
            loss = losses.supcon(z, labels2, cfg.t) if cfg.loss == "supcon" else objective(cfg, pos, neg)
            return loss, None, _Last(pos.detach(), neg.detach(), labels2, neg_labels)
        pairs = self.moco(x1, x2, cfg.symmetric, self.generator)
        queue_labels = self.moco.queue_labels
        loss = 0.0
        for pair in pairs:
            neg = negatives_for(cfg, pair, self.moco, labels, progress, self.device_generator)
            loss = loss + objective(cfg, pair.pos, neg)
        return loss, torch.cat([p.k for p in pairs]), _Last(pair.pos.detach(), neg.detach(), labels,
                                                             queue_labels.clone())

    # -- evaluation --------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, final: bool) -> dict:
        """kNN top-1 (monitor bank, or the whole training set when final), alignment, uniformity."""
        cfg, enc = self.cfg, self.encoder
        enc.eval()
        prepare = lambda x: augment.to_float(x, self.aug_cfg).contiguous(memory_format=torch.channels_last)
        bank_set = self.train_set
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


def _wrapped_keys(state: dict) -> dict:
    """Checkpoint keys as this process's model names them (``encoder_q.module.`` under DDP)."""
    if not distributed():
        return state
    return {k.replace("encoder_q.", "encoder_q.module.", 1) if k.startswith("encoder_q.") else k: v
            for k, v in state.items()}


class _Last:
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


def run(config, run_dir, notebook: str | None = None, method: str | None = None,
        progress: bool = True) -> dict:
    """Train (or resume, or reuse) the run in ``run_dir``; returns its metrics.json content."""
    cfg = config if isinstance(config, Config) else Config.from_dict(dict(config))
    run_dir = Path(run_dir)
    metrics_path, ckpt_path, cfg_path = run_dir / "metrics.json", run_dir / "checkpoint.pt", run_dir / "config.yaml"
    if cfg_path.exists():
        old = Config.from_stored(yaml.safe_load(cfg_path.read_text())).identity()
        if old != cfg.identity():
            raise ConfigError(f"{run_dir} holds a run of a different config ({_diff(old, cfg.identity())}); "
                              f"delete that directory or give this config another run name")
        if metrics_path.exists():
            done = json.loads(metrics_path.read_text())
            if done.get("finished"):
                return done
    run_dir.mkdir(parents=True, exist_ok=True)
    if _is_main():
        _atomic_write(cfg_path, lambda p: p.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False)))
    study = Study(cfg)
    if ckpt_path.exists():
        study.load(ckpt_path)
    record = {"run": run_dir.name, "notebook": notebook, "method": method or cfg.loss,
              "config": cfg.to_dict(), "epochs": study.history, "finished": False}
    steps = len(study.train_set) // cfg.batch_size
    bar = tqdm(total=cfg.epochs * steps, initial=study.start_epoch * steps, desc=run_dir.name,
               disable=not (progress and _is_main()), mininterval=2)
    for epoch in range(study.start_epoch, cfg.epochs):
        row = study.train_epoch(epoch, bar)
        row.update(study.evaluate(final=False))
        study.history.append(row)
        bar.set_postfix(epoch=epoch + 1, loss=f"{row['loss']:.3f}", knn=f"{row['knn_top1']:.1f}")
        if _is_main():
            study.save(ckpt_path, epoch + 1)
            _write_json(metrics_path, record)
    bar.close()
    final = study.evaluate(final=True)
    seconds = sum(r["train_seconds"] for r in study.history)
    images = sum(r["train_seconds"] * r["images_per_second"] for r in study.history)
    final.update(train_seconds=seconds, images_per_second=images / seconds)
    record.update(final=final, finished=True)
    if _is_main():
        _write_json(metrics_path, record)
    return record


def load_model(run_dir, device: str = "cpu") -> tuple[Study, dict]:
    """The trained ``Study`` of a finished run (weights from its last checkpoint) and its metrics."""
    run_dir = Path(run_dir)
    cfg = Config.from_stored(yaml.safe_load((run_dir / "config.yaml").read_text()))
    cfg.device = device
    study = Study(cfg)
    study.load(run_dir / "checkpoint.pt")
    study.moco.eval()
    return study, json.loads((run_dir / "metrics.json").read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train one run of the negatives study.")
    parser.add_argument("config", help="YAML file of parameters (see cl.train.Config)")
    parser.add_argument("--run-dir", help="where checkpoints and metrics go (default runs/cli/<config name>)")
    args = parser.parse_args(argv)
    if "WORLD_SIZE" in os.environ and not distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        cfg = load_config(args.config)
    except (ConfigError, yaml.YAMLError) as e:
        sys.exit(f"error: {e}")
    run_dir = args.run_dir or Path("runs") / "cli" / Path(args.config).stem
    result = run(cfg, run_dir)
    if _is_main():
        print(json.dumps(result["final"], indent=1))
    if distributed():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
