"""The shape of the code, checked by reading the source with ``ast`` (nothing is imported).

Rules:

1. ``compress``'s module graph has no cycles. An edge is any import of one of its modules,
   at module level or inside a function. Importing ``compress.a.b`` also runs the package
   ``compress.a``, so that is an edge too (unless the importer lives inside ``compress.a``).
2. Layers: the domain modules never import ``compress.workflows``; ``compress`` never imports
   the CLI (``compress_cli``).
3. Imports inside functions are only of optional heavy packages (``LAZY_ALLOWED``), each with
   its reason in a comment on the import's line or on one of the two lines above it.
   Everything else (paddle and numpy included) is imported at module top.
4. No function in ``compress/`` is longer than ``MAX_FUNCTION_LINES`` lines, counted from its
   ``def`` line to its last line, *not* counting its docstring (docstrings that say why are
   welcome at any length). Nested functions count towards their parent too.
5. The CLI's modules (``cli/``, installed as ``compress_cli``) import one another without
   cycles, and no command module imports the app.
6. Rooms: ``compress``'s subpackages are ranked (``ROOMS``, bottom up); a module imports only
   rooms of a lower rank than its own, so rooms of one rank never import each other. Every
   subpackage has a rank.
7. No module in ``compress/`` is longer than ``MAX_MODULE_LINES`` lines.

Each rule is a function over a package's source; the ``*_detects_*`` tests feed it small
packages that break the rule, so a rule that stopped seeing violations would fail here.
"""
from __future__ import annotations

import ast
import io
import textwrap
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("compress", ROOT / "compress")
CLI = ("compress_cli", ROOT / "cli")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500
# The rooms of compress, bottom up: a room imports only rooms of a lower rank (the package's own
# __init__, which re-exports the commands, sits on top).
ROOMS = (("_version", "common"),
         ("graph",),
         ("model", "data", "runtimes"),
         ("training", "pruning", "measure"),
         ("export",),
         ("workflows",))
# Optional heavy dependencies (and one platform-specific module) that may be imported where they are used.
LAZY_ALLOWED = {"onnx", "onnxruntime", "paddle2onnx", "polygraphy", "matplotlib", "sklearn", "safetensors", "PIL",
                "fcntl", "paddleslim"}


# --------------------------------------------------------------------------- reading the source
def modules(package: str, root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _in_functions(tree: ast.AST) -> set[int]:
    """ids of the import nodes that sit inside a function body."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return inside


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def imports(module: str, path: Path, known) -> list[tuple[str, ast.AST, bool]]:
    """(imported name, node, inside a function) for every import in the file; a ``from x import y``
    names ``x.y`` when that is a module of ``known``, else ``x``."""
    tree = ast.parse(path.read_text(), str(path))
    inside = _in_functions(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node, id(node) in inside) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path.name == "__init__.py")
            for alias in node.names:
                name = f"{base}.{alias.name}"
                out.append((name if name in known else base, node, id(node) in inside))
    return out


def import_graph(package: str, root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (module level and in functions alike)."""
    mods = modules(package, root)
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        for name, _, _ in imports(m, path, mods):
            if name not in mods:
                continue
            graph[m].add(name)
            parts = name.split(".")
            for i in range(2, len(parts)):  # the packages that importing `name` runs first
                pkg = ".".join(parts[:i])
                if pkg in mods and pkg != m and not m.startswith(pkg + "."):
                    graph[m].add(pkg)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _comment_lines(source: str) -> set[int]:
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT}


def lazy_import_violations(package: str, root: Path) -> list[str]:
    """Imports inside functions that are not of an allowed optional package, or that give no reason."""
    mods = modules(package, root)
    bad = []
    for m, path in mods.items():
        comments = _comment_lines(path.read_text())
        for name, node, inside in imports(m, path, mods):
            if not inside:
                continue
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            if isinstance(node, ast.ImportFrom) and node.level or name.split(".")[0] not in LAZY_ALLOWED:
                bad.append(f"{where}: {name} imported inside a function (import it at module top)")
            elif not comments & set(range(node.lineno - 2, node.end_lineno + 1)):
                bad.append(f"{where}: lazy import of {name} without a comment saying why")
    return bad


def _docstring_lines(fn) -> int:
    first = fn.body[0] if fn.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def long_functions(package: str, root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions (methods and nested ones included) longer than ``limit`` lines without their docstring."""
    bad = []
    for m, path in modules(package, root).items():
        for fn in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = fn.end_lineno - fn.lineno + 1 - _docstring_lines(fn)
                if n > limit:
                    bad.append(f"{path.relative_to(root.parent)}:{fn.lineno} {fn.name}: {n} lines")
    return bad


def layer_violations(graph: dict[str, set[str]], upper: str, lower_excluded: tuple[str, ...]) -> list[str]:
    """Modules outside ``upper`` (and outside ``lower_excluded``) that import ``upper`` or anything in it."""
    return [f"{m} imports {t}" for m, targets in sorted(graph.items()) for t in sorted(targets)
            if (t == upper or t.startswith(upper + ".")) and not (m == upper or m.startswith(upper + "."))
            and m not in lower_excluded]


def room_violations(graph: dict[str, set[str]], package: str, rooms=ROOMS) -> list[str]:
    """Imports from a room into one of the same or a higher rank, and rooms without a rank."""
    rank = {r: i for i, group in enumerate(rooms) for r in group}

    def room(m: str) -> str | None:
        parts = m.split(".")
        return parts[1] if len(parts) > 1 and parts[0] == package else None

    bad = sorted({f"{m}: room {room(m)!r} has no rank in ROOMS" for m in graph
                  if room(m) is not None and room(m) not in rank})
    for m, targets in sorted(graph.items()):
        a = room(m)
        for t in sorted(targets):
            b = room(t)
            if a in rank and b in rank and a != b and rank[b] >= rank[a]:
                bad.append(f"{m} imports {t} ({a} may not import {b}: rank {rank[a]} <= {rank[b]})")
    return bad


def long_modules(package: str, root: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    """Modules over ``limit`` lines."""
    return [f"{path.relative_to(root.parent)}: {n} lines" for path in modules(package, root).values()
            if (n := len(path.read_text().splitlines())) > limit]


# --------------------------------------------------------------------------- the rules on the real code
def test_library_module_graph_has_no_cycles():
    graph = import_graph(*LIBRARY)
    assert len(graph) > 20 and graph["compress.workflows.prune"]  # the graph was read
    assert cycles(graph) == []


def test_domain_modules_never_import_the_workflows_or_the_cli():
    graph = import_graph(*LIBRARY)
    assert layer_violations(graph, "compress.workflows", lower_excluded=("compress",)) == []
    mods = modules(*LIBRARY)
    cli = [f"{m} imports {name}" for m, path in mods.items() for name, _, _ in imports(m, path, mods)
           if name.split(".")[0] == "compress_cli"]
    assert cli == []


def test_imports_inside_functions_are_optional_heavy_packages_with_a_reason():
    assert lazy_import_violations(*LIBRARY) == []
    assert lazy_import_violations(*CLI) == []


def test_no_long_functions_in_the_library():
    assert long_functions(*LIBRARY) == []


def test_rooms_import_only_rooms_below_them():
    graph = import_graph(*LIBRARY)
    assert {m.split(".")[1] for m in graph if m.count(".") >= 2} >= {"graph", "training", "export"}  # rooms read
    assert room_violations(graph, "compress") == []


def test_no_long_modules_in_the_library():
    assert long_modules(*LIBRARY) == []


def test_cli_modules_import_each_other_without_cycles():
    graph = import_graph(*CLI)
    assert "compress_cli.commands.prune" in graph
    assert cycles(graph) == []
    assert [f"{m} imports the app" for m, targets in graph.items()
            if m.startswith("compress_cli.commands") and "compress_cli.app" in targets] == []


# --------------------------------------------------------------------------- the rules see violations
def _package(tmp_path: Path, name: str, files: dict[str, str]) -> tuple[str, Path]:
    root = tmp_path / name
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return name, root


def test_cycle_rule_detects_a_cycle_through_a_function_level_import(tmp_path):
    pkg = _package(tmp_path, "pkg", {
        "__init__.py": "",
        "a.py": "from .b import g\n",
        "b.py": "def g():\n    from . import a  # a reason\n",
        "c.py": "from . import a\n",
    })
    assert cycles(import_graph(*pkg)) == [["pkg.a", "pkg.b"]]


def test_cycle_rule_detects_a_cycle_through_a_subpackage_init(tmp_path):
    pkg = _package(tmp_path, "pkg", {
        "__init__.py": "",
        "sub/__init__.py": "from .x import f\n",
        "sub/x.py": "def f():\n    pass\n",
        "y.py": "from .sub.x import f\n",       # runs pkg.sub first, which ...
        "sub/z.py": "from ..y import f\n",
    })
    graph = import_graph(*pkg)
    assert "pkg.sub" in graph["pkg.y"] and cycles(graph) == []
    (pkg[1] / "sub" / "__init__.py").write_text("from .x import f\nfrom . import z\n")  # ... now imports y
    assert cycles(import_graph(*pkg)) == [["pkg.sub", "pkg.sub.z", "pkg.y"]]


def test_lazy_import_rule_detects_core_and_unexplained_imports(tmp_path):
    pkg = _package(tmp_path, "pkg", {
        "__init__.py": "",
        "m.py": """\
            def ok():
                import onnx  # optional heavy: only export needs it

            def ok_above():
                # optional heavy: only plotting needs it
                import matplotlib.pyplot as plt

            def core():
                import numpy as np  # numpy is core

            def own():
                from . import other  # a cycle workaround

            def unexplained():
                from sklearn.datasets import load_digits
            """,
        "other.py": "",
    })
    bad = lazy_import_violations(*pkg)
    assert len(bad) == 3, bad
    assert "numpy imported inside a function" in bad[0] and "pkg.other imported inside" in bad[1]
    assert "sklearn.datasets without a comment" in bad[2]


def test_length_rule_counts_code_not_docstrings(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    doc = '    """' + "why\n" * 30 + '    """\n'
    pkg = _package(tmp_path, "pkg", {
        "__init__.py": "",
        "m.py": f"def fits():\n{doc}{body}\n\ndef too_long():\n{body}    y = 1\n",
    })
    assert [b.split()[-3] for b in long_functions(*pkg)] == ["too_long:"]


def test_layer_rule_detects_a_domain_module_importing_a_workflow():
    graph = {"p.models": {"p.workflows.train"}, "p.workflows.train": {"p.models"}, "p": {"p.workflows.train"}}
    assert layer_violations(graph, "p.workflows", lower_excluded=("p",)) == ["p.models imports p.workflows.train"]


def test_room_rule_detects_an_import_sideways_upwards_and_an_unranked_room():
    rooms = (("common",), ("graph", "data"), ("training",))
    graph = {"p.training.fit": {"p.graph.blocks", "p.common.errors"},     # downwards: fine
             "p.graph.blocks": {"p.data.loader", "p.common"},             # sideways: same rank
             "p.data.loader": {"p.training.fit"},                          # upwards
             "p.extra.x": {"p.common"},                                    # a room without a rank
             "p": {"p.training.fit"}}
    bad = room_violations(graph, "p", rooms)
    assert bad[0] == "p.extra.x: room 'extra' has no rank in ROOMS"
    assert [b.split(" (")[0] for b in bad[1:]] == ["p.data.loader imports p.training.fit",
                                                    "p.graph.blocks imports p.data.loader"]


def test_module_length_rule_counts_lines(tmp_path):
    pkg = _package(tmp_path, "pkg", {"__init__.py": "", "short.py": "x = 1\n" * 10, "long.py": "x = 1\n" * 11})
    assert [b.split(":")[0] for b in long_modules(*pkg, limit=10)] == ["pkg/long.py"]


def test_cli_rule_detects_commands_importing_the_app(tmp_path):
    pkg = _package(tmp_path, "cli", {
        "__init__.py": "",
        "app.py": "from .commands import COMMANDS\n",
        "commands/__init__.py": "from . import run\nCOMMANDS = [run.run]\n",
        "commands/run.py": "from ..app import app\n",
    })
    assert cycles(import_graph(*pkg)) == [["cli.app", "cli.commands", "cli.commands.run"]]


@pytest.mark.parametrize("package", [LIBRARY, CLI], ids=["compress", "compress_cli"])
def test_every_module_parses(package):
    for path in modules(*package).values():
        ast.parse(path.read_text(), str(path))
