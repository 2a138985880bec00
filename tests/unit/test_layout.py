"""The layout by pipeline component holds: imports only go down the pipeline, there are no import
cycles, every DVC stage depends on exactly the code it loads, and no file grows past 400 lines."""
from pathlib import Path

import pytest
import yaml

from tests.import_graph import (COMPONENTS, PACKAGE, PROJECT_ROOT, ROOT_INIT, TOP_MODULES, code_deps, component,
                                direct_imports, import_cycles, is_code_dep, library_modules, stage_script,
                                transitive_imports)

FOUNDATION = {"config": {"config"}, "ops": {"config", "ops"}}   # imported by everything, importing nothing later


def dvc_stages() -> dict[str, dict]:
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def test_the_package_folders_are_the_pipeline_components():
    folders = {p.name for p in (PROJECT_ROOT / PACKAGE).iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(COMPONENTS)


def test_modules_import_only_their_own_and_earlier_components():
    rank = {name: i for i, name in enumerate(COMPONENTS)}
    wrong = []
    for module in library_modules():
        mine = component(module)
        if mine is None:
            assert module in TOP_MODULES or module == ROOT_INIT, f"{module}: put it in a component folder"
            if module == ROOT_INIT:   # run by every import: it must load no component
                assert not direct_imports(module), f"{module} imports {sorted(map(str, direct_imports(module)))}"
            continue
        for target in direct_imports(module):
            theirs = component(target)
            if theirs is None:
                continue
            allowed = FOUNDATION.get(mine)
            if (allowed is not None and theirs not in allowed) or rank[theirs] > rank[mine]:
                wrong.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert not wrong, "imports that go up the pipeline:\n" + "\n".join(wrong)


def test_no_import_cycles():
    assert import_cycles() == []


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_each_stage_depends_on_exactly_the_code_it_loads(name):
    stage = dvc_stages()[name]
    script = stage_script(stage["cmd"])
    listed = {d for d in stage["deps"] if isinstance(d, str) and is_code_dep(d)}
    needed = set(code_deps(script))
    loaded = transitive_imports(script)
    missing = {dep: sorted(str(p) for p in loaded if str(p).startswith(dep.removesuffix(".py"))) for dep in
               needed - listed}
    fix = "run `python -m tests.import_graph` to rewrite dvc.yaml's code deps"
    assert not missing, f"{name} loads files its deps do not cover: {missing}; {fix}"
    assert not listed - needed, f"{name} lists code it does not load: {sorted(listed - needed)}; {fix}"


def test_stage_names_match_their_scripts_and_params_groups():
    groups = set(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()))
    for name, stage in dvc_stages().items():
        assert stage_script(stage["cmd"]) == Path("stages") / f"{name}.py"
        assert name in groups or name == "scan_source", f"{name} has no params group"


def test_no_file_over_400_lines():
    long = []
    for folder in (PACKAGE, "stages", "flows", "tests", "benchmarks"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            lines = path.read_text().count("\n")
            if lines > 400:
                long.append(f"{path.relative_to(PROJECT_ROOT)}: {lines} lines")
    assert not long, "split these by concept: " + ", ".join(long)
