"""The project's import graph, read from the source (no module is imported): which files each
module imports, transitively, and which pipeline component each belongs to. Used by the layout
tests: imports only go down the pipeline, and every DVC stage depends on what it imports."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dmospeech"
# dmospeech's components in pipeline order: a module may import its own component and earlier ones.
COMPONENTS = ("config", "ops", "data", "codec", "teacher", "critics", "student", "synthesis", "evaluation",
              "lineage")
ROOT_INIT = Path(PACKAGE) / "__init__.py"   # re-exports TTS lazily (module __getattr__); not followed
TOP_MODULES = {Path(PACKAGE) / "cli.py"}    # the console script: may import every component


def module_file(dotted: str) -> Path | None:
    """dmospeech.a.b -> dmospeech/a/b.py or dmospeech/a/b/__init__.py (relative to the project)."""
    base = Path(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (PROJECT_ROOT / candidate).exists():
            return candidate
    return None


def _package_inits(path: Path) -> list[Path]:
    """Importing dmospeech.a.b also runs dmospeech/__init__.py and dmospeech/a/__init__.py."""
    inits, parts = [], path.parts[:-1]
    for i in range(1, len(parts) + 1):
        init = Path(*parts[:i]) / "__init__.py"
        if init != path and (PROJECT_ROOT / init).exists():
            inits.append(init)
    return inits


@lru_cache(maxsize=None)
def direct_imports(path: Path) -> frozenset[Path]:
    """Project files `path` imports anywhere in its body (module level or inside functions)."""
    if path == ROOT_INIT:
        return frozenset()
    tree = ast.parse((PROJECT_ROOT / path).read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = list(path.parts[:-1])[: len(path.parts) - node.level]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]   # `from pkg import module`
    found: set[Path] = set()
    for name in names:
        if name.split(".")[0] not in (PACKAGE, "flows"):
            continue
        target = module_file(name)
        if target is not None and target != path:
            found.add(target)
            found.update(_package_inits(target))
    found.update(_package_inits(path))
    return frozenset(found)


def transitive_imports(path: Path) -> set[Path]:
    """Every project file loaded when `path` runs, `path` included."""
    seen, todo = {path}, [path]
    while todo:
        for target in direct_imports(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def component(path: Path) -> str | None:
    """The component folder of a dmospeech file (None for the package root and cli.py)."""
    parts = path.parts
    if parts[0] != PACKAGE or len(parts) < 3:
        return None
    return parts[1]


def library_modules() -> list[Path]:
    return sorted(p.relative_to(PROJECT_ROOT) for p in (PROJECT_ROOT / PACKAGE).rglob("*.py"))


def import_cycles() -> list[list[Path]]:
    """Strongly connected components of more than one module (Tarjan), each a list of files."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    cycles: list[list[Path]] = []

    def visit(node: Path) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in direct_imports(node):
            if nxt in (ROOT_INIT,) or nxt.name == "__init__.py" and nxt in _package_inits(node):
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in library_modules():
        if module not in index:
            visit(module)
    return cycles
