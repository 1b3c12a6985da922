"""The package's layering: imports run one way down the data flow, never in a loop.

Every module under vtune/ is parsed (imports at the top and inside functions
alike) and each import is checked against :data:`LAYERS`, the order in which
data moves through a search. A module may import from its own layer's package
or from an earlier layer, never from a later one; no import cycle; no
underscore name from another module (a package may use its own private
submodules); no private module of another library (``jax._src``).
"""

import ast
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vtune"

#: The layers, first to last. A unit is a top-level module or subpackage of vtune.
LAYERS = ("version", "checks", "space", "kernels", "nn", "datasets", "trial", "tasks", "population",
          "program", "strategies", "report", "checkpoint", "search", "cli")
#: The package root and ``python -m vtune`` sit above every layer.
TOP = ("vtune", "vtune.__main__")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, pathlib.Path]:
    """Every module of the package (the kernels symlink included), by dotted name."""
    found = {}
    for folder, _, files in os.walk(PACKAGE, followlinks=True):  # vtune/kernels is a link
        for name in sorted(files):
            if name.endswith(".py"):
                path = pathlib.Path(folder) / name
                found[_module_name(path)] = path
    return dict(sorted(found.items()))


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def imports(name: str, path: pathlib.Path, known: set[str]):
    """``(line, target_module, imported_name_or_None)`` for every import in a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:  # ``from pkg import submodule``
                    yield node.lineno, sub, None
                else:
                    yield node.lineno, source, alias.name


def unit(module: str) -> str | None:
    """The layer unit of a vtune module (``vtune.report.plots`` -> ``report``)."""
    if module in TOP:
        return None
    return module.split(".")[1]


def violations(found: dict[str, pathlib.Path]) -> tuple[list[str], dict[str, set[str]]]:
    """Layer-order and private-name violations, and the import graph inside vtune."""
    known = set(found)
    problems, graph = [], {m: set() for m in found}
    for name, path in found.items():
        for line, target, attr in imports(name, path, known):
            where = f"{path.relative_to(ROOT)}:{line}"
            if target == "__future__":
                continue
            if not (target == "vtune" or target.startswith("vtune.")):
                if any(_private(p) for p in target.split(".")):
                    problems.append(f"{where}: imports the private module {target}")
                continue
            if target not in known:
                problems.append(f"{where}: imports {target}, which is not a module of vtune")
                continue
            if attr is not None and _private(attr):
                problems.append(f"{where}: imports the private name {attr} from {target}")
            parts = target.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])
                if _private(part) and not (name == owner or name.startswith(owner + ".")):
                    problems.append(f"{where}: imports {target}, private to {owner}")
            if target != name:
                graph[name].add(target)
            src, dst = unit(name), unit(target)
            if target in TOP and name not in TOP:
                problems.append(f"{where}: imports the package root {target} from a layer")
            elif src is not None and dst is not None and src != dst:
                if src not in LAYERS or dst not in LAYERS:
                    problems.append(f"{where}: {src if src not in LAYERS else dst} is in no layer; "
                                    f"add it to tests/test_layering.py LAYERS")
                elif LAYERS.index(dst) > LAYERS.index(src):
                    problems.append(f"{where}: {src} imports {target}, a later layer ({dst})")
    return problems, graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_unit_has_a_layer():
    units = {unit(m) for m in modules()} - {None}
    assert units <= set(LAYERS), f"units in no layer: {sorted(units - set(LAYERS))}"


def test_imports_follow_the_layers():
    problems, _ = violations(modules())
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    _, graph = violations(modules())
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("source, expected", [
    ("from vtune.report.result import _fmt\n", "private name _fmt"),
    ("from jax._src import xla_bridge\n", "private module jax._src"),
    ("from vtune.cli import main\n", "a later layer (cli)"),
    ("import vtune\n", "package root"),
])
def test_the_checker_catches(tmp_path, monkeypatch, source, expected):
    """The checker itself can fail: a planted bad import is reported."""
    found = modules()
    bad = PACKAGE / "space" / "distributions.py"
    planted = tmp_path / "distributions.py"
    planted.write_text(source)
    found["vtune.space.distributions"] = planted
    monkeypatch.setattr(pathlib.Path, "relative_to", lambda self, other: self)
    problems, _ = violations(found)
    assert any(expected in p for p in problems), problems
    assert bad.exists()


def test_the_checker_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
