"""The `longweave` package has no import cycle, counted statically over every module; the
generators load neither torch nor transformers, checked in a fresh interpreter.

A cycle held together by an import inside a function works until someone moves that import to
the top, and it hides which module depends on which. So the graph here is built from the source
(ast), not from what happens to be imported at run time: every `import` and `from ... import`
anywhere in a module (inside functions and `if TYPE_CHECKING:` blocks too), relative imports
resolved against the module's package, `from pkg import name` counted as an import of the
submodule `pkg.name` when there is one. Each cycle is reported as a path of modules with the line
of each import on it.
"""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("generators", "service", "trainer", "clients", "experiments")  # what setup.py installs as longweave.<root>
PREFIX = "longweave"


def modules(roots: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under each root (`{dotted root: folder}`)."""
    out = {}
    for dotted, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([dotted, *parts])] = path
    return out


def _add(edges: dict[str, int], mods: dict[str, Path], importer: str, target: str, line: int) -> None:
    """Record an import of `target`: the deepest known module it names (`a.b.C` where C is a class -> `a.b`)."""
    while target and target not in mods:
        target = target.rpartition(".")[0]
    if target and target != importer:
        edges.setdefault(target, line)


def import_graph(mods: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Module -> {imported module of the package: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    _add(edges, mods, name, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    _add(edges, mods, name, f"{origin}.{alias.name}", node.lineno)  # a submodule, else origin
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe(component: list[str], graph: dict[str, dict[str, int]], mods: dict[str, Path]) -> str:
    """One cycle through the component, as `a (file:line) -> b (file:line) -> ... -> a`."""
    members = set(component)
    start = component[0]
    # Breadth-first from start back to start within the component: the shortest cycle through it.
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                path = [*paths[v], start]
                hops = [
                    f"{a} ({mods[a].relative_to(REPO) if mods[a].is_relative_to(REPO) else mods[a]}:{graph[a][b]})"
                    for a, b in itertools.pairwise(path)
                ]
                return " -> ".join([*hops, start])
            if w in members and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return " <-> ".join(component)


def package_graph() -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    mods = modules({f"{PREFIX}.{root}": REPO / root for root in ROOTS})
    return mods, import_graph(mods)


def test_no_import_cycle_in_longweave() -> None:
    mods, graph = package_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph, mods) for c in found)


def test_the_walker_finds_cycles_through_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import thing\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\nthing = 1\n")
    (pkg / "d.py").write_text("from . import c\n")  # imports into the cycle, not part of it
    mods = modules({"pkg": pkg})
    graph = import_graph(mods)
    assert graph["pkg.sub.b"] == {"pkg.c": 2}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert "pkg.a" in describe(["pkg.a", "pkg.c", "pkg.sub.b"], graph, mods)
    (pkg / "c.py").write_text("thing = 1\n")
    assert cycles(import_graph(modules({"pkg": pkg}))) == []


def modules_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running `code`."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout.splitlines()[-1]))


HEAVY = {"torch", "transformers"}


@pytest.mark.parametrize(
    "module", ["longweave.generators.pipeline", "longweave.generators.kinds", "longweave.generators.dataset"]
)
def test_the_generators_import_neither_torch_nor_transformers(module: str) -> None:
    loaded = modules_after(f"import {module}")
    assert "longweave" in loaded and "numpy" in loaded  # the probe sees what was imported
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_loading_a_tokenizer_and_rendering_a_chat_import_neither(tokenizer_dir: Path) -> None:
    code = (
        "from longweave.generators.tokenizer import load_tokenizer\n"
        f"tok = load_tokenizer({str(tokenizer_dir)!r})\n"
        "ids, mask = tok.encode_chat([{'role': 'user', 'content': 'q'}, {'role': 'assistant', 'content': 'a'}])\n"
        "assert mask.any() and tok.decode(ids).startswith('<|im_start|>user')\n"
    )
    loaded = modules_after(code)
    assert {"tokenizers", "jinja2"} <= loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    # The transformers object is still there for Hugging Face code that asks for it.
    assert "transformers" in modules_after(code + "assert tok.hf.eos_token == tok.eos_token\n")
