"""The published study (cl.publish): results/<scale>/ from runs/, the README's findings and table from it."""
import json

import jupytext
import nbformat
import pytest
import yaml

import cl
from cl import primary, publish
from cl.cli import UserError
from cl.parameters import notebooks

ROOT = cl.ROOT  # the repository, before a test moves cl.ROOT


def fake_study(root, scale="cpu", knn=None):
    """runs/<scale>/ with every notebook 'executed' (its source as an ipynb) and five seeds of every
    condition of the primary contrasts, the untrained control included."""
    executed = root / "runs" / scale / "notebooks"
    executed.mkdir(parents=True)
    for py in notebooks():
        nbformat.write(jupytext.read(py), executed / f"{py.stem}.ipynb")
    (executed / "minutes.json").write_text(json.dumps({py.stem: 1.5 for py in notebooks()}))
    knn = knn or {"moco": 81.0, "control_untrained": 79.0, "hardest_5pct": 81.2, "random_5pct": 80.9,
                  "drop_same_class": 83.5, "drop_hardest_10pct": 79.3}
    for name, value in knn.items():
        for seed in range(5):
            run = root / "runs" / scale / f"{name}_s{seed}"
            run.mkdir()
            control = {"control": "untrained"} if name.startswith("control_") else {}
            final = {"knn_top1": value + 0.1 * seed * (1 + (name == "moco")), "linear_top1": value + 5,
                     "alignment": 0.3, "uniformity": -3.5, "train_seconds": 60.0, "images_per_second": 900.0}
            (run / "metrics.json").write_text(json.dumps({
                "run": run.name, "notebook": "02_which_negatives_matter", "method": name, "finished": True,
                "threads": 1, "config": {"seed": seed, "epochs": 4}, "final": final, "epochs": [],
                **control}))


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "ROOT", tmp_path)
    monkeypatch.setattr(cl, "RUNS", tmp_path / "runs")
    (tmp_path / "README.md").write_text(f"intro\n{publish.FINDINGS[0]}\nold\n{publish.FINDINGS[1]}\nmiddle\n"
                                        f"{publish.RESULTS[0]}\nold numbers\n{publish.RESULTS[1]}\noutro\n")
    return tmp_path


def test_publish_copies_the_executed_study_and_writes_the_readme_from_it(repo):
    fake_study(repo)
    folder = publish.publish("cpu")
    assert folder == repo / "results" / "cpu"
    assert {p.name for p in folder.iterdir()} == {f"{py.stem}.ipynb" for py in notebooks()} | {
        "summary.csv", "minutes.json", "provenance.yaml", "report.html"}
    origin = yaml.safe_load((folder / "provenance.yaml").read_text())
    assert origin["threads per run"] == [1] and origin["torch"] and origin["cpu"] and origin["cores"] >= 1
    page = (folder / "report.html").read_text()
    assert 'href="02_which_negatives_matter.ipynb"' in page and "<script" not in page
    shown = page.split("<h2>Findings</h2>", 1)[1].split("<h2>", 1)[0]  # the report opens with the findings
    first = primary.declared().contrasts[0]
    assert "Holm-adjusted p" in shown and f"<code>{first.a}</code> − <code>{first.b}</code>" in shown
    assert page.index("<h2>Findings</h2>") < page.index("<h2>Notebooks")
    readme = (repo / "README.md").read_text()
    assert "old numbers" not in readme and readme.endswith(f"{publish.RESULTS[1]}\noutro\n")
    assert "Holm-adjusted p" in readme and "(results/cpu/02_which_negatives_matter.ipynb)" in readme
    row = ("| 02_which_negatives_matter | control_untrained | control: untrained encoder (random init) "
           "| 0 | 5 |")
    assert row in readme
    assert not (repo / "results" / "cpu.new").exists()


def test_nothing_is_published_from_an_incomplete_stale_or_oversized_study(repo, monkeypatch):
    fake_study(repo)
    (repo / "runs" / "cpu" / "notebooks" / "07_semantic_similarity.ipynb").unlink()
    with pytest.raises(UserError, match="^nothing published: 07_semantic_similarity not executed"):
        publish.publish("cpu")
    stale = jupytext.read(cl.NOTEBOOKS / "07_semantic_similarity.py")
    code = [c for c in stale.cells if c.cell_type == "code" and not c.metadata.get("tags")]
    code[0].source += "\nx = 1"
    nbformat.write(stale, repo / "runs" / "cpu" / "notebooks" / "07_semantic_similarity.ipynb")
    with pytest.raises(UserError, match="code of 07_semantic_similarity .* differs from notebooks/"):
        publish.publish("cpu")
    nbformat.write(jupytext.read(cl.NOTEBOOKS / "07_semantic_similarity.py"),
                   repo / "runs" / "cpu" / "notebooks" / "07_semantic_similarity.ipynb")
    publish.publish("cpu")
    before = (repo / "results" / "cpu" / "summary.csv").read_text()
    monkeypatch.setattr(publish, "LIMIT_MB", 0.0001)
    with pytest.raises(UserError, match="over the 0.0001 MB limit"):
        publish.publish("cpu")
    assert (repo / "results" / "cpu" / "summary.csv").read_text() == before  # the old one kept whole
    assert not (repo / "results" / "cpu.new").exists()


def block(text, markers):
    return text.split(markers[0], 1)[1].split(markers[1], 1)[0].strip()


def test_the_readme_agrees_with_the_published_summary():
    readme = (ROOT / "README.md").read_text()
    assert block(readme, publish.FINDINGS) == publish.findings("cpu").strip()
    assert block(readme, publish.RESULTS) == publish.results_block("cpu").strip()


def test_each_published_notebook_is_its_source_executed():
    folder = publish.published("cpu")
    assert publish.differing_code(folder) == []
    if folder.exists():
        assert {p.stem for p in folder.glob("*.ipynb")} == {py.stem for py in notebooks()}


def test_the_primary_family_names_the_notebook_that_measures_it():
    assert (cl.NOTEBOOKS / f"{primary.declared().notebook}.py").exists()
