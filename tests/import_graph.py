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
              "lineage", "ui")
ROOT_INIT = Path(PACKAGE) / "__init__.py"   # run by every import of the package; imports no component
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
            if nxt in _package_inits(node):   # a package __init__ re-exporting its own modules is no cycle
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


def stage_script(cmd: str) -> Path:
    """`python stages/<name>.py [args]` -> stages/<name>.py."""
    words = cmd.split()
    scripts = [w for w in words if w.startswith("stages/") and w.endswith(".py")]
    if len(scripts) != 1:
        raise ValueError(f"cannot find the stage script in cmd {cmd!r}")
    return Path(scripts[0])


def code_deps(script: Path) -> list[str]:
    """What a stage's `deps` must name for its code: the script, the package root and every component
    folder the script loads (directly or through other modules), as DVC paths."""
    needed = {str(script), str(ROOT_INIT)}
    for path in transitive_imports(script):
        name = component(path)
        if name is not None:
            needed.add(f"{PACKAGE}/{name}")
        elif path.parts[0] != PACKAGE:
            needed.add(str(path))      # another project file outside the package (e.g. a shared stage helper)
    return sorted(needed)


def is_code_dep(dep: str) -> bool:
    return dep.startswith(("stages/", f"{PACKAGE}/", "flows/"))


def write_dvc_code_deps(dvc_yaml: Path = PROJECT_ROOT / "dvc.yaml") -> list[str]:
    """Rewrite every stage's code deps in dvc.yaml from the imports (comments and data deps kept);
    returns the stages whose deps changed. `python -m tests.import_graph` runs it."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(dvc_yaml.read_text())
    changed = []
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        old = list(body["deps"])
        data = [d for d in old if not (isinstance(d, str) and is_code_dep(d))]
        new = code_deps(stage_script(body["cmd"])) + data
        if new != old:
            body["deps"].clear()
            body["deps"].extend(new)
            changed.append(name)
    if changed:
        tmp = dvc_yaml.with_suffix(".yaml.tmp")
        with tmp.open("w") as out:
            yaml.dump(doc, out)
        tmp.replace(dvc_yaml)
    return changed


if __name__ == "__main__":
    print("stages whose code deps were rewritten:", ", ".join(write_dvc_code_deps()) or "none")
