"""Every public package's ``__all__`` names exactly what the package itself defines or re-exports
from its own modules, and each name resolves: `from goldloop.X import *` gives the documented API."""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import goldloop


def _public_packages() -> list[str]:
    names = ["goldloop"]
    for info in pkgutil.walk_packages(goldloop.__path__, "goldloop."):
        if info.ispkg and not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _public_names(module) -> tuple[set[str], set[str]]:
    """(names the package's __init__ defines or imports from its own modules, names it imports from
    elsewhere), public ones only."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    foreign: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            foreign.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}, {n for n in foreign if not n.startswith("_")}


PACKAGES = _public_packages()


def test_every_public_package_is_checked():
    assert {"goldloop", "goldloop.cli", "goldloop.store", "goldloop.serve", "goldloop.review", "goldloop.llm",
            "goldloop.filters", "goldloop.generate", "goldloop.export", "goldloop.train"} <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exactly_the_public_api(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ names something twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what {name} does not have: {missing}"
    own, foreign = _public_names(module)
    assert own <= set(exported), f"{name} defines or re-exports {sorted(own - set(exported))} outside __all__"
    assert set(exported) <= own | foreign, f"{name}.__all__ names {sorted(set(exported) - own - foreign)}, " \
                                           "which it neither defines nor imports"
