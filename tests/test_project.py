"""Promises of the project's layout: pins, pairing, parameters for every notebook and scale."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import yaml

from cl import parameters

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()


def pins(lines):
    return {m.group(1).lower(): m.group(2)
            for m in (re.match(r"\s*-?\s*([A-Za-z0-9_.\-]+)==(\S+)", line) for line in lines) if m}


def test_environment_yml_and_requirements_carry_the_same_pins():
    req = pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert req and pins(pip_section) == req
    for needed in ("torch", "torchvision", "jupyterlab", "jupytext", "papermill", "nbval", "nltk"):
        assert needed in req, f"{needed} is not pinned"


def test_every_notebook_is_a_paired_percent_script_with_a_parameters_cell():
    assert parameters.notebooks(), "no notebooks found"
    for py in parameters.notebooks():
        nb = jupytext.read(py)
        assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent", py
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{py.name} needs exactly one cell tagged parameters"


def test_every_notebook_has_parameters_at_every_scale_and_they_name_real_variables():
    for py in parameters.notebooks():
        nb = jupytext.read(py)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        defined = set(re.findall(r"^(\w+)\s*=", cell.source, re.M))
        for scale in parameters.SCALES:
            params = parameters.parameters(scale, py.stem)
            unknown = set(params) - defined
            assert not unknown, f"params/{scale}/{py.stem}.yaml sets {unknown}, not in the parameters cell"


def test_jupytext_pairs_ipynb_with_percent_scripts():
    text = (ROOT / "jupytext.toml").read_text()
    assert 'formats = "ipynb,py:percent"' in text
    assert "*.ipynb" in (ROOT / ".gitignore").read_text()


def test_make_notebooks_leaves_the_committed_scripts_as_they_are(tmp_path):
    """`make notebooks` (jupytext --sync) writes the .ipynb of each script; the scripts' headers are
    committed as jupytext writes them, so git stays clean."""
    shutil.copy(ROOT / "jupytext.toml", tmp_path)
    (tmp_path / "notebooks").mkdir()
    scripts = sorted((ROOT / "notebooks").glob("*.py"))
    for py in scripts:
        shutil.copy(py, tmp_path / "notebooks")
    copies = sorted((tmp_path / "notebooks").glob("*.py"))
    done = subprocess.run([sys.executable, "-m", "jupytext", "--sync", *copies], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    changed = [py.name for py in scripts if (tmp_path / "notebooks" / py.name).read_text() != py.read_text()]
    assert not changed and len(list((tmp_path / "notebooks").glob("*.ipynb"))) == len(scripts)


def test_make_lab_starts_jupyterlab_as_root_too():
    """Containers run as root, where JupyterLab refuses to start without --allow-root."""
    lab = MAKEFILE.split("\nlab:")[1].split("\n\n")[0]
    assert "--allow-root" in lab and "id -u" in lab


def test_ci_calls_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text() and "make run" in (ROOT / "README.md").read_text()


def test_the_code_passes_the_configured_linter():
    # ruff's rules and the 110-column limit are in pyproject.toml; `make lint` runs the same
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "cl", "tests", "notebooks"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
