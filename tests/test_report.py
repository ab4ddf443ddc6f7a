"""The study's HTML: the report links every notebook and embeds its figures; equations need no internet."""
import base64
import json
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import cl
from cl import parameters, report, study, summary
from cl.cli import UserError

EQUATION = r"$$\mathcal L = -\log \frac{e^{q\cdot k^+/t}}{\sum_j e^{q\cdot k_j/t}}$$"


def png(red: int) -> str:
    """A valid 1×1 PNG of a colour, base64: one distinct figure per value."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes([0, red, 0, 0])))
    return base64.b64encode(raw + chunk(b"IEND", b"")).decode()


def figure_cell(figure: str, tags=()):
    cell = new_code_cell("plot()", metadata={"tags": list(tags)})
    cell.outputs = [new_output("display_data", data={"image/png": figure, "text/plain": "<Figure>"})]
    return cell


def executed_notebook(scale: str, name: str, cells: list) -> Path:
    """An executed notebook and its HTML page (a stand-in: the report only links to it)."""
    folder = cl.RUNS / scale / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_markdown_cell(f"# {name}\n\n{EQUATION}"), *cells]),
                   folder / f"{name}.ipynb")
    (folder / f"{name}.html").write_text(f"<html><body>{name}</body></html>")
    return folder / f"{name}.ipynb"


def finished_run(scale: str, name: str, knn: float, seed: int) -> None:
    folder = cl.RUNS / scale / name
    folder.mkdir(parents=True)
    final = {"knn_top1": knn, "linear_top1": knn + 1, "alignment": 0.5, "uniformity": -3.0,
             "train_seconds": 60.0, "images_per_second": 2000.0}
    (folder / "metrics.json").write_text(json.dumps(
        {"run": name, "notebook": "01_moco_v2", "method": "moco", "finished": True, "final": final,
         "config": {"dataset": "fashion_mnist", "epochs": 2, "seed": seed, "t": 0.2}, "epochs": []}))


class Page(HTMLParser):
    """The links, images and scripts of an HTML page."""

    def __init__(self, path: Path):
        super().__init__()
        self.links, self.images, self.scripts = {}, [], []
        self._anchor = None
        self.feed(path.read_text())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self._anchor = attrs["href"]
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script" and "src" in attrs:
            self.scripts.append(attrs["src"])

    def handle_data(self, data):
        if self._anchor is not None:
            self.links[data] = self._anchor
            self._anchor = None


def local_file(page: Path, url: str) -> Path:
    """The file a relative URL of ``page`` names; fails on an absolute URL."""
    parts = urlsplit(url)
    assert not parts.scheme and not parts.netloc and not parts.path.startswith("/"), url
    return (page.parent / unquote(parts.path)).resolve()


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "RUNS", tmp_path / "runs")
    return tmp_path / "runs"


@pytest.mark.parametrize("scale, where", [("smoke", "smoke/report.html"), ("cpu", "report.html")])
def test_the_report_links_every_executed_notebook_and_marks_the_others(runs, scale, where):
    names = [py.stem for py in parameters.notebooks()]
    executed, waiting = names[:-1], names[-1]
    for name in executed:
        executed_notebook(scale, name, [figure_cell(png(1))])
    assert study.main(["report", "--scale", scale]) == 0
    path = runs / where
    page = Page(path)
    for name in executed:
        assert local_file(path, page.links[name]) == runs / scale / "notebooks" / f"{name}.html"
    assert waiting not in page.links
    section = path.read_text().split(f"<h3>{waiting}: ", 1)[1].split("<h3>", 1)[0]
    assert "not executed yet" in section
    assert "Contrastive learning: positives, negatives and InfoNCE" in path.read_text()  # 00's title


def test_the_report_shows_the_results_minutes_failures_and_key_figures(runs):
    names = [py.stem for py in parameters.notebooks()]
    finished_run("smoke", "moco_s0", 80.0, seed=0)
    finished_run("smoke", "moco_s1", 82.0, seed=1)
    summary.write_summary("smoke")
    summary.record_minutes("smoke", names[0], 3.4)
    # tagged cells give all their figures; an untagged notebook gives its last figure only
    executed_notebook("smoke", names[0], [figure_cell(png(10)), figure_cell(png(11), ["report"]),
                                          figure_cell(png(12), ["report"]), figure_cell(png(13))])
    executed_notebook("smoke", names[1], [figure_cell(png(20)), figure_cell(png(21))])
    broken = new_code_cell("1 / 0")
    broken.outputs = [new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])]
    executed_notebook("smoke", names[2], [broken])
    path = report.write_report("smoke")
    text, page = path.read_text(), Page(path)
    section = lambda name: text.split(f">{name}</a>: ", 1)[1].split("<h3>", 1)[0]  # a notebook's part
    assert text.index("Its numbers are not results") < text.index("<h2>Findings</h2>")  # the smoke banner
    assert "No findings yet" in text.split("<h2>Findings</h2>", 1)[1].split("<h2>", 1)[0]
    assert "| 01_moco_v2 | moco |" not in text and "81.00 ± 1.41" in section(names[1])  # beside its notebook
    assert "81.00 ± 1.41" not in section(names[0])
    assert local_file(path, page.links["summary.csv"]) == runs / "smoke" / "summary.csv"
    assert "3.4 minutes" in section(names[0]) and "minutes" not in section(names[1])  # only where recorded
    assert "failed" in section(names[2]) and "failed" not in section(names[1])
    embedded = [src.removeprefix("data:image/png;base64,") for src in page.images]
    assert embedded == [png(11), png(12), png(21)]
    assert text.index(png(11)) < text.index(png(21)) < text.index("<h2>Every condition</h2>")


def test_an_exported_notebook_loads_mathjax_from_the_local_copy(runs):
    ipynb = executed_notebook("smoke", "00_x", [figure_cell(png(1))])
    html = report.export_html(ipynb, ipynb.with_suffix(".html"))
    text = html.read_text()
    assert r"\mathcal L = -\log \frac{e^{q\cdot k^+/t}}" in text  # the equation, left for MathJax
    mathjax = [src for src in Page(html).scripts if "mathjax" in src.lower()]
    assert len(mathjax) == 1 and "cdn" not in mathjax[0] and "://" not in mathjax[0]
    assert local_file(html, mathjax[0]) == runs / "mathjax" / "MathJax.js"
    assert (runs / "mathjax" / "MathJax.js").is_file()
    configs = urlsplit(mathjax[0]).query.removeprefix("config=").split(",")
    assert all((runs / "mathjax" / "config" / f"{name}.js").is_file() for name in configs), configs
    fonts = runs / "mathjax" / "fonts" / "HTML-CSS" / report.WEB_FONT / "woff"
    assert report.WEB_FONT in (runs / "mathjax" / report.OFFLINE_CONFIG).read_text()
    assert any(fonts.glob("*.woff"))
    written = report.write_report("smoke")  # the report loads the same copy
    assert [local_file(written, src) for src in Page(written).scripts] == [runs / "mathjax" / "MathJax.js"]


def test_mathjax_is_copied_once_per_package_version_without_what_it_does_not_use(runs):
    script = report.install_mathjax()
    assert script.is_file() and (script.parent / "extensions" / "TeX" / "AMSmath.js").is_file()
    assert not any((script.parent / part).exists() for part in report.MATHJAX_LEFT_OUT)
    mark = script.parent / "mark"
    mark.write_text("kept while the copy is current")
    report.install_mathjax()
    assert mark.exists()
    (script.parent / "copied-from.txt").write_text(f"{report.MATHJAX_PACKAGE} 0.0.1\n")
    report.install_mathjax()
    assert not mark.exists() and script.is_file()


def test_a_missing_mathjax_package_names_the_fix(runs, monkeypatch):
    monkeypatch.setattr(report, "MATHJAX_PACKAGE", "no_such_mathjax_package")
    monkeypatch.setattr(report.importlib.metadata, "version", lambda name: "1.0")
    with pytest.raises(UserError, match="run `make setup`"):
        report.install_mathjax()


def test_each_figure_of_a_notebook_s_html_has_the_sentence_before_it_as_alt_text(tmp_path, caplog):
    nb = new_notebook(cells=[
        new_markdown_cell("## 2 · Curves\nThe loss falls over training. Then it flattens."),
        new_code_cell("plot()", outputs=[new_output("display_data", data={"image/png": png(1)}),
                                         new_output("display_data", data={"image/png": png(2)})]),
        new_markdown_cell("The alignment–uniformity plane: each run a point, as in "
                          "[notebook 05](05_hard_negative_mixing.ipynb#plane)."),
        new_code_cell("plane()", outputs=[new_output("display_data", data={"image/png": png(3)})])])
    nbformat.write(nb, tmp_path / "n.ipynb")
    page = report.export_html(tmp_path / "n.ipynb", tmp_path / "n.html").read_text()
    first = "Figure: 2 · Curves The loss falls over training."
    assert [alt.split('"')[0] for alt in page.split('alt="')[1:]] == [
        first, first, "Figure: The alignment–uniformity plane: each run a point, as in notebook 05."]
    assert report.NBCONVERT_ALT not in page and "Alternative text" not in caplog.text
    assert 'href="05_hard_negative_mixing.html#plane"' in page  # the notebook's page, not its JSON


def test_a_notebook_s_log_holds_what_its_cells_printed_and_its_error(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell("x", outputs=[new_output("stream", name="stdout", text="moco_s0: reusing\n")]),
        new_code_cell("show()", outputs=[new_output("display_data", data={"text/markdown": "**MoCo** wins",
                                                                          "text/plain": "<Markdown>"}),
                                         new_output("display_data", data={"image/png": png(1)})]),
        new_code_cell("quiet = 1"),
        new_code_cell("fail()", outputs=[new_output("error", ename="UserError", evalue="bad t",
                                                    traceback=["\x1b[0;31mUserError\x1b[0m: bad t"])])])
    nbformat.write(nb, tmp_path / "n.ipynb")
    log = report.write_log(tmp_path / "n.ipynb", tmp_path / "n.log").read_text().splitlines()
    assert log == ["--- code cell 1", "moco_s0: reusing", "--- code cell 2", "**MoCo** wins", "[figure]",
                   "--- code cell 4", "UserError: bad t", "UserError: bad t"]
