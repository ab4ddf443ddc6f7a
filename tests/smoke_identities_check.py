"""Guards run identities: the smoke study trains the pinned runs, under the pinned names, with the
pinned configs (tests/fixtures/smoke_identities.yaml). A finished run is reused by its name and
identity, so a change here would silently retrain, or orphan, every finished run of the study.

Not collected with tests/ (its name does not start with test_): `make test` passes it explicitly after
the notebooks, which train runs/smoke/. NEGATIVES_RUNS names another runs folder. That the config's
keys and defaults rebuild each pinned identity is tests/test_config.py's, which needs no training.
"""
import functools
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNS = Path(os.environ.get("NEGATIVES_RUNS") or ROOT / "runs") / "smoke"
PINNED = yaml.safe_load((ROOT / "tests" / "fixtures" / "smoke_identities.yaml").read_text())


def identity(config):
    return {k: v for k, v in sorted(config.items()) if k not in ("device", "probe")}


@functools.cache
def trained():
    """Each trained run's identity, by run name."""
    return {p.parent.name: identity(yaml.safe_load(p.read_text())) for p in RUNS.glob("*/config.yaml")}


def differing(a, b):
    """The keys whose values differ, each as "key: a's value != b's value"."""
    return [f"{k}: {a.get(k, '<absent>')} != {b.get(k, '<absent>')}" for k in sorted(a.keys() | b.keys())
            if a.get(k, "<absent>") != b.get(k, "<absent>")]


def test_the_smoke_study_trains_the_pinned_runs():
    missing, extra = sorted(PINNED.keys() - trained().keys()), sorted(trained().keys() - PINNED.keys())
    assert not missing and not extra, f"runs in {RUNS}: missing {missing}, extra {extra}"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_run_has_its_pinned_identity(name):
    runs = trained()
    if name not in runs:
        pytest.skip(f"{name} was not trained (the test above names it)")
    diff = differing(runs[name], PINNED[name])
    assert not diff, f"{name}: keys differ from the pin: {diff}"


def test_the_smoke_study_computed_the_controls_and_its_summary_marks_them():
    from cl import summary  # the package reads NEGATIVES_RUNS as this file does

    rows = {row["run"]: row for row in summary.summary_rows("smoke")}
    marked = {name: row["control"] for name, row in rows.items() if row["control"]}
    assert set(marked.values()) == {"untrained", "pixels", "pixels_centred"}
    assert set(marked) == {name for name in PINNED if name.startswith("control_")}
    assert all(rows[name]["epochs"] == 0 and rows[name]["knn_top1"] > 0 for name in marked)

