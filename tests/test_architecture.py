"""The shape of the package, held by tests: no import cycles, SQL only in the store, small
modules, and every public package's ``__all__`` naming exactly what it exports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "goldloop"
MAX_LINES = 450
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|"
                 r"DROP\s+TABLE|ALTER\s+TABLE|PRAGMA\s)\b", re.DOTALL)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = ("goldloop",) + path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, level: int, target: str | None) -> str:
    """The absolute name ``from <level dots><target>`` means inside ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _import_time_edges(module: str) -> set[str]:
    """goldloop modules ``module`` imports when it is imported (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    edges: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body])
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("goldloop"))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node.level, node.module)
                if not target.startswith("goldloop"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add(sub if sub in MODULES else target)

    visit(tree.body)
    return {e for e in edges if e in MODULES and e != module}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_no_import_cycle():
    graph = {name: set() for name in MODULES}
    for name in MODULES:
        graph[name] |= _import_time_edges(name)
    found = _cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append((node.lineno, node.value))
    return out


def test_no_sql_outside_the_store():
    offenders = []
    for name, path in MODULES.items():
        if name == "goldloop.store" or name.startswith("goldloop.store."):
            continue
        source = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(SRC)}:{line}: {text[:60]!r}" for line, text in _strings(path)
                      if SQL.search(text)]
        offenders += [f"{path.relative_to(SRC)}: calls .{call}()" for call in ("execute", "executemany", "query")
                      if re.search(rf"\b(store|db|self\.store)\.{call}\(", source)]
    assert not offenders, "SQL outside goldloop.store:\n" + "\n".join(offenders)


def test_the_sql_check_sees_sql():
    assert SQL.search("SELECT id FROM records WHERE x = ?")
    assert SQL.search("UPDATE review_queue SET done = 1")
    assert not SQL.search("select the best candidates from the queue")


@pytest.mark.parametrize("path", sorted(p for p in SRC.rglob("*") if p.suffix in (".py", ".js")),
                         ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_450_lines(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines; split it by what its parts do"
