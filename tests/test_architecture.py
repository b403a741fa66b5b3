"""The package layout as rules, checked on the source with ``ast`` (imports inside functions count too).

* no import cycles between emotk modules;
* ``emotk.core`` imports nothing of emotk above it (only ``emotk.core.*``, ``emotk.errors`` and the package root);
* the library (everything but ``emotk.cli``) never imports ``emotk.cli`` or typer;
* ``emotk.eval`` talks to trained systems only through their public inference modules ``emotk.models.<task>.infer``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emotk"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules ``name`` imports: emotk modules by their own name, others by their top-level package."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            for alias in node.names:  # `from emotk.x import y` where y is a module
                if f"{target}.{alias.name}" in known:
                    out.add(f"{target}.{alias.name}")
    resolved = set()
    for target in out:
        if target == "emotk" or target.startswith("emotk."):
            while target not in known and "." in target:  # `import emotk.x.Class`-style names -> the module
                target = target.rsplit(".", 1)[0]
            resolved.add(target)
        else:
            resolved.add(target.split(".")[0])
    resolved.discard(name)
    return resolved


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(t for t in graph[root] if t in graph)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(t for t in graph[child] if t in graph))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _is_package_parent(a: str, b: str) -> bool:
    """A package ``__init__`` and its own submodule (the package re-exporting its parts) are one unit."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(graph):
    # edges from a package __init__ to its own submodules are how a package exposes its API; a cycle through such an
    # edge is a package importing itself, which is not the design problem this test is about
    pruned = {m: {t for t in ts if not (_is_package_parent(m, t) and t.startswith(m + "."))} for m, ts in graph.items()}
    cycles = _cycles(pruned)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_core_imports_nothing_above_it(graph):
    bad = {m: sorted(t for t in ts if t.startswith("emotk.") and not t.startswith("emotk.core")
                     and t != "emotk.errors")
           for m, ts in graph.items() if m.startswith("emotk.core")}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_library_never_imports_the_cli(graph):
    bad = {m: sorted(t for t in ts if t.startswith("emotk.cli") or t == "typer")
           for m, ts in graph.items() if not m.startswith("emotk.cli") and m not in ("emotk.__main__",)}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_eval_uses_only_the_public_inference_modules_of_models(graph):
    def allowed(target: str) -> bool:
        parts = target.split(".")
        # emotk.models.<task>.infer, or the task package itself as the `from emotk.models.<task> import infer` base
        return (len(parts) == 4 and parts[3] == "infer") or len(parts) <= 3

    bad = {m: sorted(t for t in ts if t.startswith("emotk.models") and not allowed(t))
           for m, ts in graph.items() if m.startswith("emotk.eval")}
    assert {m: ts for m, ts in bad.items() if ts} == {}


TASK_FILES = ("config.py", "model.py", "task.py", "export.py", "infer.py")


def _task_packages() -> list[Path]:
    """emotk/models/<task>/ and their stage sub-packages (e.g. zest/vocoder/)."""
    roots = [p for p in sorted((PACKAGE / "models").iterdir()) if (p / "__init__.py").is_file()]
    return roots + [s for r in roots for s in sorted(r.iterdir()) if (s / "__init__.py").is_file()]


def test_every_task_package_has_the_same_shape():
    missing = {str(p.relative_to(PACKAGE.parent)): [f for f in TASK_FILES if not (p / f).is_file()]
               for p in _task_packages()}
    assert {k: v for k, v in missing.items() if v} == {}


def test_task_table_points_at_each_package_train_entry():
    from emotk.recipes import TASKS

    for spec in TASKS.values():
        if spec.train is not None and spec.train.startswith("emotk.models."):
            module, _, attr = spec.train.partition(":")
            assert module.endswith(".task") and attr == "train", spec
            assert callable(spec.train_fn())
        spec.schema_class()
