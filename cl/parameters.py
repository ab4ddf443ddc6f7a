"""The notebooks and their parameters: which notebooks make the study, what papermill hands each
at a scale, and the checks that refuse a bad parameter before anything runs.

``params/<scale>/base.yaml`` holds a scale's shared parameters, written once; a notebook takes
those its parameters cell declares, then its own ``params/<scale>/<notebook>.yaml`` (only what
differs; usually absent). Every notebook checks its parameters first (``cl.notebook.start``),
and ``cl.study run`` checks every parameter file before it executes any notebook.
"""
from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import jupytext

import cl
from cl import ROOT, cli
from cl.cli import UserError
from cl.config import Config, ConfigError

SCALES = ("smoke", "cpu", "gpu")
NOTEBOOK_ENV = "NEGATIVES_NOTEBOOK"  # the name of the notebook a kernel started by cl.study runs
PAPERMILL_CELL = "# Parameters\n"  # how the cell papermill injects after the parameters cell begins


def notebooks() -> list[Path]:
    """The notebooks' py:percent sources, in the study's order."""
    return sorted(cl.NOTEBOOKS.glob("[0-9][0-9]_*.py"))


class ParameterError(UserError, ValueError):
    """A notebook parameter that cannot run; the message names it and the fix."""

def parameters(scale: str, notebook: str, given: dict | None = None) -> dict:
    """The papermill parameters of a notebook at a scale: those of the scale's shared
    ``params/<scale>/base.yaml`` that the notebook declares, then its own
    ``params/<scale>/<notebook>.yaml`` (only what differs; it may be absent), then ``given`` (the
    command line's ``-f``/``-y``, each parameter whole, as papermill replaces it)."""
    if scale not in SCALES:
        raise ParameterError(f"unknown scale {scale!r}: use one of {SCALES}")
    shared_path, own_path = cl.PARAMS / scale / "base.yaml", cl.PARAMS / scale / f"{notebook}.yaml"
    if not shared_path.exists():
        raise FileNotFoundError(f"no shared parameters for scale {scale}: write {shown(shared_path)}")
    declared = declared_parameters(cl.NOTEBOOKS / f"{notebook}.py")
    shared = {k: v for k, v in mapping(shared_path).items() if k in declared}
    return {**shared, **mapping(own_path), **(given or {})}


def mapping(path: Path) -> dict:
    """A parameter file's parameters by name; ``{}`` when it is absent or empty."""
    given = cli.load_yaml_file(path) if path.exists() else {}
    if not isinstance(given or {}, dict):
        raise ParameterError(f"{shown(path)} holds a {type(given).__name__}, not parameters by name "
                             f"(name: value, one a line)")
    return given or {}


def declared_parameters(py: Path) -> list[str]:
    """The names a notebook's parameters cell assigns, in order."""
    cell = next(c for c in jupytext.read(py).cells if "parameters" in c.metadata.get("tags", []))
    return _assigned(cell.source)


def _assigned(source: str) -> list[str]:
    """The names a cell's top-level assignments bind."""
    return [target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)]


def check_parameters(**parameters) -> None:
    """Check a notebook's parameters before it runs anything; ParameterError names the bad one and the fix.

    ``cl.notebook.start`` calls it with every parameter of the notebook (``session_parameters``).
    ``scale`` is one of SCALES; ``base`` and every other dict (one run's overrides of base, or
    a dict of them by condition name) must make a valid ``cl.config.Config``; ``seeds`` is a
    list of distinct seeds ≥ 0; ``check_claims`` a bool; numbers are finite. Under papermill,
    which only warns about them, a parameter the notebook does not have is refused too.
    """
    unknown = sorted(_papermill_names() - set(parameters))
    if unknown:
        raise ParameterError(_unknown(unknown, list(parameters)))
    _check_values(parameters)


def check_notebook_parameters(scale: str, only: list[str] | None = None, given: dict | None = None) -> None:
    """Check the parameter files of a scale (params/<scale>/), and ``given`` (the command line's), against
    the notebooks, before any runs."""
    shared_path = cl.PARAMS / scale / "base.yaml"
    shared = mapping(shared_path)
    anywhere = {name for py in notebooks() for name in declared_parameters(py)}
    for name in shared:
        if name not in anywhere:
            raise ParameterError(f"{shown(shared_path)}: {name} is a parameter of no notebook "
                                 f"(theirs: {', '.join(sorted(anywhere))})")
    for py in notebooks():
        if only and py.stem not in only:
            continue
        own_path = cl.PARAMS / scale / f"{py.stem}.yaml"
        merged, declared, own = parameters(scale, py.stem, given), declared_parameters(py), mapping(own_path)
        unknown = sorted(set(merged) - set(declared))
        try:
            if unknown:
                raise ParameterError(_unknown(unknown, declared))
            _check_values(merged)
        except ParameterError as error:  # blamed on the file that gave the parameter (base: either)
            name = error.args[0].removeprefix("parameter ").split(":")[0] if not unknown else unknown[0]
            where = ("the parameters given (-f, -y)" if name in (given or {}) else
                     f"{shown(own_path)} (with {shown(shared_path)})" if name == "base" and own else
                     shown(own_path) if name in own else shown(shared_path))
            raise ParameterError(f"{where}, for {py.stem}: {error}") from None


def _unknown(names: list[str], declared: list[str]) -> str:
    return (f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not a parameter of the notebook "
            f"(its parameters: {', '.join(declared)}); cl.config.Config keys go in base: write the "
            f"notebook's parameters at its scale (python -m cl.study parameters --scale SCALE --only "
            f"NOTEBOOK > p.yaml), change the key in p.yaml's base, and pass -f p.yaml")


def _history() -> list[str]:
    """The cells this IPython session has run, oldest first; none outside IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return list(shell.user_ns.get("In", [])) if shell is not None else []


def _papermill_names() -> set[str]:
    """The names papermill injected into this IPython session (its "# Parameters" cell); none elsewhere."""
    injected = [cell for cell in _history() if cell.startswith(PAPERMILL_CELL)]
    return set(_assigned(injected[-1])) if injected else set()


def session_parameters(namespace: dict) -> dict:
    """The parameters of the notebook running in this IPython session, by name, as ``namespace``
    (its globals) holds them now: the names its parameters cell (the last cell run that assigns
    ``scale``, papermill's injected cell aside) binds. Its parameters are declared once, there.

    A kernel that keeps no history (nbval runs its cells so) has run only the parameters cell and
    the imports before ``notebook.start``: the parameters are then the data in ``namespace``."""
    cells = [cell for cell in _history() if not cell.startswith(PAPERMILL_CELL)]
    declared = next((names for cell in reversed(cells) if "scale" in (names := _safely_assigned(cell))), None)
    if declared is None:
        declared = [name for name, value in namespace.items() if _is_data(name, value)]
    if "scale" not in declared:
        raise ParameterError("no parameters cell has run in this session: run the notebook's first cell "
                             "(the one that sets scale) first")
    return {name: namespace[name] for name in declared}


def _is_data(name: str, value) -> bool:
    """Whether a global is a value a parameters cell sets (not a module, class or function that an
    import brought, nor IPython's own history)."""
    data = isinstance(value, (str, int, float, bool, list, dict, type(None)))
    return data and not name.startswith("_") and name not in ("In", "Out")


def _safely_assigned(source: str) -> list[str]:
    """``_assigned`` of a cell that may not be Python (a cell magic, say): nothing then."""
    try:
        return _assigned(source)
    except SyntaxError:
        return []


def _check_values(parameters: dict) -> None:
    first = [name for name in ("scale", "base") if name in parameters]
    for name in first + [name for name in parameters if name not in first]:
        problem = _parameter_problem(name, parameters[name], parameters.get("base", {}))
        if problem:
            raise ParameterError(f"parameter {name}: {problem}")


def _parameter_problem(name: str, value, base: dict) -> str | None:
    """What is wrong with one parameter's value, if anything."""
    if name == "scale":
        return None if value in SCALES else f"{value!r} is not a scale: use one of {', '.join(SCALES)}"
    if name == "seeds" or name.endswith("_seeds"):
        seeds = value if isinstance(value, list) else []
        whole = all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        good = seeds and whole and len(set(seeds)) == len(seeds)
        return None if good else f"{value!r} is not a non-empty list of distinct seeds ≥ 0: use e.g. [0, 1]"
    if name == "check_claims":
        return None if isinstance(value, bool) else f"{value!r} is not True or False"
    if name == "base":
        return _config_problem({None: value}, {})
    if isinstance(value, dict):  # one run's overrides of base, or a dict of them by name
        by_name = value and all(isinstance(v, dict) for v in value.values())
        return _config_problem(value if by_name else {None: value}, base)
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    return None


def _config_problem(runs: dict, base: dict) -> str | None:
    """What keeps a run (``base`` and its overrides, by name; None: the only one) from being a Config."""
    for name, overrides in runs.items():
        try:
            Config.from_dict({**base, **overrides} if isinstance(overrides, dict) else overrides)
        except ConfigError as error:
            return f"{error}" if name is None else f"entry {name!r}: {error}"
    return None



def shown(path: Path) -> Path:
    """A path as the user reads it: relative to the project when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
