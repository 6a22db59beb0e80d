"""House rules of the package's code, read with ``ast`` from lookahead_fastai/**.py (nothing imported):

* the import graph between the package's modules has no cycle (module-level imports: those that run
  when a module is imported; an import inside a function runs later and is left out), and no import
  goes up a floor (``FLOORS``: optimizers, store, fastai glue, experiments, runner, sweeps, reports,
  front doors);
* no class is longer than 300 lines;
* no function is longer than 60 lines unless a comment saying why, starting ``# long:``, stands on
  the line just above its ``def`` (or above its first decorator), or its docstring has a line
  starting ``long:``.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lookahead_fastai"
MAX_CLASS_LINES, MAX_FUNCTION_LINES = 300, 60

# The floors of the package, lowest first (README's layers): a module imports, at import time, only
# from its own floor or below. Every module must stand on one floor, so a new one is placed on purpose.
FLOORS = [
    ("rules of choice, numbers only", {"grid_rules"}),  # the sweep's and the reports' one selection rule
    ("optimizers, pure PyTorch", {"optim"}),
    ("results store", {"store"}),
    ("fastai glue", {"fastai_optimizers", "opt_funcs", "checkpoint", "callbacks", "distributed", "registry", "data"}),
    ("experiments as data", {"experiments"}),
    ("one runner", {"lifecycle", "runner", "planning"}),
    ("sweeps", {"sweep", "executors"}),
    ("reports", {"results"}),
    ("front doors", {"cli", "notebook", "regenerate", ""}),  # "": the package's __init__
]



def _modules():
    """``{dotted module name: path}`` of every module of the package (``__init__`` as its package)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _module_level(tree):
    """The statements that run at import: the module body, into ``if`` / ``try`` / ``with`` blocks,
    never into a function or class body's functions."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        yield node
        if isinstance(node, ast.ClassDef):
            todo.extend(n for n in node.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []) or [])
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)


def import_graph():
    """``{module: {package modules it imports at import time}}``."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in _module_level(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the submodule when there is one, else pkg itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import pkg.sub.thing` -> the module it names
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph):
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _says_why(lines, node):
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    above = {lines[first - 2].strip() if first >= 2 else "", lines[node.lineno - 2].strip()}
    doc = ast.get_docstring(node) or ""
    return any(a.startswith("# long:") for a in above) or any(
        line.strip().startswith("long:") for line in doc.splitlines())


def too_long():
    """``[(file, what, name, lines)]`` over the limits."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(text, rel)):
            length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and length > MAX_CLASS_LINES:
                out.append((rel, "class", node.name, length))
            elif (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and length > MAX_FUNCTION_LINES
                  and not _says_why(lines, node)):
                out.append((rel, "function", node.name, length))
    return out


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "lookahead_fastai.planning" in graph
    assert "lookahead_fastai.registry.datasets" in graph["lookahead_fastai.planning"]  # edges are drawn
    assert cycles(graph) == []


def floor_of(module):
    """The index in FLOORS of a module's floor, from its first name below the package."""
    first = module.split(".")[1] if "." in module else ""
    return next(i for i, (_, names) in enumerate(FLOORS) if first in names)


def arrows_up(graph):
    """``[(importer, imported)]`` where a module imports from a floor above its own."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if floor_of(b) > floor_of(a))


def test_every_module_stands_on_a_floor_and_no_import_goes_up():
    graph = import_graph()
    unplaced = [m for m in graph if not any((m.split(".")[1] if "." in m else "") in names for _, names in FLOORS)]
    assert unplaced == []
    assert arrows_up(graph) == []
    assert arrows_up({"lookahead_fastai.optim.lookahead": {"lookahead_fastai.runner"}}) == [
        ("lookahead_fastai.optim.lookahead", "lookahead_fastai.runner")]  # the check sees one


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_long_class_and_no_long_function_without_a_reason():
    assert too_long() == []


def test_the_optimizer_floor_imports_no_fastai():
    """optim/ is pure PyTorch (usable without fastai): no import of fastai anywhere in it, lazy ones included."""
    found = []
    for path in sorted((PACKAGE / "optim").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [(path.name, n) for n in names if n.split(".")[0] == "fastai"]
    assert found == []
