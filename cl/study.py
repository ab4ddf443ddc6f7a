"""Running the study: the runs of every notebook trained, the notebooks executed with papermill.

``python -m cl.study run --scale cpu``   executes every notebook in order into runs/
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
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

import jupytext
import papermill
import yaml
from jupyter_client import AsyncKernelManager

import cl
from cl import cli, pool, progress, publish, report, summary
from cl.cli import Interrupted, UserError
from cl.config import Config
from cl.parameters import (
    NOTEBOOK_ENV,
    SCALES,
    ParameterError,
    check_notebook_parameters,
    notebooks,
    parameters,
    shown,
)


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
    records = pool.train_all(jobs, notebook, [method or name for name, *_ in names])
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


def execute(scale: str, only: list[str] | None = None) -> None:
    """Execute the notebooks in order with papermill, export each to HTML, write the summary and report.

    Every parameter file is checked first. While a notebook runs, its runs write their steps
    to a progress file, from which a live bar is drawn here (a terminal only); the notebook
    itself records one line per epoch.
    """
    unknown = sorted(set(only or []) - {py.stem for py in notebooks()})
    if unknown:
        raise ParameterError(f"no notebook {', '.join(unknown)}: use names of "
                             f"{', '.join(py.stem for py in notebooks())}")
    check_notebook_parameters(scale, only)
    out_dir = cl.RUNS / scale / "notebooks"
    tracked = out_dir / ".progress.json"
    failed = []
    chosen = [py.stem for py in notebooks() if not only or py.stem in only]
    print(summary.expected_total(scale, chosen), flush=True)
    for py in notebooks():
        if only and py.stem not in only:
            continue
        start = time.perf_counter()
        print(f"== {py.stem} ({scale})", flush=True)
        src = _ipynb(py, out_dir / "source" / f"{py.stem}.ipynb")
        dst = out_dir / f"{py.stem}.ipynb"
        try:
            kernel_env = {progress.ENV: str(tracked), NOTEBOOK_ENV: py.stem}
            with _environment(**kernel_env), progress.watch(tracked):
                _execute_notebook(src, dst, parameters(scale, py.stem))
        except papermill.PapermillExecutionError as error:
            if error.ename in ("Interrupted", "KeyboardInterrupt"):
                states = progress.read_states(tracked) if error.ename == "Interrupted" else []
                raise Interrupted(_interrupted(py.stem, scale, states)) from None
            failed.append(py.stem)  # keep going: later notebooks' runs are independent
            print(f"   FAILED: {error.ename}: {error.evalue}", flush=True)
        except KeyboardInterrupt as error:  # a second Ctrl-C
            raise Interrupted(_interrupted(py.stem, scale, progress.read_states(tracked))) from error
        report.export_html(dst, dst.with_suffix(".html"))
        seconds = time.perf_counter() - start
        summary.record_minutes(scale, py.stem, seconds / 60)
        print(f"   {seconds:.0f} s: {shown(dst)}", flush=True)
    path = summary.write_summary(scale)
    print(f"summary: {shown(path)}")
    print(f"report: {shown(report.write_report(scale))}")
    if failed:
        raise UserError(f"notebooks that failed (see their executed copies in {shown(out_dir)}): "
                        f"{', '.join(failed)}")


def _execute_notebook(src: Path, dst: Path, params: dict) -> None:
    """papermill's execution, with Ctrl-C passed on to the kernel: the cell it runs stops at a clean
    point (a run saying where it will resume, into the notebook too). A second Ctrl-C stops at once."""
    kernels = []

    class Kernel(AsyncKernelManager):  # the kernel manager papermill makes, remembered to be interrupted
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            kernels.append(self)

    def interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        loop = asyncio.get_event_loop()  # papermill's, running the cell (or running the next one)
        for kernel in kernels:
            loop.call_soon_threadsafe(asyncio.ensure_future, kernel.interrupt_kernel())

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        papermill.execute_notebook(src, dst, parameters=params, cwd=cl.NOTEBOOKS, progress_bar=False,
                                   log_output=True, kernel_name="python3", kernel_manager_class=Kernel)
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _environment(**values):
    """The environment variables ``values`` set for the body: a kernel started in it inherits them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def main(argv=None) -> int:
    """``python -m cl.study run | prepare | summary | table | report | parameters | publish``; an expected
    failure is one line, exit status 1."""
    return cli.run_main(_main, argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "prepare", "summary", "table", "report", "parameters",
                                           "publish"],
                        help="table: print the results as Markdown; parameters: print the --only notebook's "
                             "parameters at --scale as YAML (for papermill -f); publish: the executed study "
                             "into results/<scale>/ and the README's findings and results from it")
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    parser.add_argument("--only", nargs="*", help="notebook names (default: all, in order)")
    args = parser.parse_args(argv)
    if args.action == "run":
        logging.basicConfig(level=logging.INFO, format="%(message)s")  # papermill streams cell output here
        execute(args.scale, args.only)
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
        print(yaml.safe_dump(parameters(args.scale, args.only[0]), sort_keys=False), end="")
    else:
        print(summary.write_summary(args.scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
