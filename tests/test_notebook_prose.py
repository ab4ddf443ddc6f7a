"""Guards that each numbered notebook reads as prose with code in it: at least as many markdown lines as
code lines, and no code cell longer than MAX_CELL lines (comment-only and blank lines not counted). The
parameters cell is a list of declarations, one a line, and is not held to MAX_CELL."""
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))
MAX_CELL = 15


def cells(path):
    """(is markdown, is the parameters cell, counted lines) for each cell of a py:percent notebook, the
    Jupytext header skipped."""
    found = []
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            found.append(("[markdown]" in line, "parameters" in line, []))
        elif found and (line.lstrip("#").strip() if found[-1][0] else
                        line.strip() and not line.lstrip().startswith("#")):
            found[-1][2].append(line)  # markdown: "#" alone is a blank line; code: comments are not counted
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_mostly_prose_in_short_code_cells(path):
    parsed = cells(path)
    markdown = sum(len(lines) for is_md, _, lines in parsed if is_md)
    code = sum(len(lines) for is_md, _, lines in parsed if not is_md)
    long = [f"  {len(lines)} lines: {lines[0].strip()}" for is_md, declarations, lines in parsed
            if not is_md and not declarations and len(lines) > MAX_CELL]
    problems = []
    if markdown < code:
        problems.append(f"{markdown} markdown lines < {code} code lines")
    if long:
        problems.append(f"{len(long)} code cells over {MAX_CELL} lines:\n" + "\n".join(long))
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_there_are_notebooks():
    assert NOTEBOOKS
