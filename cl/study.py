"""Running the study: notebooks executed with papermill, HTML exports, the summary table.

``python -m cl.study run --scale cpu``   executes every notebook in order into runs/
``python -m cl.study prepare --scale smoke``  writes the notebooks with the smoke
parameters injected (what ``make test`` hands to nbval)

Where things go: ``runs/<scale>/<run name>/`` for a training run (config.yaml,
checkpoint.pt, metrics.json), ``runs/<scale>/notebooks/`` for executed notebooks and
their HTML, ``runs/summary.csv`` (cpu) or ``runs/<scale>/summary.csv`` (other scales), and
``report.html`` beside it (see ``cl.report``).
``NEGATIVES_RUNS`` moves ``runs/`` elsewhere.

Every notebook calls :func:`check_parameters` in the cell after its parameters cell, and
``run`` checks every notebook's parameter file before it executes any: a bad parameter
fails at once, with a message that names it.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cl import ROOT, cli, progress
from cl.cli import Interrupted, UserError

NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"
RUNS = Path(os.environ.get("NEGATIVES_RUNS", ROOT / "runs"))
NOTEBOOK_ENV = "NEGATIVES_NOTEBOOK"  # the name of the notebook a kernel started by execute() runs
SCALES = ("smoke", "cpu", "gpu")
FINAL_COLUMNS = ["knn_top1", "linear_top1", "alignment", "uniformity", "train_seconds", "images_per_second"]
# the config keys a reader needs to tell runs apart (the whole config is in each run's config.yaml)
CONFIG_COLUMNS = ["loss", "source", "t", "tau_plus", "beta", "select", "select_fraction", "mochi_n",
                  "mochi_s", "mochi_s_prime", "mochi_warmup", "queue", "mined_queue", "mine_every",
                  "mine_rule", "batch_size", "optimizer", "lr", "lr_schedule", "precision"]
SUMMARY_COLUMNS = ["run", "notebook", "method", "dataset", "epochs", "seed", *FINAL_COLUMNS, *CONFIG_COLUMNS]
MIN_SEEDS = 3  # a claim needs at least this many seeds on each side
# the words a difference (a − b) earns when its interval lies above 0 and below 0: accuracy is better
# higher; alignment (a distance) and the uniformity loss are better lower (Wang & Isola 2020)
VERDICT_WORDS = {"alignment": ("higher (worse)", "lower (better)"),
                 "uniformity": ("higher (worse)", "lower (better)")}


def notebooks() -> list[Path]:
    """The notebooks' py:percent sources, in the study's order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


class ParameterError(UserError, ValueError):
    """A notebook parameter that cannot run; the message names it and the fix."""


def parameters(scale: str, notebook: str) -> dict:
    """The papermill parameters of a notebook at a scale: those of the scale's shared
    ``params/<scale>/base.yaml`` that the notebook declares, then its own
    ``params/<scale>/<notebook>.yaml`` (only what differs; it may be absent)."""
    if scale not in SCALES:
        raise ParameterError(f"unknown scale {scale!r}: use one of {SCALES}")
    shared_path, own_path = PARAMS / scale / "base.yaml", PARAMS / scale / f"{notebook}.yaml"
    if not shared_path.exists():
        raise FileNotFoundError(f"no shared parameters for scale {scale}: write {_shown(shared_path)}")
    declared = declared_parameters(NOTEBOOKS / f"{notebook}.py")
    shared = {k: v for k, v in (cli.load_yaml(shared_path.read_text()) or {}).items() if k in declared}
    own = cli.load_yaml(own_path.read_text()) or {} if own_path.exists() else {}
    return {**shared, **own}


def declared_parameters(py: Path) -> list[str]:
    """The names a notebook's parameters cell assigns, in order."""
    import jupytext
    cell = next(c for c in jupytext.read(py).cells if "parameters" in c.metadata.get("tags", []))
    return _assigned(cell.source)


def _assigned(source: str) -> list[str]:
    """The names a cell's top-level assignments bind."""
    return [target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)]


def check_parameters(**parameters) -> None:
    """Check a notebook's parameters before it runs anything; ParameterError names the bad one and the fix.

    Call it in the cell after the parameters cell, with every parameter of the notebook:
    ``study.check_parameters(scale=scale, base=base, seeds=seeds, check_claims=check_claims)``.
    ``scale`` is one of SCALES; ``base`` and every other dict (one run's overrides of base, or
    a dict of them by condition name) must make a valid ``cl.train.Config``; ``seeds`` is a
    list of distinct seeds ≥ 0; ``check_claims`` a bool; numbers are finite. Under papermill,
    which only warns about them, a parameter the notebook does not have is refused too.
    """
    unknown = sorted(_papermill_names() - set(parameters))
    if unknown:
        raise ParameterError(_unknown(unknown, list(parameters)))
    _check_values(parameters)


def check_notebook_parameters(scale: str, only: list[str] | None = None) -> None:
    """Check the parameter files of a scale (params/<scale>/) against the notebooks, before any runs."""
    shared_path = PARAMS / scale / "base.yaml"
    shared = cli.load_yaml(shared_path.read_text()) or {} if shared_path.exists() else {}
    anywhere = {name for py in notebooks() for name in declared_parameters(py)}
    for name in shared:
        if name not in anywhere:
            raise ParameterError(f"{_shown(PARAMS / scale)}/base.yaml: {name} is a parameter of no notebook "
                                 f"(theirs: {', '.join(sorted(anywhere))})")
    for py in notebooks():
        if only and py.stem not in only:
            continue
        given, declared = parameters(scale, py.stem), declared_parameters(py)
        unknown = sorted(set(given) - set(declared))
        try:
            if unknown:
                raise ParameterError(_unknown(unknown, declared))
            _check_values(given)
        except ParameterError as error:
            where = f"{_shown(PARAMS / scale / py.stem)}.yaml (with {scale}/base.yaml)"
            raise ParameterError(f"{where}: {error}") from None


def _unknown(names: list[str], declared: list[str]) -> str:
    return (f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not a parameter of the notebook "
            f"(its parameters: {', '.join(declared)}); cl.train.Config keys go in base, e.g. "
            f"papermill -y 'base: {{epochs: 3}}'")


def _papermill_names() -> set[str]:
    """The names papermill injected into this IPython session (its "# Parameters" cell); none elsewhere."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    history = shell.user_ns.get("In", []) if shell is not None else []
    injected = [cell for cell in history if cell.startswith("# Parameters\n")]
    return set(_assigned(injected[-1])) if injected else set()


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
    if name == "seeds":
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
    from cl import train
    for name, overrides in runs.items():
        try:
            train.Config.from_dict({**base, **overrides} if isinstance(overrides, dict) else overrides)
        except train.ConfigError as error:
            return f"{error}" if name is None else f"entry {name!r}: {error}"
    return None


def run_dir(scale: str, name: str) -> Path:
    """Where a training run of a notebook lives."""
    return RUNS / scale / name


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
    from cl import pool, train
    names = [(name, overrides, base, seed) for conditions, base, seeds in groups
             for name, overrides in conditions.items() for seed in seeds]
    jobs = [(train.Config.from_dict({**base, **overrides, "seed": seed}), run_dir(scale, f"{name}_s{seed}"))
            for name, overrides, base, seed in names]
    records = pool.train_all(jobs, notebook, [method or name for name, *_ in names])
    results = {}
    for (name, *_), record in zip(names, records):
        results.setdefault(name, []).append(record)
    return results


def mean_std(results: dict[str, list[dict]], columns=("knn_top1", "linear_top1", "alignment", "uniformity")):
    """A table of final metrics over seeds: mean, std and n per condition (std is NaN for one seed)."""
    import pandas as pd
    rows = []
    for name, records in results.items():
        finals = pd.DataFrame([r["final"] for r in records])[list(columns)]
        row = {"condition": name, "seeds": len(records)}
        for c in columns:
            row[c] = finals[c].mean()
            row[c + " std"] = finals[c].std() if len(records) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("condition")


def formatted(table, columns=("knn_top1", "linear_top1", "alignment", "uniformity"), digits: int = 2):
    """``mean ± std`` strings of a ``mean_std`` table, for display."""
    import pandas as pd
    out = pd.DataFrame(index=table.index)
    out["seeds"] = table["seeds"]
    for c in columns:
        out[c] = [f"{m:.{digits}f}" + ("" if pd.isna(s) else f" ± {s:.{digits}f}")
                  for m, s in zip(table[c], table[c + " std"])]
    return out


@dataclass(frozen=True)
class Difference:
    """A paired comparison of two conditions over seeds: the mean of (a − b) in ``metric`` and
    its two-sided t interval at ``level`` (``low``, ``high``; NaN below ``MIN_SEEDS`` pairs)."""

    a: str
    b: str
    metric: str
    mean: float
    low: float
    high: float
    seeds: int
    level: float = 0.95

    @property
    def claims(self) -> bool:
        """Whether the comparison may carry a claim: at least ``MIN_SEEDS`` seeds on each side."""
        return self.seeds >= MIN_SEEDS

    def verdict(self, better: str | None = None, worse: str | None = None,
                same: str = "no difference resolved at this budget") -> str:
        """The word the interval allows: ``better`` when it lies above 0, ``worse`` below 0,
        ``same`` when it contains 0; a comparison of fewer than MIN_SEEDS seeds claims nothing.
        The words default to the metric's (``VERDICT_WORDS``: a lower distance is better)."""
        if not self.claims:
            return f"{self.seeds} seed{'s' * (self.seeds != 1)}, no claim"
        above, below = VERDICT_WORDS.get(self.metric, ("better", "worse"))
        above, below = above if better is None else better, below if worse is None else worse
        return above if self.low > 0 else below if self.high < 0 else same

    def at_least(self, margin: float) -> bool:
        """True when the interval's lower end is above ``margin`` (``-1``: "nearly as good",
        within one point); never true without enough seeds."""
        return self.claims and self.low > margin

    def text(self, digits: int = 2) -> str:
        """``+mean [+low, +high]``, or ``+mean (n seeds)`` when the comparison claims nothing."""
        if not self.claims:
            return f"{self.mean:+.{digits}f} ({self.seeds} seed{'s' * (self.seeds != 1)})"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def __str__(self) -> str:
        return self.text()


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """mean and the two-sided Student t interval of the mean, mean ± t_{(1+level)/2, n−1}·sd/√n;
    the interval is NaN below MIN_SEEDS values (too few for a claim)."""
    from scipy import stats
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n
    if n < MIN_SEEDS:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def interval_words(values, positive: str, negative: str) -> str:
    """One quantity measured once per seed, in words from its 95 % t interval: ``positive`` when the
    interval lies above 0, ``negative`` below, else no effect resolved; below MIN_SEEDS values, no claim."""
    mean, low, high = t_interval(values)
    if len(values) < MIN_SEEDS:
        return f"{mean:+.3f} ({len(values)} seed{'s' if len(values) != 1 else ''}: no claim)"
    word = positive if low > 0 else negative if high < 0 else "no effect resolved at this budget"
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]: {word}"


def paired_difference(results: dict[str, list[dict]], a: str, b: str, metric: str = "knn_top1",
                      level: float = 0.95) -> Difference:
    """Condition ``a`` minus condition ``b`` over the seeds both ran, paired by seed:

        d_s = m_a(s) − m_b(s),   mean ± t_{(1+level)/2, n−1} · sd(d) / √n.

    Pairing removes what a seed does to both runs (the same initialisation, data order and
    augmentations). A bootstrap over three seeds would be degenerate (ten distinct resamples),
    which is why the interval is Student's t.
    """
    by_seed = lambda name: {r["config"]["seed"]: r["final"][metric] for r in results[name]}
    va, vb = by_seed(a), by_seed(b)
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        raise ValueError(f"{a!r} and {b!r} share no seed: nothing to pair")
    return Difference(a, b, metric, *t_interval([va[s] - vb[s] for s in seeds], level), len(seeds), level)


def differences(results: dict[str, list[dict]], pairs: list[tuple[str, str]],
                metrics=("knn_top1", "linear_top1")):
    """A table of paired differences (a − b) with their 95 % intervals and the word each allows
    (``VERDICT_WORDS`` for the metrics that are better lower); kNN decides the word of a claim,
    the linear probe stands beside it."""
    import pandas as pd
    rows = []
    for a, b in pairs:
        row = {"comparison": f"{a} − {b}"}
        for m in metrics:
            d = paired_difference(results, a, b, m)
            row[f"{m} difference"] = str(d)
            row[f"{m} verdict"] = d.verdict()
        rows.append(row)
    return pd.DataFrame(rows).set_index("comparison")


def _ipynb(py: Path, out: Path) -> Path:
    import jupytext
    out.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(jupytext.read(py), out, fmt="ipynb")
    return out


def prepare(scale: str) -> list[Path]:
    """The notebooks with the scale's parameters injected, not executed (for nbval)."""
    import papermill
    out_dir = RUNS / scale / "notebooks"
    written = []
    for py in notebooks():
        src = _ipynb(py, out_dir / "source" / f"{py.stem}.ipynb")
        dst = out_dir / f"{py.stem}.ipynb"
        papermill.execute_notebook(src, dst, parameters=parameters(scale, py.stem),
                                   prepare_only=True, cwd=NOTEBOOKS, log_output=False)
        written.append(dst)
    return written


def execute(scale: str, only: list[str] | None = None) -> None:
    """Execute the notebooks in order with papermill, export each to HTML, write the summary and report.

    Every parameter file is checked first. While a notebook runs, its runs write their steps
    to a progress file, from which a live bar is drawn here (a terminal only); the notebook
    itself records one line per epoch.
    """
    import papermill

    from cl import report
    unknown = sorted(set(only or []) - {py.stem for py in notebooks()})
    if unknown:
        raise ParameterError(f"no notebook {', '.join(unknown)}: use names of "
                             f"{', '.join(py.stem for py in notebooks())}")
    check_notebook_parameters(scale, only)
    out_dir = RUNS / scale / "notebooks"
    tracked = out_dir / ".progress.json"
    failed = []
    print(expected_total(scale, [py.stem for py in notebooks() if not only or py.stem in only]), flush=True)
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
        record_minutes(scale, py.stem, seconds / 60)
        print(f"   {seconds:.0f} s: {_shown(dst)}", flush=True)
    path = write_summary(scale)
    print(f"summary: {_shown(path)}")
    print(f"report: {_shown(report.write_report(scale))}")
    if failed:
        raise UserError(f"notebooks that failed (see their executed copies in {_shown(out_dir)}): "
                        f"{', '.join(failed)}")


def _execute_notebook(src: Path, dst: Path, params: dict) -> None:
    """papermill's execution, with Ctrl-C passed on to the kernel: the cell it runs stops at a clean
    point (a run saying where it will resume, into the notebook too). A second Ctrl-C stops at once."""
    import asyncio

    import papermill
    from jupyter_client import AsyncKernelManager
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
        papermill.execute_notebook(src, dst, parameters=params, cwd=NOTEBOOKS, progress_bar=False,
                                   log_output=True, kernel_name="python3", kernel_manager_class=Kernel)
    finally:
        signal.signal(signal.SIGINT, previous)


def _shown(path: Path) -> Path:
    """A path as the user reads it: relative to the project when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


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


def summary_rows(scale: str) -> list[dict]:
    """One row per finished training run of the scale, with the columns of SUMMARY_COLUMNS
    (config keys a run predates read as the value it was trained with)."""
    from cl.train import LEGACY, Config
    defaults = {**Config().to_dict(), **LEGACY}
    rows = []
    for path in sorted((RUNS / scale).glob("*/metrics.json")):
        m = json.loads(path.read_text())
        if not m.get("finished"):
            continue
        cfg, final = {**defaults, **m["config"]}, m["final"]
        rows.append({"run": m["run"], "notebook": m["notebook"], "method": m["method"],
                     "dataset": cfg["dataset"], "epochs": cfg["epochs"], "seed": cfg["seed"],
                     **{k: final[k] for k in FINAL_COLUMNS}, **{k: cfg.get(k) for k in CONFIG_COLUMNS}})
    return rows


def finished_results(scale: str) -> dict[str, list[dict]]:
    """Every finished run of a scale, read from its metrics.json, grouped by condition (the run's
    name without its ``_s<seed>``), seeds in order: what ``mean_std``, ``differences`` and the
    plots take. Notebook 08 reads the whole study this way, before ``summary.csv`` exists."""
    import re
    results: dict[str, list[dict]] = {}
    for path in sorted((RUNS / scale).glob("*/metrics.json")):
        record = json.loads(path.read_text())
        if record.get("finished"):
            results.setdefault(re.sub(r"_s\d+$", "", record["run"]), []).append(record)
    by_seed = lambda records: sorted(records, key=lambda r: r["config"]["seed"])
    return {name: by_seed(records) for name, records in sorted(results.items())}


def scratch_minutes(scale: str) -> dict[str, float]:
    """Each notebook's minutes with every run trained anew, from ``params/<scale>/minutes.yaml``."""
    path = PARAMS / scale / "minutes.yaml"
    return (cli.load_yaml(path.read_text()) or {}).get("minutes", {}) if path.exists() else {}


def expected_total(scale: str, names: list[str]) -> str:
    """What the notebooks ``names`` are expected to take, in one line: each notebook's minutes from
    ``params/<scale>/minutes.yaml`` (measured on the project's 2-core reference machine, every run
    trained anew); finished runs are reused, so a second execution takes far less."""
    measured = scratch_minutes(scale)
    known = [name for name in names if name in measured]
    if not known:
        return f"expected time: not measured at the {scale} scale"
    total = sum(measured[name] for name in known)
    missing = f", {len(names) - len(known)} notebook(s) not measured" if len(known) < len(names) else ""
    return (f"expected time: about {total:.0f} minutes on a 2-core CPU for {len(known)} notebook(s) trained "
            f"from scratch{missing} (finished runs are reused)")


# what makes a condition a method rather than a setting: its objective, selection, MoCHi and heads
METHOD_KEYS = ("loss", "tau_plus", "beta", "select", "select_fraction", "mochi_n", "mochi_s", "mochi_s_prime",
               "mochi_warmup", "head", "predictor_hidden", "predictor_lr", "target_schedule", "precision")


def baselines(results: dict[str, list[dict]]) -> dict[str, str]:
    """For each condition, the plain InfoNCE condition of the same setting: the one whose config is
    the same but for METHOD_KEYS (and the seed), each of those at its default. Conditions without
    one at hand (another source, schedule or optimiser than every plain condition) are left out."""
    from cl.train import LEGACY, Config
    defaults = Config().to_dict()
    full = lambda records: {**defaults, **LEGACY, **records[0]["config"]}  # as a run was trained
    ignored = (*METHOD_KEYS, "seed", "device", "probe")
    setting_of = lambda cfg: tuple(sorted((k, v) for k, v in cfg.items() if k not in ignored))
    plain = {setting_of(full(records)): name for name, records in results.items()
             if all(full(records)[k] == defaults[k] for k in METHOD_KEYS)}
    return {name: plain[key] for name, records in results.items()
            if (key := setting_of(full(records))) in plain and plain[key] != name}


def _minutes_file(scale: str) -> Path:
    return RUNS / scale / "notebooks" / "minutes.json"


def recorded_minutes(scale: str) -> dict[str, float]:
    """Each notebook's wall-clock minutes at its last execution (``record_minutes``), by name."""
    path = _minutes_file(scale)
    return json.loads(path.read_text()) if path.exists() else {}


def record_minutes(scale: str, notebook: str, minutes: float) -> None:
    """Keep the wall-clock minutes of a notebook's last execution (``notebooks/minutes.json``)."""
    path = _minutes_file(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    minutes = {**recorded_minutes(scale), notebook: round(minutes, 2)}
    path.write_text(json.dumps(minutes, indent=1, sort_keys=True))


def setting(row) -> str:
    """The training setting a run's number comes from, in words: the source of negatives, the
    temperature (where there are negatives to scale), the optimiser, and the precision when it is
    not the default bf16."""
    mined = (f", {int(row['mined_queue'])} mined every {int(row['mine_every'])} steps ({row['mine_rule']})"
             if row.get("mined_queue") else "")
    source = {"queue": f"queue K={int(row['queue'])}{mined}, t={row['t']:g}",
              "batch": f"in-batch 2B−2, B={int(row['batch_size'])}, t={row['t']:g}",
              "none": f"no negatives ({row['loss']})"}[row["source"]]
    text = f"{source}, {row['optimizer']} lr {row['lr']:g}"
    return text + (", fp32" if row.get("precision") == "fp32" else "")


def results_table(scale: str = "cpu") -> str:
    """The study's results as Markdown, from the summary of finished runs (``summary.csv``) and
    the recorded notebook minutes: one row per condition (its runs' seeds pooled, mean ± std),
    and one line per notebook with its wall-clock minutes (its last execution, which reuses
    finished runs, and with every run trained anew). The README's tables are this output."""
    import pandas as pd
    table = pd.DataFrame(summary_rows(scale), columns=SUMMARY_COLUMNS)
    if table.empty:
        return f"no finished runs under runs/{scale}/: run `make run` first"
    table["condition"] = table["run"].str.replace(r"_s\d+$", "", regex=True)
    table["setting"] = table.apply(setting, axis=1)
    fmt = lambda v, d=2: f"{v.mean():.{d}f}" + (f" ± {v.std():.{d}f}" if len(v) > 1 else "")
    lines = ["| notebook | condition | setting | epochs | seeds | kNN top-1 | linear top-1 | alignment "
             "| uniformity | train min/run |", "|" + " --- |" * 10]
    for (notebook, condition), g in table.groupby(["notebook", "condition"], sort=True):
        lines.append(f"| {notebook} | {condition} | {g['setting'].iloc[0]} | {g['epochs'].iloc[0]} "
                     f"| {len(g)} | {fmt(g['knn_top1'])} | {fmt(g['linear_top1'])} "
                     f"| {fmt(g['alignment'], 3)} | {fmt(g['uniformity'], 3)} "
                     f"| {g['train_seconds'].mean() / 60:.1f} |")
    minutes = recorded_minutes(scale)
    scratch = scratch_minutes(scale)
    if minutes or scratch:
        shown = lambda values, nb: f"{values[nb]:.1f}" if nb in values else "—"
        lines += ["", f"| notebook | minutes, last execution (wall clock) | minutes, every run trained anew "
                      f"(params/{scale}/minutes.yaml) |", "| --- | --- | --- |",
                  *[f"| {nb} | {shown(minutes, nb)} | {shown(scratch, nb)} |"
                    for nb in sorted({*minutes, *scratch})],
                  f"| total | {sum(minutes.values()):.1f} | {sum(scratch.values()):.1f} |"]
    missing = [py.stem for py in notebooks() if py.stem not in minutes]
    if missing:
        lines += ["", f"Not executed at the {scale} scale yet: {', '.join(missing)}. The rows above are "
                      "the runs finished so far, listed under the notebook that trained them."]
    return "\n".join(lines)


README_BEGIN, README_END = "<!-- results: begin -->", "<!-- results: end -->"


def write_readme_results(scale: str = "cpu", readme: Path = ROOT / "README.md") -> None:
    """Replace the README's results block (between README_BEGIN and README_END) with
    ``results_table``, so that no number there is typed by hand."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_BEGIN} … {README_END} block to fill")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_BEGIN}\n{results_table(scale)}\n{README_END}{tail}")


def write_summary(scale: str) -> Path:
    import pandas as pd
    path = RUNS / "summary.csv" if scale == "cpu" else RUNS / scale / "summary.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(summary_rows(scale), columns=SUMMARY_COLUMNS).to_csv(path, index=False, float_format="%.4f")
    return path


def main(argv=None) -> int:
    """``python -m cl.study run | prepare | summary | table | report | parameters``; an expected failure is
    one line, exit status 1."""
    return cli.run_main(_main, argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "prepare", "summary", "table", "report", "parameters"],
                        help="table: print the results as Markdown (--readme: write them into README.md); "
                             "parameters: print the --only notebook's parameters at --scale as YAML "
                             "(for papermill -f)")
    parser.add_argument("--readme", action="store_true", help="with table: fill README.md's results block")
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    parser.add_argument("--only", nargs="*", help="notebook names (default: all, in order)")
    args = parser.parse_args(argv)
    if args.action == "run":
        logging.basicConfig(level=logging.INFO, format="%(message)s")  # papermill streams cell output here
        execute(args.scale, args.only)
    elif args.action == "prepare":
        for p in prepare(args.scale):
            print(_shown(p))
    elif args.action == "table":
        if args.readme:
            write_readme_results(args.scale)
        print(results_table(args.scale))
    elif args.action == "report":
        from cl import report
        print(_shown(report.write_report(args.scale)))
    elif args.action == "parameters":
        if not args.only or len(args.only) != 1:
            raise ParameterError("parameters needs one notebook: --only NAME, e.g. --only 01_moco_v2")
        import yaml
        print(yaml.safe_dump(parameters(args.scale, args.only[0]), sort_keys=False), end="")
    else:
        print(write_summary(args.scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
