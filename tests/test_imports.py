"""The import structure of the project, read from the source (no module is imported).

The graph holds every module of ``spectra/``, ``optim/``, ``cli/`` and ``analyses/``;
an edge ``a -> b`` is an ``import`` or ``from ... import`` in ``a`` that names ``b``,
at module level or inside a function (imports under ``if TYPE_CHECKING:`` never run
and do not count). ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg``. The parent packages that Python initializes on the way to a
module are not edges of their own.

Rules:

(a) no import cycle;
(b) privacy: a private module (a path component with one leading underscore, such as
    ``cli._options`` or ``optim._common``) is imported only from inside its own
    top-level package (``spectra``, ``optim``, ``cli``, ``analyses``); a private name
    (dunders such as ``__version__`` are public) is taken from a module only inside
    the package directory of that module: by ``from m import _x``, or read off an
    imported module as ``m._x`` or ``getattr(m, "_x")``;
(c) a ``cli`` command module (a public module of ``cli/`` other than ``cli.main``,
    which registers them) imports no other command module, and no ``cli._*`` helper
    imports a command module;
(d) ``import spectra`` and ``spectra.eigsh`` load neither h5py nor matplotlib.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("spectra", "optim", "cli", "analyses")

# Imports that break rule (b) today, each named (importer, imported module, name or
# None for a private module). Fix the import, then delete its line here.
PRIVATE_ALLOWED: set[tuple[str, str, str | None]] = set()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _sources()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _package_of(module: str) -> str:
    """The package a module lies in (a package's own for its ``__init__``)."""
    return module if _is_package(module) else module.rpartition(".")[0]


def _known(name: str) -> str | None:
    """``name`` or its longest prefix that is a module of the project."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for each import of ``module``
    that reaches a project module."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    skip = _type_checking_only(tree)
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name)
                if target:
                    out.append((target, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module).split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source == "__future__":
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    out.append((f"{source}.{alias.name}", None, node.lineno))
                elif _known(source):
                    out.append((_known(source), alias.name, node.lineno))
    return out


def _private_reads(module: str) -> list[tuple[str, str | None, int]]:
    """``(module, private name, line)`` for each ``alias._x`` or ``getattr(alias, "_x")``
    in ``module`` where ``alias`` names an imported project module."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in MODULES:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _is_private(node.attr)):
            out.append((aliases[node.value.id], node.attr, node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "getattr" and len(node.args) >= 2
              and isinstance(node.args[0], ast.Name) and node.args[0].id in aliases
              and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _is_private(node.args[1].value)):
            out.append((aliases[node.args[0].id], node.args[1].value, node.lineno))
    return out


IMPORTS = {m: _imports(m) for m in MODULES}
GRAPH = {m: sorted({t for t, _, _ in IMPORTS[m] if t != m}) for m in MODULES}


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (an iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start, targets in graph.items():
        if start in state:
            continue
        path = [start]
        stack = [iter(targets)]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return None


def test_the_graph_sees_the_packages_and_their_imports():
    # a guard against a resolver that silently finds nothing
    for pkg in PACKAGES:
        assert any(m == pkg or m.startswith(pkg + ".") for m in MODULES), pkg
    assert "spectra.linalg.eigsh" in GRAPH["spectra"]
    assert "cli._build" in GRAPH["cli.train"]


def test_find_cycle_finds_one():
    assert _find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_no_import_cycle():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _private_violations() -> list[tuple[str, str, str | None, int]]:
    found = []
    for importer, imports in IMPORTS.items():
        top = importer.split(".")[0]
        for target, name, line in imports + _private_reads(importer):
            parts = target.split(".")
            if any(_is_private(p) for p in parts) and parts[0] != top:
                found.append((importer, target, None, line))
            if name is not None and _is_private(name):
                home = _package_of(target)
                inside = importer == home or importer.startswith(home + ".")
                if not inside:
                    found.append((importer, target, name, line))
    return found


def test_no_private_import_across_packages():
    found = _private_violations()
    new = [f"{MODULES[i].relative_to(ROOT)}:{line}: {t}" + (f" import {n}" if n else "")
           for i, t, n, line in found if (i, t, n) not in PRIVATE_ALLOWED]
    assert not new, "private imports from another package:\n" + "\n".join(new)
    stale = PRIVATE_ALLOWED - {(i, t, n) for i, t, n, _ in found}
    assert not stale, f"fixed, remove from PRIVATE_ALLOWED: {sorted(stale, key=str)}"


def _is_command(module: str) -> bool:
    parts = module.split(".")
    return (len(parts) == 2 and parts[0] == "cli" and not parts[1].startswith("_")
            and module != "cli.main")


def test_cli_commands_are_leaves():
    commands = [m for m in MODULES if _is_command(m)]
    assert {"cli.train", "cli.compare", "cli.probe", "cli.plot", "cli.landscape",
            "cli.info"} <= set(commands)
    bad = [f"{m} imports {t}" for m in MODULES if m.startswith("cli.") and m != "cli.main"
           for t in GRAPH[m] if _is_command(t)]
    assert not bad, "a cli module imports a command module:\n" + "\n".join(bad)


def test_import_spectra_loads_neither_h5py_nor_matplotlib():
    code = ("import sys, spectra; spectra.eigsh; "
            "print(sorted(m for m in ('h5py', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]", f"import spectra loaded {out}"
