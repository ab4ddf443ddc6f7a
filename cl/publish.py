"""The published study: ``results/<scale>/``, what a reader sees without re-running hours of CPU.

``python -m cl.study publish`` (after ``make run``) refreshes ``results/cpu/`` from ``runs/``:

* the executed notebooks, outputs and figures embedded, so that they render on GitHub and nbviewer;
* ``summary.csv`` (one row per finished run, the controls marked) and ``minutes.json`` (each
  notebook's wall-clock minutes at its last execution);
* ``report.html``, the report page, its links to the notebooks beside it (no MathJax copy);
* ``provenance.yaml``: the commit, the torch version, the CPU model, its cores and the threads each
  run trained with, so that a reader can reproduce the numbers on the same hardware;

then writes the README's findings (the primary contrasts, :mod:`cl.primary`) and results table
from the published ``summary.csv``, never from a number typed by hand. Nothing is published from
a study with a notebook missing or failed, and a half-written ``results/`` is never left: the new
folder replaces the old one only once it is complete and within ``LIMIT_MB``.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import jupytext
import nbformat
import pandas as pd
import torch
import yaml

import cl
from cl import primary, report, summary
from cl.cli import UserError
from cl.parameters import notebooks

LIMIT_MB = 10
FINDINGS = ("<!-- findings: begin -->", "<!-- findings: end -->")
RESULTS = ("<!-- results: begin -->", "<!-- results: end -->")


def published(scale: str = "cpu") -> Path:
    """Where a scale's study is published: ``results/<scale>/`` in the repository."""
    return cl.ROOT / "results" / scale


def publish(scale: str = "cpu") -> Path:
    """Copy the executed study of ``scale`` from runs/ to ``published(scale)`` and rewrite the README's
    blocks from it (see the module's docstring); the folder written."""
    executed = cl.RUNS / scale / "notebooks"
    names = [py.stem for py in notebooks()]
    missing = [name for name in names if not (executed / f"{name}.ipynb").exists()]
    if missing:
        raise UserError(f"nothing published: {', '.join(missing)} not executed at the {scale} scale in "
                        f"{executed}; run `make run SCALE={scale}` first")
    stale = differing_code(executed)
    if stale:
        raise UserError(f"nothing published: the code of {', '.join(stale)} in {executed} differs from "
                        f"notebooks/ (executed before a change); run `make run SCALE={scale}` again")
    broken = [name for name in names if report.failed(executed / f"{name}.ipynb")]
    if broken:
        raise UserError(f"nothing published: a cell of {', '.join(broken)} raised an error (see its executed "
                        f"copy in {executed}); fix it and run `make run SCALE={scale}` again")
    target = published(scale)
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in names:
            shutil.copyfile(executed / f"{name}.ipynb", staging / f"{name}.ipynb")
        shutil.copyfile(summary.write_summary(scale), staging / "summary.csv")
        minutes = summary.recorded_minutes(scale)
        (staging / "minutes.json").write_text(json.dumps(minutes, indent=1, sort_keys=True))
        (staging / "provenance.yaml").write_text(yaml.safe_dump(provenance(scale), sort_keys=False))
        report.write_report(scale, staging / "report.html",
                            {name: staging / f"{name}.ipynb" for name in names}, offline_mathjax=False)
        size = sum(p.stat().st_size for p in staging.iterdir()) / 2 ** 20
        if size > LIMIT_MB:
            largest = max(staging.iterdir(), key=lambda p: p.stat().st_size)
            raise UserError(f"nothing published: {size:.1f} MB, over the {LIMIT_MB} MB limit (the largest "
                            f"file is {largest.name}); lower its figures' size or count")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    write_readme(scale)
    return target


def code_cells(notebook: nbformat.NotebookNode) -> list[str]:
    """A notebook's code cells, without the cell of parameters papermill injects."""
    return [cell.source.strip() for cell in notebook.cells if cell.cell_type == "code"
            and "injected-parameters" not in cell.metadata.get("tags", [])]


def differing_code(folder: Path) -> list[str]:
    """The executed notebooks in ``folder`` whose code cells differ from their ``notebooks/*.py`` source."""
    executed = lambda py: nbformat.read(folder / f"{py.stem}.ipynb", as_version=4)
    return [py.stem for py in notebooks() if (folder / f"{py.stem}.ipynb").exists()
            and code_cells(executed(py)) != code_cells(jupytext.read(py))]


def provenance(scale: str) -> dict:
    """Where the published numbers come from: the commit (and whether the work tree differed from it),
    torch, the CPU, its cores, and the threads per run that the runs' metrics.json recorded."""
    git = lambda *args: subprocess.run(["git", *args], cwd=cl.ROOT, capture_output=True,
                                       text=True).stdout.strip()
    records = [json.loads(p.read_text()) for p in (cl.RUNS / scale).glob("*/metrics.json")]
    threads = sorted({r.get("threads", "not recorded") for r in records if not r.get("control")}, key=str)
    return {"scale": scale, "commit": git("rev-parse", "HEAD") or "unknown",
            "work tree": "modified" if git("status", "--porcelain", "--untracked-files=no") else "clean",
            "torch": str(torch.__version__), "python": platform.python_version(), "cpu": cpu_model(),
            "cores": len(os.sched_getaffinity(0)), "threads per run": threads}


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (else the platform's)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def findings(scale: str = "cpu") -> str:
    """The README's findings, from the published summary: each primary verdict with its interval,
    the schedule and seeds, and a link to the notebook that measured it; what learning adds beside."""
    folder = published(scale)
    if not (folder / "summary.csv").exists():
        return (f"No study is published yet under `results/{scale}/`: run `make run`, then "
                f"`python -m cl.study publish` writes it, and these findings, from its runs.")
    where = f"results/{scale}/{primary.declared().notebook}.ipynb"
    return primary.study_findings(pd.read_csv(folder / "summary.csv"), scale, where) or (
        f"The study published under `results/{scale}/` has no run of a primary condition.")


def results_block(scale: str = "cpu") -> str:
    """The README's results table, from the published summary and minutes."""
    folder = published(scale)
    if not (folder / "summary.csv").exists():
        return f"No results are published yet under `results/{scale}/`."
    minutes = json.loads((folder / "minutes.json").read_text())
    rows = pd.read_csv(folder / "summary.csv", keep_default_na=False, na_values=[""])
    return summary.results_table(scale, rows, minutes)


def write_readme(scale: str = "cpu", readme: Path | None = None) -> None:
    """Fill the README's findings and results blocks (between their markers) from ``results/<scale>/``."""
    readme = readme or cl.ROOT / "README.md"
    text = readme.read_text()
    for (begin, end), content in ((FINDINGS, findings(scale)), (RESULTS, results_block(scale))):
        if begin not in text or end not in text:
            raise UserError(f"{readme} has no {begin} … {end} block to fill")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{content}\n{end}{tail}"
    readme.write_text(text)
