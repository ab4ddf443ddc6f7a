"""``make bench``: throughput of the training step, of the augmentation, and of each strategy.

Prints a table and writes ``runs/bench.json``:

* MoCo v2 training-step images/s for the small CNN and ResNet-18 (CIFAR stem);
* the batched on-device augmentation alone (images/s, two views each), and its ratio to
  the training step (target: ≥ 10×, so it is never the bottleneck);
* the same model and batch fed the usual way — torchvision per-sample transforms on PIL
  images through a DataLoader, best of 0, 1 and 2 workers — and the speed-up of the
  project's path (target: ≥ 2×);
* the cost of every negative strategy relative to the plain MoCo step at K=4096 (targets:
  ≤ 1.10×, MoCHi with N=1024, s=s′=256 ≤ 1.15×), and of notebook 08's designs on fewer or
  mined negatives (the smaller the better), timed in blocks of 16 steps so that a mined
  queue's refill counts: the mean ratio and its 95 % t interval over 8 interleaved blocks;
* the speed-up of the default bf16 encoder (``precision: bf16``) over float32;
* the pool's throughput (``cl.pool``): one-epoch runs per hour at each width 1, 2, 4, … up to the
  cores this process may use; ``cl.pool`` then trains at the best width on a machine of that many
  cores.

Throughputs are medians over repeated steps after a warm-up, on whatever machine runs it;
costs are timed interleaved with the plain step (one block of each in turn), so that the
ratios do not depend on when each was measured.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2 as T

import cl
from cl import augment, negatives, objectives, pool, system
from cl.config import Config
from cl.stats import Interval, t_interval
from cl.train import Trainer

BASE = dict(train_subset=8192, test_subset=256, device="cpu", queue=4096, batch_size=256)
STRATEGIES = {
    "hardest 5% only": dict(select="hardest", select_fraction=0.05),
    "easiest 95% only": dict(select="easiest", select_fraction=0.95),
    "drop hardest 0.1%": dict(select="drop_hardest", select_fraction=0.001),
    "random 5%": dict(select="random", select_fraction=0.05),
    "drop same class": dict(select="drop_same_class"),
    **{f"loss {name}": dict(loss=name, source=objective.sources[0])  # every registered objective
       for name, objective in objectives.OBJECTIVES.items() if name != "info_nce"},
    "MoCHi N=1024 s=s'=256": dict(mochi_n=1024, mochi_s=256, mochi_s_prime=256),
    "MoCHi N=256 s=128 s'=64 (paper ratios)": dict(mochi_n=256, mochi_s=128, mochi_s_prime=64),
    # notebook 08's designs for turning "the hardest 5 % suffice" into work saved or accuracy gained
    "queue of 256": dict(queue=256),
    **{f"mined queue: 256 of a 16384 bank every 16 steps, {rule}": dict(queue=16384, mined_queue=256,
                                                                        mine_every=16, mine_rule=rule)
       for rule in negatives.MINE_RULES},
    "hardest 5% of a 16384 bank": dict(queue=16384, select="hardest", select_fraction=0.05),
}


def _median_seconds(fn, steps: int, warmup: int = 2) -> float:
    return interleaved_medians({None: fn}, steps, warmup)[None]


def interleaved_times(fns: dict, rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds of each call of each function, called in turn (one call of each, ``rounds`` times)
    after ``warmup`` calls each: a slow spell of the machine (another process, frequency
    scaling) weighs on all of them alike, so their ratios stay fair."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(fns: dict, rounds: int, warmup: int = 2) -> dict:
    """Median seconds of each function, timed as ``interleaved_times`` does."""
    return {name: statistics.median(t) for name, t in interleaved_times(fns, rounds, warmup).items()}


def _stepper(trainer: Trainer):
    """One full training step (augmentation included) of a Trainer, on a random batch."""
    g = torch.Generator().manual_seed(0)
    n = len(trainer.train_set)
    batch = lambda: torch.randint(n, (trainer.cfg.batch_size,), generator=g)
    return lambda: trainer.train_step(batch(), 10**6)  # far into the run: every warm-up is over


def step_seconds(trainer: Trainer, steps: int, warmup: int = 2) -> float:
    """Median seconds of one full training step (augmentation included) of a Trainer."""
    return _median_seconds(_stepper(trainer), steps, warmup)


def step_costs(base: Trainer, others: dict[str, Trainer], rounds: int, steps: int = 1,
               warmup: int = 1) -> dict[str, Interval]:
    """Each trainer's time for ``steps`` training steps in a row over ``base``'s, timed interleaved
    ``rounds`` times: the mean of the per-round ratios and its 95 % t interval (``stats.Interval``).
    A round's ratio pairs the two timings of that round (one slow spell slows
    both); ``steps`` spans the period of any periodic work (a mined queue's refill every
    ``mine_every`` steps), so that every round holds it once and the ratio is the amortised cost."""
    def block(trainer):
        step = _stepper(trainer)
        return lambda: [step() for _ in range(steps)]
    times = interleaved_times({None: block(base), **{name: block(t) for name, t in others.items()}},
                              rounds, warmup)
    plain = times.pop(None)
    costs = {}
    for name, seconds in times.items():
        ratios = [a / b for a, b in zip(seconds, plain)]
        costs[name] = t_interval(ratios)
    return costs


def augment_images_per_second(trainer: Trainer, steps: int = 20) -> float:
    batch = trainer.train_set.images[: trainer.cfg.batch_size]
    views = lambda: trainer.views(batch, trainer.device_generator)
    return trainer.cfg.batch_size / _median_seconds(views, steps)


class _PILTwoViews(torch.utils.data.Dataset):
    """The usual way: PIL images, per-sample torchvision transforms, two views each."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, cfg: augment.AugmentConfig):
        self.images, self.labels = images.cpu(), labels.cpu()
        self.transform = T.Compose([
            T.ToPILImage(), T.RandomResizedCrop(cfg.size, scale=cfg.crop_scale, antialias=False),
            T.RandomHorizontalFlip(cfg.flip_p),
            T.RandomApply([T.ColorJitter(cfg.brightness, cfg.contrast)], p=cfg.jitter_p),
            T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(cfg.mean, cfg.std)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return self.transform(x), self.transform(x), self.labels[i], i


def dataloader_stepper(trainer: Trainer, workers: int):
    """One training step of ``trainer`` on a batch from a torchvision DataLoader."""
    loader = DataLoader(_PILTwoViews(trainer.train_set.images, trainer.train_set.labels, trainer.aug_cfg),
                        batch_size=trainer.cfg.batch_size, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    batches = iter(loader)

    def one():
        x1, x2, labels, idx = next(batches)
        x1, x2 = (v.to(trainer.device, memory_format=torch.channels_last) for v in (x1, x2))
        trainer.step(x1, x2, labels.to(trainer.device), idx.to(trainer.device), 10**6)
    return one


def pool_widths(cores: int) -> list[int]:
    """The widths of the pool to time on ``cores`` cores: 1, 2, 4, … up to the cores, and the cores."""
    widths = [2 ** i for i in range(cores.bit_length()) if 2 ** i <= cores]
    return widths + [cores] if widths[-1] != cores else widths


def pool_runs_per_hour(widths: list[int], config: dict | None = None) -> dict[int, float]:
    """One-epoch runs per hour that :mod:`cl.pool` trains at each width: ``width`` runs side by side, the
    cores divided evenly among them, whole runs with their evaluation and the processes' start-up
    included. By default on the whole training set, so that the start-up weighs on the pool about as
    little as on the study's runs (on runs of a few seconds it outweighs the gain)."""
    config = config or dict(test_subset=2048, monitor_bank=2048, linear_epochs=10, epochs=1, device="cpu",
                            probe=0)
    rates = {}
    for width in widths:
        with tempfile.TemporaryDirectory() as tmp, system.environment(**{pool.ENV: str(width)}):
            jobs = [(Config.from_dict({**config, "seed": seed}), Path(tmp) / f"s{seed}")
                    for seed in range(width)]
            start = time.perf_counter()
            pool.train_all(jobs, relay=False)
            rates[width] = width * 3600 / (time.perf_counter() - start)
        print(f"pool of {width}: {rates[width]:.1f} one-epoch runs per hour", flush=True)
    return rates


def main():
    torch.manual_seed(0)
    report = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__}
    print(f"benchmarking on {report['machine']} (torch {torch.__version__})", flush=True)
    cnn = Trainer(Config.from_dict(BASE))
    plain = step_seconds(cnn, steps=10)
    report["small_cnn_step_images_per_second"] = BASE["batch_size"] / plain
    # the default bf16 encoder against float32, interleaved step by step
    fp32_trainer = Trainer(Config.from_dict({**BASE, "precision": "fp32"}))
    fp32 = step_costs(cnn, {"fp32": fp32_trainer}, rounds=20, warmup=3)["fp32"]
    report["bf16_speedup_over_fp32"] = fp32.mean
    resnet_cfg = {**BASE, "arch": "resnet18", "batch_size": 64}
    resnet = Trainer(Config.from_dict(resnet_cfg))
    report["resnet18_step_images_per_second"] = 64 / step_seconds(resnet, steps=3, warmup=1)
    report["augment_images_per_second"] = augment_images_per_second(cnn)
    report["augment_over_step"] = (report["augment_images_per_second"]
                                   / report["small_cnn_step_images_per_second"])
    # each DataLoader against the project's path, interleaved; the best loader counts
    loader = {w: interleaved_medians({"loader": dataloader_stepper(cnn, w), "project": _stepper(cnn)},
                                     rounds=10)
              for w in (0, 1, 2)}
    best = min(loader, key=lambda w: loader[w]["loader"])
    report["dataloader_step_images_per_second"] = {str(w): BASE["batch_size"] / m["loader"]
                                                   for w, m in loader.items()}
    report["dataloader_best_workers"] = best
    report["speedup_over_dataloader"] = loader[best]["loader"] / loader[best]["project"]
    strategies = {name: Trainer(Config.from_dict({**BASE, **overrides}))
                  for name, overrides in STRATEGIES.items()}
    plain_moco = Trainer(Config.from_dict(BASE))
    # blocks of 16 steps: a mined queue's refill period, so its mining is counted once a block
    report["strategy_cost_over_plain_moco"] = {name: dataclasses.asdict(cost) for name, cost in
                                               step_costs(plain_moco, strategies, rounds=8, steps=16).items()}
    report["cores"] = pool.cores()
    report["pool_runs_per_hour_by_width"] = pool_runs_per_hour(pool_widths(report["cores"]))
    print(json.dumps(report, indent=1))
    cl.RUNS.mkdir(exist_ok=True)
    (cl.RUNS / "bench.json").write_text(json.dumps(report, indent=1))
    print(f"written to {cl.RUNS / 'bench.json'}")


if __name__ == "__main__":
    main()
