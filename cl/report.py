"""The study's HTML: every executed notebook's page and one report, with equations typeset offline.

Equations are typeset by MathJax 2.7, which the pinned package ``jupyter-server-mathjax`` ships.
It is copied once into ``runs/mathjax/`` (6.3 MB: what its HTML-CSS output needs, without
the SVG fonts, which no shipped output uses, or the translations of the MathJax menu) and loaded
by a relative URL, so ``runs/`` opened from disk without internet shows typeset equations. A
newer package version is copied again.

``runs/report.html`` (cpu; ``runs/<scale>/report.html`` for the other scales, beside
``summary.csv``) is one page that reads first: the findings (the primary verdicts with their
intervals and schedule, :func:`cl.primary.study_findings`, as in the README; at the smoke scale a
banner says its numbers are not results), then each notebook with a link to its executed HTML, its
minutes (or "not executed yet"), its conditions beside the controls and its key figures, embedded
so that the page stands alone, then every condition (``cl.summary.results_table``). A notebook's
key figures are those of its cells tagged ``report``; a notebook without such a cell gives its last.
"""
from __future__ import annotations

import html
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import jupytext
import nbformat
import pandas as pd
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune

import cl
from cl import primary, summary
from cl.cli import UserError
from cl.parameters import notebooks

MATHJAX_PACKAGE = "jupyter_server_mathjax"
# left out of the copy: translations of the menu (English is built in) and the SVG output's
# fonts (the package has no SVG output to use them)
MATHJAX_LEFT_OUT = ("localization", "jax/output/SVG")
OFFLINE_CONFIG = "config/local/offline.js"
# the package's combined configuration, nbconvert's Safe mode, then ours (OFFLINE_SCRIPT)
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,local/offline"
WEB_FONT = "STIX-Web"  # the only web font the package ships (MathJax's default, TeX, is not there)
OFFLINE_SCRIPT = f"""MathJax.Hub.Config({{
  "HTML-CSS": {{webFont: "{WEB_FONT}", availableFonts: [], preferredFont: null, imageFont: null}},
  tex2jax: {{inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], processEscapes: true}},
  MathMenu: {{showRenderer: false, showLocale: false}}
}});
MathJax.Ajax.loadComplete("[MathJax]/{OFFLINE_CONFIG}");
"""
REPORT_TAG = "report"
NBCONVERT_ALT = "No description has been provided for this image"  # nbconvert's placeholder
STYLE = """body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.missing { color: #888; } .failed { color: #b00; }"""


def mathjax_dir() -> Path:
    """Where the offline MathJax lives: ``runs/mathjax/``, shared by every scale."""
    return cl.RUNS / "mathjax"


def install_mathjax() -> Path:
    """Copy MathJax from the pinned package into ``runs/mathjax/`` unless this version is there; its
    MathJax.js. The configuration for offline use (OFFLINE_SCRIPT) is written beside it."""
    target = mathjax_dir()
    stamp = target / "copied-from.txt"
    wanted = f"{MATHJAX_PACKAGE} {importlib.metadata.version(MATHJAX_PACKAGE)}\n"
    if not stamp.exists() or stamp.read_text() != wanted:
        shutil.rmtree(target, ignore_errors=True)
        source = _mathjax_source()
        shutil.copytree(source, target, ignore=_left_out(source))
        stamp.write_text(wanted)  # last: an interrupted copy is copied again
    config = target / OFFLINE_CONFIG
    if not config.exists() or config.read_text() != OFFLINE_SCRIPT:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(OFFLINE_SCRIPT)
    return target / "MathJax.js"


def _mathjax_source() -> Path:
    """The MathJax files of the installed package (found without importing it: it imports a server)."""
    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{MATHJAX_PACKAGE} is not installed, so equations cannot be typeset offline: "
                        f"run `make setup` (it installs requirements.txt)")
    return Path(spec.submodule_search_locations[0]) / "static"


def _left_out(source: Path):
    """shutil.copytree's ``ignore``: the folders of MATHJAX_LEFT_OUT."""
    left_out = {source / part for part in MATHJAX_LEFT_OUT}
    return lambda folder, names: [name for name in names if Path(folder) / name in left_out]


def mathjax_url(page: Path) -> str:
    """The URL of the offline MathJax, with its configuration, relative to the HTML file ``page``."""
    script = os.path.relpath(install_mathjax(), page.parent)
    return f"{quote(Path(script).as_posix())}?config={MATHJAX_CONFIG}"


def export_html(ipynb: Path, page: Path) -> Path:
    """Export an executed notebook to the HTML file ``page``, its equations typeset by the offline MathJax,
    each figure with its alternative text (:func:`figures`; nbconvert's templates take none, so they
    replace its placeholder, and its warning about the placeholder is not shown), its links to the
    other notebooks (``NN_name.ipynb``) pointing at their pages."""
    nb = nbformat.read(ipynb, as_version=4)
    exporter = HTMLExporter(mathjax_url=mathjax_url(page))
    level = exporter.log.level
    exporter.log.setLevel(logging.ERROR)
    try:
        body, _ = exporter.from_notebook_node(nb)
    finally:
        exporter.log.setLevel(level)
    for _, alt, _ in figures(nb):
        body = body.replace(f'alt="{NBCONVERT_ALT}"', f'alt="{html.escape(alt)}"', 1)
    page.write_text(re.sub(r'href="(\d\d_\w+)\.ipynb', r'href="\1.html', body))  # a notebook's link: its page
    return page


def figures(nb) -> list[tuple[str, str, bool]]:
    """Every figure of ``nb`` in order: its base64 PNG, its alternative text (the first sentence of the
    Markdown cell before it, which says what the figure shows) and whether its cell is tagged REPORT_TAG."""
    said, found = "", []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = " ".join(line.lstrip("#").strip() for line in cell.source.splitlines()).strip()
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("`", "").replace("**", "")  # plain
            said = re.split(r"(?<=\.)\s", text, maxsplit=1)[0][:200] or said
        tagged = REPORT_TAG in cell.metadata.get("tags", [])
        found += [("".join(output["data"]["image/png"].split()), f"Figure: {said}", tagged)
                  for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    return found


def write_log(ipynb: Path, log: Path) -> Path:
    """The text an executed notebook's code cells printed (their streams, plain-text results and errors
    with their tracebacks), cell by cell, into ``log``: what the terminal leaves out."""
    lines = []
    cells = [cell for cell in nbformat.read(ipynb, as_version=4).cells if cell.cell_type == "code"]
    for number, cell in enumerate(cells, 1):
        texts = [output.get("text", "") if output["output_type"] == "stream"
                 else "\n".join([f"{output['ename']}: {output['evalue']}",
                                 *map(_plain, output.get("traceback", []))])
                 if output["output_type"] == "error" else _shown_as_text(output.get("data", {}))
                 for output in cell.get("outputs", [])]
        if any(texts):
            lines += [f"--- code cell {number}", *(text.rstrip("\n") for text in texts if text)]
    log.write_text("\n".join(lines) + "\n")
    return log


def _shown_as_text(data: dict) -> str:
    """A displayed output as text: its Markdown, else its plain text, a figure as ``[figure]``."""
    return data.get("text/markdown") or ("[figure]" if "image/png" in data else data.get("text/plain", ""))


def _plain(text: str) -> str:
    """``text`` without its terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def report_path(scale: str) -> Path:
    """``runs/report.html`` for the cpu scale, ``runs/<scale>/report.html`` for the others, as summary.csv."""
    return cl.RUNS / "report.html" if scale == "cpu" else cl.RUNS / scale / "report.html"


def key_figures(nb) -> list[tuple[str, str]]:
    """A notebook's key figures, (PNG, alternative text) each: those of its cells tagged REPORT_TAG; with
    no cell tagged, its last figure."""
    found = figures(nb)
    if any(REPORT_TAG in cell.metadata.get("tags", []) for cell in nb.cells):
        return [(png, alt) for png, alt, tagged in found if tagged]
    return [(png, alt) for png, alt, _ in found[-1:]]


def failed(ipynb: Path) -> bool:
    """Whether a cell of the executed notebook raised an error."""
    cells = nbformat.read(ipynb, as_version=4).cells
    return any(output.get("output_type") == "error" for cell in cells for output in cell.get("outputs", []))


def title(py: Path) -> str:
    """A notebook's title: the first heading of its first Markdown cell."""
    markdown = next((cell.source for cell in jupytext.read(py).cells if cell.cell_type == "markdown"), "")
    return next((line.lstrip("#").strip() for line in markdown.splitlines() if line.startswith("#")), py.stem)


def write_report(scale: str, path: Path | None = None, pages: dict[str, Path] | None = None,
                 offline_mathjax: bool = True, rows: pd.DataFrame | None = None) -> Path:
    """Write the scale's report (see the module's docstring); the path written. ``path`` and ``pages``
    (notebook name → the page its link opens) default to ``report_path`` and the executed notebooks'
    HTML under runs/, ``rows`` (a summary) to the scale's finished runs; the published report
    (:mod:`cl.publish`) links to the executed notebooks themselves and loads no MathJax
    (``offline_mathjax=False``: it has no equations of its own)."""
    path = path or report_path(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    pages = pages or {py.stem: cl.RUNS / scale / "notebooks" / f"{py.stem}.html" for py in notebooks()}
    executed = {name: page for name, page in pages.items() if page.exists()}
    if rows is None:
        rows = pd.DataFrame(summary.summary_rows(scale), columns=summary.SUMMARY_COLUMNS)
    table = path.parent / "summary.csv"
    listed = f" One row per training run: {_link(path, table, table.name)}." if table.exists() else ""
    banner = (['<p class="failed"><b>The smoke scale tests the code: a few epochs on a subset of the data. '
               "Its numbers are not results.</b> The study's results are at the cpu scale.</p>"]
              if scale == "smoke" else [])
    body = [f"<h1>The negatives study at the {scale} scale</h1>", *banner,
            f"<p>Written {time.strftime('%Y-%m-%d %H:%M')}.{listed}</p>",
            "<h2>Findings</h2>", _findings(scale, path, pages, rows),
            "<h2>Notebooks, their results and key figures</h2>",
            *[_notebook_section(scale, py, path, executed.get(py.stem), rows) for py in notebooks()],
            "<h2>Every condition</h2>", markdown2html_mistune(summary.results_table(scale, rows))]
    path.write_text(_page(f"negatives: {scale} report", mathjax_url(path) if offline_mathjax else None, body))
    return path


def _findings(scale: str, report: Path, pages: dict[str, Path], rows: pd.DataFrame) -> str:
    """The primary verdicts (:func:`cl.primary.study_findings`, as in the README), or why there are none."""
    measured_in = pages.get(primary.declared().notebook)
    link = quote(Path(os.path.relpath(measured_in, report.parent)).as_posix()) if measured_in else ""
    text = primary.study_findings(rows, scale, link) if not rows.empty else None
    return markdown2html_mistune(text) if text else (
        '<p class="missing">No findings yet: the conditions of the primary contrasts have not all '
        "finished at this scale.</p>")


def _notebook_section(scale: str, py: Path, report: Path, page: Path | None, rows: pd.DataFrame) -> str:
    """A notebook's part of the report: its title linking its executed copy, its state and minutes, its
    conditions beside the controls, and its key figures."""
    minutes = summary.recorded_minutes(scale)
    if page is None:
        return (f"<h3>{html.escape(py.stem)}: {html.escape(title(py))}</h3>"
                '<p class="missing">not executed yet</p>')
    broken = failed(page.with_suffix(".ipynb"))
    state = '<span class="failed">failed: a cell raised an error</span>' if broken else "executed"
    took = f", {minutes[py.stem]:.1f} minutes (last execution)" if py.stem in minutes else ""
    own = rows[rows["notebook"] == py.stem] if not rows.empty else rows
    results = (markdown2html_mistune("\n".join(summary.condition_table(rows, py.stem))) if not own.empty
               else "<p>No runs of its own (it reads those of other notebooks).</p>")
    return (f"<h3>{_link(report, page, py.stem)}: {html.escape(title(py))}</h3><p>{state}{took}</p>"
            f"{results}{_figures(page)}")


def _figures(page: Path) -> str:
    """A notebook's key figures, embedded, each with its alternative text."""
    images = [f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'
              for png, alt in key_figures(nbformat.read(page.with_suffix(".ipynb"), as_version=4))]
    return "".join(images) or '<p class="missing">no figure</p>'


def _link(report: Path, target: Path, text: str) -> str:
    """An anchor to ``target``, relative to the report's folder."""
    href = quote(Path(os.path.relpath(target, report.parent)).as_posix())
    return f'<a href="{href}">{html.escape(text)}</a>'


def _page(name: str, mathjax: str | None, body: list[str]) -> str:
    script = f"<script src=\"{html.escape(mathjax)}\"></script>" if mathjax else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)}</title>'
            f"<style>{STYLE}</style>\n{script}</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
