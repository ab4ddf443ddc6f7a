"""The plan: every run of the study, listed before any notebook executes.

A notebook defines its runs in the cells tagged ``plan``: its conditions, and the call that trains
them (:func:`cl.study.run_groups`, :func:`cl.study.run_conditions`) or evaluates the controls
(:func:`cl.controls.ensure`). :func:`notebook_runs` executes those cells alone, with the scale's
parameters, while :func:`collecting` makes each such call record its runs instead of training them
(it returns an empty record per seed); a cell stops after its last such call, so the analysis that
follows in the same cell is not reached. The reader still sees each notebook's conditions where they
are run.

``python -m cl.study plan --scale S`` prints the plan; ``python -m cl.study run`` (and ``train``)
trains all of it side by side (:mod:`cl.pool`) before the notebooks execute, which then reuse
every run. A notebook opened alone in JupyterLab trains what it is missing itself.
"""
from __future__ import annotations

import ast
import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

import cl
from cl import system
from cl.cli import UserError
from cl.config import Config
from cl.parameters import NOTEBOOK_ENV, check_notebook_parameters, notebooks, parameters
from cl.run_folder import config_diff, finished_run

TAG = "plan"
RUN_CALLS = ("run_conditions", "run_groups", "ensure")  # the calls a plan cell ends with

_collected: list[Run] | None = None


@dataclass
class Run:
    """One run of the plan: its folder, config and method, the notebooks that read it (the first
    is recorded in its metrics.json), and the control's kind for a control (else None)."""

    run_dir: Path
    config: Config
    method: str
    notebooks: list[str] = field(default_factory=list)
    control: str | None = None

    @property
    def name(self) -> str:
        return self.run_dir.name


@contextlib.contextmanager
def collecting():
    """Within the body, the run calls record their runs (yielded, in order) instead of training."""
    global _collected
    previous, _collected = _collected, []
    try:
        yield _collected
    finally:
        _collected = previous


def record(runs: list[Run]) -> bool:
    """Record ``runs`` when a plan is being collected; whether one is (the caller then trains nothing)."""
    if _collected is None:
        return False
    _collected.extend(runs)
    return True


def up_to_last_run_call(source: str, where: str):
    """A plan cell's code, compiled, up to and including its last statement that calls a run function
    (the whole cell when it calls none: a cell of definitions)."""
    body = ast.parse(source).body
    calls = [i for i, statement in enumerate(body) if any(
        isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in RUN_CALLS
        for node in ast.walk(statement))]
    return compile(ast.Module(body[:calls[-1] + 1] if calls else body, type_ignores=[]), where, "exec")


def notebook_runs(scale: str, stem: str, given: dict | None = None) -> list[Run]:
    """The runs of notebook ``stem`` at ``scale``: its parameters cell, the scale's parameters, then
    its plan cells, executed with the run calls recording (their output is not shown)."""
    cells = [cell for cell in jupytext.read(cl.NOTEBOOKS / f"{stem}.py").cells if cell.cell_type == "code"]
    namespace = {"__name__": "__plan__"}
    with collecting() as runs, system.environment(**{NOTEBOOK_ENV: stem}), contextlib.chdir(cl.NOTEBOOKS), \
            contextlib.redirect_stdout(io.StringIO()):
        for number, cell in enumerate(cells, 1):
            tags = cell.metadata.get("tags", [])
            if "parameters" in tags:
                exec(compile(cell.source, f"{stem}.py, code cell {number}", "exec"), namespace)
                namespace.update(parameters(scale, stem, given))
            elif TAG in tags:
                exec(up_to_last_run_call(cell.source, f"{stem}.py, code cell {number}"), namespace)
    return list(runs)


def study_plan(scale: str, only: list[str] | None = None, given: dict | None = None) -> list[Run]:
    """Every run of the study's notebooks (or of ``only``) at ``scale`` (with the parameters ``given``),
    once each, in the order the notebooks first use them; a run name with two configs is an error.
    Every parameter is checked first (:func:`cl.parameters.check_notebook_parameters`)."""
    check_notebook_parameters(scale, only, given)
    merged: dict[str, Run] = {}
    for py in notebooks():
        if only and py.stem not in only:
            continue
        for run in notebook_runs(scale, py.stem, given):
            known = merged.setdefault(run.name, run)
            if known.config.identity() != run.config.identity():
                raise UserError(f"the run folder name {run.name} is given two configs, in "
                                f"{known.notebooks[0]} and {run.notebooks[0]} "
                                f"({config_diff(known.config.identity(), run.config.identity())}): "
                                f"rename one of the conditions")
            known.notebooks.extend(nb for nb in run.notebooks if nb not in known.notebooks)
    return list(merged.values())


def table(runs: list[Run]) -> str:
    """The plan as text: a line per run (its name, finished or not, the notebooks that read it, what its
    config changes from the defaults), then how many are left to train."""
    width = max((len(run.name) for run in runs), default=0)
    done = [finished_run(run.config, run.run_dir) is not None for run in runs]
    lines = [f"{run.name:<{width}}  {'finished' if ok else 'to train':<8}  {','.join(run.notebooks)}  "
             f"{'control: ' + run.control if run.control else overrides(run.config)}"
             for run, ok in zip(runs, done)]
    return "\n".join([*lines, f"{len(runs)} runs, {len(runs) - sum(done)} to train or evaluate"])


def overrides(cfg: Config) -> str:
    """The keys of ``cfg`` that differ from the defaults, as ``key=value`` (what names its condition)."""
    defaults = Config().to_dict()
    return " ".join(f"{k}={v}" for k, v in cfg.to_dict().items() if k != "device" and defaults.get(k) != v)

