"""Several training runs at once on a CPU.

A small CNN does not keep two cores busy within one step (batch norm, pooling and the loss
run partly on one thread), so on a CPU two runs side by side, one thread each, finish the
pair sooner than one after the other on two threads (``make bench`` measures the ratio).
:func:`train_all` starts each unfinished run as its own ``python -m cl.train`` process, at
most :func:`workers` at a time, each with the cores divided evenly between the workers (a lone
last run too: the published numbers come from runs trained with the same threads), relays their
lines, and returns every run's metrics in the order given. On a GPU, or with
``NEGATIVES_WORKERS=1``, runs train one after the other in this process, as :func:`cl.train.run`
does.

A failure keeps the command line's contract: the runs already started finish (or stop at
Ctrl-C, each at a clean point), then one line says what failed and how to fix it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import yaml

from cl import cli, progress, train
from cl.config import Config
from cl.run_folder import finished_run

ENV = "NEGATIVES_WORKERS"


def workers(cfg: Config) -> int:
    """How many runs of ``cfg``'s kind train at once: ``NEGATIVES_WORKERS`` if set, else 2 on a CPU
    with at least 2 cores (one per run's threads), else 1."""
    given = os.environ.get(ENV, "")
    if given:
        if not given.isdigit() or int(given) < 1:
            raise cli.UserError(f"{ENV}={given!r} is not a number of runs: use a whole number >= 1 "
                                f"(1 trains one run at a time)")
        return int(given)
    on_cpu = train.resolve_device(cfg.device).type == "cpu"
    return 2 if on_cpu and (os.cpu_count() or 1) >= 2 else 1


def train_all(jobs: list[tuple[Config, Path]], notebook: str | None = None,
              methods: list[str] | None = None) -> list[dict]:
    """Train (or reuse) every ``(config, run folder)`` job; their metrics.json contents, in order."""
    methods = methods or [cfg.loss for cfg, _ in jobs]
    for cfg, _ in jobs:
        cfg.validate()
    todo = [i for i, (cfg, run_dir) in enumerate(jobs) if finished_run(cfg, Path(run_dir)) is None]
    pooled = workers(jobs[todo[0]][0]) if todo else 1
    if pooled == 1:
        return [train.run(cfg, run_dir, notebook=notebook, method=method)
                for (cfg, run_dir), method in zip(jobs, methods)]
    _in_processes([(i, jobs[i][0], Path(jobs[i][1]).resolve(), methods[i]) for i in todo], notebook,
                  min(pooled, len(todo)), threads_per_run(pooled))
    return [finished_run(cfg, Path(run_dir)) if i in todo
            else train.run(cfg, run_dir, notebook, methods[i])  # says it reuses the run
            for i, (cfg, run_dir) in enumerate(jobs)]


def threads_per_run(pooled: int) -> int:
    """The threads of each of ``pooled`` runs side by side: the cores divided evenly among them."""
    return max(1, (os.cpu_count() or 1) // pooled)


def _in_processes(jobs: list[tuple[int, Config, Path, str]], notebook: str | None, width: int,
                  threads: int) -> None:
    """Train ``jobs`` (index, config, run folder, method) as ``width`` processes at a time, ``threads``
    each."""
    pending, running, failures = list(jobs), [], []
    tracked = os.environ.get(progress.ENV)
    with tempfile.TemporaryDirectory(prefix="negatives-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < width and not failures:
                    slot = _free_slot(running, width)
                    running.append(_start(*pending.pop(0), notebook, Path(tmp), threads, tracked, slot))
                for job in list(running):
                    if job.wait_briefly():
                        running.remove(job)
                        if job.failure():
                            failures.append(job.failure())
                if failures and not running:
                    break
        except KeyboardInterrupt:  # the kernel's Ctrl-C reached the runs too (one process group)
            stopped = [job.finish() for job in running]
            raise cli.Interrupted("; ".join(line for line in stopped if line) or "stopped") from None
    if failures:
        raise cli.UserError("; ".join(failures))


class _Job:
    """One run trained by ``python -m cl.train`` in its own process, its lines relayed here."""

    def __init__(self, run_dir: Path, process: subprocess.Popen, slot: int):
        self.run_dir, self.process, self.slot, self.last = run_dir, process, slot, ""
        self.relay = threading.Thread(target=self._relay, daemon=True)
        self.relay.start()

    def _relay(self):
        for line in self.process.stderr:
            line = line.rstrip("\n")
            if line:
                self.last = line
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


def _free_slot(running: list[_Job], width: int) -> int:
    used = {job.slot for job in running}
    return next(slot for slot in range(width) if slot not in used)


def _start(index: int, cfg: Config, run_dir: Path, method: str, notebook: str | None, tmp: Path,
           threads: int, tracked: str | None, slot: int) -> _Job:
    config = tmp / f"{index}.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), ENV: "1", "PYTHONUNBUFFERED": "1"}
    if tracked:  # each slot draws its own bar from its own progress file
        env[progress.ENV] = str(progress.slot_path(Path(tracked), slot))
    command = [sys.executable, "-m", "cl.train", str(config), "--run-dir", str(run_dir), "--method", method,
               "--threads", str(threads)]
    if notebook:
        command += ["--notebook", notebook]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=env)
    return _Job(Path(run_dir), process, slot)
