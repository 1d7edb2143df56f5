"""The house rules, checked on the source: stages import one way, with no cycles; Ray only in
``vtrial.engine``, MLflow only in ``vtrial.outputs``; no vtrial import hidden inside a function."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "vtrial"
# each stage may import only stages of a lower rank (and itself)
RANK = {
    "data": 0,
    "signal": 1,
    "physiology": 2,
    "spec": 3,
    "sources": 4,
    "model": 5,
    "stats": 5,
    "sampling": 6,
    "engine": 7,
    "outputs": 7,
    "studies": 8,
    "trial": 8,
    "cli": 9,
    "__init__": 9,
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text())


def _imports(name: str, path: Path, tree: ast.Module):
    """(module imported, inside a function?) for every import in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + [base]).strip(".")
                found.append((base, in_function))
                found.extend((f"{base}.{a.name}", in_function) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {name: (path, tree) for name, path, tree in _modules()}


def _vtrial_edges(top_level_only: bool):
    edges = {}
    for name, (path, tree) in MODULES.items():
        deps = {
            m
            for m, inner in _imports(name, path, tree)
            if m in MODULES and m != name and not (top_level_only and inner)
        }
        edges[name] = deps
    return edges


def test_every_stage_has_a_rank():
    assert {_stage(m) for m in MODULES} <= set(RANK), sorted({_stage(m) for m in MODULES} - set(RANK))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_stages(name):
    path, tree = MODULES[name]
    here = _stage(name)
    up = sorted(
        {
            m
            for m, _ in _imports(name, path, tree)
            if m in MODULES and _stage(m) != here and RANK[_stage(m)] >= RANK[here]
        }
    )
    assert not up, f"{name} ({here}) imports from the same rank or higher: {up}"


def test_no_import_cycle():
    edges = _vtrial_edges(top_level_only=False)
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in edges[node]:
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError(" → ".join(cycle))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in edges:
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("library, home", [("ray", "engine"), ("mlflow", "outputs")])
def test_heavy_services_are_imported_only_in_their_stage(library, home):
    users = sorted(
        name
        for name, (path, tree) in MODULES.items()
        if any(m == library or m.startswith(library + ".") for m, _ in _imports(name, path, tree))
        and _stage(name) != home
    )
    assert not users, f"{library} imported outside vtrial.{home}: {users}"


def test_no_vtrial_import_inside_a_function_except_the_engine_for_a_run():
    """Inside a function only to defer Ray (``vtrial.trial.run_trial`` imports the engine when it runs)."""
    allowed = {
        ("vtrial.trial", "vtrial.engine"),
        ("vtrial.trial", "vtrial.engine.cluster"),
        ("vtrial.trial", "vtrial.engine.dispatch"),
        ("vtrial.trial", "vtrial.engine.pool"),
        ("vtrial.trial", "vtrial.engine.dispatch.DispatchError"),
        ("vtrial.trial", "vtrial.engine.pool.ReplicaPool"),
    }
    hidden = sorted(
        (name, m)
        for name, (path, tree) in MODULES.items()
        for m, inner in _imports(name, path, tree)
        if inner and m.startswith("vtrial") and (name, m) not in allowed
    )
    assert not hidden, hidden


def test_every_module_has_a_test_file_of_its_own():
    """tests/ mirrors the package: vtrial/STAGE/NAME.py is tested in tests/STAGE/test_NAME.py."""
    tests = PACKAGE.parent / "tests"
    missing = []
    for path, _ in MODULES.values():
        if path.name == "__init__.py":
            continue
        rel = path.relative_to(PACKAGE)
        expected = tests / rel.parent / f"test_{rel.stem}.py"
        if not expected.is_file():
            missing.append(str(expected.relative_to(tests.parent)))
    assert not missing, missing
