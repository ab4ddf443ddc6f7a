"""Checks of the smoke study that `make test` trained and executed: the plan trained every run before
the notebooks (which trained none), and `make run` over finished runs says little.

Not collected with tests/ (its name does not start with test_): `make test` passes it explicitly after
the notebooks, beside tests/smoke_identities_check.py. NEGATIVES_RUNS names another runs folder.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNS = Path(os.environ.get("NEGATIVES_RUNS") or ROOT / "runs") / "smoke"
PINNED = yaml.safe_load((ROOT / "tests" / "fixtures" / "smoke_identities.yaml").read_text())


def test_the_notebooks_reused_the_runs_the_plan_trained_and_trained_none():
    """`make test` trains the plan (python -m cl.study train), which writes plan.txt when it is done,
    before nbval executes the notebooks: no run's metrics.json may be newer."""
    plan = RUNS / "notebooks" / "plan.txt"
    done = plan.stat().st_mtime
    later = sorted(p.parent.name for p in RUNS.glob("*/metrics.json") if p.stat().st_mtime > done)
    assert not later, f"trained by a notebook, not by the plan: {later}"
    assert f"{len(PINNED)} runs, 0 to train or evaluate" in plan.read_text()


def test_make_run_over_finished_runs_prints_a_line_per_notebook():
    """Two notebooks executed again by `python -m cl.study run` (what `make run` calls), every run reused:
    the expected time, the plan, a line per notebook and where the summary and report are."""
    notebooks = ["00_contrastive_learning", "06_supervised_contrastive"]
    done = subprocess.run([sys.executable, "-m", "cl.study", "run", "--scale", "smoke", "--only", *notebooks],
                          capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) <= 2 * len(notebooks) + 3, lines  # and a note on a CPU without native bf16
    assert [line.split()[0] for line in lines if line.startswith("[")] == ["[1/2]", "[2/2]"]
    assert all(" runs reused; log: " in line for line in lines if line.startswith("["))
    assert any("0 to train" in line for line in lines)


def test_the_run_without_negatives_is_recorded_collapsed_and_moco_is_not():
    """The collapse thresholds (cl.metrics.collapse) on the smoke study's runs: the positives-only
    objective with notebook 00's head collapses by design, MoCo does not; with batch norm on the head's
    output (notebook 08's control) the embedding stays spread, and is not flagged."""
    records = {p.parent.name: json.loads(p.read_text()) for p in RUNS.glob("*/metrics.json")}
    assert records["positives_only_s0"]["collapsed"].startswith("uniformity loss")
    assert records["moco_s0"]["collapsed"] is None
    assert records["positives_only_bn_s0"]["collapsed"] is None
