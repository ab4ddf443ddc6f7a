"""The plan's runs on a SLURM cluster, through submitit, as moco-v3, DINO, MAE and SimSiam go there.

``python -m cl.study run --scale gpu --launcher slurm --partition P --gpus-per-run 1 --time 240``
submits every unfinished run of the plan as a job (one job array), waits for them, then executes
the notebooks here on the finished runs. A job that reaches its time limit or is preempted is
requeued by submitit (``Job.checkpoint``: the same call again) and the run resumes from its last
epoch's checkpoint, as any interrupted run does. ``--launcher submitit-local`` sends the same jobs
to submitit's local executor, which starts them all at once as processes of this machine: the
tests' way to run real submitit jobs without a cluster (``--launcher local``, the default, trains
with :mod:`cl.pool`).

Each job's output is in ``runs/<scale>/submitit/<job id>_0_log.out`` and ``.err``.
"""
from __future__ import annotations

import time
from pathlib import Path

import submitit

from cl import controls, plan, train
from cl.cli import UserError
from cl.progress import say

LAUNCHERS = ("local", "slurm", "submitit-local")
POLL_EVERY = 10.0  # seconds between looks at the jobs


class Job(submitit.helpers.Checkpointable):
    """One run of the plan as a submitit job: trained (or resumed, or reused), or a control evaluated.

    On a timeout or a preemption submitit calls ``checkpoint`` (Checkpointable's: the same call,
    requeued); the run folder keeps the checkpoint of its last finished epoch, so the requeued job
    resumes there.
    """

    def __call__(self, run: plan.Run) -> dict:
        if run.control:
            return controls.computed(run.config, run.control, run.run_dir, run.notebooks[0])
        return train.run(run.config, run.run_dir, run.notebooks[0], run.method, progress=False, wait=True)


def executor(launcher: str, folder: Path, partition: str | None = None, gpus_per_run: int = 1,
             minutes: int = 240, cpus_per_run: int = 8):
    """submitit's executor for ``launcher`` (slurm | submitit-local), its job files in ``folder``: each
    job one task with ``gpus_per_run`` GPUs and ``cpus_per_run`` cores for ``minutes`` minutes."""
    if launcher not in LAUNCHERS[1:]:
        raise UserError(f"launcher {launcher!r} does not submit jobs: use one of {', '.join(LAUNCHERS)}")
    if launcher == "slurm" and not partition:
        raise UserError("--launcher slurm needs --partition NAME (sinfo lists the cluster's partitions)")
    cluster = "local" if launcher == "submitit-local" else "slurm"
    chosen = submitit.AutoExecutor(folder=folder, cluster=cluster)
    chosen.update_parameters(timeout_min=minutes, gpus_per_node=gpus_per_run, tasks_per_node=1,
                             cpus_per_task=cpus_per_run, name="negatives")
    if launcher == "slurm":
        chosen.update_parameters(slurm_partition=partition)
    return chosen


def submit(runs: list[plan.Run], chosen) -> list:
    """Submit a job per run (an array where the cluster allows); the jobs, in order."""
    with chosen.batch():
        jobs = [chosen.submit(Job(), run) for run in runs]
    if jobs:
        say(f"submitted {len(jobs)} jobs ({jobs[0].job_id} …), their output in {chosen.folder}")
    return jobs


def wait(jobs: list, runs: list[plan.Run]) -> list[dict]:
    """Wait for every job (a line whenever another finishes); their records, in order. A failed job is
    one line naming its run and the job's error file."""
    finished = 0
    while (done := sum(job.done() for job in jobs)) < len(jobs):
        if done != finished:
            finished = done
            say(f"{done} of {len(jobs)} jobs finished")
        time.sleep(POLL_EVERY)
    failures = [f"{run.name}: {str(job.exception()).strip().splitlines()[-1]} (see {job.paths.stderr})"
                for job, run in zip(jobs, runs) if job.exception() is not None]
    if failures:
        raise UserError("jobs that failed: " + "; ".join(failures))
    return [job.result() for job in jobs]
