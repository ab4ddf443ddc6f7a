"""Several training runs at once, on every core and every GPU.

A small CNN does not keep two cores busy within one step (batch norm, pooling and the loss
run partly on one thread), so on a CPU runs side by side, one thread each, finish sooner than
one after the other on all the threads (``make bench`` measures the pool's throughput at each
width the machine allows). :func:`train_all` starts each unfinished run as its own
``python -m cl.train`` process, at most :func:`placement`'s width at a time, each with the cores
(its affinity and cgroup quota: :func:`cores`) divided evenly between them (a lone last run too:
the published numbers come from runs trained with the same threads), each on a GPU of its own
where there are GPUs; it relays their lines (or logs them), and returns every run's metrics in the
order given. With ``NEGATIVES_WORKERS=1``, or a device named by number, runs train one after the
other in this process, as :func:`cl.train.run` does.

A failure keeps the command line's contract: the runs already started finish (or stop at
Ctrl-C, each at a clean point), then one line says what failed and how to fix it.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

import cl
from cl import cli, progress, train
from cl.config import Config
from cl.run_folder import finished_run

ENV = "NEGATIVES_WORKERS"
SMALL_RUNS_PER_GPU = 4  # small-CNN runs side by side on one GPU (a ResNet-18 run takes a GPU of its own)


@dataclass
class Placement:
    """How runs train: ``width`` at once, ``threads`` CPU threads each, and the GPU of each slot
    (``gpus[slot % len(gpus)]``; none on a CPU)."""

    width: int
    threads: int
    gpus: list[int] = field(default_factory=list)


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs the cgroup's quota allows (a container's ``--cpus``, a scheduler's allocation), None when
    it sets none: cgroup v2's ``cpu.max``, else v1's ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``."""
    try:
        if (root / "cpu.max").exists():
            quota, period = (root / "cpu.max").read_text().split()
        else:
            quota, period = ((root / "cpu" / f"cpu.cfs_{key}_us").read_text().strip()
                             for key in ("quota", "period"))
    except (OSError, ValueError):
        return None
    return None if quota in ("max", "-1") else int(quota) / int(period)


def cores() -> int:
    """The cores this process may use: its CPU affinity (``taskset``, a batch scheduler's binding), capped
    by the cgroup's quota; not the machine's ``cpu_count``."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpus()
    return max(1, min(count, math.ceil(quota))) if quota else count


def measured_width(cores_now: int, bench: Path | None = None) -> int | None:
    """The width of the pool that ``make bench`` measured to train the most runs per hour on a machine
    of ``cores_now`` cores (``runs/bench.json``); None when it has not measured one."""
    try:
        report = json.loads((bench or cl.RUNS / "bench.json").read_text())
        by_width = report["pool_runs_per_hour_by_width"] if report["cores"] == cores_now else {}
    except (OSError, ValueError, KeyError):
        return None
    return int(max(by_width, key=by_width.get)) if by_width else None


def placement(cfg: Config) -> Placement:
    """How the runs of ``cfg``'s kind train here. ``NEGATIVES_WORKERS`` sets the width. On a CPU: the
    width ``make bench`` measured best for this number of cores, else one run per core (the small CNN
    uses a second thread poorly); the cores divided evenly among the runs. With GPUs (``device`` auto
    or cuda): every visible GPU at once, one ResNet-18 run or SMALL_RUNS_PER_GPU small-CNN runs each.
    A device named by number (``cuda:1``) trains one run at a time, on it."""
    given = os.environ.get(ENV, "")
    if given and (not given.isdigit() or int(given) < 1):
        raise cli.UserError(f"{ENV}={given!r} is not a number of runs: use a whole number >= 1 "
                            f"(1 trains one run at a time)")
    device = train.resolve_device(cfg.device)
    every_gpu = device.type == "cuda" and cfg.device in ("auto", "cuda")
    gpus = list(range(torch.cuda.device_count())) if every_gpu else []
    if device.type != "cpu" and not gpus:
        return Placement(1, cores())
    per_gpu = 1 if cfg.arch == "resnet18" else SMALL_RUNS_PER_GPU
    width = int(given) if given else len(gpus) * per_gpu if gpus else measured_width(cores()) or cores()
    return Placement(width, threads_per_run(width), gpus)


def train_all(jobs: list[tuple[Config, Path]], notebook: str | list[str | None] | None = None,
              methods: list[str] | None = None, relay: bool = True) -> list[dict]:
    """Train (or reuse) every ``(config, run folder)`` job; their metrics.json contents, in order.
    ``notebook``: the notebook each run records (one for all, or one per job). ``relay=False``: the
    lines of runs trained in processes go to ``<runs>/logs/<run>.log`` instead of here (a live bar
    shows them training)."""
    methods = methods or [cfg.loss for cfg, _ in jobs]
    notebooks = notebook if isinstance(notebook, list) else [notebook] * len(jobs)
    for cfg, _ in jobs:
        cfg.validate()
    todo = [i for i, (cfg, run_dir) in enumerate(jobs) if finished_run(cfg, Path(run_dir)) is None]
    where = placement(jobs[todo[0]][0]) if todo else Placement(1, cores())
    pooled = where.width
    if pooled == 1:
        return [train.run(cfg, run_dir, notebook=notebooks[i], method=methods[i], wait=True)
                for i, (cfg, run_dir) in enumerate(jobs)]
    _in_processes([(i, jobs[i][0], Path(jobs[i][1]).resolve(), methods[i], notebooks[i]) for i in todo],
                  min(pooled, len(todo)), where.threads, relay, where.gpus)
    return [finished_run(cfg, Path(run_dir)) if i in todo
            else train.run(cfg, run_dir, notebooks[i], methods[i])  # says it reuses the run
            for i, (cfg, run_dir) in enumerate(jobs)]


def threads_per_run(pooled: int) -> int:
    """The threads of each of ``pooled`` runs side by side: the cores divided evenly among them."""
    return max(1, cores() // pooled)


def _in_processes(jobs: list[tuple[int, Config, Path, str, str | None]], width: int, threads: int,
                  relay: bool = True, gpus: list[int] | None = None) -> None:
    """Train ``jobs`` (index, config, run folder, method, notebook) as ``width`` processes at a time,
    ``threads`` each, relaying their lines (or logging them: :func:`train_all`); the run in slot ``i``
    sees only GPU ``gpus[i % len(gpus)]``, when there are GPUs."""
    pending, running, failures = list(jobs), [], []
    tracked = os.environ.get(progress.ENV)
    with tempfile.TemporaryDirectory(prefix="negatives-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < width and not failures:
                    slot = _free_slot(running, width)
                    running.append(_start(*pending.pop(0), Path(tmp), threads, tracked, slot, relay,
                                          gpus[slot % len(gpus)] if gpus else None))
                for job in list(running):
                    if job.wait_briefly():
                        running.remove(job)
                        if job.failure():
                            failures.append(job.failure())
                        elif job.log and _collapsed(job.run_dir):  # said here too, not only in its log
                            progress.say(job.last)
                if failures and not running:
                    break
        except KeyboardInterrupt:  # the kernel's Ctrl-C reached the runs too (one process group)
            stopped = [job.finish() for job in running]
            raise cli.Interrupted("; ".join(line for line in stopped if line) or "stopped") from None
    if failures:
        raise cli.UserError("; ".join(failures))


class _Job:
    """One run trained by ``python -m cl.train`` in its own process, its lines relayed here."""

    def __init__(self, run_dir: Path, process: subprocess.Popen, slot: int, log: Path | None = None):
        self.run_dir, self.process, self.slot, self.last, self.log = run_dir, process, slot, "", log
        self.relay = threading.Thread(target=self._relay, daemon=True)
        self.relay.start()

    def _relay(self):
        with open(self.log, "a") if self.log else contextlib.nullcontext() as log:
            for line in self.process.stderr:
                line = line.rstrip("\n")
                if line:
                    self.last = line
                    if log:
                        print(line, file=log, flush=True)
                    else:
                        progress.say(line)

    def wait_briefly(self) -> bool:
        """Whether the process has ended, after waiting at most a second."""
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return False
        self.relay.join()
        return True

    def failure(self) -> str | None:
        """The run's one-line error, None when it finished."""
        if self.process.returncode == 0:
            return None
        reason = self.last.removeprefix("error: ").removeprefix("interrupted: ")
        return f"{self.run_dir.name}: {reason or f'exit status {self.process.returncode}'}"

    def finish(self) -> str | None:
        """After Ctrl-C: wait for the run to stop at its clean point; what it said."""
        while True:
            try:
                self.process.wait()
                break
            except KeyboardInterrupt:  # a second Ctrl-C: stop it now
                self.process.kill()
        self.relay.join()
        return self.failure()


def _collapsed(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` recorded a collapse of its embedding (False without a record)."""
    metrics = run_dir / "metrics.json"
    return metrics.exists() and bool(json.loads(metrics.read_text()).get("collapsed"))


def _free_slot(running: list[_Job], width: int) -> int:
    used = {job.slot for job in running}
    return next(slot for slot in range(width) if slot not in used)


def _start(index: int, cfg: Config, run_dir: Path, method: str, notebook: str | None, tmp: Path,
           threads: int, tracked: str | None, slot: int, relay: bool, gpu: int | None) -> _Job:
    config = tmp / f"{index}.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), ENV: "1", "PYTHONUNBUFFERED": "1"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if tracked:  # each slot draws its own bar from its own progress file
        env[progress.ENV] = str(progress.slot_path(Path(tracked), slot))
    command = [sys.executable, "-m", "cl.train", str(config), "--run-dir", str(run_dir), "--method", method,
               "--threads", str(threads), "--wait"]
    if notebook:
        command += ["--notebook", notebook]
    log = None if relay else run_dir.parent / "logs" / f"{run_dir.name}.log"
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=env)
    return _Job(Path(run_dir), process, slot, log)
