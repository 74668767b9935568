"""Real, human-written prompt → response pairs that install with Python itself: each function of
the standard library with a docstring gives the prompt "write the docstring of this function"
(its source with the docstring taken out) and the docstring its authors wrote as the response.

The docstrings are human-written, under the Python Software Foundation licence; the modules
are read as text with :mod:`ast` (never imported or run). Pairs come in a fixed order (module
path, then line), so a seed picks the same ones on every machine with the same Python.
"""

from __future__ import annotations

import ast
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

PROMPT = "Write the docstring of this Python function.\n\n{source}"
SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "ensurepip", "__pycache__",
             "tkinter", "pydoc_data", "venv"}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _modules(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if not parts & SKIP_DIRS and not path.name.startswith("test_"):
            yield path


def function_pairs(path: Path, root: Path, *, min_doc: int = 40, max_doc: int = 600,
                   max_source: int = 1500) -> Iterator[dict[str, str]]:
    """The (prompt, response, source) of each documented function in one module that fits the limits."""
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    lines = text.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node, clean=True)
        if not doc or not (min_doc <= len(doc) <= max_doc) or node.name.startswith("__"):
            continue
        first = node.body[0]
        start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        body = lines[start:first.lineno - 1] + lines[first.end_lineno:node.end_lineno]
        if len(node.body) == 1:
            continue                                    # nothing but the docstring: no code to describe
        source = textwrap.dedent("\n".join(body)).strip()
        if not source or len(source) > max_source:
            continue
        yield {"prompt": PROMPT.format(source=source), "response": doc,
               "source": f"{path.relative_to(root).as_posix()}:{node.lineno}"}


def stdlib_pairs(limit: int | None = None) -> list[dict[str, str]]:
    """Documented standard-library functions as pairs, in a fixed order, each prompt and response
    distinct; ``limit`` stops early."""
    root = stdlib_dir()
    out: list[dict[str, str]] = []
    seen_prompts, seen_responses = set(), set()
    for path in _modules(root):
        for pair in function_pairs(path, root):
            if pair["prompt"] in seen_prompts or pair["response"] in seen_responses:
                continue
            seen_prompts.add(pair["prompt"])
            seen_responses.add(pair["response"])
            out.append(pair)
            if limit is not None and len(out) >= limit:
                return out
    return out


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))
