"""Promises of the project's layout: pins, pairing, parameters for every notebook and scale."""
import re
from pathlib import Path

import jupytext
import yaml

from cl import study

ROOT = Path(__file__).resolve().parents[1]


def pins(lines):
    return {m.group(1).lower(): m.group(2) for m in (re.match(r"\s*-?\s*([A-Za-z0-9_.\-]+)==(\S+)", l) for l in lines) if m}


def test_environment_yml_and_requirements_carry_the_same_pins():
    req = pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert req and pins(pip_section) == req
    for needed in ("torch", "torchvision", "jupyterlab", "jupytext", "papermill", "nbval", "nltk"):
        assert needed in req, f"{needed} is not pinned"


def test_every_notebook_is_a_paired_percent_script_with_a_parameters_cell():
    assert study.notebooks(), "no notebooks found"
    for py in study.notebooks():
        nb = jupytext.read(py)
        assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent", py
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{py.name} needs exactly one cell tagged parameters"


def test_every_notebook_has_parameters_at_every_scale_and_they_name_real_variables():
    for py in study.notebooks():
        nb = jupytext.read(py)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        defined = set(re.findall(r"^(\w+)\s*=", cell.source, re.M))
        for scale in study.SCALES:
            params = study.parameters(scale, py.stem)
            unknown = set(params) - defined
            assert not unknown, f"params/{scale}/{py.stem}.yaml sets {unknown}, not in the parameters cell"


def test_jupytext_pairs_ipynb_with_percent_scripts():
    text = (ROOT / "jupytext.toml").read_text()
    assert 'formats = "ipynb,py:percent"' in text
    assert "*.ipynb" in (ROOT / ".gitignore").read_text()


def test_ci_calls_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text() and "make run" in (ROOT / "README.md").read_text()


def test_notebooks_that_share_runs_share_their_base_at_every_scale():
    # 00–06 all train the condition "moco" (run moco_s<seed>) on their base (01: on its
    # `comparison` schedule); a shared run name with two configs would stop the second notebook
    # with a ConfigError.
    sharing = [py.stem for py in study.notebooks() if '"moco": {}' in py.read_text()]
    assert len(sharing) >= 2
    for scale in study.SCALES:
        bases = {name: study.parameters(scale, name).get("comparison", study.parameters(scale, name)["base"])
                 for name in sharing}
        assert len({repr(sorted(b.items())) for b in bases.values()}) == 1, (scale, bases)


def test_the_dcl_hcl_paper_setting_is_one_setting_shared_by_03_and_04():
    # simclr_paper and debiased_paper runs are shared: their setting must agree at every scale
    import ast
    for scale in study.SCALES:
        settings = []
        for name in ("03_debiased", "04_hard_negative_sampling"):
            params = study.parameters(scale, name)
            text = (ROOT / "notebooks" / f"{name}.py").read_text()
            default = text.split("paper_setting = ", 1)[1].split("  #", 1)[0]
            settings.append(params.get("paper_setting", ast.literal_eval(default)))
        assert settings[0] == settings[1], scale
