"""The layers of DESIGN.md hold: who may import whom, read from the source (no import runs), and no circle
of imports inside a layer without a written reason.

core -> nothing of ours but core (stdlib and numpy only)
adapters -> core
engine -> core, adapters, the console contract; never Textual
console (the console contract) -> core
ui -> core, the console contract; Textual
cli -> anything (it wires the rest together)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "floorconsole"


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    prefixes: tuple[str, ...]  # modules of this layer: these names and everything below them
    forbidden: tuple[str, ...]  # modules it must not import (ours or a library's)
    libraries: tuple[str, ...] | None = None  # None: any; else the only non-stdlib imports


CONSOLE = "floorconsole.console"
CLI = ("floorconsole.cli", "floorconsole.serve")
LAYERS = (
    Layer(
        "core",
        ("floorconsole.core",),
        ("floorconsole.adapters", "floorconsole.engine", CONSOLE, "floorconsole.ui", *CLI),
        libraries=("numpy",),
    ),
    Layer(
        "adapters",
        ("floorconsole.adapters",),
        ("floorconsole.engine", CONSOLE, "floorconsole.ui", *CLI, "textual"),
    ),
    Layer("engine", ("floorconsole.engine",), ("floorconsole.ui", *CLI, "textual")),
    Layer(
        "console",
        (CONSOLE,),
        ("floorconsole.adapters", "floorconsole.engine", "floorconsole.ui", *CLI, "textual"),
    ),
    Layer("ui", ("floorconsole.ui",), ("floorconsole.adapters", "floorconsole.engine", *CLI)),
    Layer("cli", CLI, ()),
)

# Circles of imports inside a layer that are there on purpose: the modules of each, and why.
# An entry that no longer matches a circle fails too, so this list stays true.
ALLOWED_CIRCLES: dict[frozenset[str], str] = {
    frozenset({"floorconsole.ui.screens.links", "floorconsole.ui.widgets.status_bars"}): (
        "the links screen draws the link bar, and a click on the bar opens that screen: the bar "
        "imports the screen when clicked"
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")[: -node.level] if node.level else []
    return ".".join([*base, node.module] if node.module else base)


def _type_checking_only(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import that runs, at module level or inside a
    function; imports under `if TYPE_CHECKING:` never run and are left out. `from a import b`
    counts as importing a.b when a.b is a module of ours, else a."""
    module = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module if path.name != "__init__.py" else module + ".x", node)
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub if sub in MODULES else base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
SOURCES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> Layer | None:
    return next((layer for layer in LAYERS if _under(module, layer.prefixes)), None)


def test_every_module_has_a_layer() -> None:
    orphans = sorted(m for m in MODULES if m != "floorconsole" and layer_of(m) is None)
    assert not orphans, f"modules in no layer (add them to LAYERS in {__file__}): {orphans}"


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_layer_imports_only_what_it_may(layer: Layer) -> None:
    members = sorted(m for m in MODULES if _under(m, layer.prefixes))
    if not members:
        pytest.skip(f"no {layer.name} modules yet ({', '.join(layer.prefixes)})")
    if layer.name == "ui" and CONSOLE not in MODULES:
        pytest.skip(f"the console contract ({CONSOLE}) is not in this tree yet")
    stdlib = sys.stdlib_module_names
    wrong = []
    for m in members:
        for imported, line in imports_of(SOURCES[m]):
            top = imported.split(".")[0]
            where = f"{SOURCES[m].relative_to(PACKAGE.parent)}:{line} imports {imported}"
            if _under(imported, layer.forbidden):
                wrong.append(where)
            elif (
                layer.libraries is not None
                and top not in ("floorconsole", "__future__")
                and top not in stdlib
                and top not in layer.libraries
            ):
                wrong.append(f"{where} (a {layer.name} module uses the stdlib and numpy only)")
    assert not wrong, f"{layer.name} breaks its contract:\n" + "\n".join(wrong)


def _graph(members: set[str]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in members}
    for m in members:
        for imported, _line in imports_of(SOURCES[m]):
            # Only the module named: `import a.b.c` also runs a/__init__ and a/b/__init__, but
            # a package's __init__ that re-exports its submodules is not a circle with them.
            if imported in members and imported != m:
                edges[m].add(imported)
    return edges


def circles(members: set[str]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = _graph(members)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(members):
        if v not in index:
            connect(v)
    return found


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_no_circles_inside_a_layer(layer: Layer) -> None:
    members = {m for m in MODULES if _under(m, layer.prefixes)}
    found = circles(members)
    unexplained = [sorted(c) for c in found if c not in ALLOWED_CIRCLES]
    assert not unexplained, (
        f"circles of imports inside {layer.name} (break them, or list them in "
        f"ALLOWED_CIRCLES with the reason): {unexplained}"
    )
    stale = [sorted(c) for c in ALLOWED_CIRCLES if c <= members and c not in found and len(c) > 1]
    assert not stale, f"ALLOWED_CIRCLES lists circles that are gone; remove them: {stale}"


def test_the_checker_sees_a_circle_and_a_forbidden_import(tmp_path: Path) -> None:
    """The checks above cannot pass by reading nothing."""
    assert circles({"floorconsole.core.config"}) == []
    found_imports = dict(imports_of(SOURCES["floorconsole.core.config"]))
    assert "floorconsole.core.rules" in found_imports
    assert _under("floorconsole.engine.api", LAYERS[0].forbidden)


# What actually runs: the engine with no screen, core with no I/O library.


def test_core_and_engine_import_no_textual() -> None:
    code = (
        "import sys, floorconsole.core.config, floorconsole.core.sample, "
        "floorconsole.engine.runtime, floorconsole.engine.api, floorconsole.engine.hub, "
        "floorconsole.engine.demo\n"
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]\n"
        "print(','.join(bad))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"textual imported by core/engine: {r.stdout}"


def test_core_imports_no_io_library() -> None:
    code = (
        "import sys, pkgutil, importlib, floorconsole.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module(f'floorconsole.core.{m.name}')\n"
        "io = ('pymodbus', 'paho', 'onnxruntime', 'sqlite_utils', 'sqlite3', 'textual')\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in io))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"core imported I/O libraries: {r.stdout}"
