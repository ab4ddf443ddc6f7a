"""Running the study: the runs of every notebook trained, the notebooks executed with papermill.

``python -m cl.study run --scale cpu``   trains every run of the plan (:mod:`cl.plan`), then executes
every notebook in order into runs/ (they reuse the runs)
``python -m cl.study plan | train --scale cpu``  lists the plan's runs | trains them only
``python -m cl.study prepare --scale smoke``  writes the notebooks with the smoke
parameters injected (what ``make test`` hands to nbval)
``python -m cl.study table | summary | report | parameters``  the results table, ``summary.csv``,
the report page, a notebook's merged parameters
``python -m cl.study publish``  after ``make run``: the study into ``results/cpu/`` and the
README's findings and results from it (:mod:`cl.publish`)

Where things go: ``runs/<scale>/<run name>/`` for a training run (:mod:`cl.run_folder`),
``runs/<scale>/notebooks/`` for executed notebooks and their HTML, ``runs/summary.csv`` (cpu)
or ``runs/<scale>/summary.csv`` (other scales, :mod:`cl.summary`), and ``report.html`` beside
it (:mod:`cl.report`). ``NEGATIVES_RUNS`` moves ``runs/`` elsewhere.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

import jupytext
import papermill
import yaml
from jupyter_client import AsyncKernelManager

import cl
from cl import cli, controls, gpu_check, launch, plan, pool, progress, publish, report, stats, summary, system
from cl.cli import Interrupted, UserError
from cl.config import Config
from cl.parameters import (
    NOTEBOOK_ENV,
    SCALES,
    ParameterError,
    notebooks,
    parameters,
    shown,
)
from cl.parameters import (
    mapping as parameters_mapping,
)
from cl.run_folder import finished_run

PLAN_FILE = "plan.txt"  # in runs/<scale>/notebooks/: the plan as trained (written when it is done)


def progress_file(scale: str) -> Path:
    """Where runs in training write their progress while cl.study draws their bars (:mod:`cl.progress`)."""
    return cl.RUNS / scale / "notebooks" / ".progress.json"


def run_dir(scale: str, name: str) -> Path:
    """Where a training run of a notebook lives."""
    return cl.RUNS / scale / name


def run_conditions(conditions: dict[str, dict], base: dict, seeds, scale: str, notebook: str,
                   method: str | None = None) -> dict[str, list[dict]]:
    """Train every condition (``base`` plus its overrides) with every seed; finished runs are reused.

    Runs are named ``<condition>_s<seed>`` under ``runs/<scale>/``, so a condition with the
    same name and config in another notebook (the baseline, say) is trained once.
    Unfinished runs train side by side on a CPU (:mod:`cl.pool`).
    """
    return run_groups([(conditions, base, seeds)], scale, notebook, method)


def run_groups(groups: list[tuple[dict[str, dict], dict, list]], scale: str, notebook: str,
               method: str | None = None) -> dict[str, list[dict]]:
    """:func:`run_conditions` for several ``(conditions, base, seeds)`` groups at once, so that runs
    of different groups (the key conditions on 3 seeds, a curve on one) train side by side."""
    names = [(name, overrides, base, seed) for conditions, base, seeds in groups
             for name, overrides in conditions.items() for seed in seeds]
    jobs = [(Config.from_dict({**base, **overrides, "seed": seed}), run_dir(scale, f"{name}_s{seed}"))
            for name, overrides, base, seed in names]
    methods = [method or name for name, *_ in names]
    if plan.record([plan.Run(folder, cfg, how, [notebook]) for (cfg, folder), how in zip(jobs, methods)]):
        records = [{} for _ in jobs]  # the plan is being listed: nothing trains
    else:
        records = pool.train_all(jobs, notebook, methods)
    results = {}
    for (name, *_), record in zip(names, records):
        results.setdefault(name, []).append(record)
    return results




def _ipynb(py: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(jupytext.read(py), out, fmt="ipynb")
    return out


def prepare(scale: str) -> list[Path]:
    """The notebooks with the scale's parameters injected, not executed (for nbval)."""
    out_dir = cl.RUNS / scale / "notebooks"
    written = []
    for py in notebooks():
        src = _ipynb(py, out_dir / "source" / f"{py.stem}.ipynb")
        dst = out_dir / f"{py.stem}.ipynb"
        papermill.execute_notebook(src, dst, parameters=parameters(scale, py.stem),
                                   prepare_only=True, cwd=cl.NOTEBOOKS, log_output=False)
        written.append(dst)
    return written


def train_plan(scale: str, only: list[str] | None = None, given: dict | None = None, launcher: str = "local",
               **slurm
               ) -> tuple[list[plan.Run], set[str], dict[str, float]]:
    """Train (or reuse) every run of the plan (:mod:`cl.plan`) of the notebooks ``only`` (default: all):
    here, side by side (:mod:`cl.pool`, a live bar per run in training), the controls after them; or
    with ``launcher`` slurm (or submitit-local) as jobs (:mod:`cl.launch`; ``slurm``: the executor's
    options). Writes the plan as trained into ``runs/<scale>/notebooks/plan.txt``.

    Returns the plan, the names of the runs trained (or evaluated) now and, by notebook, the
    wall-clock minutes they took (the whole time shared in proportion to each run's own training
    time; a run counts for the first notebook that reads it)."""
    runs = plan.study_plan(scale, only, given)
    todo = [run for run in runs if finished_run(run.config, run.run_dir) is None]
    print(f"plan: {stats.plural(len(runs), 'run')}, {len(todo)} to train or evaluate, "
          f"{len(runs) - len(todo)} finished", flush=True)
    if scale == "gpu":
        print(gpu_check.expected_hours([run.config for run in todo if run.control is None]), flush=True)
    out_dir = cl.RUNS / scale / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if launcher == "local":
        records = _train_here(todo, progress_file(scale))
    else:
        chosen = launch.executor(launcher, cl.RUNS / scale / "submitit", **slurm)
        records = launch.wait(launch.submit(todo, chosen), todo)
    wall = (time.perf_counter() - start) / 60
    own = {run.name: record["final"].get("train_seconds") or 0.0 for run, record in zip(todo, records)}
    minutes = {}
    for run in todo:
        share = own[run.name] / sum(own.values()) if sum(own.values()) else 1 / len(todo)
        minutes[run.notebooks[0]] = minutes.get(run.notebooks[0], 0.0) + wall * share
    if todo:
        print(f"plan: {stats.plural(len(todo), 'run')} trained or evaluated in {wall:.1f} min", flush=True)
    (out_dir / PLAN_FILE).write_text(plan.table(runs) + "\n")
    return runs, {run.name for run in todo}, minutes


def _train_here(todo: list[plan.Run], tracked: Path) -> list[dict]:
    """The runs ``todo`` trained side by side on this machine (their live bars drawn from ``tracked``),
    then the controls among them evaluated; the records, in the order of ``todo``."""
    training = [run for run in todo if run.control is None]
    with system.environment(**{progress.ENV: str(tracked)}), progress.watch(tracked):
        records = pool.train_all([(run.config, run.run_dir) for run in training],
                                 [run.notebooks[0] for run in training], [run.method for run in training],
                                 relay=False)
    by_name = {run.name: record for run, record in zip(training, records)}
    return [by_name.get(run.name) or controls.computed(run.config, run.control, run.run_dir, run.notebooks[0])
            for run in todo]


def execute(scale: str, only: list[str] | None = None, given: dict | None = None, **where) -> None:
    """Train the plan (``where``: how, :func:`train_plan`), then execute the notebooks in order with
    papermill (they reuse every run), export each to HTML, write the summary and report.

    Every parameter file is checked first. The terminal gets one line per notebook (and the live bars
    of the runs in training); each notebook's output is in a log file beside its executed copy.
    """
    unknown = sorted(set(only or []) - {py.stem for py in notebooks()})
    if unknown:
        raise ParameterError(f"no notebook {', '.join(unknown)}: use names of "
                             f"{', '.join(py.stem for py in notebooks())}")
    out_dir = cl.RUNS / scale / "notebooks"
    tracked = progress_file(scale)
    failed = []
    chosen = [py.stem for py in notebooks() if not only or py.stem in only]
    print(summary.expected_total(scale, chosen), flush=True)
    if scale != "gpu" and system.native_bf16() is False:
        print("note: this CPU has no native bf16 (avx512_bf16, amx_bf16): the runs' bf16 encoder "
              "(precision: bf16, part of each run's config) is emulated and trains several times slower "
              "than the expected time says; make bench measures how much", flush=True)
    runs, trained, training_minutes = train_plan(scale, only, given, **where)
    for number, stem in enumerate(chosen, 1):
        start = time.perf_counter()
        src = _ipynb(cl.NOTEBOOKS / f"{stem}.py", out_dir / "source" / f"{stem}.ipynb")
        dst = out_dir / f"{stem}.ipynb"
        outcome = ""
        try:
            kernel_env = {progress.ENV: str(tracked), NOTEBOOK_ENV: stem}
            with system.environment(**kernel_env), progress.watch(tracked):
                _execute_notebook(src, dst, parameters(scale, stem, given))
        except papermill.PapermillExecutionError as error:
            if error.ename in ("Interrupted", "KeyboardInterrupt"):
                states = progress.read_states(tracked) if error.ename == "Interrupted" else []
                raise Interrupted(_interrupted(stem, scale, states)) from None
            failed.append(stem)  # keep going: later notebooks' runs are independent
            outcome = f"FAILED: {error.ename}: {error.evalue}; "
        except KeyboardInterrupt as error:  # a second Ctrl-C
            raise Interrupted(_interrupted(stem, scale, progress.read_states(tracked))) from error
        log = report.write_log(dst, dst.with_suffix(".log"))
        report.export_html(dst, dst.with_suffix(".html"))
        seconds = time.perf_counter() - start
        summary.record_minutes(scale, stem, seconds / 60 + training_minutes.get(stem, 0.0))
        print(f"[{number}/{len(chosen)}] {stem}  {seconds / 60:.1f} min, "
              f"{_runs_line(runs, stem, trained, training_minutes)}; {outcome}log: {shown(log)}", flush=True)
    path = summary.write_summary(scale)
    print(f"summary: {shown(path)}; report: {shown(report.write_report(scale))}")
    if failed:
        raise UserError(f"notebooks that failed (see their logs in {shown(out_dir)}): {', '.join(failed)}")


def _runs_line(runs: list[plan.Run], stem: str, trained: set[str], training_minutes: dict[str, float]) -> str:
    """How many of the notebook's runs the plan trained now (counted for the first notebook that reads
    them), and how many were reused."""
    mine = [run for run in runs if stem in run.notebooks]
    new = [run for run in mine if run.name in trained and run.notebooks[0] == stem]
    if not new:
        return f"{stats.plural(len(mine), 'run')} reused" if mine else "no runs of its own"
    return (f"{stats.plural(len(new), 'run')} trained ({training_minutes[stem]:.1f} min), "
            f"{len(mine) - len(new)} reused")


def _execute_notebook(src: Path, dst: Path, params: dict) -> None:
    """papermill's execution, with Ctrl-C passed on to the kernel: the cell it runs stops at a clean
    point (a run saying where it will resume, into the notebook too). A second Ctrl-C stops at once."""
    kernels = []

    class Kernel(AsyncKernelManager):  # the kernel manager papermill makes, remembered to be interrupted
        def __init__(self, **kwargs):
            super().__init__(**{"transport": "ipc", **kwargs})  # local sockets: no TCP to warn about
            kernels.append(self)

    def interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        loop = asyncio.get_event_loop()  # papermill's, running the cell (or running the next one)
        for kernel in kernels:
            loop.call_soon_threadsafe(asyncio.ensure_future, kernel.interrupt_kernel())

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        papermill.execute_notebook(src, dst, parameters=params, cwd=cl.NOTEBOOKS, progress_bar=False,
                                   log_output=False, kernel_name="python3", kernel_manager_class=Kernel)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted(notebook: str, scale: str, states: list[dict]) -> str:
    """What Ctrl-C in the study left: which runs resume at which epoch (``states``: the last progress of
    the runs that were training, none when no run was), and how."""
    again = f"`make run SCALE={scale}` (or python -m cl.study run --scale {scale})"
    if not states:
        return f"{notebook} stopped; {again} runs it again, reusing finished runs"
    where = [f"{state['run']} " + (f"at epoch {state['saved'] + 1} of {state['epochs']}"
                                   if state["saved"] < state["epochs"] else "at its final evaluation")
             for state in states]
    return f"{notebook} stopped; {again} resumes {' and '.join(where)}, reusing finished runs"


def _given(args) -> dict | None:
    """The parameters of ``-f`` and ``-y``, which apply to the one notebook of ``--only``."""
    if not args.parameters_file and not args.parameters_yaml:
        return None
    if not args.only or len(args.only) != 1:
        raise ParameterError("-f and -y give one notebook's parameters: name it with --only NAME")
    from_file = parameters_mapping(Path(args.parameters_file)) if args.parameters_file else {}
    text = cli.load_yaml(args.parameters_yaml or "{}")
    if not isinstance(text, dict):
        raise ParameterError(f"-y {args.parameters_yaml!r} is not parameters by name: use e.g. "
                             f"-y 'seeds: [0]'")
    return {**from_file, **text}


def main(argv=None) -> int:
    """``python -m cl.study run | prepare | summary | table | report | parameters | publish``; an expected
    failure is one line, exit status 1."""
    return cli.run_main(_main, argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "plan", "train", "prepare", "summary", "table", "report",
                                           "parameters", "publish"],
                        help="run: train the plan, then execute the notebooks; plan: list every run; train: "
                             "train the plan only; table: print the results as Markdown; parameters: print "
                             "the --only notebook's parameters at --scale as YAML (for papermill -f); "
                             "publish: the executed study into results/<scale>/ and the README's findings "
                             "and results from it")
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    parser.add_argument("--only", nargs="*", help="notebook names (default: all, in order)")
    jobs = parser.add_argument_group("where run and train train the plan (cl.launch)")
    jobs.add_argument("--launcher", default="local", choices=launch.LAUNCHERS,
                      help="local: this machine's cores and GPUs (cl.pool); slurm: a job per run through "
                           "submitit; submitit-local: the same jobs as processes here")
    jobs.add_argument("--partition", help="the SLURM partition (--launcher slurm)")
    jobs.add_argument("--gpus-per-run", type=int, default=1, help="GPUs of each job (default 1)")
    jobs.add_argument("--cpus-per-run", type=int, default=8, help="cores of each job (default 8)")
    jobs.add_argument("--time", type=int, default=240, help="minutes of each job before it is requeued "
                                                              "(it resumes from its checkpoint; default 240)")
    parser.add_argument("-f", "--parameters-file",
                        help="a YAML file of one notebook's parameters (with --only NAME), as papermill -f: "
                             "each replaces the scale's whole")
    parser.add_argument("-y", "--parameters-yaml",
                        help="the same, as YAML text (after -f), e.g. 'seeds: [0]'")
    args = parser.parse_args(argv)
    given = _given(args)
    where = dict(launcher=args.launcher)
    if args.launcher != "local":
        where.update(partition=args.partition, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                     minutes=args.time)
    if args.action == "run":
        execute(args.scale, args.only, given, **where)
    elif args.action == "plan":
        print(plan.table(plan.study_plan(args.scale, args.only, given)))
    elif args.action == "train":
        train_plan(args.scale, args.only, given, **where)
    elif args.action == "prepare":
        for p in prepare(args.scale):
            print(shown(p))
    elif args.action == "table":
        print(summary.results_table(args.scale))
    elif args.action == "publish":
        print(f"published: {shown(publish.publish(args.scale))}; README.md's findings and results rewritten")
    elif args.action == "report":
        print(shown(report.write_report(args.scale)))
    elif args.action == "parameters":
        if not args.only or len(args.only) != 1:
            raise ParameterError("parameters needs one notebook: --only NAME, e.g. --only 01_moco_v2")
        print(yaml.safe_dump(parameters(args.scale, args.only[0], given), sort_keys=False), end="")
    else:
        print(summary.write_summary(args.scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
