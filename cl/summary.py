"""The study's results in one table: one row per finished run (``summary.csv``), the conditions
grouped over seeds, the setting each number comes from, each notebook's minutes, and the
README's results block, written by a command so that no number there is typed by hand.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

import cl
from cl import cli, controls
from cl.config import Config
from cl.parameters import notebooks

FINAL_COLUMNS = ["knn_top1", "linear_top1", "alignment", "uniformity", "train_seconds", "images_per_second"]
# the config keys a reader needs to tell runs apart (the whole config is in each run's config.yaml)
CONFIG_COLUMNS = ["loss", "source", "t", "tau_plus", "beta", "select", "select_fraction", "mochi_n",
                  "mochi_s", "mochi_s_prime", "mochi_warmup", "queue", "mined_queue", "mine_every",
                  "mine_rule", "batch_size", "optimizer", "lr", "lr_schedule", "precision"]
# control: the kind of a control (cl.controls: untrained encoder, raw pixels), empty for a trained run
SUMMARY_COLUMNS = ["run", "notebook", "method", "control", "dataset", "epochs", "seed", *FINAL_COLUMNS,
                   *CONFIG_COLUMNS]
# what makes a condition a method rather than a setting: its objective, selection, MoCHi and heads
METHOD_KEYS = ("loss", "tau_plus", "beta", "select", "select_fraction", "mochi_n", "mochi_s", "mochi_s_prime",
               "mochi_warmup", "head", "predictor_hidden", "predictor_lr", "target_schedule", "precision")


def summary_rows(scale: str) -> list[dict]:
    """One row per finished training run of the scale, with the columns of SUMMARY_COLUMNS."""
    defaults = Config().to_dict()
    rows = []
    for path in sorted((cl.RUNS / scale).glob("*/metrics.json")):
        m = json.loads(path.read_text())
        if not m.get("finished"):
            continue
        cfg, final = {**defaults, **m["config"]}, m["final"]
        rows.append({"run": m["run"], "notebook": m["notebook"], "method": m["method"],
                     "control": m.get("control", ""), "dataset": cfg["dataset"],
                     "epochs": 0 if m.get("control") else cfg["epochs"], "seed": cfg["seed"],
                     **{k: final[k] for k in FINAL_COLUMNS}, **{k: cfg.get(k) for k in CONFIG_COLUMNS}})
    return rows


def finished_results(scale: str) -> dict[str, list[dict]]:
    """Every finished run of a scale, read from its metrics.json, grouped by condition (the run's
    name without its ``_s<seed>``), seeds in order: what ``stats.mean_std``, ``stats.differences``
    and the plots take. Notebook 08 reads the whole study this way, before ``summary.csv`` exists."""
    results: dict[str, list[dict]] = {}
    for path in sorted((cl.RUNS / scale).glob("*/metrics.json")):
        record = json.loads(path.read_text())
        if record.get("finished"):
            results.setdefault(re.sub(r"_s\d+$", "", record["run"]), []).append(record)
    by_seed = lambda records: sorted(records, key=lambda r: r["config"]["seed"])
    return {name: by_seed(records) for name, records in sorted(results.items())}


def final_metrics(records: dict[str, dict], columns=("knn_top1", "linear_top1", "alignment", "uniformity",
                                                      "train_seconds")) -> pd.DataFrame:
    """The final metrics of several runs (their metrics.json records, by name), one row each."""
    return pd.DataFrame({name: {c: rec["final"].get(c) for c in columns} for name, rec in records.items()}).T


def trained_config(records: list[dict]) -> dict:
    """The whole config a condition's runs were trained with (metrics.json holds every key)."""
    return {**Config().to_dict(), **records[0]["config"]}


def baselines(results: dict[str, list[dict]]) -> dict[str, str]:
    """For each condition, the plain InfoNCE condition of the same setting: the one whose config is
    the same but for METHOD_KEYS (and the seed), each of those at its default. Conditions without
    one at hand (another source, schedule or optimiser than every plain condition) are left out."""
    defaults = Config().to_dict()
    ignored = (*METHOD_KEYS, "seed", "device", "probe")
    setting_of = lambda cfg: tuple(sorted((k, v) for k, v in cfg.items() if k not in ignored))
    trained = {name: records for name, records in results.items() if not controls.is_control(name)}
    plain = {setting_of(trained_config(records)): name for name, records in trained.items()
             if all(trained_config(records)[k] == defaults[k] for k in METHOD_KEYS)}
    return {name: plain[key] for name, records in trained.items()
            if (key := setting_of(trained_config(records))) in plain and plain[key] != name}


def scratch_minutes(scale: str) -> dict[str, float]:
    """Each notebook's minutes with every run trained anew, from ``params/<scale>/minutes.yaml``."""
    path = cl.PARAMS / scale / "minutes.yaml"
    return (cli.load_yaml_file(path) or {}).get("minutes", {}) if path.exists() else {}


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



def _minutes_file(scale: str) -> Path:
    return cl.RUNS / scale / "notebooks" / "minutes.json"


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



def condition_setting(records: list[dict]) -> str:
    """The setting of a condition's runs in words (:func:`setting`), or which control they are."""
    kind = records[0].get("control")
    return f"control: {controls.LABELS[kind]}" if kind else setting(trained_config(records))


def setting_of(overrides: dict) -> str:
    """:func:`setting` of a run of these config overrides (the defaults elsewhere)."""
    return setting(Config.from_dict(overrides).to_dict())


def results_table(scale: str = "cpu", rows: pd.DataFrame | None = None, minutes: dict | None = None) -> str:
    """The study's results as Markdown, from the summary of finished runs (``summary.csv``) and
    the recorded notebook minutes: the controls first (:mod:`cl.controls`: what an encoder reaches
    without learning), then one row per condition (its runs' seeds pooled, mean ± std over seeds),
    and one line per notebook with its wall-clock minutes (its last execution, which reuses
    finished runs, and with every run trained anew). The README's tables are this output, from the
    published ``rows`` (a ``summary.csv``) and ``minutes`` (by default the scale's runs and minutes)."""
    table = pd.DataFrame(summary_rows(scale), columns=SUMMARY_COLUMNS) if rows is None else rows.copy()
    if table.empty:
        return f"no finished runs under runs/{scale}/: run `make run` first"
    lines = condition_table(table)
    minutes = recorded_minutes(scale) if minutes is None else minutes
    scratch = scratch_minutes(scale)
    if minutes or scratch:
        shown = lambda values, nb: f"{values[nb]:.1f}" if nb in values else "—"
        lines += ["", f"| notebook | minutes, last execution (wall clock) | minutes, every run trained anew "
                      f"(params/{scale}/minutes.yaml) |", "| --- | --- | --- |",
                  *[f"| {nb} | {shown(minutes, nb)} | {shown(scratch, nb)} |"
                    for nb in sorted({*minutes, *scratch})],
                  f"| total | {f'{sum(minutes.values()):.1f}' if minutes else '—'} | "
                  f"{f'{sum(scratch.values()):.1f}' if scratch else '—'} |"]
    missing = [py.stem for py in notebooks() if py.stem not in minutes]
    if missing:
        lines += ["", f"Not executed at the {scale} scale yet: {', '.join(missing)}. The rows above are "
                      "the runs finished so far, listed under the notebook that trained them."]
    return "\n".join(lines)


def condition_table(rows: pd.DataFrame, notebook: str | None = None) -> list[str]:
    """The lines of a Markdown table of conditions from summary ``rows``: the controls first, then one
    row per condition (its runs' seeds pooled, the mean ± the std over seeds), by notebook; with
    ``notebook``, the controls and that notebook's conditions only."""
    table = rows.copy()
    table["control"] = table["control"].fillna("")
    if notebook:
        table = table[(table["control"] != "") | (table["notebook"] == notebook)]
    table["condition"] = table["run"].str.replace(r"_s\d+$", "", regex=True)
    table["setting"] = [f"control: {controls.LABELS[row['control']]}" if row["control"] else setting(row)
                        for _, row in table.iterrows()]
    table["order"] = table["control"].map(lambda kind: 0 if kind else 1)
    fmt = lambda v, d=2: f"{v.mean():.{d}f}" + (f" ± {v.std():.{d}f}" if len(v) > 1 else "")
    lines = ["Each cell: the mean ± the standard deviation over seeds (the seeds column counts them).", "",
             "| notebook | condition | setting | epochs | seeds | kNN top-1 | linear top-1 | alignment "
             "| uniformity | train min/run |", "|" + " --- |" * 10]
    groups = table.groupby(["order", "notebook", "condition"], sort=True, dropna=False)
    for (_, trained_by, condition), g in groups:
        per_run = "—" if g["control"].iloc[0] else f"{g['train_seconds'].mean() / 60:.1f}"
        lines.append(f"| {trained_by} | {condition} "
                     f"| {g['setting'].iloc[0]} | {g['epochs'].iloc[0]} "
                     f"| {len(g)} | {fmt(g['knn_top1'])} | {fmt(g['linear_top1'])} "
                     f"| {fmt(g['alignment'], 3)} | {fmt(g['uniformity'], 3)} | {per_run} |")
    return lines


def results_from_rows(table: pd.DataFrame) -> dict[str, list[dict]]:
    """A ``summary.csv`` read back as :func:`finished_results` gives the runs (condition → records in
    seed order, each with its seed and final metrics): what ``cl.stats`` and ``cl.primary`` take."""
    results: dict[str, list[dict]] = {}
    for _, row in table.sort_values(["run", "seed"]).iterrows():
        record = {"run": row["run"], "config": {"seed": int(row["seed"]), "epochs": int(row["epochs"]),
                                                "dataset": row["dataset"]},
                  "final": {k: row[k] for k in FINAL_COLUMNS}}
        results.setdefault(re.sub(r"_s\d+$", "", row["run"]), []).append(record)
    by_seed = lambda records: sorted(records, key=lambda r: r["config"]["seed"])
    return {name: by_seed(records) for name, records in sorted(results.items())}


def write_summary(scale: str) -> Path:
    path = cl.RUNS / "summary.csv" if scale == "cpu" else cl.RUNS / scale / "summary.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(summary_rows(scale), columns=SUMMARY_COLUMNS).to_csv(path, index=False, float_format="%.4f")
    return path

