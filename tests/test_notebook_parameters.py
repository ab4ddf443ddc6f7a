"""Notebook parameters are checked before a notebook runs anything, in the cell after its parameters."""
import nbformat
import papermill
import pytest
import yaml

import cl
from cl import cli, parameters, study
from cl.parameters import ParameterError

SMOKE = parameters.parameters("smoke", "01_moco_v2")


@pytest.mark.parametrize("bad, message", [
    (dict(scale="bogus"), r"parameter scale: 'bogus' is not a scale: use one of smoke, cpu, gpu"),
    (dict(base={"lr": -1}), r"parameter base: lr must be in \(0, inf\), got -1.0"),
    (dict(base={"epoch": 3}), r"parameter base: unknown parameter 'epoch' \(did you mean 'epochs'\?\)"),
    (dict(base={**SMOKE["base"], "batch_size": 2048}), r"parameter base: batch_size must be in \[2, 1024\]"),
    (dict(conditions={"hard": {"loss": "hard", "beta": -1.0}}),
     r"parameter conditions: entry 'hard': beta must be in \[0, inf\), got -1.0"),
    (dict(variant={"t": 0}), r"parameter variant: t must be in \(0, inf\), got 0.0"),
    (dict(seeds=[]), r"parameter seeds: \[\] is not a non-empty list of distinct seeds ≥ 0"),
    (dict(seeds=[0, 0]), r"parameter seeds: \[0, 0\] is not"),
    (dict(seeds=[-1]), r"parameter seeds: \[-1\] is not"),
    (dict(seeds=3), r"parameter seeds: 3 is not"),
    (dict(seeds=[[0]]), r"parameter seeds: \[\[0\]\] is not"),
    (dict(base="epochs: 3"), r"parameter base: a config is a mapping of parameters, not str"),
    (dict(check_claims="yes"), r"parameter check_claims: 'yes' is not True or False"),
    (dict(knn_target=float("nan")), r"parameter knn_target: nan is not a finite number"),
])
def test_a_bad_parameter_is_named_with_its_fix(bad, message):
    with pytest.raises(ParameterError, match=message):
        parameters.check_parameters(**{**SMOKE, **bad})


def test_good_parameters_pass_and_overrides_extend_base():
    parameters.check_parameters(**{**SMOKE, "seeds": [0, 1, 2]},
                                conditions={"moco": {}, "hard": {"loss": "hard"}}, variant={"t": 0.2})
    for scale in parameters.SCALES:  # every parameter file of the project
        parameters.check_notebook_parameters(scale)


def test_a_parameter_file_is_checked_against_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "PARAMS", tmp_path)
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "base.yaml").write_text("scale: smoke\nseeds: [0]\n")
    path = tmp_path / "smoke" / "01_moco_v2.yaml"
    path.write_text("scale: smoke\nepochs: 3\n")
    unknown = (r"smoke/01_moco_v2.yaml, for 01_moco_v2: epochs is not a parameter of the notebook \(its "
               r"parameters: scale, base, check_claims, knn_target, baseline, seeds\); "
               r"cl.config.Config keys go in base: write the notebook's parameters at its scale \(python -m "
               r"cl.study parameters --scale SCALE --only NOTEBOOK > p.yaml\), change the key in p.yaml's "
               r"base, and pass -f p.yaml")
    with pytest.raises(ParameterError, match=unknown):
        parameters.check_notebook_parameters("smoke", ["01_moco_v2"])
    path.write_text("scale: smoke\nbase: {weight_decay: 5e-4, lr: -0.1}\n")
    blamed = r"smoke/01_moco_v2.yaml \(with .*smoke/base.yaml\), for 01_moco_v2: parameter base: lr must be"
    with pytest.raises(ParameterError, match=blamed):
        study.execute("smoke", ["01_moco_v2"])
    with pytest.raises(ParameterError, match=r"no notebook 99_nothing: use names of 00_contrastive_learning"):
        study.execute("smoke", ["99_nothing"])


def test_a_bad_value_of_the_shared_file_is_blamed_on_it_not_on_an_absent_notebook_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "PARAMS", tmp_path)
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "base.yaml").write_text("scale: smoke\nseeds: [0, 0]\n")
    with pytest.raises(ParameterError) as error:
        parameters.check_notebook_parameters("smoke", ["00_contrastive_learning"])
    assert str(error.value).startswith(f"{tmp_path}/smoke/base.yaml, for 00_contrastive_learning: parameter "
                                       f"seeds: [0, 0] is not a non-empty list of distinct seeds")


def test_a_broken_yaml_file_is_named_with_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "PARAMS", tmp_path)
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "base.yaml").write_text("scale: smoke\nseeds: [0, 1\nbase: {}\n")
    broken = rf"^{tmp_path}/smoke/base.yaml, line 3: not valid YAML \(.*\): fix it"
    with pytest.raises(cli.UserError, match=broken):
        parameters.parameters("smoke", "00_contrastive_learning")
    (tmp_path / "smoke" / "base.yaml").write_text("- scale\n- seeds\n")
    with pytest.raises(ParameterError, match=r"base.yaml holds a list, not parameters by name"):
        parameters.parameters("smoke", "00_contrastive_learning")


@pytest.mark.parametrize("injected, message", [
    ({"epochs": -3}, "ParameterError: epochs is not a parameter of the notebook"),
    ({"scale": "bogus"}, "ParameterError: parameter scale: 'bogus' is not a scale"),
])
def test_papermill_stops_in_the_cell_after_the_parameters_and_nothing_runs(injected, message, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("NEGATIVES_RUNS", str(tmp_path / "runs"))
    source = study._ipynb(cl.NOTEBOOKS / "01_moco_v2.py", tmp_path / "01_moco_v2.ipynb")
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(source, tmp_path / "out.ipynb", parameters={**SMOKE, **injected},
                                   cwd=cl.NOTEBOOKS, kernel_name="python3", progress_bar=False)
    assert f"{failure.value.ename}: {failure.value.evalue}".startswith(message)
    cells = [c for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells if c.cell_type == "code"]
    injected_at = next(i for i, c in enumerate(cells) if "injected-parameters" in c.metadata.get("tags", []))
    failed_at = next(i for i, c in enumerate(cells) if any(o.output_type == "error" for o in c.outputs))
    assert failed_at == injected_at + 1
    traceback = [o for o in cells[failed_at].outputs if o.output_type == "error"][0].traceback
    assert traceback == [f"{failure.value.ename}: {failure.value.evalue}"]  # one line, no traceback
    assert not (tmp_path / "runs").exists()


def test_a_notebook_takes_the_shared_parameters_it_declares_and_its_own_file_overrides_them(
        tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "PARAMS", tmp_path)
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "base.yaml").write_text("scale: smoke\nseeds: [0, 1]\nbase: {epochs: 2}\n"
                                                  "paper_setting: {t: 0.5}\n")
    (tmp_path / "smoke" / "01_moco_v2.yaml").write_text("seeds: [3]\n")
    # no paper_setting
    assert parameters.parameters("smoke", "00_contrastive_learning") == {"scale": "smoke", "seeds": [0, 1],
                                                                     "base": {"epochs": 2}}
    assert parameters.parameters("smoke", "01_moco_v2")["seeds"] == [3]
    assert parameters.parameters("smoke", "03_debiased")["paper_setting"] == {"t": 0.5}
    (tmp_path / "smoke" / "base.yaml").write_text("scale: smoke\nseed: [0]\n")
    with pytest.raises(ParameterError, match=r"smoke/base.yaml: seed is a parameter of no notebook"):
        parameters.check_notebook_parameters("smoke")


def test_without_a_history_the_parameters_are_the_data_a_notebook_holds_before_it_starts():
    # nbval runs cells without history: the namespace holds the parameters cell and the imports
    namespace = {"scale": "smoke", "base": {"epochs": 1}, "seeds": [0], "check_claims": False,
                 "pd": pytest, "Config": ParameterError, "display": print, "In": [""], "Out": {}, "_": None}
    assert parameters.session_parameters(namespace) == {"scale": "smoke", "base": {"epochs": 1}, "seeds": [0],
                                                        "check_claims": False}
    with pytest.raises(ParameterError, match="no parameters cell has run in this session"):
        parameters.session_parameters({"pd": pytest, "In": []})


def test_the_command_line_s_parameters_replace_the_scale_s_for_one_notebook(tmp_path, monkeypatch, capsys):
    """python -m cl.study parameters|plan with -f (an edited `parameters` file) and -y: the scale's other
    keys kept; a bad value is one line blaming the parameters given."""
    monkeypatch.setattr(cl, "RUNS", tmp_path / "runs")
    edited = {**parameters.parameters("smoke", "06_supervised_contrastive"), "seeds": [3]}
    edited["base"] = {**edited["base"], "epochs": 1}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(edited))
    only = ["--scale", "smoke", "--only", "06_supervised_contrastive", "-f", str(tmp_path / "p.yaml")]
    assert study.main(["parameters", *only, "-y", "check_claims: true"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == {**edited, "check_claims": True}
    assert study.main(["plan", *only]) == 0
    listed = capsys.readouterr().out
    assert "supcon_s3 " in listed and "epochs=1 " in listed and "train_subset=1024" in listed
    assert study.main(["plan", *only, "-y", "seeds: [0, 0]"]) == 1
    assert capsys.readouterr().err.startswith(
        "error: the parameters given (-f, -y), for 06_supervised_contrastive: parameter seeds: [0, 0] is not")
    assert study.main(["plan", "--scale", "smoke", "-y", "seeds: [1]"]) == 1
    assert "-f and -y give one notebook's parameters: name it with --only NAME" in capsys.readouterr().err
