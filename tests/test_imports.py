"""Guards the import graph of cl/: no module imports itself back through others, and a lazy import of a
cl module (inside a function) says why in a comment on its line or the line above.

Edges are every import of a cl module anywhere in a file, functions included, except under
``if TYPE_CHECKING:``, which never runs.
"""
import ast
import tokenize
from pathlib import Path

CL = Path(__file__).resolve().parents[1] / "cl"
MODULES = {p.stem for p in CL.glob("*.py")}


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node):
    """The cl modules an import statement loads ("__init__" for the package itself)."""
    if isinstance(node, ast.Import):
        return {a.name.split(".")[1] if "." in a.name else "__init__"
                for a in node.names if a.name.split(".")[0] == "cl"}
    if node.level > 1 or (node.level == 0 and (node.module or "").split(".")[0] != "cl"):
        return set()
    parts = (node.module or "").split(".")
    sub = parts[0] if node.level else (parts[1] if len(parts) > 1 else None)
    if sub:
        return {sub}
    return {a.name if a.name in MODULES else "__init__" for a in node.names}


def cl_imports(path):
    """(module imported, line, inside a function) for every import of a cl module in ``path``."""
    found = []

    def walk(node, in_function):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        else:
            children = list(ast.iter_child_nodes(node))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.extend((target, node.lineno, in_function) for target in _targets(node))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in children:
            walk(child, inner)

    walk(ast.parse(path.read_text(), str(path)), False)
    return found


def find_cycle(graph):
    """A cycle of ``graph`` (node -> set of nodes) as [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_cl_import_graph_has_no_cycle():
    graph = {p.stem: {t for t, _, _ in cl_imports(p)} for p in CL.glob("*.py")}
    cycle = find_cycle(graph)
    assert cycle is None, "cl imports in a cycle: " + " -> ".join(cycle)


def test_every_lazy_cl_import_says_why():
    bare = set()
    for path in sorted(CL.glob("*.py")):
        lines = path.read_text().splitlines()
        with path.open("rb") as f:
            commented = {t.start[0] for t in tokenize.tokenize(f.readline) if t.type == tokenize.COMMENT}
        for _, line, in_function in cl_imports(path):
            above = lines[line - 2].strip() if line > 1 else ""
            if in_function and line not in commented and not above.startswith("#"):
                bare.add(f"cl/{path.name}:{line}: {lines[line - 1].strip()}")
    why = "a cl import inside a function needs a comment saying why:\n"
    assert not bare, why + "\n".join(sorted(bare))
