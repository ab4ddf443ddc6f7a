"""Guards that docs/design.md's module map lists exactly the modules of cl/, and that cl/__init__.py
points to it instead of keeping a second map that could drift."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mapped_modules():
    """The `names` in the first column of the table under "## Module map" in docs/design.md."""
    section = ROOT.joinpath("docs", "design.md").read_text().split("\n## Module map\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # past header and rule
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


def test_the_module_map_lists_every_module_and_no_other():
    modules = {p.stem for p in (ROOT / "cl").glob("*.py")} - {"__init__"}
    mapped = mapped_modules()
    missing, extra = sorted(modules - mapped), sorted(mapped - modules)
    assert not missing and not extra, f"docs/design.md module map: missing {missing}, extra {extra}"


def test_the_package_docstring_points_to_the_map_without_repeating_it():
    doc = ast.get_docstring(ast.parse((ROOT / "cl" / "__init__.py").read_text())) or ""
    assert "docs/design.md" in doc, "cl/__init__.py's docstring should point to docs/design.md"
    named = set(re.findall(r"`+([A-Za-z_][A-Za-z0-9_]*)`+", doc))
    assert len(named) <= 3, f"cl/__init__.py's docstring repeats the module map: names {sorted(named)}"
