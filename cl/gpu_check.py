"""The GPU path's first check: one short script for a machine lent for a few minutes.

``python -m cl.gpu_check [--out DIR] [--budget SECONDS]`` runs with whatever ``python3`` and torch the
machine has (it needs torch, torchvision, numpy, tqdm and PyYAML; ``make device-bundle`` puts pure-
Python copies of the last two in ``build/device-deps/`` to carry along) and the Fashion-MNIST files
in ``data/``. It measures, and prints as one table:

* ResNet-18 (CIFAR stem) training-step throughput at the gpu scale's batch of 512: float32, the
  default bf16 autocast, bf16 with the model in the contiguous memory format instead of channels-last,
  and bf16 with ``torch.compile``;
* one short epoch of ResNet-18 (8,192 images) with its final kNN top-1, and the peak GPU memory;
* the pool's throughput (:mod:`cl.pool`) at widths 1, 2, 4, … up to the machine's cores, on one-epoch
  small-CNN runs of 8,192 images on the CPU: how the cpu study scales with cores.

It writes ``gpu_check.json`` into ``--out``; committed as ``docs/gpu-check.json`` it gives
``make run SCALE=gpu`` its expected GPU-hours (:func:`expected_hours`). Without a GPU it measures the
pool alone, which is how the tests run it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import cl
from cl import bench, data, pool, train
from cl.config import Config
from cl.parameters import shown

RESNET = dict(arch="resnet18", batch_size=512, train_subset=8192, test_subset=2048, monitor_bank=2048,
              linear_epochs=5, queue=4096, moco_m=0.99, t=0.1, lr=0.06, bn_splits=8, probe=0)
SMALL = dict(train_subset=8192, test_subset=1024, monitor_bank=1024, linear_epochs=5, epochs=1, probe=0,
             device="cpu")
COMMITTED = cl.ROOT / "docs" / "gpu-check.json"


def step_images_per_second(overrides: dict, contiguous: bool = False, compiled: bool = False,
                           steps: int = 20) -> float:
    """ResNet-18 training images per second on the GPU (median step, the first steps and any
    compilation left out)."""
    trainer = train.Trainer(Config.from_dict({**RESNET, **overrides, "device": "cuda"}))
    if contiguous:
        trainer.model.to(memory_format=torch.contiguous_format)
    if compiled:
        trainer.encoder.compile()
    # a step ends with its loss read back (.item()): the GPU's work is done when it returns
    return trainer.cfg.batch_size / bench.step_seconds(trainer, steps, warmup=5 if compiled else 2)


def gpu_rows() -> list[tuple[str, float, str]]:
    """The GPU's rows of the table: step throughputs, one short epoch and its kNN, the peak memory."""
    rows = [(f"ResNet-18 step, {name}", step_images_per_second(**kw), "images/s") for name, kw in [
        ("float32", dict(overrides={"precision": "fp32"})),
        ("bf16 (default)", dict(overrides={})),
        ("bf16, contiguous memory format", dict(overrides={}, contiguous=True)),
        ("bf16, torch.compile", dict(overrides={}, compiled=True))]]
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        record = train.run({**RESNET, "epochs": 1, "device": "cuda"}, Path(tmp) / "epoch", progress=False)
    rows += [("ResNet-18, one epoch of 8,192 images with its evaluation", time.perf_counter() - start, "s"),
             ("its final kNN top-1 (one epoch: a check that it learns, not a result)",
              record["final"]["knn_top1"], "%"),
             ("peak GPU memory", torch.cuda.max_memory_allocated() / 2**30, "GiB")]
    return rows


def pool_rows() -> list[tuple[str, float, str]]:
    """The pool's one-epoch small-CNN runs per hour at each width up to the cores, on the CPU."""
    rates = bench.pool_runs_per_hour(bench.pool_widths(pool.cores()), SMALL)
    return [(f"pool of {width} small-CNN runs side by side (CPU)", rate, "one-epoch runs/hour")
            for width, rate in rates.items()]


def table(rows: list[tuple[str, float, str]]) -> str:
    """The rows as one aligned text table."""
    width = max(len(name) for name, _, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>10.2f}  {unit}" for name, value, unit in rows)


def expected_hours(configs: list[Config], check: Path = COMMITTED) -> str:
    """What ``configs`` (the plan's unfinished runs) should take on one GPU, in a line: the images they
    train over the bf16 ResNet-18 step throughput that ``check`` records (a run's evaluation and
    start-up left out, so a lower bound); or that no GPU check has been committed yet."""
    if not check.exists():
        return (f"expected GPU time: not measured yet ({shown(check)} comes from python -m cl.gpu_check "
                f"on a GPU: docs/gpu-check.md)")
    measured = json.loads(check.read_text())
    speed = measured["rows"]["ResNet-18 step, bf16 (default)"]
    images = sum(cfg.epochs * (cfg.train_subset or data.SPLIT_SIZES[cfg.dataset]["train"]) * cfg.positives
                 for cfg in configs)
    return (f"expected GPU time: at least {images / speed / 3600:.1f} GPU-hours for {len(configs)} runs, "
            f"from the ResNet-18 step measured on {measured['device']} ({measured['date']})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(cl.RUNS), help="where gpu_check.json goes (default runs/)")
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if gpu else "no GPU"
    print(f"torch {torch.__version__} on {device}, {pool.cores()} cores", flush=True)
    rows = (gpu_rows() if gpu else []) + pool_rows()
    print(table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "device": device, "torch": torch.__version__,
        "cores": pool.cores(), "rows": {name: value for name, value, _ in rows},
        "units": {name: unit for name, _, unit in rows}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
