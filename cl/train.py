"""One training loop for every method of the study, driven by a validated config (:mod:`cl.config`).

``run(config, run_dir)`` trains (or resumes, or reuses a finished run with the same config)
and returns the run's metrics, also written to ``run_dir/metrics.json``:

* per epoch: loss, kNN top-1 (monitor bank), alignment, uniformity, images/s, and the
  difficulty statistics of the negatives (``cl.negatives.difficulty_bands``);
* at the end: kNN top-1 on the full training bank, linear-probe top-1, alignment,
  uniformity, training seconds and images/s.

The schedules sit side by side (``learning_rate``, ``target_momentum``); the step is one
short function per source of negatives (:mod:`cl.steps`: ``queue_step``, ``batch_step``,
``siamese_step``), each taking the parts it uses. What the run folder holds, and how it is
written, locked and reused, is :mod:`cl.run_folder`. ``python -m cl.train CONFIG.yaml`` does the same from the
command line, also under ``torchrun`` (keys of every rank enter the queue, BN is shuffled
across ranks, gradients are averaged by DDP).

A run fails early and leaves its folder usable: the config is checked before anything is
loaded or written, ``config.yaml`` is written with the first checkpoint, the folder is
locked while a process trains in it, a non-finite model or metric is never checkpointed
nor marked finished, and the previous checkpoint is kept for when the latest is unreadable.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml

from cl import augment, cli, data, metrics, models, negatives, objectives, system
from cl import run_folder as folder
from cl.cli import Interrupted
from cl.config import Config, ConfigError, check_data, class_labels, load_config
from cl.mochi import Mochi
from cl.moco import MoCo, distributed
from cl.progress import RunProgress, say
from cl.run_folder import TrainingDiverged, is_main
from cl.siamese import Siamese
from cl.steps import StepSimilarities, batch_step, queue_step, siamese_step

PROBE_SET_SEED = 20_200_610  # the probe set: the same training images for every run on a data set


# --------------------------------------------------------------------------- schedules, side by side

# Both take ``epoch``: epochs into the run, counted in steps (1.5 = halfway through the second).

def learning_rate(cfg: Config, epoch: float) -> float:
    """Linear warm-up for ``warmup_epochs``, then lr·½(1 + cos(π·epoch/epochs)) (``cosine``, MoCo v2)
    or lr (``constant``, the DCL and HCL papers' code)."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1e-3) / cfg.warmup_epochs
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (epoch / cfg.epochs)))


def target_momentum(cfg: Config, epoch: float) -> float:
    """The momentum τ of BYOL's target: ``moco_m`` (``constant``), or from it up to 1 over training
    (``cosine``, Grill et al. 2020, k of K steps): τ = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2."""
    if cfg.target_schedule == "constant":
        return cfg.moco_m
    return 1 - (1 - cfg.moco_m) * (math.cos(math.pi * epoch / cfg.epochs) + 1) / 2


def build_optimizer(cfg: Config, parameters) -> torch.optim.Optimizer:
    """SGD with momentum (MoCo), or Adam with L2 weight decay (the DCL and HCL papers' code)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(parameters, lr=cfg.lr, momentum=cfg.sgd_momentum, weight_decay=cfg.weight_decay)


def resolve_device(name: str) -> torch.device:
    """The device a config's ``device`` names (``auto``: this rank's GPU when there is one)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


# --------------------------------------------------------------------------- the data of a run

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



# --------------------------------------------------------------------------- the trainer

class Trainer:
    """A run: its data, augmentation, model, optimiser, checkpoints and evaluation, built from a Config.

    One handle per part: ``encoder`` (what is evaluated), ``model`` (what is trained and
    checkpointed: ``MoCo`` with its query encoder, momentum key encoder and queue for the
    ``queue`` source, the encoder alone for ``batch``, ``Siamese`` with its predictor and
    BYOL's momentum target for ``none``) and ``step``, the step of its source
    (:func:`queue_step`, :func:`batch_step` or :func:`siamese_step`) bound to the parts it uses.
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
        # the probe set: images of the whole training set (before any subset), the same for every run
        order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(PROBE_SET_SEED))
        self.probe_set_index = order[:cfg.probe].sort().values
        self.probe_set_images = whole.images[self.probe_set_index.to(self.device)]
        self.probe_set_labels = whole.labels[self.probe_set_index.to(self.device)].cpu()
        self.train_set, self.test_set = datasets(cfg, self.device, whole)
        # the kNN bank and the linear probe's training set: the training images of the evaluated
        # classes (the training set itself, unless a transfer run evaluates other classes)
        self.bank_set = (self.train_set if cfg.eval_classes == cfg.train_classes
                         else of_classes(whole, cfg, "eval_classes"))
        augmentation = augment.default_config(cfg.dataset, self.train_set.size, whole.images)
        self.aug_cfg = dataclasses.replace(augmentation, crop_scale=(cfg.crop_min, 1.0))
        self.views = augment.TwoViews(self.aug_cfg, self.train_set.channels)
        encoder = models.build_encoder(cfg.arch, self.train_set.channels, cfg.width, cfg.head,
                                       cfg.dim, cfg.hidden, cfg.bn_splits)
        encoder.bf16 = cfg.precision == "bf16"
        self.encoder = encoder.to(self.device, memory_format=torch.channels_last)  # faster on CPU and CUDA
        self.objective = objectives.get(cfg.loss)
        ddp = torch.nn.parallel.DistributedDataParallel if distributed() else lambda module: module
        mixing = cfg.mochi_s + cfg.mochi_s_prime > 0
        mochi = Mochi(cfg.mochi_n, cfg.mochi_s, cfg.mochi_s_prime) if mixing else None
        if cfg.source == "queue":
            moco = MoCo(encoder, cfg.dim, cfg.queue, cfg.moco_m, cfg.shuffle_bn, cfg.mined_queue,
                        cfg.mine_every, cfg.mine_rule)
            self.model = moco.to(self.device, memory_format=torch.channels_last)
            self.model.encoder_q = ddp(self.model.encoder_q)
            step = functools.partial(queue_step, self.model, mochi, self.generator)
        elif cfg.source == "batch":
            self.model = self.encoder
            step = functools.partial(batch_step, ddp(self.model))
        else:  # no negatives: SimSiam's stop-gradient, or BYOL's momentum target
            target = cfg.moco_m if "momentum_target" in self.objective.parts else None
            self.model = Siamese(self.encoder, cfg.dim, cfg.predictor_hidden, target).to(self.device)
            step = functools.partial(siamese_step, ddp(self.model))
        self.mochi = mochi
        self.optimizer = build_optimizer(cfg, self.parameter_groups())
        self.step = functools.partial(step, cfg=cfg, objective=self.objective, optimize=self.optimize,
                                      device_generator=self.device_generator)
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
        keep = None if self.latest_unreadable else path.with_name(folder.PREVIOUS)
        folder.save_torch(path, state, keep=keep)
        self.latest_unreadable = False

    def load(self, path: Path):
        state = folder.read_checkpoint(path, self.device)
        stored = Config.from_dict(state["config"]).identity()
        if stored != self.cfg.identity():
            raise ConfigError(f"checkpoint {path} was written by a different config "
                              f"({folder.config_diff(stored, self.cfg.identity())}); delete the run "
                              f"directory or give this config another run name")
        self.model.load_state_dict(_wrapped_keys(state["model"]))
        if self.mochi:
            self.mochi.forget()  # its similarity table was of the queue before loading
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.device_generator.set_state(state["device_generator"].cpu())
        self.start_epoch, self.history = state["epoch"], json.loads(state["history"])

    def resume(self, run_dir: Path):
        """Load the run's latest checkpoint, if any; when it cannot be read, the previous one (and say so)."""
        latest, previous = run_dir / folder.CHECKPOINT, run_dir / folder.PREVIOUS
        if latest.exists():
            try:
                return self.load(latest)
            except folder.CheckpointError as error:
                if not previous.exists():
                    raise folder.CheckpointError(f"{error}, and there is no previous one: delete it to train "
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
        refill_share, refills = 0.0, 0  # a mined queue's same-class share at its refills
        for step in range(steps):
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size].view(world, -1)[rank]
            try:
                loss, last = self.train_step(idx, epoch + step / steps)
            except ValueError:  # a loss refuses a row of neg with no finite entry: NaN queries, say
                if not self.non_finite():
                    raise
                raise TrainingDiverged(f"the model holds inf or NaN at epoch {epoch + 1}, step {step + 1} "
                                       f"({folder.names(self.non_finite())})") from None
            if not math.isfinite(loss):
                raise TrainingDiverged(f"the loss is {loss} at epoch {epoch + 1}, step {step + 1}")
            total += loss
            seen += cfg.batch_size
            if self.objective.clamp:  # summed on the device, read once per epoch: no extra sync per step
                clamped += self.objective.clamp(cfg, last.pos, last.neg).float().mean()
            if last.refilled:  # the share for the queries the keys were mined for, summed on the device
                refill_share, refills = refill_share + last.same_class().float().mean(), refills + 1
            if step == steps - 1 and last.neg.shape[1]:  # the bands of the first positive (of M)
                first = last.pos.reshape(len(last.pos), -1)[:, 0]
                stats = negatives.difficulty_bands(first.float(), last.neg.float(), cfg.t,
                                                   same_class=last.same_class())
            bar.step(epoch, loss)
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "loss": total / steps, "lr": self.optimizer.param_groups[0]["lr"],
               "train_seconds": seconds, "images_per_second": seen / seconds, "negatives": stats}
        if self.objective.clamp:
            row["clamp_rate"] = float(clamped) / steps  # share of rows whose Ng sat at its floor
        if refills:
            row["refill_same_class"] = float(refill_share) / refills
        return row

    def schedule(self, epoch: float) -> None:
        """Set the schedules at ``epoch`` (epochs into the run, counted in steps): the learning rate of
        every parameter group (SimSiam's predictor keeps lr when ``predictor_lr: fixed``) and the
        momentum of BYOL's target."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr if group.get("fixed_lr") else learning_rate(self.cfg, epoch)
        if isinstance(self.model, Siamese) and self.model.target is not None:
            self.model.momentum = target_momentum(self.cfg, epoch)

    def train_step(self, idx: torch.Tensor, epoch: float) -> tuple[float, StepSimilarities]:
        """One optimisation step on the training images ``idx`` at ``epoch`` epochs into the run."""
        self.schedule(epoch)
        images, labels = self.train_set.images[idx], self.train_set.labels[idx]
        views = self.views(images, self.device_generator)
        x1, x2 = (v.contiguous(memory_format=torch.channels_last) for v in views)
        if self.cfg.positives == 1:
            return self.step(x1, x2, labels, idx, epoch)
        # M > 1 positives: M − 1 more views of each image, drawn two at a time after the first two
        more = [v for _ in range(self.cfg.positives // 2) for v in self.views(images, self.device_generator)]
        extra = [v.contiguous(memory_format=torch.channels_last) for v in more[:self.cfg.positives - 1]]
        return self.step(x1, x2, labels, idx, epoch, extra=extra)

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
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Unaugmented images as the encoder takes them (float, normalised, channels-last)."""
        return augment.to_float(images, self.aug_cfg).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def embed_probe_set(self) -> torch.Tensor:
        """The normalised embeddings z (the space the loss compares) of the probe set, unaugmented,
        with the query encoder in eval mode: nothing of the training (batch-norm statistics, random
        draws) changes. Notebook 07 ranks every probe-set negative for every probe-set query with them."""
        self.encoder.eval()
        z = metrics.embed(self.encoder, self.probe_set_images, self.prepare)
        self.encoder.train()
        return z.cpu()

    @torch.no_grad()
    def evaluate(self, final: bool) -> dict:
        """kNN top-1 (monitor bank, or the whole training set when final), alignment, uniformity;
        when final, the linear probe's top-1 too."""
        cfg, enc = self.cfg, self.encoder
        enc.eval()
        bank_set = self.bank_set
        if not final and cfg.monitor_bank and cfg.monitor_bank < len(bank_set):
            bank_set = bank_set.subset(cfg.monitor_bank, cfg.seed)
        bank = metrics.embed(enc.features, bank_set.images, self.prepare)
        test = metrics.embed(enc.features, self.test_set.images, self.prepare)
        classes = len(self.train_set.classes)
        out = {"knn_top1": metrics.knn_accuracy(bank, bank_set.labels, test, self.test_set.labels,
                                                classes, cfg.knn_k, cfg.knn_t)}
        sample = self.test_set.images[: min(2048, len(self.test_set))]
        v1, v2 = self.views(sample, torch.Generator().manual_seed(12345))
        z1, z2 = F.normalize(enc(v1).float(), dim=1), F.normalize(enc(v2).float(), dim=1)
        out["alignment"] = metrics.alignment(z1, z2)
        out["uniformity"] = metrics.uniformity(z1)
        if final:
            out["effective_rank"] = metrics.effective_rank(z1)
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


# --------------------------------------------------------------------------- the run

def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def _check_finite(trainer: Trainer, row: dict, when: str):
    """TrainingDiverged unless the model's parameters and buffers and the row's metrics are all finite."""
    tensors, values = trainer.non_finite(), folder.non_finite_metrics(row)
    problems = []
    if tensors:
        verb = "holds" if len(tensors) == 1 else "hold"
        problems.append(f"the model's {folder.names(tensors)} {verb} inf or NaN")
    if values:
        problems.append(f"{folder.names(values)} {'is' if len(values) == 1 else 'are'} not finite")
    if problems:
        raise TrainingDiverged(f"{' and '.join(problems)} {when}")


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
        progress: bool = True, wait: bool = False) -> dict:
    """Train (or resume, or reuse) the run in ``run_dir``; returns its metrics.json content.

    The run folder is locked while this process trains in it (``wait``: while another process
    trains it, wait, then reuse what it finished); ``progress=False`` shows no progress (the line
    saying what trains is always shown).
    """
    cfg = config if isinstance(config, Config) else Config.from_dict(dict(config))
    cfg.validate()
    run_dir, method = Path(run_dir), method or cfg.loss
    done = folder.finished_run(cfg, run_dir)
    if done is None:
        with folder.locked(run_dir, wait):
            done = folder.finished_run(cfg, run_dir)  # finished by another process in the meantime
            if done is None:
                return _train(cfg, run_dir, notebook, method, progress)
    if is_main():
        say(f"{run_dir.name}: reusing the finished run in {run_dir} ({method}, {cfg.dataset}, "
            f"{_epochs(cfg.epochs)}; kNN top-1 {done['final']['knn_top1']:.1f} %)")
    return done


def _train(cfg: Config, run_dir: Path, notebook: str | None, method: str, progress: bool) -> dict:
    """Build the run, resume it from its checkpoint if there is one, train the epochs left, evaluate.

    Nothing is written before the first epoch has trained and proved finite: config.yaml comes
    with the first checkpoint, so a run that fails before leaves its folder free.
    """
    metrics_path, cfg_path = run_dir / folder.METRICS, run_dir / folder.CONFIG
    trainer = Trainer(cfg)
    trainer.resume(run_dir)
    saved = trainer.start_epoch
    if is_main():
        state = ("new run" if saved == 0 else f"resuming at epoch {saved + 1}" if saved < cfg.epochs
                 else "resuming at its final evaluation")
        say(f"{run_dir.name}: {state}: {method} on {cfg.dataset} "
            f"({len(trainer.train_set):,} training images), "
            f"{_epochs(cfg.epochs)}, in {run_dir}")
    record = {"run": run_dir.name, "notebook": notebook, "method": method, "config": cfg.to_dict(),
              "threads": torch.get_num_threads(), "epochs": trainer.history, "finished": False}
    steps = len(trainer.train_set) // cfg.batch_size
    bar = RunProgress(run_dir.name, cfg.epochs, steps, trainer.start_epoch, enabled=progress and is_main())
    try:
        for epoch in range(trainer.start_epoch, cfg.epochs):
            row = trainer.train_epoch(epoch, bar)
            row.update(trainer.evaluate(final=False))
            _check_finite(trainer, row, f"after epoch {epoch + 1}")
            trainer.history.append(row)
            if is_main():
                trainer.save(run_dir / folder.CHECKPOINT, epoch + 1)
            saved = epoch + 1
            if is_main():  # config.yaml after the checkpoint: a folder never holds a config and no epoch
                if not cfg_path.exists():
                    folder.atomic_write(cfg_path, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
                folder.write_json(metrics_path, record)
            if is_main() and cfg.probe:  # after the checkpoint: nothing comes before the first epoch
                folder.add_probe_set(run_dir, epoch + 1, trainer.embed_probe_set(), trainer.probe_set_index,
                                 trainer.probe_set_labels)
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
    collapsed = metrics.collapse(final["uniformity"], final["effective_rank"])
    record.update(final=final, finished=True, collapsed=collapsed)
    if is_main():
        folder.write_json(metrics_path, record)
        if collapsed:
            say(f"{run_dir.name}: finished, but its embedding collapsed ({collapsed}); likely cause: "
                f"{collapse_cause(cfg)}. The run is kept (metrics.json records the collapse)")
    return record


def collapse_cause(cfg: Config) -> str:
    """The likely cause of a run's collapse, from its config: no negatives (and nothing else to keep the
    embeddings apart), a temperature far below the papers', a selection of the negatives, or the
    learning rate."""
    if cfg.loss == "positives_only":
        return "no negatives: nothing keeps the embeddings apart (notebook 00 shows this on purpose)"
    if cfg.loss in ("simsiam", "byol"):
        return (f"the predictor and stop-gradient did not hold it off at lr={cfg.lr:g}: lower lr, or "
                f"train longer warm")
    if cfg.t < 0.01:
        return f"the temperature t={cfg.t:g}, far below the papers' 0.07–0.5: raise t"
    if cfg.select != "all":
        share = "" if cfg.select == "drop_same_class" else f", select_fraction {cfg.select_fraction:g}"
        return (f"the negatives kept (select {cfg.select}{share}): too few or too alike to spread the "
                f"embeddings (notebook 02 shows each selection's uniformity)")
    return f"the learning rate lr={cfg.lr:g} or the temperature t={cfg.t:g}: lower lr, or raise t"


def load_model(run_dir, device: str = "cpu") -> tuple[Trainer, dict]:
    """The ``Trainer`` of a finished run (weights from its last checkpoint) and its metrics."""
    run_dir = Path(run_dir)
    cfg = Config.from_dict({**cli.load_yaml((run_dir / folder.CONFIG).read_text()), "device": device})
    trainer = Trainer(cfg)
    trainer.load(run_dir / folder.CHECKPOINT)
    trainer.model.eval()
    return trainer, json.loads((run_dir / folder.METRICS).read_text())


def main(argv=None) -> int:
    """``python -m cl.train CONFIG.yaml [--run-dir DIR]``; an expected failure is one line, exit status 1."""
    return cli.run_main(_main, argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description="Train one run of the negatives trainer.")
    parser.add_argument("config", help="YAML file of parameters (see cl.config.Config)")
    parser.add_argument("--run-dir", help="where checkpoints and metrics go (default runs/cli/<config name>)")
    parser.add_argument("--method", help="the method's name in metrics.json and the summary "
                                         "(default: the loss)")
    parser.add_argument("--notebook", help="the notebook the run belongs to, for metrics.json")
    parser.add_argument("--threads", type=int, help="CPU threads for the run (default: torch's, one per "
                                                    "core); metrics.json records them")
    parser.add_argument("--wait", action="store_true", help="while another process trains in the run "
                                                            "folder, wait for it (else: fail at once)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if "WORLD_SIZE" in os.environ and not distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        cfg = load_config(args.config)
        result = run(cfg, args.run_dir or Path("runs") / "cli" / Path(args.config).stem,
                     notebook=args.notebook, method=args.method, wait=args.wait)
        if is_main():
            print(json.dumps(result["final"], indent=1))
    finally:
        if distributed():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
